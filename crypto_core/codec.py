"""Fixed binary layout of protocol messages, with strict decoding.

Every message starts with a 40-byte header::

    u8 wire_version | u8 protocol | u8 round | u8 kind | 32B session | u16 sender | u16 receiver

``kind`` is :data:`BROADCAST` (receiver 0) or :data:`DIRECT`. Bodies are sequences of
fixed-width fields (u8/u16/u32 integers, 32-byte scalars, 33-byte points, fixed-length byte
strings) whose counts are protocol constants, so every length is checked before use and
trailing bytes are an error. Decoding failures raise :class:`~crypto_core.errors.DecodeError`
naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import DecodeError
from .group import POINT_LEN, SCALAR_LEN, Point, scalar_from_bytes, scalar_to_bytes

WIRE_VERSION = 1
BROADCAST = 0
DIRECT = 1
HEADER_LEN = 40
SESSION_LEN = 32

T = TypeVar("T")


class Protocol:
    DKG = 1
    SIGN = 2
    RESHARE = 3
    FROST_DKG = 4


@dataclass(frozen=True)
class Header:
    protocol: int
    round: int
    kind: int
    session: bytes
    sender: int
    receiver: int

    def encode(self) -> bytes:
        return (
            bytes([WIRE_VERSION, self.protocol, self.round, self.kind])
            + self.session
            + self.sender.to_bytes(2, "big")
            + self.receiver.to_bytes(2, "big")
        )


class Writer:
    __slots__ = ("_parts",)

    def __init__(self, header: Header | None = None) -> None:
        self._parts: list[bytes] = [] if header is None else [header.encode()]

    def u8(self, x: int) -> Writer:
        self._parts.append(x.to_bytes(1, "big"))
        return self

    def u16(self, x: int) -> Writer:
        self._parts.append(x.to_bytes(2, "big"))
        return self

    def u32(self, x: int) -> Writer:
        self._parts.append(x.to_bytes(4, "big"))
        return self

    def raw(self, b: bytes) -> Writer:
        self._parts.append(bytes(b))
        return self

    def var(self, b: bytes) -> Writer:
        """A byte string with a u32 length prefix (only for records, never in hot paths)."""
        self._parts.append(len(b).to_bytes(4, "big"))
        self._parts.append(bytes(b))
        return self

    def scalar(self, k: int) -> Writer:
        self._parts.append(scalar_to_bytes(k))
        return self

    def scalars(self, ks: list[int]) -> Writer:
        self._parts.append(b"".join(k.to_bytes(32, "big") for k in ks))
        return self

    def point(self, p: Point) -> Writer:
        self._parts.append(p.encode())
        return self

    def points(self, ps: list[Point]) -> Writer:
        self._parts.append(b"".join(p.encode() for p in ps))
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0

    def take(self, n: int, field: str) -> bytes:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise DecodeError(field, f"truncated: need {n} bytes, {len(self._data) - self._pos} left")
        out = bytes(self._data[self._pos:end])
        self._pos = end
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def var(self, field: str, max_len: int) -> bytes:
        n = self.u32(field + ".length")
        if n > max_len:
            raise DecodeError(field, f"length {n} exceeds the maximum {max_len}")
        return self.take(n, field)

    def scalar(self, field: str, *, nonzero: bool = False) -> int:
        return scalar_from_bytes(self.take(SCALAR_LEN, field), field, nonzero=nonzero)

    def scalars(self, count: int, field: str) -> list[int]:
        raw = self.take(SCALAR_LEN * count, field)
        out = [int.from_bytes(raw[i:i + 32], "big") for i in range(0, len(raw), 32)]
        for i, k in enumerate(out):
            if k >= 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141:
                raise DecodeError(f"{field}[{i}]", "scalar not below the group order (non-canonical)")
        return out

    def point(self, field: str, *, allow_infinity: bool = False) -> Point:
        return Point.decode(self.take(POINT_LEN, field), field, allow_infinity=allow_infinity)

    def points(self, count: int, field: str, *, allow_infinity: bool = False) -> list[Point]:
        return [self.point(f"{field}[{i}]", allow_infinity=allow_infinity) for i in range(count)]

    def seq(self, count: int, field: str, item: Callable[[str], T]) -> list[T]:
        return [item(f"{field}[{i}]") for i in range(count)]

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def finish(self, what: str = "message") -> None:
        left = len(self._data) - self._pos
        if left:
            raise DecodeError(what, f"{left} unexpected trailing bytes")


def read_header(
    r: Reader, *, protocol: int, round: int, kind: int, session: bytes, sender: int, receiver: int
) -> None:
    """Check a header against what the receiver expects; any difference is a DecodeError."""
    version = r.u8("header.version")
    if version != WIRE_VERSION:
        raise DecodeError("header.version", f"unsupported wire version {version}")
    got = r.u8("header.protocol")
    if got != protocol:
        raise DecodeError("header.protocol", f"expected protocol {protocol}, got {got}")
    got = r.u8("header.round")
    if got != round:
        raise DecodeError("header.round", f"expected round {round}, got {got} (replayed or reordered)")
    got = r.u8("header.kind")
    if got != kind:
        raise DecodeError("header.kind", f"expected kind {kind}, got {got}")
    sid = r.take(SESSION_LEN, "header.session")
    if sid != session:
        raise DecodeError("header.session", "message belongs to another session")
    got = r.u16("header.sender")
    if got != sender:
        raise DecodeError("header.sender", f"claims sender {got} on the channel of party {sender}")
    got = r.u16("header.receiver")
    if got != receiver:
        raise DecodeError("header.receiver", f"addressed to {got}, not {receiver}")
