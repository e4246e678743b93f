"""mpcnet.common.sign_trace: off by default (nothing recorded); on, one sanitised line per request
with its stamps in order (0600 file), a decision that did not complete the quorum is dropped by
the next ``begin``; scripts/trace_sign_summary.py reads the lines back."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.common import sign_trace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _off() -> Iterator[None]:
    sign_trace.close_log()
    yield
    sign_trace.close_log()


def test_off_by_default_records_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != sign_trace.ENV}
    out = subprocess.run(
        [sys.executable, "-c", "from mpcnet.common import sign_trace as t; t.mark('r', 'a'); t.end('r'); print(t.enabled(), t._open)"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )
    assert out.stdout.split() == ["False", "{}"]


def test_one_line_per_request_in_order_sanitised(tmp_path: Path) -> None:
    sign_trace.open_log(tmp_path)
    sign_trace.begin("req-1", "received")
    sign_trace.mark("req-1", "verified")
    sign_trace.begin("req-1", "received")  # the quorum decision: the earlier decision's stamps are dropped
    sign_trace.mark("req-1", "committed")
    sign_trace.begin("bad id\n\x1b[31m", "node.received")
    sign_trace.end("bad id\n\x1b[31m", "node.replied")
    sign_trace.end("req-1", "woken")
    sign_trace.end("never-marked", "woken")  # nothing
    (f,) = tmp_path.glob("trace-*.log")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    lines = f.read_text().splitlines()
    assert len(lines) == 2
    first = lines[0].split()
    assert first[0] == "bad_id___31m" and first[1].startswith("t0=") and first[2].startswith("gc=")
    assert [p.split("=")[0] for p in first[3:]] == [
        "node.received", "node.replied"
    ]
    second = lines[1].split()
    assert second[0] == "req-1" and [p.split("=")[0] for p in second[3:]] == ["received", "committed", "woken"]
    us = [int(p.split("=")[1]) for p in second[3:]]
    assert us[0] == 0 and us == sorted(us)


def test_open_requests_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sign_trace, "MAX_OPEN", 3)
    sign_trace.open_log(tmp_path)
    for i in range(10):
        sign_trace.mark(f"r{i}", "a")
    assert len(sign_trace._open) == 3 and set(sign_trace._open) == {"r7", "r8", "r9"}


def test_summary_script_reports_steps_and_transport(tmp_path: Path) -> None:
    (tmp_path / "trace-1.log").write_text(
        "req-1 t0=1000000 gc=0 received=0 sending=100 answered=900 woken=1000\n"
        "req-1 t0=1300000 gc=150 node.received=0 node.replied=400\n"
        "req-2 t0=5000000 gc=0 received=0 sending=50\n"  # incomplete: not used
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "trace_sign_summary.py"), str(tmp_path)], capture_output=True, text=True, check=True,
    ).stdout
    assert "received: 1 requests" in out and "node.received: 1 requests" in out
    assert "sending -> node.received p50 200" in out and "answered p50 200" in out
    assert "p50 150 p90 150 max 150; in 1 of 1 requests" in out


def test_gc_time_is_counted(tmp_path: Path) -> None:
    import gc

    sign_trace.open_log(tmp_path)
    sign_trace.begin("req-gc", "received")
    gc.collect()
    sign_trace.end("req-gc", "woken")
    (f,) = tmp_path.glob("trace-*.log")
    gc_us = int(f.read_text().split()[2].removeprefix("gc="))
    assert gc_us > 0
    sign_trace.close_log()
    assert sign_trace._on_gc not in gc.callbacks
