"""Helpers of the FROST DKG and key-record tests: parties, cached keys, bad element encodings."""

from __future__ import annotations

from nacl import bindings as _na

from crypto_core.frost.dkg import FrostDkgConfig, FrostDkgParty
from crypto_core.frost.group import ED25519
from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.local import run_frost_dkg
from crypto_core.group import P as SECP_P
from crypto_core.rng import DeterministicRng

SCHEMES = ("ed25519", "schnorr-secp256k1-bip340")
ED_P = 2**255 - 19
ED_L = ED25519.order


def make_parties(
    scheme: str, t: int, n: int, seed: bytes = b"seed", session: bytes = b"S" * 32, label: bytes = b"label"
) -> dict[int, FrostDkgParty]:
    return {
        i: FrostDkgParty(FrostDkgConfig(session, t, n, i, scheme, label), DeterministicRng(seed + bytes([i])))
        for i in range(1, n + 1)
    }


_cache: dict[tuple[str, int, int, bytes], list[FrostKeyShare]] = {}


def keygen(scheme: str, t: int, n: int, seed: bytes = b"seed") -> list[FrostKeyShare]:
    """Deterministic FROST DKG, cached per (scheme, t, n, seed) for the test session."""
    key = (scheme, t, n, seed)
    if key not in _cache:
        _cache[key] = run_frost_dkg(scheme, t, n, DeterministicRng(seed), session=b"K" * 32, key_label=b"label")
    return _cache[key]


def bad_elements(scheme: str) -> dict[str, bytes]:
    """Encodings every decoder must refuse, by what is wrong with them."""
    if scheme == "ed25519":
        seven = ED25519.encode(ED25519.base_mul(7))
        return {
            "identity": b"\x01" + bytes(31),
            "small_order": (ED_P - 1).to_bytes(32, "little"),  # (0, -1), order 2
            "mixed_order": _na.crypto_core_ed25519_add(seven, (ED_P - 1).to_bytes(32, "little")),
            "not_on_curve": (2).to_bytes(32, "little"),  # y = 2: x^2 is not a square
            "non_canonical": (ED_P + 1).to_bytes(32, "little"),  # y >= p
            "short": seven[:31],
        }
    return {
        "identity": bytes(33),
        "not_on_curve": b"\x02" + (5).to_bytes(32, "big"),  # x = 5: x^3 + 7 is not a square mod p
        "non_canonical": b"\x02" + (SECP_P + 1).to_bytes(32, "big"),
        "bad_prefix": b"\x05" + bytes(31) + b"\x01",
        "short": b"\x02" + bytes(31),
    }


def non_canonical_scalar(scheme: str) -> bytes:
    """The group order itself in the scheme's scalar encoding (must be refused, never reduced)."""
    if scheme == "ed25519":
        return ED_L.to_bytes(32, "little")
    from crypto_core.group import Q

    return Q.to_bytes(32, "big")
