"""BIP32 non-hardened public derivation on a threshold key (BIP-0032 "CKDpub"; notes 7.4).

Nobody holds the private key, so hardened indices are impossible and refused. The result is
the derived public key ``PK' = PK + [delta]``, its chain code, and the total additive tweak
``delta`` that the signers add to their shares. An index whose ``I_L >= q`` or whose child key
is the identity is refused (BIP32 says to skip to the next index; the references refuse too).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .group import Point, Q

HARDENED = 0x80000000
MAX_DEPTH = 255


@dataclass(frozen=True)
class Derived:
    public_key: Point
    chain_code: bytes
    tweak: int  # delta: PK' = PK + [delta]
    parent_fingerprint: bytes
    depth: int


def check_path(path: Sequence[int]) -> tuple[int, ...]:
    p = tuple(path)
    if len(p) > MAX_DEPTH:
        raise UsageError(f"derivation_path: deeper than {MAX_DEPTH}")
    for i, c in enumerate(p):
        if not isinstance(c, int) or c < 0 or c >= 2**32:
            raise UsageError(f"derivation_path[{i}]: not a 32-bit index")
        if c >= HARDENED:
            raise UsageError(f"derivation_path[{i}]: hardened index {c - HARDENED}' needs the private key")
    return p


def parse_path(text: str) -> tuple[int, ...]:
    """``"m/0/1/2"`` (or ``""``/``"m"`` for the master key) to indices."""
    text = text.strip()
    if text in ("", "m", "M"):
        return ()
    parts = text.split("/")
    if parts[0] in ("m", "M"):
        parts = parts[1:]
    out = []
    for part in parts:
        hardened = part.endswith(("'", "h", "H"))
        num = part[:-1] if hardened else part
        if not num.isdigit():
            raise UsageError(f"derivation_path: {part!r} is not an index")
        out.append(int(num) + (HARDENED if hardened else 0))
    return check_path(out)


def fingerprint(pk: Point) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(pk.encode()).digest()).digest()[:4]


def derive(public_key: Point, chain_code: bytes, path: Sequence[int]) -> Derived:
    p = check_path(path)
    k, cc, delta, parent = public_key, chain_code, 0, b"\x00" * 4
    for depth, c in enumerate(p, 1):
        i = hmac.new(cc, k.encode() + c.to_bytes(4, "big"), hashlib.sha512).digest()
        il = int.from_bytes(i[:32], "big")
        if il >= Q:
            raise UsageError(f"derivation_path[{depth - 1}]: index {c} is invalid for this key (I_L >= q)")
        child = k + Point.base_mul(il)
        if child.is_infinity:
            raise UsageError(f"derivation_path[{depth - 1}]: index {c} gives the identity")
        parent = fingerprint(k)
        k, cc, delta = child, i[32:], (delta + il) % Q
    return Derived(k, cc, delta, parent, len(p))


def xpub(d: Derived, child_number: int = 0, testnet: bool = False) -> str:
    """Base58Check extended public key (for interoperability checks)."""
    version = bytes.fromhex("043587cf" if testnet else "0488b21e")
    raw = version + bytes([d.depth]) + d.parent_fingerprint + child_number.to_bytes(4, "big") + d.chain_code + d.public_key.encode()
    chk = hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4]
    return _b58(raw + chk)


_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58(b: bytes) -> str:
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _ALPHABET[r] + out
    pad = len(b) - len(b.lstrip(b"\x00"))
    return "1" * pad + out
