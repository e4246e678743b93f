"""Tampering with any DKG message makes its receiver abort naming the sender; never a wrong key.

Also regression tests for the known attack classes: bad indices, threshold raising through a
long or short Feldman vector, identity and off-curve points, rogue keys without a valid proof of
knowledge, and messages from another session.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core import schnorr
from crypto_core.codec import HEADER_LEN
from crypto_core.dkg import DkgParty
from crypto_core.errors import ProtocolAbort
from crypto_core.group import G, Point
from crypto_core.session import Delivery

from ..conftest import scaled
from ..harness import flip_bit, run_collect
from .dkg_util import make_parties

# (round, part) pairs the DKG sends
PARTS = [(1, "broadcast"), (2, "broadcast"), (2, "direct"), (3, "broadcast"), (3, "direct"), (4, "broadcast"), (4, "direct")]
MUTATIONS = ["flip", "truncate", "extend", "replay", "other_session", "swap"]
SID = HEADER_LEN + 32  # round-1 broadcast: header | parameter digest | sid_i | commitments


def _other_session_transcript(t, n):
    out = run_collect(make_parties(t, n, seed=b"other", session=b"O" * 32))
    assert not out.aborts
    return out.transcript


def assert_consistent_results(parties, aborted):
    keys = {p.result.public_key for i, p in parties.items() if p.result is not None}
    assert len(keys) <= 1
    for i in aborted:
        assert parties[i].result is None
    for p in parties.values():
        if p.result is not None:
            p.result.validate()


def tamper_and_check(t, n, rnd, part, sender, receiver, mutation, pos, seed=b"t"):
    parties = make_parties(t, n, seed=seed)
    culprit = sender
    other = _other_session_transcript(t, n) if mutation == "other_session" else None
    prev: dict = {}

    def tamper(r, j, k, p, data):
        prev[(r, j, k, p)] = data
        if (r, j, k, p) != (rnd, sender, receiver, part):
            return data
        if mutation == "flip":
            return flip_bit(pos)(data)
        if mutation == "truncate":
            return data[: pos % len(data)]
        if mutation == "extend":
            return data + bytes([pos % 256]) * (1 + pos % 40)
        if mutation == "replay":  # the sender's message of the previous round, same part if any
            for p2 in (p, "broadcast", "direct"):
                if (r - 1, j, k, p2) in prev:
                    return prev[(r - 1, j, k, p2)]
            return data[::-1]
        if mutation == "other_session":
            return other[(r, j, k, p)]
        raise AssertionError(mutation)

    out = run_collect(parties, tamper)
    assert receiver in out.aborts, f"receiver {receiver} did not abort; aborts={out.aborts}"
    assert_blame(out.aborts[receiver], culprit)
    assert_never_blames_honest(out.aborts, culprit)
    assert_consistent_results(parties, out.aborts)


def assert_blame(err, culprit):
    """The receiver of a tampered message names its sender, except where the tampered field is
    the sender's echo of a third party's broadcast or its parameter digest: then it cannot tell
    whether the sender lies or someone else did (None)."""
    if err.party is None:
        assert "cannot tell which" in err.reason and f"party {culprit} " in err.reason, err
    else:
        assert err.party == culprit, err


def assert_never_blames_honest(aborts, culprit):
    """Every party other than the corrupted one names the corrupted one, or nobody."""
    for i, e in aborts.items():
        if i != culprit:
            assert e.party in (culprit, None), (i, e)


@settings(max_examples=scaled(30))
@given(
    n=st.integers(2, 3),
    part_index=st.integers(0, len(PARTS) - 1),
    mutation=st.sampled_from(["flip", "flip", "flip", "truncate", "extend", "replay", "other_session"]),
    pos=st.integers(0, 2**20),
    who=st.integers(0, 100),
)
def test_tampered_message_aborts_naming_sender(n, part_index, mutation, pos, who):
    rnd, part = PARTS[part_index]
    if mutation == "replay" and rnd == 1:
        mutation = "flip"
    sender = 1 + who % n
    receiver = 1 + (sender + who // n) % n
    if receiver == sender:
        receiver = 1 + sender % n
    tamper_and_check(2, n, rnd, part, sender, receiver, mutation, pos)


@pytest.mark.parametrize("rnd,part", PARTS)
@pytest.mark.parametrize("where", ["header", "first", "last"])
def test_every_part_checked_at_both_ends(rnd, part, where):
    # header byte 3 (kind), first body byte, last byte
    pos = {"header": 3 * 8, "first": HEADER_LEN * 8, "last": -1}[where]
    tamper_and_check(2, 3, rnd, part, 2, 3, "flip", pos if pos >= 0 else 10**9 - 1, seed=b"e")


def test_swapped_messages_blame_the_channel():
    parties = make_parties(2, 3)

    def tamper(r, j, k, p, data):
        return data

    # deliver party 1's round-2 direct message for 3 on party 2's channel
    outs = {i: p.start() for i, p in parties.items()}
    from crypto_core.local import route

    inboxes = route(outs)
    outs = {i: parties[i].receive(inboxes[i]) for i in parties}
    inboxes = route(outs)
    inboxes[3][2] = Delivery(inboxes[3][2].broadcast, inboxes[3][1].direct)
    with pytest.raises(ProtocolAbort) as e:
        parties[3].receive(inboxes[3])
    assert e.value.party == 2 and "sender" in str(e.value)


def test_missing_and_unknown_senders():
    parties = make_parties(2, 3)
    outs = {i: p.start() for i, p in parties.items()}
    inbox = {2: Delivery(outs[2].broadcast)}
    with pytest.raises(ProtocolAbort) as e:
        parties[1].receive(inbox)
    assert e.value.party == 3 and "no message" in e.value.reason
    parties = make_parties(2, 3)
    outs = {i: p.start() for i, p in parties.items()}
    inbox = {2: Delivery(outs[2].broadcast), 3: Delivery(outs[3].broadcast), 7: Delivery(outs[3].broadcast)}
    with pytest.raises(ProtocolAbort) as e:
        parties[1].receive(inbox)
    assert e.value.party == 7


# --- malicious parties -----------------------------------------------------------------------


def _run_with_bad_party(bad_index, build):
    """``build(party)`` mutates the bad party's state after round 1 is prepared."""
    parties = make_parties(3, 4)
    outs = {}
    for i, p in parties.items():
        outs[i] = p.start()
        if i == bad_index:
            outs[i] = build(p, outs[i]) or outs[i]
    return parties, outs


def _drive(parties, outs, bad=None):
    """Run to the first abort among honest parties; the malicious party's own errors are ignored."""
    from crypto_core.local import route

    aborts = {}
    while outs:
        inboxes = route(outs)
        nxt = {}
        for i, p in parties.items():
            try:
                o = p.receive(inboxes[i])
            except ProtocolAbort as e:
                aborts[i] = e
                continue
            except Exception:
                if i != bad:
                    raise
                continue
            if o is not None:
                nxt[i] = o
        if aborts:
            return aborts
        outs = nxt
    return aborts


def _recommit(p):
    """Re-make the bad party's round-1 commitment over its (modified) Feldman vector."""
    from crypto_core.codec import BROADCAST, Writer
    from crypto_core.commitment import commit
    from crypto_core.tags import Tag

    p._c_f, p._rho_f = commit(Tag.DKG_COMMIT_F, p.cfg.session + p._sid_i, p.cfg.index, p._f_bytes_any(p._F), p._rng)
    msg = Writer(p._header(1, BROADCAST, 0)).raw(p._config_digest()).raw(p._sid_i).raw(p._c_f).raw(p._c_cc).getvalue()
    p._r1_self = msg
    from crypto_core.session import RoundOutput

    return RoundOutput(1, broadcast=msg)


def _f_bytes_any(self, F):
    from crypto_core.transcript import u16

    return u16(self.cfg.threshold) + u16(self.cfg.parties) + b"".join(q.encode() for q in F)


DkgParty._f_bytes_any = _f_bytes_any  # test-only helper


@pytest.mark.parametrize("delta", [+1, -1])
def test_threshold_raising_feldman_vector_length(delta):
    """A Feldman vector of t+1 (or t-1) entries is refused, naming the sender (ToB-SILA-1/2)."""

    def build(p, out):
        if delta > 0:
            p._coeffs = p._coeffs + [12345]
            p._F = p._F + [Point.base_mul(12345)]
        else:
            p._coeffs = p._coeffs[:-1]
            p._F = p._F[:-1]
        return _recommit(p)

    parties, outs = _run_with_bad_party(2, build)
    aborts = _drive(parties, outs, bad=2)
    honest = [i for i in parties if i != 2]
    assert all(aborts[i].party == 2 for i in honest), aborts


def test_identity_coefficient_refused():
    def build(p, out):
        p._coeffs[1] = 0
        from crypto_core.group import INFINITY

        p._F[1] = INFINITY
        orig_prove = schnorr.prove

        def prove(secret, statement, ctx, rng):  # cannot prove knowledge of 0; send junk
            return orig_prove(1, G, ctx, rng) if secret == 0 else orig_prove(secret, statement, ctx, rng)

        schnorr_prove_patch.append(prove)
        return _recommit(p)

    schnorr_prove_patch: list = []
    parties, outs = _run_with_bad_party(1, build)
    import crypto_core.dkg as dkg_mod

    real = dkg_mod.schnorr.prove
    dkg_mod.schnorr.prove = schnorr_prove_patch[0]
    try:
        aborts = _drive(parties, outs)
    finally:
        dkg_mod.schnorr.prove = real
    assert {i: a.party for i, a in aborts.items()} == {2: 1, 3: 1, 4: 1}
    assert all("infinity" in a.reason for a in aborts.values())


def test_rogue_key_without_proof_refused():
    """A party that sets its constant term to a point it does not know the log of is caught."""
    target = Point.base_mul(777)

    def build(p, out):
        p._F[0] = target  # claims a_0 with [a_0] = target, but proves with its real a_0
        return _recommit(p)

    parties, outs = _run_with_bad_party(3, build)
    aborts = _drive(parties, outs)
    assert all(aborts[i].party == 3 and "proof of knowledge of coefficient 0" in aborts[i].reason for i in (1, 2, 4))


@pytest.mark.parametrize("encoding", ["infinity", "off_curve", "uncompressed_prefix"])
def test_invalid_points_in_feldman_vector(encoding):
    bad = {
        "infinity": bytes(33),
        "off_curve": b"\x02" + (5).to_bytes(32, "big"),
        "uncompressed_prefix": b"\x04" + G.encode()[1:],
    }[encoding]
    off = HEADER_LEN + 32 * 3  # echo of 3 parties, then F[0]

    def tamper(r, j, k, p, data):
        if (r, j, p) == (2, 1, "broadcast"):
            return data[:off] + bad + data[off + 33:]
        return data

    out = run_collect(make_parties(2, 3), tamper)
    assert {i: a.party for i, a in out.aborts.items()} == {2: 1, 3: 1}


def test_duplicate_session_contribution():
    parties = make_parties(2, 3)
    outs = {i: p.start() for i, p in parties.items()}
    # party 3 copies party 2's contribution into its own round-1 message
    b1, b2, b3 = outs[1].broadcast, outs[2].broadcast, outs[3].broadcast
    forged = b3[:SID] + b2[SID:SID + 32] + b3[SID + 32:]
    # party 1 sees two peers with one contribution: it cannot tell which copied
    with pytest.raises(ProtocolAbort) as e:
        parties[1].receive({2: Delivery(b2), 3: Delivery(forged)})
    assert e.value.party is None and "cannot tell" in e.value.reason
    # party 2 sees its own fresh contribution in 3's message: 3 copied it
    with pytest.raises(ProtocolAbort) as e:
        parties[2].receive({1: Delivery(b1), 3: Delivery(forged)})
    assert e.value.party == 3 and "repeats ours" in e.value.reason


def test_issue8_copied_contribution_never_blames_the_victim():
    """Issue 8 regression: in a 2-of-3 DKG, corrupted node 1 copies node 2's round-1 session
    contribution into its own (validly sent) message. Node 2 names node 1; node 3, which cannot
    tell who copied whom, names nobody (it used to name node 2, the honest victim)."""
    from crypto_core.local import route

    parties = make_parties(2, 3, seed=b"issue8")
    outs = {i: p.start() for i, p in parties.items()}
    contribution_2 = outs[2].broadcast[SID:SID + 32]

    def tamper(r, j, k, p, data):
        if (r, j, p) == (1, 1, "broadcast"):  # node 1's own message, to everyone
            return data[:SID] + contribution_2 + data[SID + 32:]
        return data

    inboxes = route(outs, tamper)
    aborts = {}
    for i in (2, 3):
        with pytest.raises(ProtocolAbort) as e:
            parties[i].receive(inboxes[i])
        aborts[i] = e.value
    assert aborts[2].party == 1, aborts[2]
    assert aborts[3].party is None, aborts[3]
    assert all(parties[i].result is None for i in (2, 3))


def test_dead_after_abort():
    parties = make_parties(2, 2)
    parties[1].start()
    with pytest.raises(ProtocolAbort):
        parties[1].receive({2: Delivery(b"junk")})
    from crypto_core.errors import UsageError

    with pytest.raises(UsageError):
        parties[1].receive({2: Delivery(b"junk")})
