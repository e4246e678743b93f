from __future__ import annotations

from crypto_core.dkg import DkgConfig, DkgParty
from crypto_core.keyshare import KeyShare
from crypto_core.local import run
from crypto_core.params import LAMBDA_C
from crypto_core.rng import DeterministicRng


def make_parties(
    t: int, n: int, seed: bytes = b"seed", session: bytes = b"S" * 32, cls: type = DkgParty, lambda_c: int = LAMBDA_C
) -> dict[int, DkgParty]:
    return {
        i: cls(DkgConfig(session, t, n, i, b"label", lambda_c), DeterministicRng(seed + bytes([i]))) for i in range(1, n + 1)
    }


_cache: dict[tuple[int, int, bytes, int], dict[int, KeyShare]] = {}


def keygen(t: int, n: int, seed: bytes = b"seed", lambda_c: int = LAMBDA_C) -> dict[int, KeyShare]:
    """Deterministic DKG, cached per (t, n, seed, lambda_c) for the whole test session."""
    key = (t, n, seed, lambda_c)
    if key not in _cache:
        ps = make_parties(t, n, seed, lambda_c=lambda_c)
        run(ps)
        out = {}
        for i, p in ps.items():
            assert p.result is not None
            out[i] = p.result
        _cache[key] = out
    return _cache[key]
