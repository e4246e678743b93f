"""The public part of a FROST key (issue 16): group key, public shares, key id. Secret-free.

What a coordinator or verifier holds for a Schnorr key: :class:`FrostPublic` (re-exported by
:mod:`crypto_core.frost.keyshare`, whose :class:`FrostKeyShare` adds the secret share) and
:func:`frost_key_id`. Nothing here reads or holds a secret, so the coordinator may import this
module (for ``verify_share``/``aggregate``) without loading the key-share record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import DecodeError
from ..params import MAX_PARTIES
from ..tags import Tag
from ..transcript import hash32
from .group import Element, Group
from .poly import interpolate_elements
from .scheme import FROST_SCHEMES, group_for


class _PublicFields(Protocol):
    @property
    def scheme(self) -> str: ...
    @property
    def threshold(self) -> int: ...
    @property
    def parties(self) -> int: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def public_shares(self) -> tuple[bytes, ...]: ...


def frost_key_id(scheme: str, public_key: bytes) -> bytes:
    """The 32-byte key id of a FROST key: ``H(FROST_KEY_ID; scheme, public_key)``."""
    return hash32(Tag.FROST_KEY_ID, scheme.encode("ascii"), bytes(public_key))


def scheme_group(scheme: object, field: str) -> Group:
    if not isinstance(scheme, str) or scheme not in FROST_SCHEMES:
        raise DecodeError(field, f"unknown FROST scheme (one of {', '.join(FROST_SCHEMES)})")
    return group_for(scheme)


def check_public(p: _PublicFields, what: str) -> tuple[Group, list[Element]]:
    """Shared checks of the public part; returns the group and the decoded public shares."""
    group = scheme_group(p.scheme, f"{what}.scheme")
    t, n = p.threshold, p.parties
    if type(t) is not int or type(n) is not int or not 2 <= t <= n <= MAX_PARTIES:
        raise DecodeError(f"{what}.threshold", f"need 2 <= t <= n <= {MAX_PARTIES}")
    if not isinstance(p.public_key, bytes):
        raise DecodeError(f"{what}.public_key", "must be bytes")
    pk = group.decode(p.public_key, f"{what}.public_key")
    if not isinstance(p.public_shares, tuple) or len(p.public_shares) != n:
        raise DecodeError(f"{what}.public_shares", f"expected {n} public shares")
    shares = [group.decode(bytes(s), f"{what}.public_shares[{k}]") for k, s in enumerate(p.public_shares)]
    first = {m: shares[m - 1] for m in range(1, t + 1)}
    if interpolate_elements(group, first, 0) != pk:
        raise DecodeError(f"{what}.public_shares", f"the first {t} do not interpolate to the public key")
    # degree exactly t-1: then t-1 shares never interpolate to the key (f - g = c * prod(x - i),
    # c != 0, is non-zero at 0), so a raised threshold on a lower-degree sharing is refused
    if interpolate_elements(group, {m: shares[m - 1] for m in range(1, t)}, 0) == pk:
        raise DecodeError(f"{what}.threshold", f"the public shares are a sharing of degree below {t - 1}")
    for m in range(t + 1, n + 1):
        if interpolate_elements(group, first, m) != shares[m - 1]:
            raise DecodeError(f"{what}.public_shares[{m - 1}]", "not on the key's sharing polynomial")
    return group, shares


@dataclass(frozen=True)
class FrostPublic:
    """The public part of a FROST key: what a coordinator or verifier holds (no secret)."""

    scheme: str
    threshold: int
    parties: int
    public_key: bytes  # group key encoding
    public_shares: tuple[bytes, ...]  # S_1..S_n encodings, S_m = s_m * G

    @property
    def key_id(self) -> bytes:
        return frost_key_id(self.scheme, self.public_key)

    @property
    def group(self) -> Group:
        return group_for(self.scheme)

    def validate(self) -> None:
        """Scheme known, 2 <= t <= n <= MAX_PARTIES, every element valid, the shares on one
        polynomial of degree exactly t-1 whose value at 0 is the key. Raises DecodeError (``frostpublic.*``)."""
        check_public(self, "frostpublic")




__all__ = ["FrostPublic", "check_public", "frost_key_id", "scheme_group"]
