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

Wire format of a share (round 4 of :data:`~crypto_core.codec.Protocol.SIGN`, broadcast).
Version 1 (201 bytes, the full protocol, a plain presignature)::

    header (40 B: receiver 0, sender = the signer) | sigid (32 B) | R (33 B) | digest (32 B)
    | u (32 B scalar) | w (32 B scalar)

Version 2 (202 bytes, a re-randomised share: :data:`SHARE_RERANDOMIZED`)::

    header (40 B) | u8 share version = 2 | sigid | R (the presignature's, not R*) | digest | u* | w*

The layout length tells the versions apart (every field has a fixed width), so there is no
flag: a version-2 share is always re-randomised and :func:`combine` refuses a mix of versions.

Groth-Shoup re-randomisation (issue 14, design D3; dkls23-notes section 7.2 b)
------------------------------------------------------------------------------
A pool presignature exposes ``R`` (public, in the round-3 broadcast) long before the digest is
chosen, and the digest is a raw 32 bytes. Groth and Shoup (Eurocrypt 2022, ePrint 2021/1330,
the mitigation "re-randomized presignatures") replace ``R`` at signing time by ``R* = R + [delta]``
for a public ``delta`` that the adversary cannot choose: here
``delta = Hq(Tag.SIGN_RERANDOMIZE; sigid, R, PK', path, digest)`` (:func:`rerandomizer`; framed,
length-prefixed, SHAKE-256 reduced mod q). The DFINITY Internet Computer, whose threshold ECDSA
Groth and Shoup analyse, computes ``randomizer = RO(randomness, digest, R, tweak)``,
``R* = R + randomizer*G`` and the denominator share ``randomizer*lambda_i + (kappa*lambda)_i``
(ic ``crypto_lib/threshold_sig/tecdsa`` ``derive_rho`` and ``ThresholdEcdsaSigShareInternal::new``);
the map onto DKLs23 below is the same. Shapes (all scalars mod q, points on secp256k1):

* Presignature of signer ``i`` in the signer set S ([P23] Protocol 3.6, notes section 6 step 7):
  ``R = [k]`` with ``k = sum r_j``, ``phi = sum_i phi_i``, ``u_i``, ``v_i`` with
  ``sum_i u_i = k*phi`` and ``sum_i v_i = sk'*phi`` (``sk' = sk + tweak`` of the path).
* Plain online step ([P23] Protocol 3.6, signing): ``h = int(digest) mod q``, ``r_x = x(R) mod q``,
  ``w_i = h*phi_i + r_x*v_i``; the combiner sets ``s = (sum w_i) / (sum u_i)
  = phi*(h + r_x*sk') / (k*phi) = (h + r_x*sk') / k``: ECDSA with nonce ``k``.
* Re-randomised: the nonce becomes ``k* = k + delta`` (so ``R* = R + [delta] = [k*]``). Each signer
  sends ``u_i* = u_i + delta*phi_i`` and ``w_i* = h*phi_i + r*_x*v_i`` with ``r*_x = x(R*) mod q``.
  Then ``sum u_i* = k*phi + delta*phi = k* phi`` and ``sum w_i* = phi*(h + r*_x*sk')``, so
  ``s = (h + r*_x*sk') / k*``: a valid ECDSA signature ``(r*_x, s)`` of ``h`` under ``PK'``, with
  recovery id from ``R*``. The combiner recomputes ``delta`` and ``R*`` itself (never from a share),
  and verifies under the ``PK'`` it expects. ``phi_i`` stays hidden: ``u_i*`` and ``w_i*`` are one
  use of the presignature exactly like ``u_i`` and ``w_i``, so the one-time rule is unchanged.

Caveat: the IC also hashes fresh public randomness (its random beacon) into ``delta``; here
``delta`` depends only on the presignature and the digest. GS's analysis is in the generic group
model at the ECDSA level; the [P23] proof does not cover re-randomisation (notes 7.2 [UNSURE]).
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

from .bip32 import check_path
from .codec import BROADCAST, Header, Protocol as WireProtocol, Reader, Writer, read_header
from .errors import DecodeError, ProtocolAbort, UsageError
from .group import HALF_Q, Point, Q, inv
from .session import blame_malformed
from .tags import Tag
from .transcript import hash_to_scalar, list_of, u32

DIGEST_LEN = 32
SHARE_ROUND = 4  # the online round of signing: one broadcast per signer
SHARE_PLAIN = 1  # share format version 1: u, w on R (201 bytes)
SHARE_RERANDOMIZED = 2  # share format version 2: u*, w* on R* = R + [delta] (202 bytes)
SHARE_LEN = {SHARE_PLAIN: 201, SHARE_RERANDOMIZED: 202}

__all__ = [
    "DIGEST_LEN",
    "SHARE_PLAIN",
    "SHARE_RERANDOMIZED",
    "PresignatureView",
    "Signature",
    "SignatureShare",
    "combine",
    "digest_of",
    "recover",
    "rerandomized_nonce",
    "rerandomizer",
    "verify",
]


def _path_bytes(path: Sequence[int]) -> bytes:
    return list_of([u32(c) for c in path])


def rerandomizer(sigid: bytes, R: Point, public_key: Point, derivation_path: Sequence[int], digest: bytes) -> int:
    """The Groth-Shoup offset ``delta = Hq(Tag.SIGN_RERANDOMIZE; sigid, R, PK', path, digest)``.

    ``sigid``: 32 bytes; ``R``: the presignature's nonce point; ``public_key``: the derived key
    PK'; ``derivation_path``: BIP32 non-hardened indices (each framed as u32); ``digest``: the 32
    signed bytes. Public (every input is public). Raises :class:`UsageError` for a wrong length
    or a path that is not a valid non-hardened BIP32 path (naming ``derivation_path``).
    """
    derivation_path = check_path(derivation_path)
    if len(sigid) != 32:
        raise UsageError("sigid: must be 32 bytes")
    if len(digest) != DIGEST_LEN:
        raise UsageError(f"digest: must be {DIGEST_LEN} bytes")
    return hash_to_scalar(
        Tag.SIGN_RERANDOMIZE, sigid, R.encode(), public_key.encode(), _path_bytes(derivation_path), bytes(digest)
    )


def rerandomized_nonce(R: Point, delta: int) -> Point:
    """``R* = R + [delta]``. Raises :class:`ProtocolAbort` (nobody to blame) if ``R*`` is the
    identity or ``x(R*) = 0 mod q`` (probability about 2^-256)."""
    R_star = R + Point.base_mul(delta % Q)
    if R_star.is_infinity or R_star.x % Q == 0:
        raise ProtocolAbort(None, "re-randomised nonce R* is degenerate")
    return R_star


@dataclass(frozen=True)
class SignatureShare:
    """What a signer sends in the online round. Safe to reveal: it hides ``phi_i`` and ``v_i``.

    ``index``: the signer; ``sigid``: the 32-byte signing session id; ``R``: the presignature's
    nonce point (also for a re-randomised share: the combiner derives ``R*``); ``digest``: the 32
    bytes signed; ``u``, ``w``: the signer's additive shares of ``phi * k`` and
    ``phi * (h + r * sk)`` (scalars mod q; with ``k*``, ``r* = x(R*)`` in a re-randomised share);
    ``version``: :data:`SHARE_PLAIN` or :data:`SHARE_RERANDOMIZED` (the wire layout says which).
    """

    index: int
    sigid: bytes
    R: Point
    digest: bytes
    u: int
    w: int
    version: int = SHARE_PLAIN

    def __post_init__(self) -> None:
        if self.version not in SHARE_LEN:
            raise UsageError(f"version: must be {SHARE_PLAIN} or {SHARE_RERANDOMIZED}")

    @property
    def rerandomized(self) -> bool:
        return self.version == SHARE_RERANDOMIZED

    def to_bytes(self, session: bytes) -> bytes:
        """The share's wire message for session ``session`` (32 bytes): 201 bytes for version 1,
        202 for version 2 (a version byte after the header)."""
        w = Writer(Header(WireProtocol.SIGN, SHARE_ROUND, BROADCAST, session, self.index, 0))
        if self.version != SHARE_PLAIN:
            w.u8(self.version)
        return w.raw(self.sigid).point(self.R).raw(self.digest).scalar(self.u).scalar(self.w).getvalue()

    @staticmethod
    def from_bytes(data: bytes, session: bytes, sender: int) -> SignatureShare:
        """Strict decoding of a share that arrived on ``sender``'s channel for ``session``.

        The length selects the version (201 bytes: 1, 202 bytes: 2, whose version byte must
        then be 2). Raises :class:`ProtocolAbort` naming ``sender`` if the bytes do not decode
        exactly (header, lengths, version, canonical scalars, a point on the curve, no trailing
        bytes).
        """

        def dec() -> SignatureShare:
            r = Reader(data)
            read_header(
                r, protocol=WireProtocol.SIGN, round=SHARE_ROUND, kind=BROADCAST, session=session, sender=sender, receiver=0
            )
            version = SHARE_PLAIN
            if len(data) == SHARE_LEN[SHARE_RERANDOMIZED]:
                version = r.u8("share.version")
                if version != SHARE_RERANDOMIZED:
                    raise DecodeError("share.version", f"unsupported signature share version {version}")
            out = SignatureShare(
                sender, r.take(32, "sigid"), r.point("R"), r.take(32, "digest"), r.scalar("u"), r.scalar("w"), version
            )
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

    @property
    def derivation_path(self) -> tuple[int, ...]: ...


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
    derivation_path: Sequence[int] | None = None,
) -> Signature:
    """Combine one share per signer into a low-s ECDSA signature verified under ``public_key``.

    ``public_key`` is the (derived) key the combiner expects a signature for: never taken from
    the shares. ``presignature`` (a signer's own record, when a signer combines) lets the
    combiner name a signer whose share disagrees on ``R`` or the session; otherwise the majority
    decides. Re-randomised shares (version 2, all of them or none) need ``derivation_path`` (the
    path of ``public_key``, hashed into ``delta``); the signature is then on ``R* = R + [delta]``
    (module docstring). An invalid result, which DKLs23 cannot attribute, aborts with
    ``party=None`` and never returns a signature. Raises :class:`UsageError` for a digest that is
    not 32 bytes, a ``public_key`` that is not a :class:`Point` other than infinity, a
    presignature made for another key or path, a ``derivation_path`` that is not a valid
    non-hardened path, or re-randomised shares without ``derivation_path``.
    """
    if not isinstance(digest, bytes) or len(digest) != DIGEST_LEN:
        raise UsageError(f"digest: must be {DIGEST_LEN} bytes")
    # the caller's input, checked before anything could blame a signer for it
    if not isinstance(public_key, Point) or public_key.is_infinity:
        raise UsageError("public_key: must be a Point on secp256k1 (not the point at infinity; Point.decode reads SEC1 bytes)")
    if derivation_path is not None:  # hashed into delta: the caller's input, checked like the key
        derivation_path = check_path(derivation_path)
        if presignature is not None and derivation_path != tuple(presignature.derivation_path):
            raise UsageError("derivation_path: not the path this presignature was made for")
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
    _agree({j: bytes([sh.version]) for j, sh in shares.items()}, None, "share format version")
    ref = shares[order[0]]
    R = ref.R
    if R.is_infinity:
        raise ProtocolAbort(None, "combine: R is the identity")
    if ref.rerandomized:
        if derivation_path is None:
            raise UsageError("derivation_path: required to combine re-randomised shares (it is hashed into delta)")
        R = rerandomized_nonce(R, rerandomizer(ref.sigid, R, public_key, derivation_path, digest))
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
