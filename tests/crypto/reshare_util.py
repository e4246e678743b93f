"""Test-only helpers for refresh and quorum change (crypto_core.reshare) with roster indices.

A *committee* is a tuple of roster indices, increasing; position k (1-based) is Shamir share
index k (design section 2). Party ids in a session are roster indices, as on the wire. These
helpers read secret shares: they exist only to check the sharing from the outside.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from crypto_core.errors import ProtocolAbort
from crypto_core.group import Point
from crypto_core.keyshare import KeyShare
from crypto_core.local import Tamper, route
from crypto_core.reshare import ReshareConfig, ReshareParty
from crypto_core.rng import DeterministicRng
from crypto_core.session import RoundOutput
from crypto_core.shamir import interpolate_at_zero

SESSION = b"E" * 32


@dataclass(frozen=True)
class Epoch:
    """One epoch of a key: the committee (roster indices) and its shares by share index."""

    committee: tuple[int, ...]
    shares: dict[int, KeyShare]  # share index -> share

    @property
    def threshold(self) -> int:
        return next(iter(self.shares.values())).threshold

    def by_roster(self, roster: int) -> KeyShare:
        """The share held by roster index ``roster`` (KeyError if it is not in the committee)."""
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
    cls: Mapping[int, type[ReshareParty]] | None = None,
    give_old_shares: bool = True,
) -> dict[int, ReshareParty]:
    """The session's parties by roster index: ``dealers`` (roster indices of the old committee)
    deal, ``new_committee`` receives (share index = position). ``cls`` replaces the class of
    some parties (cheaters). Raises UsageError as ReshareConfig/ReshareParty do."""
    k0 = next(iter(old.shares.values()))
    dl = tuple((p, old.committee.index(p) + 1) for p in dealers)
    rc = tuple((p, k) for k, p in enumerate(new_committee, 1))
    ids = sorted(set(dealers) | set(new_committee))
    parties: dict[int, ReshareParty] = {}
    for p in ids:
        cfg = ReshareConfig(
            session, p, dl, rc, k0.threshold, new_t, k0.public_key, k0.chain_code, k0.epoch, k0.key_label,
            refresh=refresh, old_public_shares=k0.public_shares if give_old_shares or p in dealers else None,
            lambda_c=k0.lambda_c,
        )
        klass = (cls or {}).get(p, ReshareParty)
        parties[p] = klass(cfg, old.by_roster(p) if p in dealers else None, DeterministicRng(seed + p.to_bytes(2, "big")))
    return parties


def new_epoch(parties: Mapping[int, ReshareParty], new_committee: tuple[int, ...]) -> Epoch:
    """The new epoch after a finished session; asserts every receiver got its share at its position."""
    shares: dict[int, KeyShare] = {}
    for k, p in enumerate(new_committee, 1):
        r = parties[p].result
        assert r is not None and r.index == k, (p, k)
        shares[k] = r
    return Epoch(new_committee, shares)


def secret_of(epoch: Epoch) -> int:
    """The shared secret, interpolated from the first t shares (test only)."""
    t = epoch.threshold
    return interpolate_at_zero({k: epoch.shares[k].secret_share for k in range(1, t + 1)})


def interpolate(points: Mapping[int, int]) -> int:
    """Lagrange interpolation at 0 of ``{x: y}`` (distinct x)."""
    return interpolate_at_zero(dict(points))


def mixed_sets(old: Epoch, new: Epoch, size: int) -> Iterator[dict[int, int]]:
    """Every ``size``-set of points ``{share index: secret share}`` that takes at least one point
    from each epoch (distinct x; an index present in both epochs is taken from one of them)."""
    xs = sorted(set(old.shares) | set(new.shares))
    for chosen in itertools.combinations(xs, size):
        options = [[e for e in (old, new) if x in e.shares] for x in chosen]
        for pick in itertools.product(*options):
            if old in pick and new in pick:
                yield {x: e.shares[x].secret_share for x, e in zip(chosen, pick, strict=True)}


def run_all(parties: Mapping[int, ReshareParty], tamper: Tamper | None = None) -> dict[int, ProtocolAbort]:
    """Like crypto_core.local.run, but every party runs until its own end or abort (a party that
    aborted sends nothing more). Returns every party's abort; used to show that no party ever
    ends with a share after a tampered session (tests/harness.py ``run_collect`` stops at the
    first step with an abort, which is what blame is judged on)."""
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


def verify_der(pubkey: Point, der: bytes, digest: bytes) -> bool:
    """ECDSA verification of a prehashed digest by OpenSSL (through ``cryptography``)."""
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pubkey.encode())
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except InvalidSignature:
        return False


def openssl_cli_verifies(pubkey: Point, der: bytes, message: bytes) -> bool:
    """``openssl dgst -sha256 -verify`` of ``der`` over ``message`` (the binary hashes it itself)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is part of the machine (scripts/demo)"
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pubkey.encode())
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "pub.pem").write_bytes(pem)
        (Path(d) / "sig.der").write_bytes(der)
        (Path(d) / "msg").write_bytes(message)
        cmd = [openssl, "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "msg"]
        done = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and "Verified OK" in done.stdout


def digest_of(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()


__all__ = [
    "SESSION", "Epoch", "digest_of", "interpolate", "mixed_sets", "new_epoch", "openssl_cli_verifies", "reshare_parties",
    "run_all", "secret_of", "verify_der",
]
