"""FROST two-round threshold Schnorr signing (RFC 9591 section 5), sans-IO, with the BIP340 variant.

Round one (:func:`commit`, RFC 9591 section 5.1): a signer draws a hiding and a binding nonce,
each hedged with its secret share (``nonce_generate``, section 4.1), keeps them secret in
:class:`SigningNonces` (used at most once: the caller stores them sealed and deletes them before
the share leaves) and publishes a :class:`SigningCommitment`. The coordinator collects one
commitment per signer into a :class:`SigningPackage` (scheme, message, commitments sorted by
identifier, and for Taproot the script-tree root).

Round two (:func:`sign_share`, section 5.2): each signer computes the binding factors (4.4), the
group commitment (4.5), the challenge (4.6) and its signature share ``z_i``. The coordinator checks
each share against the signer's public share (:func:`verify_share`, section 5.4: identifiable
abort, :class:`crypto_core.errors.ShareInvalid` names the identifier), then :func:`aggregate`
(section 5.3) sums them and checks the final signature with libsodium / libsecp256k1.

Identifiers are the share indices ``1..n`` as scalars. Keys are anything with the fields of
:class:`crypto_core.frost.keyshare.FrostKeyShare` / ``FrostPublic`` (see :class:`KeyShareLike`).

BIP340 variant (scheme ``schnorr-secp256k1-bip340``; BIP340, BIP341, BIP86): the group key ``P``
is lifted to even Y (``g1 = -1`` when ``P`` is odd), tweaked ``Q = P + t·G`` with
``t = hash_TapTweak(x(P) || root)`` (``root`` omitted when empty: the BIP86 key-path-only tweak)
and ``Q`` lifted to even Y (``g2``); the binding factors bind ``Q``; the group commitment ``R`` is
lifted to even Y (every signer negates its nonces when ``R`` is odd); the challenge is
``e = hash_BIP0340/challenge(x(R) || x(Q) || m)``; share ``z_i = ±(d_i + rho_i·e_i) +
lambda_i·e·g1·g2·s_i`` and ``z = sum z_i + e·g2·t``. The signature ``x(R) || z`` verifies under the
x-only output key ``x(Q)`` (:func:`signing_key`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from coincurve import PublicKeyXOnly
from nacl.exceptions import BadSignatureError as _SodiumBadSignature
from nacl.signing import VerifyKey as _Ed25519VerifyKey

from ..errors import DecodeError, ProtocolAbort, ShareInvalid, UsageError
from ..group import P as FIELD_P, Point, Q as SECP_Q
from ..params import MAX_PARTIES
from ..rng import SYSTEM_RNG, Rng
from .ciphersuite import Ciphersuite, suite_for_signing, tagged_hash
from .group import Element

NONCES_MAGIC: Final = b"MPCNET-FROSTNONCES"
NONCES_VERSION: Final = 1
_NONCES_LEN: Final = len(NONCES_MAGIC) + 1 + 64


class KeyShareLike(Protocol):
    """The fields of ``FrostKeyShare`` the signer needs (contract; crypto_core/frost/keyshare.py)."""

    @property
    def scheme(self) -> str: ...
    @property
    def threshold(self) -> int: ...
    @property
    def parties(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def secret_share(self) -> int: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def public_shares(self) -> tuple[bytes, ...]: ...


class PublicLike(Protocol):
    """The fields of ``FrostPublic``: the key's public part (group key and public shares)."""

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


# --- round one ------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class SigningNonces:
    """A signer's secret nonce pair ``(d, e)`` for one signature (RFC 9591 ``nonce``). Secret.

    Never printed (``repr`` shows nothing). Use once: the node deletes it before its share leaves.
    """

    hiding: int
    binding: int

    def __repr__(self) -> str:
        return "SigningNonces(<secret>)"

    def to_bytes(self) -> bytes:
        """Versioned record: ``MPCNET-FROSTNONCES || 0x01 || d (32 BE) || e (32 BE)`` (83 bytes)."""
        return NONCES_MAGIC + bytes([NONCES_VERSION]) + self.hiding.to_bytes(32, "big") + self.binding.to_bytes(32, "big")

    @classmethod
    def from_bytes(cls, data: bytes, scheme: str) -> SigningNonces:
        """Strict decoding for a key of ``scheme``: exact length, magic, version, both nonces in ``[1, q)``.

        Raises :class:`DecodeError` (field ``nonces``) or :class:`UsageError` for an unknown scheme.
        """
        q = suite_for_signing(scheme).group.order
        data = bytes(data)
        if len(data) != _NONCES_LEN or not data.startswith(NONCES_MAGIC):
            raise DecodeError("nonces", "not a FROST nonce record")
        if data[len(NONCES_MAGIC)] != NONCES_VERSION:
            raise DecodeError("nonces", f"unsupported version {data[len(NONCES_MAGIC)]}")
        body = data[len(NONCES_MAGIC) + 1 :]
        d, e = int.from_bytes(body[:32], "big"), int.from_bytes(body[32:], "big")
        if not (0 < d < q and 0 < e < q):
            raise DecodeError("nonces", "nonce out of range")
        return cls(d, e)


@dataclass(frozen=True)
class SigningCommitment:
    """A signer's public nonce commitment ``(D, E)`` (RFC 9591 ``comm``): encoded elements.

    ``identifier`` is the signer's share index (0 while not yet placed in a package).
    """

    identifier: int
    hiding: bytes
    binding: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.identifier, int) or isinstance(self.identifier, bool) or self.identifier < 0:
            raise UsageError("identifier: must be a non-negative int")
        if not isinstance(self.hiding, bytes) or not isinstance(self.binding, bytes):
            raise UsageError("hiding/binding: must be bytes")


def nonce_generate(suite: Ciphersuite, secret: int, random_bytes: bytes) -> int:
    """RFC 9591 section 4.1: ``H3(random_bytes || SerializeScalar(secret))`` (32 random bytes)."""
    if len(random_bytes) != 32:
        raise UsageError("random_bytes: expected 32 bytes")
    return suite.H3(random_bytes + suite.group.encode_scalar(secret))


def _check_secret(suite: Ciphersuite, secret_share: int) -> None:
    if not isinstance(secret_share, int) or not 0 < secret_share < suite.group.order:
        raise UsageError("secret_share: not a non-zero scalar")


def commit(scheme: str, secret_share: int, rng: Rng = SYSTEM_RNG, *, identifier: int = 0) -> tuple[SigningNonces, SigningCommitment]:
    """Round one (RFC 9591 section 5.1): fresh hedged nonces and their commitment.

    Returns the secret :class:`SigningNonces` and the :class:`SigningCommitment`
    ``(identifier, [d]B, [e]B)``. Raises :class:`UsageError` for an unknown scheme or a bad share.
    """
    suite = suite_for_signing(scheme)
    _check_secret(suite, secret_share)
    while True:  # a zero nonce has probability ~2^-252; draw again rather than publish the identity
        d = nonce_generate(suite, secret_share, rng.bytes(32))
        e = nonce_generate(suite, secret_share, rng.bytes(32))
        if d and e:
            break
    nonces = SigningNonces(d, e)
    return nonces, commitment_of(scheme, nonces, identifier)


def commitment_of(scheme: str, nonces: SigningNonces, identifier: int = 0) -> SigningCommitment:
    """The commitment ``([d]B, [e]B)`` of ``nonces`` (RFC 9591 section 5.1)."""
    g = suite_for_signing(scheme).group
    return SigningCommitment(identifier, g.encode(g.base_mul(nonces.hiding)), g.encode(g.base_mul(nonces.binding)))


# --- the package --------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningPackage:
    """What every signer signs: scheme, message, the signers' commitments (sorted by identifier).

    ``taproot_root``: BIP340 only; ``b""`` = the BIP86 key-path tweak (no script tree) or the
    32-byte script-tree Merkle root. Validated at construction: raises :class:`UsageError` for an
    unknown scheme, a root on a non-BIP340 package or of the wrong length, fewer than 2
    commitments, identifiers not strictly increasing or outside ``1..MAX_PARTIES``; and
    :class:`DecodeError` (field ``commitments[i].hiding`` / ``.binding``) for an undecodable or
    identity commitment.
    """

    scheme: str
    message: bytes
    commitments: tuple[SigningCommitment, ...]
    taproot_root: bytes = b""

    def __post_init__(self) -> None:
        suite = suite_for_signing(self.scheme)
        if not isinstance(self.message, bytes):
            raise UsageError("message: must be bytes")
        if not isinstance(self.taproot_root, bytes):
            raise UsageError("taproot_root: must be bytes")
        if suite.kind == "bip340":
            if len(self.taproot_root) not in (0, 32):
                raise UsageError("taproot_root: expected empty or 32 bytes")
        elif self.taproot_root:
            raise UsageError("taproot_root: only for schnorr-secp256k1-bip340")
        if not isinstance(self.commitments, tuple) or not all(isinstance(c, SigningCommitment) for c in self.commitments):
            raise UsageError("commitments: must be a tuple of SigningCommitment")
        if len(self.commitments) < 2:
            raise UsageError("commitments: at least 2 signers")
        prev = 0
        for i, c in enumerate(self.commitments):
            if not 1 <= c.identifier <= MAX_PARTIES:
                raise UsageError(f"commitments[{i}].identifier: out of range 1..{MAX_PARTIES}")
            if c.identifier <= prev:
                raise UsageError(f"commitments[{i}].identifier: not strictly increasing (duplicate or unsorted)")
            prev = c.identifier
            suite.group.decode(c.hiding, f"commitments[{i}].hiding")
            suite.group.decode(c.binding, f"commitments[{i}].binding")

    @property
    def identifiers(self) -> tuple[int, ...]:
        """The signer set, ascending."""
        return tuple(c.identifier for c in self.commitments)

    def commitment(self, identifier: int) -> SigningCommitment | None:
        """The commitment of ``identifier``, or ``None``."""
        for c in self.commitments:
            if c.identifier == identifier:
                return c
        return None


# --- shared computation (RFC 9591 section 4) ----------------------------------------------


def derive_interpolating_value(q: int, identifiers: tuple[int, ...], x_i: int) -> int:
    """RFC 9591 section 4.2: the Lagrange coefficient of ``x_i`` at 0 over ``identifiers`` (mod q)."""
    if x_i not in identifiers or len(set(identifiers)) != len(identifiers):
        raise UsageError("identifiers: x_i missing or duplicate identifiers")
    num, den = 1, 1
    for x_j in identifiers:
        if x_j == x_i:
            continue
        num = num * x_j % q
        den = den * (x_j - x_i) % q
    return num * pow(den, -1, q) % q


def encode_group_commitment_list(suite: Ciphersuite, commitments: tuple[SigningCommitment, ...]) -> bytes:
    """RFC 9591 section 4.3: ``SerializeScalar(id) || D || E`` for each signer, in order."""
    return b"".join(suite.group.encode_scalar(c.identifier) + c.hiding + c.binding for c in commitments)


def compute_binding_factors(suite: Ciphersuite, group_key: Element, package: SigningPackage) -> dict[int, int]:
    """RFC 9591 section 4.4: ``rho_i = H1(PK || H4(msg) || H5(commitment list) || SerializeScalar(i))``.

    ``group_key`` is the key the signature verifies under (BIP340: the even-Y tweaked output key).
    """
    prefix = suite.group.encode(group_key) + suite.H4(package.message) + suite.H5(encode_group_commitment_list(suite, package.commitments))
    return {c.identifier: suite.H1(prefix + suite.group.encode_scalar(c.identifier)) for c in package.commitments}


def taptweak(xonly_internal: bytes, taproot_root: bytes = b"") -> int:
    """BIP341 ``t = hash_TapTweak(x(P) || root)`` (root omitted when empty: BIP86). Raises UsageError if ``t >= n``."""
    t = int.from_bytes(tagged_hash("TapTweak", xonly_internal + taproot_root), "big")
    if t >= SECP_Q:
        raise UsageError("taproot_root: tweak not below the group order")
    return t


@dataclass(frozen=True)
class _KeyView:
    """The verifying key and the sign factors of the BIP340 variant (1 and 0 otherwise)."""

    key: Element  # the key the signature verifies under
    key_factor: int  # g1*g2: multiplies every secret share
    tweak_term: int  # g2*t: added times e to z


def _key_view(suite: Ciphersuite, public_key: bytes, taproot_root: bytes) -> _KeyView:
    g = suite.group
    pk = g.decode(public_key, "public_key")
    if suite.kind != "bip340":
        return _KeyView(pk, 1, 0)
    assert isinstance(pk, Point)
    q = g.order
    g1 = q - 1 if pk.y_is_odd else 1
    p_even = -pk if pk.y_is_odd else pk
    t = taptweak(p_even.encode()[1:], taproot_root)
    out = p_even + Point.base_mul(t)
    if out.is_infinity:
        raise UsageError("taproot_root: tweaked key is the identity")
    g2 = q - 1 if out.y_is_odd else 1
    out_even = -out if out.y_is_odd else out
    return _KeyView(out_even, g1 * g2 % q, g2 * t % q)


@dataclass(frozen=True)
class _Round:
    """Everything round two derives from the package: binding factors, R (lifted), challenge."""

    view: _KeyView
    rho: dict[int, int]
    r: Element  # the group commitment used in the signature (BIP340: even Y)
    nonce_factor: int  # -1 (mod q) when the BIP340 R was odd, else 1
    challenge: int


def _round(suite: Ciphersuite, public_key: bytes, package: SigningPackage) -> _Round:
    g = suite.group
    view = _key_view(suite, public_key, package.taproot_root)
    rho = compute_binding_factors(suite, view.key, package)
    r = g.sum(g.add(g.decode(c.hiding), g.mul(g.decode(c.binding), rho[c.identifier])) for c in package.commitments)
    if g.is_identity(r):  # RFC 9591 section 4.5: SerializeElement(R) would fail
        raise ProtocolAbort(None, "group commitment is the identity")
    nonce_factor = 1
    if suite.kind == "bip340":
        assert isinstance(r, Point)
        if r.y_is_odd:
            r, nonce_factor = -r, g.order - 1
    return _Round(view, rho, r, nonce_factor, suite.challenge(r, view.key, package.message))


def _check_key(suite_scheme: str, key: PublicLike, package: SigningPackage) -> None:
    if key.scheme != package.scheme:
        raise UsageError(f"scheme: key is {key.scheme!r}, package is {package.scheme!r}")
    if len(package.commitments) < key.threshold:
        raise UsageError(f"commitments: {len(package.commitments)} signers, the key needs {key.threshold}")
    if package.identifiers[-1] > key.parties:
        raise UsageError("commitments: identifier beyond the key's parties")
    if len(key.public_shares) != key.parties:
        raise UsageError("public_shares: one per party expected")


# --- round two ------------------------------------------------------------------------------


def sign_share(key: KeyShareLike, nonces: SigningNonces, package: SigningPackage) -> bytes:
    """Round two (RFC 9591 section 5.2): this signer's share ``z_i``, encoded (32 bytes).

    Raises :class:`UsageError` when the key and package disagree (scheme, signer count below the
    threshold, identifiers beyond ``n``), when ``key.index`` has no commitment in the package or
    it is not the commitment of ``nonces`` (compared with :func:`hmac.compare_digest`), and
    :class:`ProtocolAbort` when the group commitment is the identity.
    """
    suite = suite_for_signing(package.scheme)
    _check_key(package.scheme, key, package)
    _check_secret(suite, key.secret_share)
    mine = package.commitment(key.index)
    if mine is None:
        raise UsageError(f"commitments: no commitment of this signer ({key.index}) in the package")
    expected = commitment_of(package.scheme, nonces, key.index)
    if not hmac.compare_digest(mine.hiding + mine.binding, expected.hiding + expected.binding):
        raise UsageError(f"commitments: this signer's ({key.index}) commitment is not the one of its nonces")
    q = suite.group.order
    rnd = _round(suite, key.public_key, package)
    lam = derive_interpolating_value(q, package.identifiers, key.index)
    k = (nonces.hiding + nonces.binding * rnd.rho[key.index]) * rnd.nonce_factor
    z = (k + lam * rnd.challenge * rnd.view.key_factor * key.secret_share) % q
    return suite.group.encode_scalar(z)


def verify_share(public: PublicLike, package: SigningPackage, identifier: int, share: bytes) -> None:
    """RFC 9591 section 5.4: check signer ``identifier``'s share against its public share.

    ``[z_i]B == nonce_factor·(D_i + rho_i·E_i) + [lambda_i·c·key_factor]PK_i``.
    Raises :class:`ShareInvalid` (``.party == identifier``) for an undecodable or wrong share,
    :class:`UsageError` when ``identifier`` is not in the package or key and package disagree.
    """
    suite = suite_for_signing(package.scheme)
    _check_key(package.scheme, public, package)
    _verify_share(suite, public, package, _round(suite, public.public_key, package), identifier, share)


def _verify_share(suite: Ciphersuite, public: PublicLike, package: SigningPackage, rnd: _Round, identifier: int, share: bytes) -> int:
    g = suite.group
    comm = package.commitment(identifier)
    if comm is None:
        raise UsageError(f"identifier: {identifier} is not a signer of the package")
    try:
        z = g.decode_scalar(bytes(share), "share")
    except (DecodeError, TypeError) as exc:
        raise ShareInvalid(identifier, "signature share does not decode") from exc
    pk_i = g.decode(public.public_shares[identifier - 1], f"public_shares[{identifier - 1}]")
    lam = derive_interpolating_value(g.order, package.identifiers, identifier)
    comm_share = g.add(g.decode(comm.hiding), g.mul(g.decode(comm.binding), rnd.rho[identifier]))
    rhs = g.add(g.mul(comm_share, rnd.nonce_factor), g.mul(pk_i, lam * rnd.challenge * rnd.view.key_factor))
    if g.base_mul(z) != rhs:
        raise ShareInvalid(identifier, "signature share does not verify against the signer's public share")
    return z


def aggregate(public: PublicLike, package: SigningPackage, shares: Mapping[int, bytes]) -> bytes:
    """RFC 9591 section 5.3: verify every share, sum them, check and return the signature.

    ``shares`` maps each signer of the package to its encoded share. Raises :class:`ShareInvalid`
    naming the first signer (ascending) whose share is missing or wrong, :class:`UsageError` for a
    share from a non-signer, :class:`ProtocolAbort` ``(None, ...)`` if the result does not verify.
    Returns 64 bytes (ed25519 ``R || S``, BIP340 ``x(R) || s``; 65 for the plain secp256k1 suite).
    """
    suite = suite_for_signing(package.scheme)
    _check_key(package.scheme, public, package)
    extra = sorted(set(shares) - set(package.identifiers))
    if extra:
        raise UsageError(f"shares: from non-signers {extra[:8]}")
    rnd = _round(suite, public.public_key, package)
    q = suite.group.order
    z = 0
    for ident in package.identifiers:
        if ident not in shares:
            raise ShareInvalid(ident, "no signature share")
        z += _verify_share(suite, public, package, rnd, ident, shares[ident])
    z = (z + rnd.challenge * rnd.view.tweak_term) % q
    signature = suite.encode_signature(rnd.r, z)
    if not verify_signature(package.scheme, public.public_key, package.message, signature, package.taproot_root):
        raise ProtocolAbort(None, "aggregate signature does not verify")
    return signature


# --- verification -------------------------------------------------------------------------


def signing_key(scheme: str, public_key: bytes, taproot_root: bytes = b"") -> bytes:
    """The key a verifier uses: ed25519 the 32-byte group key; BIP340 the 32-byte x-only output key ``x(Q)``.

    (BIP341/BIP86: ``Q = lift_x(x(P)) + hash_TapTweak(x(P) || root)·G``.) Raises
    :class:`DecodeError` (``public_key``), :class:`UsageError` (scheme, ``taproot_root``).
    """
    suite = suite_for_signing(scheme)
    _check_root(suite, taproot_root)
    view = _key_view(suite, bytes(public_key), bytes(taproot_root))
    enc = suite.group.encode(view.key)
    return enc[1:] if suite.kind == "bip340" else enc


def _check_root(suite: Ciphersuite, taproot_root: bytes) -> None:
    if suite.kind == "bip340":
        if len(taproot_root) not in (0, 32):
            raise UsageError("taproot_root: expected empty or 32 bytes")
    elif taproot_root:
        raise UsageError("taproot_root: only for schnorr-secp256k1-bip340")


def verify_signature(scheme: str, public_key: bytes, message: bytes, signature: bytes, taproot_root: bytes = b"") -> bool:
    """Whether ``signature`` is valid for ``message`` under the group key ``public_key``.

    ed25519: RFC 8032 verification by libsodium (``crypto_sign_verify_detached``); BIP340: the
    signature must verify under the tweaked x-only output key (libsecp256k1 via coincurve); the
    plain secp256k1 suite: ``[z]G == R + [c]PK``. A malformed signature is ``False``; a malformed
    ``public_key`` raises :class:`DecodeError`, an unknown scheme or bad root :class:`UsageError`.
    """
    suite = suite_for_signing(scheme)
    signature, message = bytes(signature), bytes(message)
    key = signing_key(scheme, public_key, taproot_root)
    if len(signature) != suite.signature_len:
        return False
    if suite.kind == "ed25519":
        try:
            _Ed25519VerifyKey(key).verify(message, signature)
        except _SodiumBadSignature:
            return False
        return True
    if suite.kind == "bip340":
        return bool(PublicKeyXOnly(key).verify(signature, message))
    g = suite.group
    try:
        r = g.decode(signature[: g.element_len], "signature.R")
        z = g.decode_scalar(signature[g.element_len :], "signature.z")
    except DecodeError:
        return False
    pk = g.decode(public_key, "public_key")
    return g.base_mul(z) == g.add(r, g.mul(pk, suite.challenge(r, pk, message)))


def bip340_verify(xonly_pk: bytes, msg: bytes, sig: bytes) -> bool:
    """BIP340 ``Verify(pk, m, sig)``, written from the specification over our secp256k1 points.

    An independent check of libsecp256k1 (tests run the BIP340 vectors through both). ``False``
    for any malformed input (wrong lengths, x not on the curve, ``r >= p``, ``s >= n``).
    """
    if len(xonly_pk) != 32 or len(sig) != 64:
        return False
    pk = Point.lift_x(bytes(xonly_pk))
    if pk is None:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if r >= FIELD_P or s >= SECP_Q:
        return False
    e = int.from_bytes(tagged_hash("BIP0340/challenge", sig[:32] + bytes(xonly_pk) + bytes(msg)), "big") % SECP_Q
    big_r = Point.base_mul(s) - pk * e
    return not big_r.is_infinity and not big_r.y_is_odd and big_r.x == r


__all__ = [
    "NONCES_MAGIC",
    "KeyShareLike",
    "PublicLike",
    "SigningCommitment",
    "SigningNonces",
    "SigningPackage",
    "aggregate",
    "bip340_verify",
    "commit",
    "commitment_of",
    "compute_binding_factors",
    "derive_interpolating_value",
    "encode_group_commitment_list",
    "nonce_generate",
    "sign_share",
    "signing_key",
    "taptweak",
    "verify_share",
    "verify_signature",
]
