"""How every store opens its SQLite file: private, durable, WAL, versioned schema migrations.

The node store (:mod:`mpc_node.storage`), the audit logs (:mod:`mpcnet.common.stores.audit`) and the
coordinator's database (:mod:`coordinator.db`) all open their file with :func:`open_database`,
write with :func:`write_transaction` and bring their tables up to date with :func:`migrate`:

* **Permissions.** A new file is created ``0600`` with ``O_EXCL`` and its directory is fsynced,
  so the new name survives a crash. An existing file (and its ``-wal`` / ``-shm`` sidecars) that
  group or others can access is narrowed to ``0600``; a file that cannot be narrowed (another
  owner) or that is not a regular file is refused. SQLite creates the sidecars with the main
  file's mode, so they are ``0600`` too.
* **Durability.** WAL journaling, ``synchronous=FULL`` (checked, not just requested), foreign
  keys on, a busy timeout of :data:`BUSY_TIMEOUT_S` seconds; optionally ``secure_delete``.
  The connection is in autocommit mode (``isolation_level=None``): every write goes through
  :func:`write_transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``, ``ROLLBACK`` on any error), so a
  write that returned is committed and fsynced, and one that raised left nothing behind.
  Every ``COMMIT`` is counted (:func:`commits_total`, exported as ``mpcnet_store_commits_total``);
  with ``MPCNET_COMMIT_LOG=DIR`` in the environment each commit is also logged to
  ``DIR/commits-<pid>.log`` (benchmarks only: :mod:`mpcnet.common.stores.commit_count`).
* **Versioned migrations.** A store declares its schema as an ordered tuple of steps; step
  ``i`` (1-based) is a tuple of single SQL statements (never a script split on ``;``). The
  number of applied steps is the database's ``PRAGMA user_version``. :func:`migrate` applies each
  missing step in its own ``BEGIN IMMEDIATE`` transaction together with the new version number,
  so a step is applied completely and exactly once or not at all, also with several processes
  opening the file at once (the version is re-read inside the write lock). A database of a
  newer version than the code knows is refused.
* **Databases from before versioning** have ``user_version`` 0 whatever tables they hold, so
  every step they will run must be idempotent on every earlier layout: ``CREATE ... IF NOT
  EXISTS`` and :class:`AddColumn` (adds a column only where it is missing). Steps added later
  run only on databases whose version says exactly what they hold, and may be plain DDL.

Every failure is a :class:`DatabaseError` naming the field (``path`` or ``database``); each
store turns it into its own error type. Messages name the file and SQLite's reason, never data.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpcnet.common.fsutil import fsync_dir
from mpcnet.common.stores import commit_count

BUSY_TIMEOUT_S = 30.0
FILE_MODE = 0o600
SIDECARS = ("-wal", "-shm")
MAX_MIGRATIONS = 10_000
_CHECK_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # only to fstat/fchmod; a FIFO cannot block
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class DatabaseError(Exception):
    """The database cannot be created, opened, checked or migrated.

    ``field`` is ``"path"`` (the file itself: create, open, permissions) or ``"database"`` (its
    content: not SQLite, a PRAGMA refused, a migration failed, a newer schema); ``reason`` says
    what happened, naming the file but no stored data.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class AddColumn:
    """``ALTER TABLE table ADD COLUMN column definition``, only if ``table`` lacks ``column``.

    SQLite has no ``ADD COLUMN IF NOT EXISTS``; this is the idempotent form a step that older,
    unversioned databases run needs. ``table`` and ``column`` are lower-case SQL identifiers
    (``[a-z_][a-z0-9_]*``), ``definition`` the column's type and constraints
    (e.g. ``"INTEGER NOT NULL DEFAULT 0"``).
    """

    table: str
    column: str
    definition: str

    def __post_init__(self) -> None:
        for name, value in (("table", self.table), ("column", self.column)):
            if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
                raise ValueError(f"AddColumn.{name}: must match {_IDENTIFIER.pattern}")
        if not isinstance(self.definition, str) or not self.definition.strip() or ";" in self.definition:
            raise ValueError("AddColumn.definition: must be a non-empty column definition without ';'")


Statement = str | AddColumn
"""One SQL statement (no trailing script), or an :class:`AddColumn`."""
Migration = tuple[Statement, ...]
"""One schema step: its statements, applied in one transaction."""


# --- opening ---------------------------------------------------------------------------------


def _restrict(fd: int, path: Path) -> None:
    """Refuse a non-regular file; narrow a group/other-accessible one to FILE_MODE."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise DatabaseError("path", f"{path} is not a regular file")
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError as e:
            raise DatabaseError(
                "path", f"{path} is accessible by other users and cannot be made 0600 ({e.strerror or type(e).__name__})"
            ) from None


def ensure_private_file(path: Path) -> bool:
    """Create ``path`` (mode 0600, directory fsynced) if missing, else check and narrow its mode
    and its sidecars'; True if it was created. :class:`DatabaseError` (``path``) on failure."""
    path = Path(path)
    created = False
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        created = True
    except FileExistsError:
        try:
            fd = os.open(path, _CHECK_FLAGS)
        except OSError as e:
            raise DatabaseError("path", f"cannot open {path} ({e.strerror or type(e).__name__})") from None
    except OSError as e:
        raise DatabaseError("path", f"cannot create {path} ({e.strerror or type(e).__name__})") from None
    try:
        if created:
            os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
        else:
            _restrict(fd, path)
    except OSError as e:
        raise DatabaseError("path", f"cannot check {path} ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)
    if created:
        try:
            fsync_dir(path.parent)
        except OSError as e:
            raise DatabaseError("path", f"cannot fsync the directory of {path} ({e.strerror or type(e).__name__})") from None
    for suffix in SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        try:
            sfd = os.open(sidecar, _CHECK_FLAGS)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise DatabaseError("path", f"cannot open {sidecar} ({e.strerror or type(e).__name__})") from None
        try:
            _restrict(sfd, sidecar)
        except OSError as e:
            raise DatabaseError("path", f"cannot check {sidecar} ({e.strerror or type(e).__name__})") from None
        finally:
            os.close(sfd)
    return created


def open_database(
    path: Path, *, secure_delete: bool = False, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """Open (creating on first use) the store file at ``path``; see the module docstring.

    Returns an autocommit connection usable from any thread (the caller serializes its use,
    e.g. with a lock) with WAL, ``synchronous=FULL``, foreign keys and the busy timeout set.
    Raises :class:`DatabaseError`: ``path`` if the file cannot be created, opened or made
    private, ``database`` if it is not a usable SQLite database.
    """
    path = Path(path)
    ensure_private_file(path)
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise DatabaseError("path", f"cannot open {path} ({e})") from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DatabaseError("path", f"{path} cannot use WAL journaling (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if secure_delete:
            conn.execute("PRAGMA secure_delete = ON")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != 2:
            raise DatabaseError("database", "synchronous=FULL could not be set")
    except sqlite3.Error as e:
        conn.close()
        raise DatabaseError("database", f"{path} is not a usable SQLite database ({e})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def open_readonly(path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``: never creates, migrates or writes the file).

    Raises :class:`sqlite3.Error` as SQLite does (the callers report it their own way).
    """
    uri = "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)


# --- writing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (takes the write lock now, so reads inside see the latest commit),
    yield, ``COMMIT`` (fsynced: ``synchronous=FULL``); on any exception, from the body or the
    commit, ``ROLLBACK`` and re-raise it unchanged. The caller serializes use of ``conn``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        raise
    commit_count.committed(conn)


# --- schema migrations -----------------------------------------------------------------------


def schema_version(conn: sqlite3.Connection) -> int:
    """How many migration steps were applied (``PRAGMA user_version``; 0 before versioning)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _apply(conn: sqlite3.Connection, statement: Statement) -> None:
    if isinstance(statement, AddColumn):
        columns = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({statement.table})").fetchall()}
        if not columns:
            raise sqlite3.OperationalError(f"no such table: {statement.table}")
        if statement.column not in columns:
            conn.execute(f"ALTER TABLE {statement.table} ADD COLUMN {statement.column} {statement.definition}")
        return
    conn.execute(statement)  # sqlite3 refuses more than one statement per execute()


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Apply the steps of ``migrations`` the database lacks, in order; return its new version.

    Each missing step ``i`` (1-based) runs in one ``BEGIN IMMEDIATE`` transaction with
    ``PRAGMA user_version = i``: all of it or none of it. A step that fails rolls back (the
    database stays at ``i - 1``) and raises :class:`DatabaseError` (``database``) naming the
    step. A database already newer than ``len(migrations)`` is refused the same way.
    """
    if not isinstance(migrations, Sequence) or isinstance(migrations, str) or len(migrations) > MAX_MIGRATIONS:
        raise TypeError("migrations: must be a sequence of steps")
    for i, statements in enumerate(migrations, 1):
        if not isinstance(statements, tuple) or not statements or not all(
            isinstance(s, (str, AddColumn)) for s in statements
        ):
            raise TypeError(f"migrations[{i}]: must be a non-empty tuple of statements")
    target = len(migrations)
    try:
        current = schema_version(conn)
    except sqlite3.Error as e:
        raise DatabaseError("database", f"cannot read the schema version ({e})") from None
    while True:
        if current > target:
            raise DatabaseError(
                "database", f"schema version {current} is newer than this program knows ({target}); upgrade the program"
            )
        if current == target:
            return current
        step = current + 1
        try:
            with write_transaction(conn):
                current = schema_version(conn)  # another process may have migrated meanwhile
                if current >= step:
                    continue
                for statement in migrations[current]:
                    _apply(conn, statement)
                conn.execute(f"PRAGMA user_version = {int(step)}")
                current = step
        except sqlite3.Error as e:
            raise DatabaseError("database", f"schema migration {step} failed ({e}); nothing of it was applied") from None


__all__ = [
    "BUSY_TIMEOUT_S",
    "AddColumn",
    "DatabaseError",
    "Migration",
    "Statement",
    "ensure_private_file",
    "migrate",
    "open_database",
    "open_readonly",
    "schema_version",
    "write_transaction",
]
