"""Injectable randomness.

Product code uses :class:`SystemRng` (``os.urandom``). Tests inject :class:`DeterministicRng`
to make runs reproducible. Nothing in :mod:`crypto_core` draws randomness any other way.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol

from .group import Q


class Rng(Protocol):
    def bytes(self, n: int) -> bytes:
        """Return ``n`` uniformly random bytes."""
        ...


class SystemRng:
    """The operating system CSPRNG."""

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)


class DeterministicRng:
    """SHAKE-256 keyed stream. For tests and reproducible benchmarks only."""

    def __init__(self, seed: bytes) -> None:
        self._seed = bytes(seed)
        self._counter = 0

    def bytes(self, n: int) -> bytes:
        self._counter += 1
        return hashlib.shake_256(
            b"MPCNET/test-rng/v1" + self._seed + self._counter.to_bytes(8, "big")
        ).digest(n)


SYSTEM_RNG: Rng = SystemRng()


def random_scalar(rng: Rng) -> int:
    """Uniform scalar in ``[1, q-1]`` by rejection sampling (no modular bias)."""
    while True:
        k = int.from_bytes(rng.bytes(32), "big")
        if 0 < k < Q:
            return k


def random_bits(rng: Rng, n: int) -> list[int]:
    """``n`` uniform bits as a list of 0/1 ints."""
    raw = rng.bytes((n + 7) // 8)
    return [(raw[j >> 3] >> (j & 7)) & 1 for j in range(n)]
