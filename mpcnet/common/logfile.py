"""The servers' log file handler (``log_file`` in the node and coordinator configs): whole lines,
and a failing disk reported once instead of a traceback per record.

* **Kill mid-write.** Each record is flushed as it is logged, so a process killed by SIGKILL leaves
  at most one partial *last* line. The supervisor's restart appends to the same file; opening it,
  :class:`LineFileHandler` first ends such a partial line with ``\\n``, so the new process's first
  record is never glued onto it: in a ``log_format: json`` file every line is one complete JSON
  object except at most one partial line per kill (a reader skips a line that does not parse, e.g.
  ``jq -R 'fromjson? // empty' node-1.log``).
* **Disk full, read-only file system, file removed.** A write that fails (``OSError``, e.g.
  ENOSPC or EROFS) drops the record and the stream (the next record reopens the file, so it also
  starts on a new line); the first failure of a streak prints one line to stderr naming the file
  and the error, and the first record written after it one line counting the records lost. No
  ``--- Logging error ---`` traceback per record, and logging never raises into the caller (the
  request path must not fail because a log line could not be written).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from pathlib import Path

from governance.text import escape


def _report(text: str) -> None:
    with contextlib.suppress(Exception):  # stderr itself is gone (a closed pipe, the same full disk)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _ends_mid_line(path: str) -> bool:
    """True when the regular file ``path`` is not empty and its last byte is not ``\\n``."""
    try:
        with open(path, "rb") as f:
            if not os.path.isfile(path):
                return False
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return False
            f.seek(size - 1)
            return f.read(1) != b"\n"
    except OSError:
        return False


class LineFileHandler(logging.FileHandler):
    """A :class:`logging.FileHandler` appending UTF-8 lines to ``path`` (see the module
    docstring): a partial last line is ended before the first record; write failures are reported
    once per streak on stderr and counted (:attr:`lost`). Raises OSError only from the constructor
    (the file cannot be opened at start: the server stops with that error)."""

    def __init__(self, path: Path) -> None:
        self.lost = 0
        """Records dropped by the current failure streak (0 while writes succeed)."""
        self._failed_now = False
        super().__init__(path, mode="a", encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        stream = super()._open()
        if _ends_mid_line(self.baseFilename):  # a killed process's partial last line
            stream.write("\n")
            stream.flush()
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        try:
            if self.stream is None:  # dropped by a failed write: reopen (FileHandler would raise here)
                self.stream = self._open()
        except Exception:
            self.handleError(record)
            return
        logging.StreamHandler.emit(self, record)  # a failed write calls handleError
        if not self._failed_now and self.lost:
            _report(f"mpcnet: log file {escape(self.baseFilename)} is written again; {self.lost} records lost")
            self.lost = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_now = True
        e = sys.exc_info()[1]
        if self.lost == 0:
            what = escape(" ".join(str(e).split())[:200]) if e is not None else "unknown error"
            _report(f"mpcnet: cannot write log file {escape(self.baseFilename)}: {what} "
                    "(records are dropped until a write succeeds; reported once)")
        self.lost += 1
        stream, self.stream = self.stream, None  # reopened by the next emit
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()  # its buffer holds the failed record: discarded with it
