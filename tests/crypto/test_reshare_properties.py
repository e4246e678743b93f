"""Properties of refresh and quorum change over random (t, n) -> (t', n') with roster indices
(issue 11, "Tests asserting real outcomes", first bullet, at the crypto_core level).

For every change: the public key and chain code are unchanged; every t'-subset of the new
shares interpolates to the secret and no (t'-1)-subset does; no t'-set mixing old-epoch and
new-epoch shares does; a dropped node's old share with any t'-1 new shares does not; new shares
sign under the old public key (verified by OpenSSL); a signing session mixing epochs aborts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.group import Point
from crypto_core.local import run
from crypto_core.reshare import ReshareParty
from crypto_core.sign import PresignParty, SignConfig

from ..conftest import scaled
from .dkg_util import keygen
from .reshare_util import (
    Epoch,
    digest_of,
    interpolate,
    mixed_sets,
    new_epoch,
    openssl_cli_verifies,
    reshare_parties,
    secret_of,
    verify_der,
)
from .sign_util import sign

ROSTER = range(1, 13)  # roster indices a committee draws from


@dataclass(frozen=True)
class Change:
    t: int
    committee: tuple[int, ...]  # old committee, roster indices, increasing
    dealers: tuple[int, ...]
    new_committee: tuple[int, ...]
    new_t: int
    refresh: bool


@st.composite
def changes(draw: st.DrawFn) -> Change:
    n = draw(st.integers(2, 5))
    t = draw(st.integers(2, n))
    committee = tuple(sorted(draw(st.sets(st.sampled_from(ROSTER[:7]), min_size=n, max_size=n))))
    if draw(st.integers(0, 2)) == 0:
        return Change(t, committee, committee, committee, t, refresh=True)
    dealers = tuple(sorted(draw(st.sets(st.sampled_from(committee), min_size=t, max_size=n))))
    n2 = draw(st.integers(2, 5))
    t2 = draw(st.integers(2, n2))
    kept = draw(st.sets(st.sampled_from(committee), max_size=min(n, n2)))
    outside = [r for r in ROSTER if r not in committee]
    newcomers = draw(st.lists(st.sampled_from(outside), unique=True, min_size=n2 - len(kept), max_size=n2 - len(kept)))
    return Change(t, committee, dealers, tuple(sorted(kept | set(newcomers))), t2, refresh=False)


def apply(change: Change, seed: bytes = b"p") -> tuple[Epoch, Epoch, dict[int, ReshareParty]]:
    old = Epoch(change.committee, keygen(change.t, len(change.committee)))
    parties = reshare_parties(old, change.dealers, change.new_committee, change.new_t, refresh=change.refresh, seed=seed)
    run(parties)
    return old, new_epoch(parties, change.new_committee), parties


def check_sharing(old: Epoch, new: Epoch) -> None:
    """The algebraic properties of the new epoch against the old one (reads secret shares)."""
    k0, t2, n2 = old.shares[1], new.threshold, len(new.committee)
    secret = secret_of(old)
    assert Point.base_mul(secret) == k0.public_key
    for ks in new.shares.values():
        assert (ks.public_key, ks.chain_code, ks.key_id, ks.key_label) == (k0.public_key, k0.chain_code, k0.key_id, k0.key_label)
        assert (ks.epoch, ks.threshold, ks.parties) == (k0.epoch + 1, t2, n2)
        assert ks.sid_dkg != k0.sid_dkg  # a signing session mixing epochs derives another sigid
    for subset in itertools.combinations(new.shares, t2):
        assert interpolate({x: new.shares[x].secret_share for x in subset}) == secret
    for subset in itertools.combinations(new.shares, t2 - 1):
        assert interpolate({x: new.shares[x].secret_share for x in subset}) != secret
    for points in mixed_sets(old, new, t2):
        assert interpolate(points) != secret, sorted(points)
    # a dropped node keeps its old share until the commit erases it: with t'-1 new ones it is useless
    for dropped in set(old.committee) - set(new.committee):
        x = old.committee.index(dropped) + 1
        for subset in itertools.combinations([m for m in new.shares if m != x], t2 - 1):
            points = {m: new.shares[m].secret_share for m in subset}
            points[x] = old.shares[x].secret_share
            assert interpolate(points) != secret


def check_mixed_signing_aborts(old: Epoch, new: Epoch) -> None:
    """Signers 1..t', signer 1 with its old-epoch share: the session aborts (different sid_dkg),
    or, if the thresholds differ, the old share refuses a signer set of the new epoch's shape."""
    t2 = new.threshold
    signers = tuple(range(1, t2 + 1))  # index 1 exists in every epoch
    keys = {x: (old.shares[x] if x == 1 else new.shares[x]) for x in signers}
    if old.threshold == t2:
        with pytest.raises(ProtocolAbort, match="another signing session id") as e:
            sign(keys, signers, digest_of(b"mixed epochs"))
        assert e.value.party is None
    else:
        with pytest.raises(UsageError, match="exactly t|out of range"):  # its t, or an index beyond its n
            PresignParty(old.shares[1], SignConfig(b"P" * 32, signers))


@given(changes(), st.data())
@settings(max_examples=scaled(10), deadline=None)
def test_a_change_keeps_the_key_and_reshares_the_same_secret(change: Change, data: st.DataObject) -> None:
    old, new, parties = apply(change)
    check_sharing(old, new)
    for p, party in parties.items():
        assert party.done
        assert party.retired == (p not in change.new_committee)
    signers = tuple(sorted(data.draw(st.sets(st.sampled_from(sorted(new.shares)), min_size=new.threshold, max_size=new.threshold))))
    digest = digest_of(repr(change).encode())
    sig = sign(new.shares, signers, digest)
    pk = old.shares[1].public_key
    assert verify_der(pk, sig.der(), digest)
    assert not verify_der(pk, sig.der(), digest_of(digest))  # negative control
    check_mixed_signing_aborts(old, new)


def test_the_key_signs_after_each_lifecycle_step_verified_by_the_openssl_binary() -> None:
    """The issue's "done means" at the crypto level: 3-of-5 signs; node 3 is removed (3-of-4 over
    roster 1,2,4,5); node 6 is added (3-of-5 over 1,2,4,5,6); a refresh; every step signs under
    the same public key (the openssl binary verifies), and shares of any two epochs do not mix."""
    epochs = [Epoch((1, 2, 3, 4, 5), keygen(3, 5))]
    pk = epochs[0].shares[1].public_key
    steps = [
        ((1, 2, 4, 5), (1, 2, 4, 5), 3, False),  # revoke 3: the surviving nodes deal
        ((1, 2, 4, 5), (1, 2, 4, 5, 6), 3, False),  # enrol 6
        ((1, 2, 4, 5, 6), (1, 2, 4, 5, 6), 3, True),  # refresh
    ]
    for dealers, committee, t2, refresh in steps:
        parties = reshare_parties(epochs[-1], dealers, committee, t2, refresh=refresh, seed=bytes(committee))
        run(parties)
        epochs.append(new_epoch(parties, committee))
    secret = secret_of(epochs[0])
    for e, epoch in enumerate(epochs):
        assert all(ks.epoch == e and ks.public_key == pk for ks in epoch.shares.values())
        assert secret_of(epoch) == secret
        message = f"epoch {e} of the key".encode()
        signers = tuple(sorted(epoch.shares))[-3:]
        sig = sign(epoch.shares, signers, digest_of(message))
        assert openssl_cli_verifies(pk, sig.der(), message)
        assert not openssl_cli_verifies(pk, sig.der(), message + b".")  # negative control
    for a, b in itertools.combinations(epochs, 2):
        for points in mixed_sets(a, b, 3):
            assert interpolate(points) != secret
        common = sorted(set(a.shares) & set(b.shares))
        keys = {common[0]: a.shares[common[0]], common[1]: b.shares[common[1]], common[2]: b.shares[common[2]]}
        with pytest.raises(ProtocolAbort, match="another signing session id"):
            sign(keys, tuple(common[:3]), digest_of(b"mixed"))
    # node 3 (revoked in epoch 1) with any two shares of a later epoch learns nothing
    revoked = epochs[0].shares[3].secret_share
    for later in epochs[1:]:
        for pair in itertools.combinations([x for x in later.shares if x != 3], 2):
            assert interpolate({3: revoked, **{x: later.shares[x].secret_share for x in pair}}) != secret
