"""What a storage failure means for the operator: one classifier of SQLite (and file-system)
errors, shared by the node and the coordinator.

:func:`classify` sorts an exception into a :class:`Fault` -- the disk is full, the file system is
read-only, an I/O error, another process holds the database, the file is corrupt, the file cannot
be opened (permissions, a missing directory), the program's own error (a wrong statement, which no
retry fixes), or a store failure of unknown kind -- by SQLite's own result code
(``sqlite_errorcode``, whose low byte is the primary code) when the error carries one, else by
the ``errno`` of an :class:`OSError`, else by SQLite's fixed message texts (an error raised by
hand, e.g. a test-mode fault). Each fault has a one-line operator message saying what to do.

Callers decide with :attr:`Fault.host`: True for the host's storage (the work may wait and retry
until a write succeeds), False for a program error (never retried for ever, reported as a bug).
"""

from __future__ import annotations

import enum
import errno
import socket
import sqlite3
import ssl
from dataclasses import dataclass


class Kind(enum.Enum):
    """The kind of a storage failure (its value is the short name used in messages)."""

    FULL = "disk full"
    READ_ONLY = "read-only"
    IO = "I/O error"
    LOCKED = "locked"
    CORRUPT = "corrupt"
    DENIED = "cannot open"
    PROGRAM = "program error"
    UNKNOWN = "store failure"


# what the operator should do, one line each
ADVICE: dict[Kind, str] = {
    Kind.FULL: "free space on its file system (or raise the quota); writes resume once there is room",
    Kind.READ_ONLY: "the file system is mounted read-only or the file is not writable; check the kernel log, then remount or fix the mode",
    Kind.IO: "the disk or file system reports I/O errors; check the kernel log and the disk, restore from a backup if it persists",
    Kind.LOCKED: "another process holds the database (a second node or coordinator, a backup tool); stop it",
    Kind.CORRUPT: "the file is damaged or is not a database; stop the process and restore the file from a backup",
    Kind.DENIED: "the file cannot be opened or created; check the path (a dangling symlink?), its owner and its mode",
    Kind.PROGRAM: "the statement itself is wrong (a bug, or a store written by a newer version); report it",
    Kind.UNKNOWN: "the store cannot be used; check the disk and the kernel log",
}

# SQLite primary result codes (https://sqlite.org/rescode.html) -> kind; a code not listed: UNKNOWN
_BY_CODE: dict[int, Kind] = {
    1: Kind.PROGRAM,     # SQLITE_ERROR (SQL error, no such table or column)
    2: Kind.PROGRAM,     # SQLITE_INTERNAL
    3: Kind.DENIED,      # SQLITE_PERM
    4: Kind.PROGRAM,     # SQLITE_ABORT (the program's own rollback or callback abort)
    5: Kind.LOCKED,      # SQLITE_BUSY
    6: Kind.LOCKED,      # SQLITE_LOCKED
    8: Kind.READ_ONLY,   # SQLITE_READONLY
    9: Kind.PROGRAM,     # SQLITE_INTERRUPT (the program interrupted the statement)
    10: Kind.IO,         # SQLITE_IOERR (every extended I/O code)
    11: Kind.CORRUPT,    # SQLITE_CORRUPT
    13: Kind.FULL,       # SQLITE_FULL
    14: Kind.DENIED,     # SQLITE_CANTOPEN
    17: Kind.PROGRAM,    # SQLITE_SCHEMA (sqlite3 re-prepares by itself; one that reaches us is a bug)
    18: Kind.PROGRAM,    # SQLITE_TOOBIG
    19: Kind.PROGRAM,    # SQLITE_CONSTRAINT (the statement's own refusal)
    20: Kind.PROGRAM,    # SQLITE_MISMATCH
    21: Kind.PROGRAM,    # SQLITE_MISUSE
    23: Kind.DENIED,     # SQLITE_AUTH
    24: Kind.CORRUPT,    # SQLITE_FORMAT
    25: Kind.PROGRAM,    # SQLITE_RANGE
    26: Kind.CORRUPT,    # SQLITE_NOTADB
}

_BY_ERRNO: dict[int, Kind] = {
    errno.ENOSPC: Kind.FULL,
    errno.EDQUOT: Kind.FULL,
    errno.EFBIG: Kind.FULL,  # a file-size limit (ulimit -f) stops writes like a full disk
    errno.EROFS: Kind.READ_ONLY,
    errno.EIO: Kind.IO,
    errno.ENXIO: Kind.IO,
    errno.EACCES: Kind.DENIED,
    errno.EPERM: Kind.DENIED,
    errno.ENOENT: Kind.DENIED,
    errno.ENOTDIR: Kind.DENIED,
    errno.ELOOP: Kind.DENIED,
    errno.EWOULDBLOCK: Kind.LOCKED,
    # a wrong call, not the disk: no retry fixes these
    errno.EBADF: Kind.PROGRAM,
    errno.EINVAL: Kind.PROGRAM,
    errno.EFAULT: Kind.PROGRAM,
    errno.ESPIPE: Kind.PROGRAM,
}

# an OSError with one of these is the network's, not the storage's (no store failure at all)
_NETWORK_ERRNOS = frozenset({
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRINUSE,
    errno.EADDRNOTAVAIL, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN,
    errno.EPIPE, errno.ETIMEDOUT, errno.ENETRESET,
})

# SQLite's fixed texts (sqlite3_errstr), for an error without a result code; lower case
_BY_TEXT: tuple[tuple[str, Kind], ...] = (
    ("database or disk is full", Kind.FULL),
    ("no space left on device", Kind.FULL),
    ("readonly database", Kind.READ_ONLY),
    ("read-only file system", Kind.READ_ONLY),
    ("disk i/o error", Kind.IO),
    ("input/output error", Kind.IO),
    ("database is locked", Kind.LOCKED),
    ("database table is locked", Kind.LOCKED),
    ("database disk image is malformed", Kind.CORRUPT),
    ("file is not a database", Kind.CORRUPT),
    ("unable to open database file", Kind.DENIED),
)


@dataclass(frozen=True)
class Fault:
    """One classified storage failure: its :class:`Kind`, the SQLite primary result code or the
    ``errno`` it was classified by (None: by its text or its type)."""

    kind: Kind
    code: int | None = None

    @property
    def host(self) -> bool:
        """True when it is the host's storage (a retry may succeed once it is fixed), False for
        the program's own error."""
        return self.kind is not Kind.PROGRAM

    @property
    def advice(self) -> str:
        """What the operator should do (one line)."""
        return ADVICE[self.kind]


def _by_text(text: str) -> Kind | None:
    low = text.lower()
    return next((kind for needle, kind in _BY_TEXT if needle in low), None)


def classify(e: BaseException) -> Fault | None:
    """The storage fault ``e`` is, or None when it is no storage error at all.

    An :class:`sqlite3.Error` always classifies (by its result code, else its text; a hand-raised
    :class:`sqlite3.OperationalError` of unknown text is :attr:`Kind.UNKNOWN`; an integrity,
    programming or interface error without a code is :attr:`Kind.PROGRAM`). An :class:`OSError`
    classifies by its ``errno`` (an unknown one: UNKNOWN; a wrong call such as EBADF or EINVAL:
    PROGRAM) except a network error (:class:`ConnectionError`, :class:`TimeoutError`,
    :class:`ssl.SSLError`, a resolver error, an unreachable host or network, an address in use),
    which is None. An exception carrying a
    :class:`Fault` as its ``storage_fault`` attribute (one that wraps a classified error) gives it."""
    carried = getattr(e, "storage_fault", None)  # an error that wraps a classified one (the node's StoreError)
    if isinstance(carried, Fault):
        return carried
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)  # set by sqlite3 itself (absent on one raised by hand)
        if isinstance(code, int) and not isinstance(code, bool):
            primary = code & 0xFF
            return Fault(_BY_CODE.get(primary, Kind.UNKNOWN), primary)
        kind = _by_text(str(e))
        if kind is not None:
            return Fault(kind)
        if isinstance(e, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.NotSupportedError)):
            return Fault(Kind.PROGRAM)
        return Fault(Kind.UNKNOWN)
    if isinstance(e, (ConnectionError, TimeoutError, ssl.SSLError, socket.gaierror, socket.herror)):
        return None
    if isinstance(e, OSError) and e.errno in _NETWORK_ERRNOS:
        return None
    if isinstance(e, OSError):
        if isinstance(e.errno, int) and e.errno in _BY_ERRNO:
            return Fault(_BY_ERRNO[e.errno], e.errno)
        kind = _by_text(str(e))
        return Fault(kind if kind is not None else Kind.UNKNOWN, e.errno if isinstance(e.errno, int) else None)
    return None


def classify_text(text: str) -> Fault:
    """The fault a failure's text names (e.g. an audit-log error that carries only its message);
    :attr:`Kind.UNKNOWN` when the text names none."""
    kind = _by_text(text)
    return Fault(kind if kind is not None else Kind.UNKNOWN)


def one_line(e: BaseException | str, limit: int = 300) -> str:
    """``e`` as one line of at most ``limit`` characters, control characters dropped (for a log
    line, an RPC status or an audit entry)."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(e))
    return " ".join(text.split())[:limit]


def describe(e: BaseException, limit: int = 300) -> str:
    """``e`` as ``"<kind>: <error>; <advice>"`` on one line of at most ``limit`` characters (a
    health reason, an RPC status); just ``"<error>"`` when it is no storage error."""
    fault = classify(e)
    text = one_line(e) or type(e).__name__
    if fault is None:
        return text[:limit]
    return f"{fault.kind.value}: {text}; {fault.advice}"[:limit]


def operator_message(where: str, e: BaseException, limit: int = 400) -> str:
    """One line for the operator: ``"<where>: <kind>: <advice> (<error>)"``, e.g.
    ``"data dir /var/lib/mpc: disk full: free space on its file system ... (database or disk is
    full)"``; ``where`` names the store (a caller's text is escaped onto one line). For an error
    that is no storage error, ``"<where>: <error>"``. At most ``limit`` characters."""
    return fault_message(where, classify(e), e, limit)


def fault_message(where: str, fault: Fault | None, e: BaseException, limit: int = 400) -> str:
    """:func:`operator_message` for a fault the caller classified itself (e.g. refined by the
    free space of the directory)."""
    place = one_line(where, 200)
    if fault is None:
        return f"{place}: {one_line(e)}"[:limit]
    return f"{place}: {fault.kind.value}: {fault.advice} ({one_line(e, 160)})"[:limit]


__all__ = ["ADVICE", "Fault", "Kind", "classify", "classify_text", "describe", "fault_message", "one_line", "operator_message"]
