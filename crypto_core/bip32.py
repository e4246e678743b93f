"""BIP32 non-hardened public derivation on a threshold key (BIP-0032 "CKDpub"; notes 7.4).

Nobody holds the private key, so hardened indices are impossible and refused. The result is
the derived public key ``PK' = PK + [delta]``, its chain code, and the total additive tweak
``delta`` that the signers add to their shares. An index whose ``I_L >= q`` or whose child key
is the identity is refused (BIP32 says to skip to the next index; the references refuse too).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .group import Point, Q

HARDENED = 0x80000000
MAX_DEPTH = 255


CHAIN_CODE_LEN = 32


@dataclass(frozen=True)
class Derived:
    """A derived public key with what BIP32's extended public key serializes: its chain code
    (32 bytes), ``depth`` (= the path's length), ``parent_fingerprint`` (HASH160 of the parent's
    compressed key, first 4 bytes; zeros at the root) and ``child_number`` (the last index; 0 at
    the root), and the additive ``tweak`` the signers apply to their shares."""

    public_key: Point
    chain_code: bytes
    tweak: int  # delta: PK' = PK + [delta]
    parent_fingerprint: bytes
    depth: int
    child_number: int = 0


INDEX_RE = re.compile(r"[0-9]{1,10}")
"""One index of a path as text: ASCII digits only (the rule of :mod:`governance.digits`; ``int``
would also take full-width and other scripts' digits, ``_``, spaces and a sign)."""
MAX_PATH_CHARS = MAX_DEPTH * 11 + 1
_HARDENED_MARKS = ("'", "h", "H")


def check_path(path: Sequence[int]) -> tuple[int, ...]:
    """``path`` as a tuple of non-hardened indices (each an ``int``, not a ``bool``, in
    ``[0, 2**31)``), at most :data:`MAX_DEPTH` deep; else UsageError naming the index."""
    p = tuple(path)
    if len(p) > MAX_DEPTH:
        raise UsageError(f"derivation_path: deeper than {MAX_DEPTH}")
    for i, c in enumerate(p):
        if not isinstance(c, int) or isinstance(c, bool) or c < 0 or c >= 2**32:
            raise UsageError(f"derivation_path[{i}]: not a 32-bit index")
        if c >= HARDENED:
            raise UsageError(
                f"derivation_path[{i}]: hardened index {c - HARDENED}' needs the private key "
                "(a threshold key derives only non-hardened children: 0..2147483647)"
            )
    return p


def _show(text: str) -> str:
    """A short escaped prefix of caller text for an error message (ASCII only)."""
    return ascii(text[:24]) + (f"... ({len(text)} characters)" if len(text) > 24 else "")


def parse_path(text: str) -> tuple[int, ...]:
    """``"m/0/1/2"`` (``""``, ``"m"`` or ``"M"`` for the master key) to indices.

    Each index is 1-10 ASCII digits (:data:`INDEX_RE`, full match) below 2**31; nothing else is
    accepted: no whitespace, sign, underscore, hex or non-ASCII digits, no empty component. A
    hardened marker (``'``, ``h``, ``H``) is refused with its own reason: a threshold key has no
    private key to derive hardened children with. Raises UsageError naming the index.
    """
    if not isinstance(text, str):
        raise UsageError("derivation_path: must be text such as m/0/1")
    if len(text) > MAX_PATH_CHARS:
        raise UsageError(f"derivation_path: longer than {MAX_PATH_CHARS} characters ({len(text)})")
    if text in ("", "m", "M"):
        return ()
    parts = text.split("/")
    if parts[0] in ("m", "M"):
        parts = parts[1:]
    if len(parts) > MAX_DEPTH:
        raise UsageError(f"derivation_path: deeper than {MAX_DEPTH}")
    out = []
    for i, part in enumerate(parts):
        if INDEX_RE.fullmatch(part) is None:
            if part.endswith(_HARDENED_MARKS) and INDEX_RE.fullmatch(part[:-1]):
                raise UsageError(
                    f"derivation_path[{i}]: hardened index {_show(part)} needs the private key "
                    "(a threshold key derives only non-hardened children)"
                )
            raise UsageError(f"derivation_path[{i}]: {_show(part)} is not an index (1-10 of the digits 0-9, e.g. m/0/1)")
        n = int(part)
        if n >= HARDENED:
            raise UsageError(f"derivation_path[{i}]: {n} is a hardened index (non-hardened: 0..{HARDENED - 1})")
        out.append(n)
    return check_path(out)


def fingerprint(pk: Point) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(pk.encode()).digest()).digest()[:4]


def derive(public_key: Point, chain_code: bytes, path: Sequence[int]) -> Derived:
    """BIP32 CKDpub along ``path`` (non-hardened indices) from ``public_key`` (not the identity)
    and its 32-byte ``chain_code``. Raises UsageError for a bad path, chain code or key, and for an
    index whose child is invalid (``I_L >= q`` or the identity)."""
    p = check_path(path)
    if not isinstance(public_key, Point) or public_key.is_infinity:
        raise UsageError("public_key: must be a secp256k1 point other than infinity")
    if not isinstance(chain_code, (bytes, bytearray, memoryview)) or len(chain_code) != CHAIN_CODE_LEN:
        raise UsageError(f"chain_code: expected {CHAIN_CODE_LEN} bytes")
    chain_code = bytes(chain_code)
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
    return Derived(k, cc, delta, parent, len(p), p[-1] if p else 0)


def xpub(d: Derived, child_number: int | None = None, testnet: bool = False) -> str:
    """BIP32 extended public key of ``d``, Base58Check: version 0x0488B21E (``xpub``; 0x043587CF
    ``tpub`` for ``testnet``), depth, parent fingerprint, child number (``d.child_number`` unless
    given), chain code, compressed key (78 bytes before the 4-byte checksum)."""
    number = d.child_number if child_number is None else child_number
    if not 0 <= number < 2**32 or not 0 <= d.depth <= MAX_DEPTH:
        raise UsageError("xpub: child number or depth out of range")
    version = bytes.fromhex("043587cf" if testnet else "0488b21e")
    raw = version + bytes([d.depth]) + d.parent_fingerprint + number.to_bytes(4, "big") + d.chain_code + d.public_key.encode()
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
