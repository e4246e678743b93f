"""Operating issue 15's logs (operator review): a server killed mid-write and restarted by the
supervisor appends to the same log file, and a full or read-only disk makes every write fail.

* The restarted process's first line must not be glued onto the killed one's partial last line:
  the partial line stays a line of its own (the only one a reader skips), every other line of a
  ``log_format: json`` file is one complete JSON object.
* A log file that cannot be written (``/dev/full``: ENOSPC on every write) costs one line on
  stderr per failure streak (no ``--- Logging error ---`` traceback per record) and, when writes
  work again, one line counting the records lost; logging never raises into the caller.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.common.config import setup_logging

_WRITER = """
import logging, sys
from pathlib import Path
from mpcnet.common.config import setup_logging
setup_logging(Path(sys.argv[1]), "node-1", "INFO", "json")
log = logging.getLogger("mpc_node")
print("ready", flush=True)
i = 0
while True:  # long records: each is several write() calls, so a kill can cut one
    log.info("record %d %s", i, "x" * 40000)
    i += 1
"""


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if h not in saved:
            h.close()
    root.handlers[:] = saved
    root.setLevel(level)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_a_restarted_process_starts_its_first_line_on_a_new_line(tmp_path: Path) -> None:
    log_file = tmp_path / "node-1.log"
    log_file.write_bytes(b'{"ts":"2026-11-30T10:00:00.000Z","level":"INFO"}\n{"ts":"2026-11-30T10:00:01.0')  # killed mid-write
    setup_logging(log_file, "node-1", "INFO", "json")
    logging.getLogger("mpc_node").info("started again")
    logging.getLogger().handlers[0].flush()
    lines = _lines(log_file)
    assert lines[-1] == b""  # the file ends with a newline
    assert lines[1] == b'{"ts":"2026-11-30T10:00:01.0'  # the partial line: a line of its own
    assert _is_json_object(lines[0]) and _is_json_object(lines[2])
    assert json.loads(lines[2])["message"] == "started again"


def test_an_empty_or_complete_file_gets_no_blank_line(tmp_path: Path) -> None:
    log_file = tmp_path / "c.log"
    log_file.write_bytes(b'{"a":1}\n')
    setup_logging(log_file, "coordinator", "INFO", "json")
    logging.getLogger("x").info("one")
    logging.getLogger().handlers[0].flush()
    assert b"\n\n" not in log_file.read_bytes()
    assert len([ln for ln in _lines(log_file) if ln]) == 2


def test_sigkill_mid_write_then_restart_leaves_one_bad_line_at_most(tmp_path: Path) -> None:
    """Real processes: a writer of long JSON records is SIGKILLed, a second one appends (the
    supervisor's restart); the file holds complete JSON objects except at most the killed line."""
    log_file = tmp_path / "node-1.log"
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(log_file)], stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 10
        while (not log_file.exists() or log_file.stat().st_size < 200_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
    lines = [ln for ln in _lines(log_file)[:-1]]  # the second writer's partial line is the last one
    bad = [i for i, ln in enumerate(lines) if not _is_json_object(ln)]
    assert len(bad) <= 1, f"{len(bad)} lines are not JSON objects (at {bad[:5]})"
    assert all(_is_json_object(ln) for ln in lines[bad[0] + 1:] if bad) if bad else True


def test_a_full_disk_costs_one_stderr_line_not_a_traceback_per_record(tmp_path: Path) -> None:
    err = io.StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        setup_logging(Path("/dev/full"), "node-1", "INFO", "json")
        log = logging.getLogger("mpc_node")
        for i in range(50):
            log.info("record %d", i)  # never raises
    finally:
        sys.stderr = saved
    text = err.getvalue()
    assert "Traceback" not in text and "Logging error" not in text, text[:500]
    lines = text.splitlines()
    assert len(lines) == 1, lines[:5]
    assert "/dev/full" in lines[0] and "No space left on device" in lines[0]


def test_writes_working_again_are_reported_with_the_records_lost(tmp_path: Path) -> None:
    from mpcnet.common.logfile import LineFileHandler

    log_file = tmp_path / "n.log"
    h = LineFileHandler(log_file)
    h.setFormatter(logging.Formatter("%(message)s"))
    err = io.StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        h.handle(logging.makeLogRecord({"msg": "first"}))
        h.baseFilename = "/dev/full"  # the disk fills up: the next write fails, and every reopen
        h.stream.close()
        h.stream = open("/dev/full", "w", encoding="utf-8")
        for i in range(3):
            h.handle(logging.makeLogRecord({"msg": f"lost {i}"}))
        h.baseFilename = str(log_file)  # space again: the next record reopens the file
        h.handle(logging.makeLogRecord({"msg": "kept"}))
    finally:
        sys.stderr = saved
        h.close()
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "3 records lost" in lines[1]
    assert log_file.read_text() == "first\nkept\n"
