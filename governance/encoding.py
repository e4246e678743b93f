"""The canonical binary encoding of every governance object that is signed, hashed or sent.

An encoding is a sequence of *fields*; every field is a big-endian u64 length followed by that
many bytes. The first field is always an ASCII domain tag ``MPCNET/v1/gov/<name>`` (the ``v1``
versions the format: a new layout gets a new tag), so an encoding of one kind of object can
never be read, or verify, as another. A list is a big-endian u32 count followed by its items;
an optional value is a list of zero or one item. Inside a field:

* ``raw``: the bytes themselves; ``text``: strict UTF-8;
* ``uint``: 8-byte big-endian unsigned; ``sint``: 8-byte big-endian two's complement;
* ``flag``: one byte, 0 or 1;
* nested objects are a ``raw`` field holding their own (tagged) encoding.

Encodings are deterministic (maps are written sorted by key), and :class:`Decoder` accepts
exactly what :class:`Encoder` produces: the right tag, every length within the input, fixed
sizes for numbers, no trailing bytes. Other signatures made with the same Ed25519 key (e.g.
``mpc_node.envelope``, whose messages start with a u32 length) cannot collide with these,
whose first 8 bytes are a u64 length below 2**8.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from .errors import GovernanceError
from .text import quote

DOMAIN_PREFIX = "MPCNET/v1/gov/"
MAX_ENCODED = 1 << 20  # no governance object comes near 1 MiB
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


def domain_tag(name: str) -> str:
    """``MPCNET/v1/gov/<name>``, checked to be plain ASCII."""
    tag = DOMAIN_PREFIX + name
    if not name or not tag.isascii() or not tag.isprintable():
        raise ValueError(f"bad domain tag name {name!r}")
    return tag


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def encoded_once(obj: object, encode: Callable[[], bytes]) -> bytes:
    """``encode()`` computed once per ``obj`` and kept on it (issue 14: a signing request, its
    bundle and a policy are encoded several times per signature).

    Only for frozen objects whose every field is immutable and checked at construction, so the
    encoding cannot change; ``dataclasses.replace`` makes a new object with its own encoding. The
    kept bytes are not a field: equality, hashing and ``repr`` are unchanged."""
    cached: bytes | None = obj.__dict__.get("_encoded")
    if cached is None:
        cached = encode()
        object.__setattr__(obj, "_encoded", cached)
    return cached


def _int_in(value: object, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise GovernanceError(what, f"must be an int in [{lo}, {hi}]")
    return value


class Encoder:
    """Builds one canonical encoding: the domain tag, then fields in the caller's fixed order."""

    def __init__(self, tag: str) -> None:
        if not tag.startswith(DOMAIN_PREFIX):
            raise ValueError(f"domain tag must start with {DOMAIN_PREFIX!r}")
        self._parts: list[bytes] = []
        self._field(tag.encode("ascii"))

    def _field(self, data: bytes) -> Encoder:
        self._parts.append(_U64.pack(len(data)))
        self._parts.append(data)
        return self

    def raw(self, value: bytes) -> Encoder:
        if not isinstance(value, (bytes, bytearray)):
            raise GovernanceError("encoding", "raw field must be bytes")
        return self._field(bytes(value))

    def text(self, value: str) -> Encoder:
        if not isinstance(value, str):
            raise GovernanceError("encoding", "text field must be a string")
        try:
            return self._field(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise GovernanceError("encoding", "text is not encodable as UTF-8") from None

    def uint(self, value: int) -> Encoder:
        return self._field(_U64.pack(_int_in(value, "encoding", 0, U64_MAX)))

    def sint(self, value: int) -> Encoder:
        return self._field(_I64.pack(_int_in(value, "encoding", I64_MIN, I64_MAX)))

    def flag(self, value: bool) -> Encoder:
        if not isinstance(value, bool):
            raise GovernanceError("encoding", "flag field must be a bool")
        return self._field(b"\x01" if value else b"\x00")

    def count(self, n: int) -> Encoder:
        """Start a list of ``n`` items (the caller then writes the items' fields)."""
        self._parts.append(_U32.pack(_int_in(n, "encoding", 0, U32_MAX)))
        return self

    def optional(self, value: bytes | None) -> Encoder:
        if value is None:
            return self.count(0)
        return self.count(1).raw(value)

    def finish(self) -> bytes:
        return b"".join(self._parts)


class Decoder:
    """Reads one encoding strictly; every error names the field being read."""

    def __init__(self, data: object, tag: str, *, what: str = "encoding", max_len: int = MAX_ENCODED) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise GovernanceError(what, "must be bytes")
        self._data = bytes(data)
        if len(self._data) > max_len:
            raise GovernanceError(what, f"longer than {max_len} bytes")
        self._pos = 0
        got = self._field("tag")
        if got != tag.encode("ascii"):
            shown = got[:80].decode("ascii", "replace")
            raise GovernanceError("tag", f"expected {tag!r}, got {quote(shown)}")

    def _take(self, n: int, field: str) -> bytes:
        if n > len(self._data) - self._pos:
            raise GovernanceError(field, "truncated encoding")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def _field(self, field: str) -> bytes:
        (n,) = _U64.unpack(self._take(8, field))
        return self._take(n, field)

    def raw(self, field: str, *, length: int | None = None) -> bytes:
        value = self._field(field)
        if length is not None and len(value) != length:
            raise GovernanceError(field, f"must be {length} bytes, got {len(value)}")
        return value

    def text(self, field: str) -> str:
        try:
            return self._field(field).decode("utf-8", "strict")
        except UnicodeDecodeError:
            raise GovernanceError(field, "not valid UTF-8") from None

    def uint(self, field: str) -> int:
        value: int = _U64.unpack(self.raw(field, length=8))[0]
        return value

    def sint(self, field: str) -> int:
        value: int = _I64.unpack(self.raw(field, length=8))[0]
        return value

    def flag(self, field: str) -> bool:
        value = self.raw(field, length=1)
        if value not in (b"\x00", b"\x01"):
            raise GovernanceError(field, "flag must be 0 or 1")
        return value == b"\x01"

    def count(self, field: str, *, max_count: int) -> int:
        (n,) = _U32.unpack(self._take(4, field))
        if n > max_count:
            raise GovernanceError(field, f"more than {max_count} items")
        return int(n)

    def optional(self, field: str, *, length: int | None = None) -> bytes | None:
        if self.count(field, max_count=1) == 0:
            return None
        return self.raw(field, length=length)

    def at_end(self) -> bool:
        """True once every byte was read (for a trailing optional field, see KeyPolicy)."""
        return self._pos == len(self._data)

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise GovernanceError("encoding", f"{len(self._data) - self._pos} trailing bytes")
