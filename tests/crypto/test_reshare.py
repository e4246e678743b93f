"""Refresh and quorum change (crypto_core.reshare): same key, new sharing, new epoch; tampering
aborts naming the culprit and never yields a changed public key."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from coincurve import PublicKey
from hypothesis import given, settings, strategies as st

from crypto_core.errors import DecodeError, ProtocolAbort, UsageError
from crypto_core.group import Point, Q
from crypto_core.keyshare import KeyShare
from crypto_core.local import Tamper, route, run
from crypto_core.reshare import ReshareConfig, ReshareParty
from crypto_core.rng import DeterministicRng
from crypto_core.shamir import interpolate_at_zero

from ..conftest import scaled
from .dkg_util import keygen
from .sign_util import sign

SESSION = b"R" * 32
HEADER = 40


def reshare(
    old: dict[int, KeyShare],
    dealers: list[int],
    new_members: list[int],
    new_t: int,
    *,
    refresh: bool = False,
    tamper: Tamper | None = None,
    seed: bytes = b"rs",
    give_old_shares: bool = True,
) -> dict[int, ReshareParty]:
    """Run one session. Party ids: old party i is id i; ``new_members[j-1]`` is the id of new
    index j (an id > n is a newcomer). Returns the parties by id."""
    k0 = next(iter(old.values()))
    dl = tuple((i, i) for i in sorted(dealers))
    rc = tuple(sorted((p, j) for j, p in enumerate(new_members, 1)))
    ids = sorted({i for i, _ in dl} | {p for p, _ in rc})
    parties = {}
    for p in ids:
        cfg = ReshareConfig(
            SESSION, p, dl, rc, k0.threshold, new_t, k0.public_key, k0.chain_code, k0.epoch, k0.key_label,
            refresh=refresh, old_public_shares=k0.public_shares if give_old_shares else None, lambda_c=k0.lambda_c,
        )
        parties[p] = ReshareParty(cfg, old[p] if p in dealers else None, DeterministicRng(seed + p.to_bytes(2, "big")))
    run(parties, tamper)
    return parties


def results(parties: dict[int, ReshareParty]) -> dict[int, KeyShare]:
    out = {}
    for p in parties.values():
        if p.result is not None:
            out[p.result.index] = p.result
    return out


@st.composite
def plans(draw):
    n = draw(st.integers(2, 4))
    t = draw(st.integers(2, n))
    dealers = sorted(draw(st.sets(st.integers(1, n), min_size=t, max_size=n)))
    n2 = draw(st.integers(2, 4))
    t2 = draw(st.integers(2, n2))
    kept = draw(st.lists(st.integers(1, n), unique=True, max_size=n2))
    members = kept + [100 + k for k in range(n2 - len(kept))]
    members = draw(st.permutations(members))
    return t, n, dealers, t2, list(members)


def check_new_sharing(old: dict[int, KeyShare], new: dict[int, KeyShare], t2: int, n2: int, epoch: int = 1) -> None:
    k0 = next(iter(old.values()))
    secret = interpolate_at_zero({i: old[i].secret_share for i in range(1, k0.threshold + 1)})
    assert sorted(new) == list(range(1, n2 + 1))
    for r in new.values():
        r.validate()
        assert (r.public_key, r.chain_code, r.threshold, r.parties, r.epoch) == (k0.public_key, k0.chain_code, t2, n2, epoch)
        assert r.public_shares == new[1].public_shares and r.sid_dkg == new[1].sid_dkg and r.key_id == k0.key_id
        assert r.sid_dkg != k0.sid_dkg
        assert KeyShare.from_bytes(r.to_bytes()) == r and r.to_bytes()[15:17] == b"\x00\x03"
        # fresh pairwise state: zero seeds agree pairwise, base OTs are consistent, nothing reused
        for p in r.pairwise:
            q = new[p.peer].peer(r.index)
            assert p.zero_seed == q.zero_seed
            assert all(p.zero_seed != o.zero_seed for ko in old.values() for o in ko.pairwise)
            for k in range(0, r.lambda_c, 37):
                bit = q.as_alice.delta_bit(k)
                assert q.as_alice.seeds[k] == (p.as_bob.seeds1 if bit else p.as_bob.seeds0)[k]
        assert Point.base_mul(r.secret_share) == r.public_shares[r.index - 1]
    for s in itertools.combinations(range(1, n2 + 1), t2):
        assert interpolate_at_zero({m: new[m].secret_share for m in s}) == secret
    for s in itertools.combinations(range(1, n2 + 1), t2 - 1):
        assert interpolate_at_zero({m: new[m].secret_share for m in s}) != secret
        # a subset of t'-1 new shares plus any old share (a dropped party's, or another epoch's)
        for i in old:
            mixed = {m: new[m].secret_share for m in s}
            if i not in mixed:
                mixed[i] = old[i].secret_share
                assert interpolate_at_zero(mixed) != secret


@given(plans())
@settings(max_examples=scaled(12), deadline=None)
def test_quorum_change_keeps_the_key_and_reshares_it(plan):
    t, n, dealers, t2, members = plan
    old = keygen(t, n)
    parties = reshare(old, dealers, members, t2)
    new = results(parties)
    check_new_sharing(old, new, t2, len(members))
    for p, party in parties.items():
        assert party.done
        assert (party.result is None) == (p not in members) == party.retired  # old-only parties end with nothing


@given(st.integers(2, 4).flatmap(lambda n: st.tuples(st.integers(2, n), st.just(n))))
@settings(max_examples=scaled(6), deadline=None)
def test_refresh_gives_new_shares_of_the_same_secret(tn):
    t, n = tn
    old = keygen(t, n)
    new = results(reshare(old, list(range(1, n + 1)), list(range(1, n + 1)), t, refresh=True))
    check_new_sharing(old, new, t, n)
    assert all(new[i].secret_share != old[i].secret_share for i in old)


def test_quorum_change_without_old_public_shares():
    old = keygen(2, 3)
    new = results(reshare(old, [1, 3], [3, 101, 102], 3, give_old_shares=False))
    check_new_sharing(old, new, 3, 3)


def test_new_shares_sign_under_the_old_public_key_and_do_not_mix_with_old_ones():
    old = keygen(2, 3)
    keys = results(reshare(old, [1, 2, 3], [2, 101, 102], 2))
    for k in keys.values():
        assert k.epoch == 1 and k.key_id == old[1].key_id
    digest = hashlib.sha256(b"after the quorum change").digest()
    sig = sign(keys, (1, 3), digest)
    assert PublicKey(old[1].public_key.encode()).verify(sig.der(), digest, hasher=None)
    # a session mixing an epoch-0 share with an epoch-1 share aborts
    mixed = {1: old[1], 2: keys[2]}
    with pytest.raises(ProtocolAbort, match="another signing session id"):
        sign(mixed, (1, 2), digest)


def test_old_records_are_epoch_0_and_keep_version_2():
    ks = keygen(2, 3)[1]
    assert ks.epoch == 0 and ks.to_bytes()[15:17] == b"\x00\x02"


def test_a_second_quorum_change_moves_to_epoch_2():
    old = keygen(2, 3)
    ks1 = results(reshare(old, [1, 2], [1, 2, 3], 2))
    new2 = results(reshare(ks1, [2, 3], [1, 2, 3, 4], 3, seed=b"second"))
    check_new_sharing(old, new2, 3, 4, epoch=2)
    digest = hashlib.sha256(b"epoch 2").digest()
    sig = sign(new2, (1, 2, 4), digest)
    assert PublicKey(old[1].public_key.encode()).verify(sig.der(), digest, hasher=None)


def test_a_dealer_with_a_share_of_another_epoch_is_refused():
    old = keygen(2, 3)
    k0 = old[1]
    cfg = ReshareConfig(SESSION, 1, ((1, 1), (2, 2)), ((1, 1), (2, 2)), 2, 2, k0.public_key, k0.chain_code, 1, k0.key_label)
    with pytest.raises(UsageError, match="epoch"):
        ReshareParty(cfg, k0)


@pytest.mark.parametrize(
    "kw",
    [
        {"receivers": ((1, 1), (2, 3))},  # new indices not 1..n'
        {"dealers": ((1, 1),)},  # fewer than t dealers
        {"dealers": ((2, 2), (1, 1))},  # not ascending
        {"receivers": ((1, 1), (2, 1))},  # duplicate new index
        {"new_threshold": 3},
        {"chain_code": b"x"},
        {"refresh": True, "old_public_shares": None},
        {"dealers": ((1, 1), (2, None))},  # was a TypeError, not a UsageError
        {"dealers": ((1, 1), ("2", 2))},
        {"receivers": ((1, True), (2, 2))},  # a bool is not an index
        {"dealers": ((1, 0), (2, 2))},  # zero index
        {"dealers": ((1, 1), (2, 2, 3))},
        {"receivers": [(1, 1), (2, 2)]},  # not a tuple (the config is frozen and hashed)
    ],
)
def test_bad_configurations_are_refused(kw):
    k0 = keygen(2, 3)[1]
    base = dict(
        session=SESSION, index=1, dealers=((1, 1), (2, 2)), receivers=((1, 1), (2, 2)), old_threshold=2,
        new_threshold=2, public_key=k0.public_key, chain_code=k0.chain_code, old_epoch=0,
    )
    base.update(kw)
    with pytest.raises(UsageError):
        ReshareConfig(**base)


# tampering ----------------------------------------------------------------------------------
def _flip_share(rnd, sender, receiver, part, payload):
    if rnd == 2 and sender == 2 and part == "direct":
        b = bytearray(payload)
        b[HEADER + 31] ^= 1  # the share's last byte (the direct part starts with it)
        return bytes(b)
    return payload


def test_an_inconsistent_share_names_its_dealer():
    old = keygen(2, 3)
    with pytest.raises(ProtocolAbort) as e:
        reshare(old, [1, 2, 3], [1, 2, 3], 2, tamper=_flip_share)
    assert e.value.party == 2 and "Feldman" in e.value.reason


def _short_feldman(rnd, sender, receiver, part, payload):
    if rnd == 2 and sender == 3 and part == "broadcast":
        return payload[:-1]
    return payload


def test_a_wrong_length_feldman_vector_names_its_dealer():
    old = keygen(2, 3)
    with pytest.raises(ProtocolAbort) as e:
        reshare(old, [1, 2, 3], [1, 2, 3], 2, tamper=_short_feldman)
    assert e.value.party == 3 and "malformed" in e.value.reason


def _off_curve(rnd, sender, receiver, part, payload):
    if rnd == 2 and sender == 1 and part == "broadcast":
        off = HEADER + 32 * 3 + 33  # G[1]
        bad = b"\x02" + (5).to_bytes(32, "big")  # x = 5: x^3 + 7 = 132 is not a square mod p
        return payload[:off] + bad + payload[off + 33:]
    return payload


def test_an_off_curve_point_names_its_dealer():
    assert Point.lift_x((5).to_bytes(32, "big")) is None
    old = keygen(2, 3)
    with pytest.raises(ProtocolAbort) as e:
        reshare(old, [1, 2, 3], [1, 2, 3], 2, tamper=_off_curve)
    assert e.value.party == 1 and "malformed" in e.value.reason and "feldman[1]" in e.value.reason


class Cheat(ReshareParty):
    """Deals a constant term off by ``shift`` (a refresh: not zero; a quorum change: not lam*x)."""

    shift = 1

    def _constant(self) -> int:
        return (super()._constant() + self.shift) % Q


def build(old, dealers, receivers, *, refresh=False, cheat=None, give_old_shares=True, seed=b"w"):
    k0 = old[next(iter(old))]
    dl = tuple((i, i) for i in dealers)
    ids = sorted({i for i, _ in dl} | {p for p, _ in receivers})
    parties = {}
    for p in ids:
        cfg = ReshareConfig(SESSION, p, dl, receivers, k0.threshold, k0.threshold, k0.public_key, k0.chain_code, 0,
                            k0.key_label, refresh=refresh,
                            old_public_shares=k0.public_shares if give_old_shares or p in dealers else None,
                            lambda_c=k0.lambda_c)
        cls = Cheat if p == cheat else ReshareParty
        parties[p] = cls(cfg, old[p] if p in dealers else None, DeterministicRng(seed + bytes([p])))
    return parties


def run_each(parties) -> dict[int, ProtocolAbort]:
    """Like local.run, but every party runs until its own abort: returns each party's error."""
    errors: dict[int, ProtocolAbort] = {}
    outputs = {i: p.start() for i, p in parties.items()}
    while outputs:
        inboxes = route(outputs)
        nxt = {}
        dead = set(errors)  # parties that aborted in an earlier round send nothing more
        for i, p in parties.items():
            if i in dead or i not in inboxes:
                continue
            try:
                out = p.receive({j: d for j, d in inboxes[i].items() if j not in dead})
            except ProtocolAbort as e:
                errors[i] = e
                continue
            if out is not None:
                nxt[i] = out
        outputs = nxt
    return errors


def test_a_non_identity_constant_term_in_a_refresh_names_the_sender():
    old = keygen(2, 3)
    parties = build(old, (1, 2, 3), ((1, 1), (2, 2), (3, 3)), refresh=True, cheat=2)
    errors = run_each(parties)
    for p in (1, 3):
        assert errors[p].party == 2 and "non-identity constant term in a refresh" in errors[p].reason
        assert parties[p].result is None


def test_a_wrong_constant_term_in_a_quorum_change_names_the_dealer_and_changes_no_key():
    old = keygen(2, 3)
    parties = build(old, (1, 2), ((1, 1), (2, 2), (3, 3)), cheat=2)
    errors = run_each(parties)
    for p in (1, 3):
        assert errors[p].party == 2 and "constant term" in errors[p].reason
    assert all(p.result is None for p in parties.values())


def _tamper_ot(rnd, sender, receiver, part, payload):
    if rnd == 3 and sender == 1 and receiver == 3 and part == "direct":
        return payload[:HEADER] + Point.base_mul(7).encode() + payload[HEADER + 33:]
    return payload


def test_a_tampered_base_ot_reply_is_caught_by_the_pair_confirmation():
    old = keygen(2, 3)
    with pytest.raises(ProtocolAbort) as e:
        reshare(old, [1, 2, 3], [1, 2, 3], 2, tamper=_tamper_ot)
    assert e.value.party == 3 and "pairwise setup differs" in e.value.reason


def test_a_new_party_without_the_old_public_shares_still_refuses_a_changed_key():
    """Without the old public shares a newcomer cannot say which dealer lied: it aborts
    unattributed (the sum of constant terms is not its trusted public key), never a new key."""
    old = keygen(2, 3)
    parties = build(old, (1, 2), ((3, 1), (4, 2), (5, 3)), cheat=2, give_old_shares=False)
    errors = run_each(parties)
    assert errors[1].party == 2  # dealer 1 knows the old public shares
    for p in (3, 4, 5):
        assert errors[p].party is None and "sum to the public key" in errors[p].reason
        assert parties[p].result is None


def test_repr_hides_the_new_share():
    old = keygen(2, 3)
    new = results(reshare(old, [1, 2], [1, 2, 3], 2))
    for r in new.values():
        assert hex(r.secret_share)[2:] not in repr(r) and str(r.secret_share) not in repr(r)
    party = ReshareParty(
        ReshareConfig(SESSION, 1, ((1, 1), (2, 2)), ((1, 1), (2, 2)), 2, 2, old[1].public_key, old[1].chain_code, 0,
                      old[1].key_label),
        old[1],
    )
    assert str(old[1].secret_share) not in repr(party) and hex(old[1].secret_share)[2:] not in repr(party)


def test_a_reshare_mixing_epochs_aborts():
    """Dealer 1 holds an epoch-1 share, dealer 2 an epoch-0 share of the same key: the
    configurations differ (old epoch, public shares), so the session aborts in round 1."""
    old = keygen(2, 3)
    new = results(reshare(old, [1, 2], [1, 2, 3], 2))
    dl = ((1, 1), (2, 2))
    parties = {}
    for p, ks in ((1, new[1]), (2, old[2])):
        cfg = ReshareConfig(SESSION, p, dl, dl, 2, 2, ks.public_key, ks.chain_code, ks.epoch, ks.key_label,
                            lambda_c=ks.lambda_c)
        parties[p] = ReshareParty(cfg, ks, DeterministicRng(b"m" + bytes([p])))
    with pytest.raises(ProtocolAbort, match="other parameters") as e:
        run(parties)
    assert e.value.party is None
    assert all(p.result is None for p in parties.values())


def test_an_epoch_record_is_strict():
    ks = results(reshare(keygen(2, 3), [1, 2], [1, 2, 3], 2))[1]
    data = bytearray(ks.to_bytes())
    assert data[25:29] == b"\x00\x00\x00\x01"  # u32 epoch right after lambda_c in version 3
    data[28] = 0
    with pytest.raises(DecodeError, match="epoch"):
        KeyShare.from_bytes(bytes(data))


def test_stale_old_public_shares_abort_unattributed_and_never_blame_an_honest_dealer():
    """A newcomer handed the epoch-0 public shares for an epoch-1 reshare (they interpolate to
    the key, so the configuration accepts them) used to name honest dealer 1 ("constant term is
    not lambda_i times its old public share"). The dealers' round-1 digest of their old public
    shares now makes every party abort in round 1, naming nobody."""
    old = keygen(2, 3)
    ks1 = results(reshare(old, [1, 2], [1, 2, 3], 2))
    dl, rc = ((1, 1), (2, 2)), ((1, 1), (2, 2), (4, 3))
    parties = {}
    for p in (1, 2, 4):
        k = ks1[1]
        stale = old[1].public_shares if p == 4 else k.public_shares
        cfg = ReshareConfig(SESSION, p, dl, rc, 2, 2, k.public_key, k.chain_code, 1, k.key_label,
                            old_public_shares=stale, lambda_c=k.lambda_c)
        parties[p] = ReshareParty(cfg, ks1[p] if p in (1, 2) else None, DeterministicRng(b"s" + bytes([p])))
    errors = run_each(parties)
    assert errors[4].party is None and "other old public shares" in errors[4].reason
    assert all(e.party != 1 and e.party != 2 for e in errors.values())
    assert all(p.result is None for p in parties.values())
    with pytest.raises(UsageError, match="aborted"):
        parties[4].receive({})


def test_dealers_with_different_old_public_shares_abort_in_round_1():
    """Two dealers whose key shares disagree on S (one refreshed record, one not) cannot run a
    refresh that would give the new parties different S': round 1 aborts, unattributed."""
    old = keygen(2, 3)
    parties = build(old, (1, 2, 3), ((1, 1), (2, 2), (3, 3)), refresh=True)
    p3 = parties[3]
    p3._old_shares = tuple(reversed(p3._old_shares))  # simulate a corrupted record on party 3
    errors = run_each(parties)
    for p in (1, 2):
        assert errors[p].party is None and "other old public shares" in errors[p].reason


def test_a_reshare_cannot_relabel_the_key():
    """The new shares take the configuration's key label: a dealer whose key share has another
    label is refused, so a quorum change never silently renames the key."""
    k0 = keygen(2, 3)[1]
    cfg = ReshareConfig(SESSION, 1, ((1, 1), (2, 2)), ((1, 1), (2, 2)), 2, 2, k0.public_key, k0.chain_code, 0,
                        k0.key_label + b"-renamed", lambda_c=k0.lambda_c)
    with pytest.raises(UsageError, match="key label"):
        ReshareParty(cfg, k0)
