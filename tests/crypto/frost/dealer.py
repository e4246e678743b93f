"""Test-only trusted dealer (Shamir over the scheme's group) and a one-call FROST signing run.

The production key comes from the DKG (piece A2); these keys satisfy the same fields
(:class:`crypto_core.frost.signing.KeyShareLike`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from crypto_core.frost.ciphersuite import suite_for_signing
from crypto_core.frost.signing import SigningCommitment, SigningNonces, SigningPackage, aggregate, commit, sign_share
from crypto_core.rng import DeterministicRng


@dataclass(frozen=True, repr=False)
class DealtShare:
    scheme: str
    threshold: int
    parties: int
    index: int
    secret_share: int
    public_key: bytes
    public_shares: tuple[bytes, ...]


@dataclass(frozen=True)
class DealtKey:
    """A dealt key: the group secret (tests only), one share per party (index 1..n)."""

    scheme: str
    secret: int
    shares: dict[int, DealtShare]

    @property
    def public(self) -> DealtShare:
        return self.shares[1]

    @property
    def public_key(self) -> bytes:
        return self.shares[1].public_key


def deal(scheme: str, t: int, n: int, seed: int, *, secret: int | None = None, coefficients: list[int] | None = None) -> DealtKey:
    """Shamir-share ``secret`` (random from ``seed`` when None) with threshold ``t`` among ``n``."""
    g = suite_for_signing(scheme).group
    q = g.order
    rnd = random.Random(seed)  # noqa: S311 - test-only dealer, reproducible by seed
    a0 = rnd.randrange(1, q)
    if secret is not None:
        a0 = secret
    coeffs = [a0] + (coefficients if coefficients is not None else [rnd.randrange(1, q) for _ in range(t - 1)])
    assert len(coeffs) == t

    def f(x: int) -> int:
        return sum(c * pow(x, k, q) for k, c in enumerate(coeffs)) % q

    pk = g.encode(g.base_mul(a0))
    pubs = tuple(g.encode(g.base_mul(f(i))) for i in range(1, n + 1))
    return DealtKey(scheme, a0, {i: DealtShare(scheme, t, n, i, f(i), pk, pubs) for i in range(1, n + 1)})


def round_one(key: DealtKey, signers: list[int], seed: bytes = b"r1") -> tuple[dict[int, SigningNonces], tuple[SigningCommitment, ...]]:
    nonces, comms = {}, []
    for i in sorted(signers):
        nonces[i], c = commit(key.scheme, key.shares[i].secret_share, DeterministicRng(seed + bytes([i])), identifier=i)
        comms.append(c)
    return nonces, tuple(comms)


def run_signing(
    key: DealtKey, signers: list[int], message: bytes, taproot_root: bytes = b"", seed: bytes = b"r1"
) -> tuple[SigningPackage, dict[int, bytes], bytes]:
    """Both rounds for ``signers``; returns the package, the shares and the aggregated signature."""
    nonces, comms = round_one(key, signers, seed)
    package = SigningPackage(key.scheme, message, comms, taproot_root)
    shares = {i: sign_share(key.shares[i], nonces[i], package) for i in sorted(signers)}
    return package, shares, aggregate(key.public, package, shares)
