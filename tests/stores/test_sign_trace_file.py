"""Review of issue 14's sign trace file: ``DIR/trace-<pid>.log`` has a predictable name, so in a
shared directory someone else may have put it there first. The process must not append through a
symlink planted there (to a file of the victim's choosing), nor write into a file someone else
owns or can read (the README promises mode 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.common import sign_trace


@pytest.fixture(autouse=True)
def _off() -> Iterator[None]:
    sign_trace.close_log()
    yield
    sign_trace.close_log()


def test_a_symlink_planted_at_the_trace_path_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    trace_dir = tmp_path / "shared"
    trace_dir.mkdir()
    (trace_dir / f"trace-{os.getpid()}.log").symlink_to(victim)
    with pytest.raises(OSError):
        sign_trace.open_log(trace_dir)
    assert not sign_trace.enabled()
    sign_trace.begin("req-1", "received")
    sign_trace.end("req-1", "woken")
    assert victim.read_text() == "precious\n"


def test_a_pre_existing_readable_trace_file_is_made_0600(tmp_path: Path) -> None:
    f = tmp_path / f"trace-{os.getpid()}.log"
    f.write_text("")
    f.chmod(0o644)
    sign_trace.open_log(tmp_path)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_a_trace_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / f"trace-{os.getpid()}.log")
    with pytest.raises(OSError):
        sign_trace.open_log(tmp_path)
    assert not sign_trace.enabled()


def test_the_summary_never_prints_a_planted_line_s_escape_sequences(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "trace-1.log").write_text(
        "req-1 t0=1000000 gc=0 received=0 sending=100 answered=900 woken=1000\n"
        "req-2 t0=2000000 gc=0 received=0 \x1b]0;owned\x07\x1b[2J=5 woken=1000\n"  # planted by someone who can write DIR
    )
    os.mkfifo(tmp_path / "trace-2.log")  # planted: must not block the summary
    out = subprocess.run(
        [sys.executable, str(root / "scripts" / "trace_sign_summary.py"), str(tmp_path)],
        capture_output=True, text=True, check=True, timeout=20,
    ).stdout
    assert "received: 1 requests" in out
    assert "\x1b" not in out and "\x07" not in out


def test_a_line_never_lands_in_a_file_that_reused_the_closed_trace_fd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sign_trace.open_log(tmp_path)
    sign_trace.begin("req-1", "received")
    victim = tmp_path / "victim.db"
    held: list[int] = []
    real = sign_trace._UNSAFE

    class CloseAndReopen:  # end() has taken the request's stamps: the log closes, another file gets its fd number
        def sub(self, repl: str, text: str) -> str:
            sign_trace.close_log()
            held.append(os.open(victim, os.O_WRONLY | os.O_CREAT, 0o600))
            return real.sub(repl, text)

    monkeypatch.setattr(sign_trace, "_UNSAFE", CloseAndReopen())
    sign_trace.end("req-1", "woken")
    os.close(held[0])
    assert victim.read_bytes() == b""
