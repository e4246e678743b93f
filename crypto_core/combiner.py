"""Public signature combining and verification: everything a combiner needs, nothing secret.

Each signer's online step (:meth:`crypto_core.sign.Presignature.signature_share`) yields a
:class:`SignatureShare`, which is safe to reveal. Anyone holding one share per signer calls
:func:`combine` and gets a low-s ECDSA :class:`Signature` (with its recovery id) that was
verified under the public key the *combiner* expects, or a :class:`ProtocolAbort`; an invalid
result is never returned.

This module holds no key or presignature state and imports no module that does (only the
codec, the group, the errors and libsecp256k1 for verification), so an untrusted combiner (the
coordinator) can use it without loading any secret-holding code. A signer combining its own
session may pass the public part of its presignature (:class:`PresignatureView`) to name a
signer whose share disagrees on ``R`` or the signing session id.

Wire format of a share (round 4 of :data:`~crypto_core.codec.Protocol.SIGN`, broadcast)::

    header (40 B: receiver 0, sender = the signer) | sigid (32 B) | R (33 B) | digest (32 B)
    | u (32 B scalar) | w (32 B scalar)
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from coincurve import PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .codec import BROADCAST, Header, Protocol as WireProtocol, Reader, Writer, read_header
from .errors import ProtocolAbort, UsageError
from .group import HALF_Q, Point, Q, inv
from .session import blame_malformed

DIGEST_LEN = 32
SHARE_ROUND = 4  # the online round of signing: one broadcast per signer

__all__ = [
    "DIGEST_LEN",
    "PresignatureView",
    "Signature",
    "SignatureShare",
    "combine",
    "digest_of",
    "recover",
    "verify",
]


@dataclass(frozen=True)
class SignatureShare:
    """What a signer sends in the online round. Safe to reveal: it hides ``phi_i`` and ``v_i``.

    ``index``: the signer; ``sigid``: the 32-byte signing session id; ``R``: the presignature's
    nonce point; ``digest``: the 32 bytes signed; ``u``, ``w``: the signer's additive shares of
    ``phi * k`` and ``phi * (h + r * sk)`` (scalars mod q).
    """

    index: int
    sigid: bytes
    R: Point
    digest: bytes
    u: int
    w: int

    def to_bytes(self, session: bytes) -> bytes:
        """The share's wire message for session ``session`` (32 bytes), 201 bytes in all."""
        w = Writer(Header(WireProtocol.SIGN, SHARE_ROUND, BROADCAST, session, self.index, 0))
        return w.raw(self.sigid).point(self.R).raw(self.digest).scalar(self.u).scalar(self.w).getvalue()

    @staticmethod
    def from_bytes(data: bytes, session: bytes, sender: int) -> SignatureShare:
        """Strict decoding of a share that arrived on ``sender``'s channel for ``session``.

        Raises :class:`ProtocolAbort` naming ``sender`` if the bytes do not decode exactly
        (header, lengths, canonical scalars, a point on the curve, no trailing bytes).
        """

        def dec() -> SignatureShare:
            r = Reader(data)
            read_header(
                r, protocol=WireProtocol.SIGN, round=SHARE_ROUND, kind=BROADCAST, session=session, sender=sender, receiver=0
            )
            out = SignatureShare(sender, r.take(32, "sigid"), r.point("R"), r.take(32, "digest"), r.scalar("u"), r.scalar("w"))
            r.finish("signature share")
            return out

        return blame_malformed(sender, SHARE_ROUND, dec)


@dataclass(frozen=True)
class Signature:
    """A low-s ECDSA signature ``(r, s)`` over secp256k1 with its recovery id (0..3) and the
    public key it verifies under."""

    r: int
    s: int
    recovery_id: int
    public_key: Point

    def der(self) -> bytes:
        """DER ``SEQUENCE { r INTEGER, s INTEGER }``."""
        return encode_dss_signature(self.r, self.s)

    def compact(self) -> bytes:
        """64 bytes: ``r || s``, each 32-byte big-endian."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big")


class PresignatureView(Protocol):
    """The public part of a signer's own presignature that :func:`combine` may compare shares
    against (:class:`crypto_core.sign.Presignature` has these attributes)."""

    @property
    def sigid(self) -> bytes: ...

    @property
    def R(self) -> Point: ...

    @property
    def public_key(self) -> Point: ...


def _agree(values: Mapping[int, bytes], expected: bytes | None, what: str) -> None:
    """Every share must carry ``expected`` (or, if unknown, the strict-majority value)."""
    if expected is None:
        counts = Counter(values.values())
        top, count = counts.most_common(1)[0]
        if len(counts) > 1 and 2 * count <= len(values):
            raise ProtocolAbort(None, f"combine: shares disagree on {what} and no majority names the culprit")
        expected = top
    for j in sorted(values):
        if not hmac.compare_digest(values[j], expected):
            raise ProtocolAbort(j, f"combine: share carries another {what}")


def combine(
    shares: Mapping[int, SignatureShare],
    digest: bytes,
    *,
    signers: Sequence[int],
    public_key: Point,
    presignature: PresignatureView | None = None,
) -> Signature:
    """Combine one share per signer into a low-s ECDSA signature verified under ``public_key``.

    ``public_key`` is the (derived) key the combiner expects a signature for: never taken from
    the shares. ``presignature`` (a signer's own record, when a signer combines) lets the
    combiner name a signer whose share disagrees on ``R`` or the session; otherwise the majority
    decides. An invalid result, which DKLs23 cannot attribute, aborts with ``party=None`` and
    never returns a signature. Raises :class:`UsageError` for a digest that is not 32 bytes, a
    ``public_key`` that is not a :class:`Point` other than infinity, or a presignature made for
    another key.
    """
    if not isinstance(digest, bytes) or len(digest) != DIGEST_LEN:
        raise UsageError(f"digest: must be {DIGEST_LEN} bytes")
    # the caller's input, checked before anything could blame a signer for it
    if not isinstance(public_key, Point) or public_key.is_infinity:
        raise UsageError("public_key: must be a Point on secp256k1 (not the point at infinity; Point.decode reads SEC1 bytes)")
    order = sorted(signers)
    if set(shares) != set(order):
        missing = sorted(set(order) - set(shares))
        extra = sorted(set(shares) - set(order))
        raise ProtocolAbort(missing[0] if missing else extra[0], "combine: need exactly one share from each signer")
    for j in order:
        if shares[j].index != j:
            raise ProtocolAbort(j, "combine: share carries another signer's index")
    _agree({j: sh.digest for j, sh in shares.items()}, digest, "digest")
    if presignature is not None and presignature.public_key != public_key:
        raise UsageError("public_key: not the key this presignature was made for")
    _agree({j: sh.sigid for j, sh in shares.items()}, presignature.sigid if presignature else None, "signing session id")
    _agree({j: sh.R.encode() for j, sh in shares.items()}, presignature.R.encode() if presignature else None, "R")
    ref = shares[order[0]]
    R = ref.R
    if R.is_infinity:
        raise ProtocolAbort(None, "combine: R is the identity")
    r = R.x % Q
    u = sum(sh.u for sh in shares.values()) % Q
    w = sum(sh.w for sh in shares.values()) % Q
    if r == 0 or u == 0:
        raise ProtocolAbort(None, "combine: degenerate signature")
    s = w * inv(u) % Q
    if s == 0:
        raise ProtocolAbort(None, "combine: s = 0")
    recid = (1 if R.y_is_odd else 0) | (2 if R.x >= Q else 0)
    if s > HALF_Q:
        s = Q - s
        recid ^= 1
    sig = Signature(r, s, recid, public_key)
    if not verify(sig, digest):
        raise ProtocolAbort(None, "combine: the combined signature does not verify (a signer misbehaved)")
    return sig


def verify(sig: Signature, digest: bytes) -> bool:
    """Independent check with libsecp256k1 (coincurve), which accepts only low-s signatures.
    ``digest``: the 32 signed bytes. Never raises: anything malformed is ``False``."""
    try:
        return bool(PublicKey(sig.public_key.encode()).verify(sig.der(), digest, hasher=None))
    except Exception:
        return False


def recover(sig: Signature, digest: bytes) -> Point:
    """Public key recovered from ``(r, s, recovery_id)`` by libsecp256k1."""
    pk = PublicKey.from_signature_and_message(sig.compact() + bytes([sig.recovery_id]), digest, hasher=None)
    return Point.from_public_key(pk)


def digest_of(message: bytes) -> bytes:
    """SHA-256 of a message: the digest ECDSA-SHA256 signs."""
    return hashlib.sha256(message).digest()
