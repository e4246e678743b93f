"""The ban journal: a preallocated file where a ban goes when the store cannot write it.

Why: a failed OT-extension/RVOLE/Gamma check bans the peer, and the ban must be durable before
the failing session's answer leaves the node (a lost ban lets a cheating peer observe one more
check outcome: one more bit of the honest node's OT secret). The store (SQLite) needs free
space to write; a compromised coordinator can fill the disk (e.g. by making the node write
refusal audit entries). The journal needs none: it is created at full size when the node
starts (:meth:`BanJournal.open`: ``posix_fallocate`` where available, then zeros written over
the whole file, file and directory fsynced), so recording a ban later only overwrites blocks
that already exist (true on ordinary filesystems; copy-on-write ones such as btrfs or ZFS may
still need space).

Layout: ``slots`` records of :data:`RECORD_SIZE` (256) bytes; a slot is free when it is all
zeros. A record (big-endian)::

    magic "MPCNBAN" (7) | version u8 (1) | key_id (32) | peer u16 | reason length u16 |
    reason UTF-8, zero-padded (196) | checksum (16)

``checksum`` is SHA-256, truncated to 16 bytes, of the canonical encoding
(:mod:`governance.encoding`, tag ``MPCNET/v1/gov/node-ban-journal-record``) of
``(version, node index, slot, key_id, peer, reason)``. It detects torn writes (a record is
256-byte aligned, so it never spans two disk sectors) and records of another node or slot; like
the store's WAL, the journal is protected against crashes only, not against someone who can
write the node's files. A slot that is neither free nor a valid record is ignored (and may be
reused). The journal holds no secret: key ids, party indexes and check names.

One process owns a journal (the node holds its data directory lock); an instance is
thread-safe. Errors: :class:`BanJournalError` (message names the path, never a secret).
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from governance.encoding import Encoder, domain_tag, sha256
from mpcnet.common.fsutil import fsync_dir

log = logging.getLogger("mpc_node.banjournal")

SLOTS = 512
RECORD_SIZE = 256
MAGIC = b"MPCNBAN"
VERSION = 1
KEY_ID_LEN = 32
CHECKSUM_LEN = 16
REASON_BYTES = RECORD_SIZE - len(MAGIC) - 1 - KEY_ID_LEN - 2 - 2 - CHECKSUM_LEN  # 196
SUFFIX = ".bans"
RECORD_TAG = domain_tag("node-ban-journal-record")

_HEAD = struct.Struct(f">{len(MAGIC)}sB{KEY_ID_LEN}sHH")
_FREE = bytes(RECORD_SIZE)


class BanJournalError(Exception):
    """The journal cannot be created, read or written (message names the path and the cause)."""


@dataclass(frozen=True)
class JournalEntry:
    """A ban in the journal: ``slot`` (0-based), ``key_id`` (32 bytes), ``peer`` (1..65535),
    ``reason`` (1..:data:`REASON_BYTES` UTF-8 bytes, no NUL)."""

    slot: int
    key_id: bytes
    peer: int
    reason: str


def journal_path(store_path: Path) -> Path:
    """The journal of the store at ``store_path``: ``<store>.bans`` next to it."""
    return store_path.with_name(store_path.name + SUFFIX)


def fit_reason(reason: str) -> str:
    """``reason`` cut to at most :data:`REASON_BYTES` UTF-8 bytes (on a character boundary),
    NULs replaced; ``"ban"`` if nothing is left."""
    raw = reason.replace("\x00", "?").encode("utf-8", "replace")[:REASON_BYTES]
    return raw.decode("utf-8", "ignore") or "ban"


def _checksum(node_id: int, slot: int, key_id: bytes, peer: int, reason: bytes) -> bytes:
    enc = Encoder(RECORD_TAG).uint(VERSION).uint(node_id).uint(slot).raw(key_id).uint(peer).raw(reason)
    return sha256(enc.finish())[:CHECKSUM_LEN]


def encode_record(node_id: int, slot: int, key_id: bytes, peer: int, reason: str) -> bytes:
    """The :data:`RECORD_SIZE` bytes of a record (``reason`` as :func:`fit_reason` leaves it).
    Raises ``ValueError`` for a key id that is not 32 bytes or a peer outside 1..65535."""
    _check_ban(key_id, peer)
    text = fit_reason(reason).encode("utf-8")
    head = _HEAD.pack(MAGIC, VERSION, key_id, peer, len(text))
    body = head + text.ljust(REASON_BYTES, b"\x00")
    return body + _checksum(node_id, slot, key_id, peer, text)


def _check_ban(key_id: object, peer: object) -> None:
    if not isinstance(key_id, bytes) or len(key_id) != KEY_ID_LEN:
        raise ValueError(f"key_id: must be {KEY_ID_LEN} bytes")
    if not isinstance(peer, int) or isinstance(peer, bool) or not 1 <= peer <= 0xFFFF:
        raise ValueError("peer: must be an int in [1, 65535]")


def decode_record(node_id: int, slot: int, data: bytes) -> JournalEntry | None:
    """The ban in a slot's bytes, or ``None`` if the slot is free, torn, or not a valid record
    of this node and slot."""
    if len(data) != RECORD_SIZE or data == _FREE:
        return None
    magic, version, key_id, peer, n = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION or not 1 <= peer <= 0xFFFF or not 1 <= n <= REASON_BYTES:
        return None
    padded = data[_HEAD.size : _HEAD.size + REASON_BYTES]
    text, pad = padded[:n], padded[n:]
    if pad.strip(b"\x00") or b"\x00" in text:
        return None
    if data[-CHECKSUM_LEN:] != _checksum(node_id, slot, key_id, peer, text):
        return None
    try:
        reason = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return JournalEntry(slot, key_id, peer, reason)


class BanJournal:
    """A node's ban journal; create with :meth:`open`, release with :meth:`close`."""

    def __init__(self, path: Path, node_id: int, fd: int, slots: int, entries: list[JournalEntry], free: list[int]) -> None:
        """Internal: use :meth:`open`."""
        self.path = path
        self.node_id = node_id
        self.slots = slots
        self._fd = fd
        self._entries = tuple(entries)
        self._free = free  # free slots, lowest last (pop() takes the lowest)
        self._mu = threading.Lock()
        self._closer = weakref.finalize(self, os.close, fd)

    def __repr__(self) -> str:
        return f"BanJournal({str(self.path)!r}, {self.free_slots} of {self.slots} slots free)"

    @staticmethod
    def open(path: Path, node_id: int, *, slots: int = SLOTS) -> BanJournal:
        """Open the journal at ``path``, creating it (mode 0600) or growing it to ``slots``
        records first, durably; read its bans. A file longer than ``slots`` records is refused
        (not ours, or a newer layout). Raises :class:`BanJournalError` (e.g. the disk is full)."""
        if not 1 <= slots <= 1 << 16:
            raise ValueError("slots: must be in [1, 65536]")
        size = slots * RECORD_SIZE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise BanJournalError(f"ban journal {path}: cannot open ({_why(e)})") from None
        try:
            have = os.fstat(fd).st_size
            if have > size:
                raise BanJournalError(f"ban journal {path}: {have} bytes, expected at most {size} (not a ban journal of this version?)")
            if have < size:
                _preallocate(fd, have, size)
                os.fsync(fd)
                fsync_dir(path.parent)
            data = os.pread(fd, size, 0)
            if len(data) != size:
                raise BanJournalError(f"ban journal {path}: short read")
        except OSError as e:
            os.close(fd)
            raise BanJournalError(f"ban journal {path}: cannot create or read ({_why(e)})") from None
        except BaseException:
            os.close(fd)
            raise
        entries: list[JournalEntry] = []
        free: list[int] = []
        for slot in range(slots):
            raw = data[slot * RECORD_SIZE : (slot + 1) * RECORD_SIZE]
            entry = decode_record(node_id, slot, raw)
            if entry is not None:
                entries.append(entry)
                continue
            if raw != _FREE:
                log.warning("ban journal %s: slot %d holds no valid record (torn write?); ignored", path, slot)
            free.append(slot)
        free.reverse()
        if entries:
            log.warning("ban journal %s: %d ban(s) not yet moved into the store", path, len(entries))
        return BanJournal(path, node_id, fd, slots, entries, free)

    def close(self) -> None:
        self._closer()

    @property
    def free_slots(self) -> int:
        with self._mu:
            return len(self._free)

    def entries(self) -> tuple[JournalEntry, ...]:
        """The bans the journal held when it was opened."""
        return self._entries

    def put(self, key_id: bytes, peer: int, reason: str) -> int:
        """Write a ban into a free slot and fsync it; returns the slot. The ban is durable once
        this returns. Raises :class:`BanJournalError` if the journal is full or the write
        fails (the slot stays free), ``ValueError`` for a bad key id or peer."""
        _check_ban(key_id, peer)
        with self._mu:
            if not self._free:
                raise BanJournalError(f"ban journal {self.path}: full ({self.slots} slots)")
            slot = self._free[-1]
            record = encode_record(self.node_id, slot, key_id, peer, reason)
            self._write(slot, record)
            self._free.pop()
            return slot

    def clear(self, slot: int) -> None:
        """Free ``slot`` (its ban is in the store now): zeros, fsynced. Raises
        :class:`BanJournalError` if the write fails (the slot then stays taken)."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot: must be in [0, {self.slots})")
        with self._mu:
            if slot in self._free:
                return
            self._write(slot, _FREE)
            self._free.append(slot)
            self._free.sort(reverse=True)

    def _write(self, slot: int, data: bytes) -> None:
        if not self._closer.alive:
            raise BanJournalError(f"ban journal {self.path}: closed")
        try:
            n = os.pwrite(self._fd, data, slot * RECORD_SIZE)
            if n != len(data):
                raise OSError(errno.EIO, f"short write ({n} of {len(data)} bytes)")
            os.fsync(self._fd)
        except OSError as e:
            raise BanJournalError(f"ban journal {self.path}: cannot write slot {slot} ({_why(e)})") from None


def _preallocate(fd: int, start: int, end: int) -> None:
    """Give the file real blocks for bytes ``[start, end)``: reserve them (``posix_fallocate``,
    where the platform and filesystem offer it: a full disk fails here, at once), then write
    zeros over them (so no later overwrite has to convert unwritten extents)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, start, end - start)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    chunk = bytes(min(end - start, 1 << 16))
    pos = start
    while pos < end:
        n = os.pwrite(fd, chunk[: end - pos], pos)
        if n <= 0:
            raise OSError(errno.ENOSPC, "no space left on device")
        pos += n


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__
