"""Test-only helpers for the FROST refresh and quorum change (crypto_core.frost.reshare).

A *committee* is a tuple of roster indices, increasing; position k (1-based) is share index k.
Party ids in a session are roster indices. The initial sharing comes from a test-only trusted
dealer (a reshare's input is any valid sharing; the FROST DKG has its own tests). These helpers
read secret shares: they exist only to check the sharing from the outside.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from crypto_core.errors import ProtocolAbort
from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.poly import evaluate, interpolate_scalars, random_polynomial
from crypto_core.frost.reshare import FrostReshareConfig, FrostReshareParty
from crypto_core.frost.scheme import group_for
from crypto_core.local import Tamper, route
from crypto_core.rng import DeterministicRng, Rng
from crypto_core.session import RoundOutput

SCHEMES = ("ed25519", "schnorr-secp256k1-bip340")
SESSION = b"F" * 32
LABEL = b"frost-label"


def dealer_keygen(scheme: str, t: int, n: int, seed: bytes = b"k") -> dict[int, FrostKeyShare]:
    """A valid epoch-0 sharing by a trusted dealer (test only): share index -> share."""
    g = group_for(scheme)
    rng: Rng = DeterministicRng(seed + scheme.encode())
    coeffs = random_polynomial(g, t, rng)
    xs = {i: evaluate(g, coeffs, i) for i in range(1, n + 1)}
    pk = g.encode(g.base_mul(coeffs[0]))
    pub = tuple(g.encode(g.base_mul(x)) for x in xs.values())
    sid = bytes(32)
    return {i: FrostKeyShare(scheme, t, n, i, x, pk, pub, sid, LABEL, 0) for i, x in xs.items()}


@dataclass(frozen=True)
class Epoch:
    """One epoch of a key: the committee (roster indices) and its shares by share index."""

    committee: tuple[int, ...]
    shares: dict[int, FrostKeyShare]

    @property
    def first(self) -> FrostKeyShare:
        return next(iter(self.shares.values()))

    def by_roster(self, roster: int) -> FrostKeyShare:
        return self.shares[self.committee.index(roster) + 1]


def reshare_parties(
    old: Epoch,
    dealers: tuple[int, ...],
    new_committee: tuple[int, ...],
    new_t: int,
    *,
    refresh: bool = False,
    seed: bytes = b"rs",
    session: bytes = SESSION,
    cls: Mapping[int, type[FrostReshareParty]] | None = None,
    give_old_shares: bool = True,
) -> dict[int, FrostReshareParty]:
    """The session's parties by roster index (``cls`` replaces the class of some: cheaters)."""
    k0 = old.first
    dl = tuple((p, old.committee.index(p) + 1) for p in dealers)
    rc = tuple((p, k) for k, p in enumerate(new_committee, 1))
    parties: dict[int, FrostReshareParty] = {}
    for p in sorted(set(dealers) | set(new_committee)):
        cfg = FrostReshareConfig(
            session, p, dl, rc, k0.threshold, new_t, k0.scheme, k0.public_key, k0.epoch, k0.key_label,
            refresh=refresh, old_public_shares=k0.public_shares if give_old_shares or p in dealers else None,
        )
        klass = (cls or {}).get(p, FrostReshareParty)
        parties[p] = klass(cfg, old.by_roster(p) if p in dealers else None, DeterministicRng(seed + p.to_bytes(2, "big")))
    return parties


def new_epoch(parties: Mapping[int, FrostReshareParty], new_committee: tuple[int, ...]) -> Epoch:
    shares: dict[int, FrostKeyShare] = {}
    for k, p in enumerate(new_committee, 1):
        r = parties[p].result
        assert r is not None and r.index == k, (p, k)
        shares[k] = r
    return Epoch(new_committee, shares)


def secret_of(epoch: Epoch) -> int:
    """The shared secret from the first t shares (test only)."""
    k0 = epoch.first
    return interpolate_scalars(group_for(k0.scheme), {k: epoch.shares[k].secret_share for k in range(1, k0.threshold + 1)})


def mixed_sets(old: Epoch, new: Epoch, size: int) -> Iterator[dict[int, int]]:
    """Every ``size``-set of points ``{share index: secret share}`` taking at least one point
    from each epoch (distinct x)."""
    xs = sorted(set(old.shares) | set(new.shares))
    for chosen in itertools.combinations(xs, size):
        options = [[e for e in (old, new) if x in e.shares] for x in chosen]
        for pick in itertools.product(*options):
            if old in pick and new in pick:
                yield {x: e.shares[x].secret_share for x, e in zip(chosen, pick, strict=True)}


def run_all(parties: Mapping[int, FrostReshareParty], tamper: Tamper | None = None) -> dict[int, ProtocolAbort]:
    """Every party runs until its own end or abort (an aborted party sends nothing more)."""
    errors: dict[int, ProtocolAbort] = {}
    outputs: dict[int, RoundOutput] = {i: p.start() for i, p in parties.items()}
    while outputs:
        inboxes = route(outputs, tamper)
        nxt: dict[int, RoundOutput] = {}
        for i, p in parties.items():
            if i in errors or i not in inboxes:
                continue
            try:
                out = p.receive({j: d for j, d in inboxes[i].items() if j not in errors})
            except ProtocolAbort as e:
                errors[i] = e
                continue
            if out is not None:
                nxt[i] = out
        outputs = nxt
    return errors
