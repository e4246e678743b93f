"""Field checks shared by the governance modules; each raises GovernanceError naming the field."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import GovernanceError
from .text import NAME_RE, NAME_RULE, quote

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
MAX_MEMBERS = 256  # admins in an admin set, approvers in a policy, requesters, approvals

# Ed25519 public keys of small order make signatures that verify for *every* message (e.g. the
# identity point with R = identity, S = 0), so they are refused. A point has small order iff its
# y coordinate is 0, 1, -1 or one of the two y values of the order-8 points, which solve
# d*y^4 + 2*y^2 - 1 = 0 (from 2P = (+-sqrt(-1), 0) on -x^2 + y^2 = 1 + d*x^2*y^2).
_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P


def _sqrt_mod_p(a: int) -> int | None:
    a %= _P
    x = pow(a, (_P + 3) // 8, _P)
    if x * x % _P != a:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    return x if x * x % _P == a else None


def _small_order_ys() -> frozenset[int]:
    ys = {0, 1, _P - 1}
    root = _sqrt_mod_p(1 + _D)
    assert root is not None
    for r in (root, _P - root):
        y = _sqrt_mod_p((r - 1) * pow(_D, -1, _P))
        if y is not None:
            ys.update((y, _P - y))
    assert len(ys) == 5
    return frozenset(ys)


_SMALL_ORDER_Y = _small_order_ys()


def check_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise GovernanceError(field, NAME_RULE)
    return value


def check_int(value: object, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise GovernanceError(field, "must be an int")
    if not lo <= value <= hi:
        raise GovernanceError(field, f"must be in [{lo}, {hi}], got {value}")
    return value


def check_bytes(value: object, field: str, *, length: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise GovernanceError(field, "must be bytes")
    if len(value) != length:
        raise GovernanceError(field, f"must be {length} bytes, got {len(value)}")
    return bytes(value)


def check_public_key(value: object, field: str) -> bytes:
    """A raw 32-byte Ed25519 public key that is not of small order."""
    key = check_bytes(value, field, length=PUBLIC_KEY_LEN)
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    if y % _P in _SMALL_ORDER_Y:
        raise GovernanceError(field, "is a small-order Ed25519 point (would accept forged signatures)")
    return key


def check_members(value: object, field: str, *, what: str) -> Mapping[str, bytes]:
    """A read-only, name-sorted copy of ``name -> Ed25519 public key``; keys must be distinct."""
    if not isinstance(value, Mapping):
        raise GovernanceError(field, f"must be a mapping of {what} name to 32-byte public key")
    if not 1 <= len(value) <= MAX_MEMBERS:
        raise GovernanceError(field, f"must have 1..{MAX_MEMBERS} {what}s, got {len(value)}")
    out: dict[str, bytes] = {}
    owner: dict[bytes, str] = {}
    for name in sorted(value, key=lambda n: n if isinstance(n, str) else ""):
        check_name(name, f"{field}[{quote(name, 80)}]")
        key = check_public_key(value[name], f"{field}[{quote(name, 80)}]")
        if key in owner:
            raise GovernanceError(
                f"{field}[{quote(name, 80)}]", f"same public key as {what} {owner[key]!r}", subject=name
            )
        owner[key] = name
        out[name] = key
    return types.MappingProxyType(out)


def check_name_set(value: object, field: str) -> frozenset[str]:
    if not isinstance(value, (frozenset, set)):
        raise GovernanceError(field, "must be a set of names")
    if len(value) > MAX_MEMBERS:
        raise GovernanceError(field, f"more than {MAX_MEMBERS} names")
    for name in value:
        check_name(name, f"{field}[{quote(name, 80)}]" if isinstance(name, str) else field)
    return frozenset(value)


def check_private_key(value: object, field: str) -> Ed25519PrivateKey:
    if not isinstance(value, Ed25519PrivateKey):
        raise GovernanceError(field, "must be an Ed25519PrivateKey")
    return value


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` under ``public_key``."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- JSON-friendly dicts ---------------------------------------------------------------------

_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})*")


def expect_dict(value: object, field: str, keys: frozenset[str]) -> Mapping[str, object]:
    """``value`` must be a mapping with exactly ``keys`` (string keys)."""
    if not isinstance(value, Mapping):
        raise GovernanceError(field or "value", "must be an object")
    for k in value:
        if not isinstance(k, str) or k not in keys:
            raise GovernanceError(join(field, str(k)), "unknown field")
    for k in sorted(keys):
        if k not in value:
            raise GovernanceError(join(field, k), "missing")
    return value


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def from_hex(value: object, field: str, *, length: int) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
        raise GovernanceError(field, "must be a hex string")
    return check_bytes(bytes.fromhex(value), field, length=length)


def members_to_dict(members: Mapping[str, bytes]) -> dict[str, str]:
    return {name: key.hex() for name, key in members.items()}


def members_from_dict(value: object, field: str) -> dict[str, bytes]:
    if not isinstance(value, Mapping):
        raise GovernanceError(field, "must be an object of name -> hex public key")
    out: dict[str, bytes] = {}
    for name, key in value.items():
        check_name(name, f"{field}[{quote(name, 80)}]")
        out[name] = from_hex(key, f"{field}[{quote(name, 80)}]", length=PUBLIC_KEY_LEN)
    return out


def json_int(value: object, field: str) -> int:
    """An int from a JSON-like value (bools refused); ranges are checked by the constructors."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise GovernanceError(field, "must be an int")
    return value
