"""FROST ciphersuites (RFC 9591 section 6) and the BIP340 (Taproot) variant.

A :class:`Ciphersuite` is a group plus the five hash functions of RFC 9591 section 6:

* ``H1`` (binding factors, "rho"), ``H3`` (nonces, "nonce"): hash to a scalar;
* ``H2``: the Schnorr challenge hash (the RFC 8032 challenge for Ed25519);
* ``H4`` ("msg"), ``H5`` ("com"): hashes of the message and of the commitment list.

Suites:

* :data:`ED25519_SHA512` = FROST(Ed25519, SHA-512), contextString ``FROST-ED25519-SHA512-v1``
  (RFC 9591 section 6.1); signatures verify as RFC 8032 PureEdDSA.
* :data:`SECP256K1_SHA256` = FROST(secp256k1, SHA-256), contextString
  ``FROST-secp256k1-SHA256-v1`` (RFC 9591 section 6.5), hash-to-scalar by RFC 9380
  ``hash_to_field`` with ``expand_message_xmd`` (SHA-256, L = 48). Used for the RFC vectors.
* :data:`SECP256K1_BIP340` = the same group and hash-to-scalar with its own contextString
  ``FROST-secp256k1-SHA256-TR-v1`` (domain separation from the plain suite), where the challenge is
  BIP340's ``hash_BIP0340/challenge(x(R) || x(Q) || m)`` over x-only encodings; the group key is
  tweaked per BIP341 (``hash_TapTweak``), see :mod:`crypto_core.frost.signing`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from ..errors import UsageError
from ..group import Point
from .group import ED25519, SECP256K1, Element, Group

SCHEME_ECDSA: Final = "ecdsa-secp256k1"
SCHEME_ED25519: Final = "ed25519"
SCHEME_BIP340: Final = "schnorr-secp256k1-bip340"
SCHEME_RFC_SECP256K1: Final = "frost-secp256k1-sha256"
"""The plain RFC 9591 FROST(secp256k1, SHA-256) suite: signing-level only (RFC vectors), never a key scheme."""

SCHEMES: Final = (SCHEME_ECDSA, SCHEME_ED25519, SCHEME_BIP340)
FROST_SCHEMES: Final = (SCHEME_ED25519, SCHEME_BIP340)


def expand_message_xmd_sha256(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 section 5.3.1 ``expand_message_xmd`` with SHA-256 (b = 32, s = 64 bytes).

    Raises :class:`ValueError` for ``len_in_bytes`` > 8160 or a DST over 255 bytes.
    """
    ell = -(-len_in_bytes // 32)
    if ell > 255 or len_in_bytes > 65535 or len(dst) > 255:
        raise ValueError("expand_message_xmd: output or DST too long")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(64) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    b_prev = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    out = [b_prev]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, b_prev, strict=True))
        b_prev = hashlib.sha256(mixed + bytes([i]) + dst_prime).digest()
        out.append(b_prev)
    return b"".join(out)[:len_in_bytes]


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340 tagged hash: ``SHA256(SHA256(tag) || SHA256(tag) || data)`` (32 bytes)."""
    t = hashlib.sha256(tag.encode("ascii")).digest()
    return hashlib.sha256(t + t + data).digest()


@dataclass(frozen=True)
class Ciphersuite:
    """One FROST ciphersuite: ``group``, ``context`` (contextString) and the hashes H1..H5.

    ``kind`` is ``"ed25519"``, ``"secp256k1"`` (plain RFC suite) or ``"bip340"``.
    ``signature_len`` is 64 (ed25519, bip340) or 65 (plain secp256k1: SerializeElement(R) || z).
    """

    kind: str
    group: Group
    context: bytes
    signature_len: int

    # -- hash to scalar --------------------------------------------------------------------
    def _h_scalar(self, label: bytes, m: bytes) -> int:
        if self.kind == "ed25519":
            return int.from_bytes(hashlib.sha512(self.context + label + m).digest(), "little") % self.group.order
        uniform = expand_message_xmd_sha256(m, self.context + label, 48)
        return int.from_bytes(uniform, "big") % self.group.order

    def _h_bytes(self, label: bytes, m: bytes) -> bytes:
        if self.kind == "ed25519":
            return hashlib.sha512(self.context + label + m).digest()
        return hashlib.sha256(self.context + label + m).digest()

    def H1(self, m: bytes) -> int:
        """Binding-factor hash (RFC 9591 ``H1``, label ``rho``): a scalar."""
        return self._h_scalar(b"rho", m)

    def H2(self, m: bytes) -> int:
        """Challenge hash (RFC 9591 ``H2``): SHA-512(m) (no context, RFC 8032) for Ed25519,
        hash_to_field with label ``chal`` for secp256k1. Not used by the BIP340 variant."""
        if self.kind == "ed25519":
            return int.from_bytes(hashlib.sha512(m).digest(), "little") % self.group.order
        if self.kind == "bip340":
            raise UsageError("the BIP340 variant has no H2: use challenge()")
        return self._h_scalar(b"chal", m)

    def H3(self, m: bytes) -> int:
        """Nonce hash (RFC 9591 ``H3``, label ``nonce``): a scalar."""
        return self._h_scalar(b"nonce", m)

    def H4(self, m: bytes) -> bytes:
        """Message hash (RFC 9591 ``H4``, label ``msg``): 64 (SHA-512) or 32 (SHA-256) bytes."""
        return self._h_bytes(b"msg", m)

    def H5(self, m: bytes) -> bytes:
        """Commitment-list hash (RFC 9591 ``H5``, label ``com``)."""
        return self._h_bytes(b"com", m)

    # -- challenge and signature -----------------------------------------------------------
    def challenge(self, r: Element, pk: Element, msg: bytes) -> int:
        """The Schnorr challenge ``c`` for group commitment ``r`` and group key ``pk``.

        RFC 9591 section 4.6: ``H2(SerializeElement(R) || SerializeElement(PK) || msg)``.
        BIP340 variant: ``hash_BIP0340/challenge(x(R) || x(PK) || msg) mod n`` (``pk`` is the
        even-Y tweaked output key, ``r`` must have even Y).
        """
        if self.kind == "bip340":
            assert isinstance(r, Point) and isinstance(pk, Point)
            data = r.encode()[1:] + pk.encode()[1:] + msg
            return int.from_bytes(tagged_hash("BIP0340/challenge", data), "big") % self.group.order
        g = self.group
        return self.H2(g.encode(r) + g.encode(pk) + msg)

    def encode_signature(self, r: Element, z: int) -> bytes:
        """``SerializeElement(R) || SerializeScalar(z)``; BIP340: ``x(R) || z`` (32-byte big-endian)."""
        enc = self.group.encode(r)
        if self.kind == "bip340":
            enc = enc[1:]
        return enc + self.group.encode_scalar(z)


ED25519_SHA512: Final = Ciphersuite("ed25519", ED25519, b"FROST-ED25519-SHA512-v1", 64)
SECP256K1_SHA256: Final = Ciphersuite("secp256k1", SECP256K1, b"FROST-secp256k1-SHA256-v1", 65)
SECP256K1_BIP340: Final = Ciphersuite("bip340", SECP256K1, b"FROST-secp256k1-SHA256-TR-v1", 64)

_BY_SCHEME: Final = {
    SCHEME_ED25519: ED25519_SHA512,
    SCHEME_BIP340: SECP256K1_BIP340,
    SCHEME_RFC_SECP256K1: SECP256K1_SHA256,
}


def ciphersuite_for(scheme: str) -> Ciphersuite:
    """The ciphersuite of a FROST key scheme (:data:`FROST_SCHEMES`).

    Raises :class:`UsageError` for ``ecdsa-secp256k1`` or an unknown scheme.
    """
    if scheme not in FROST_SCHEMES:
        raise UsageError(f"scheme: not a FROST scheme: {scheme!r}")
    return _BY_SCHEME[scheme]


def suite_for_signing(scheme: str) -> Ciphersuite:
    """Like :func:`ciphersuite_for`, also accepting :data:`SCHEME_RFC_SECP256K1` (RFC vectors)."""
    if scheme not in _BY_SCHEME:
        raise UsageError(f"scheme: not a FROST scheme: {scheme[:64]!r}")
    return _BY_SCHEME[scheme]
