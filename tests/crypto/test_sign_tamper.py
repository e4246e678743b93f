"""Tampering with any signing message: the receiver aborts naming the sender (with a ban where
DKLs23 requires one), or, for the values DKLs23 cannot attribute (psi, u_i, w_i), the combiner
refuses the signature. Never a wrong signature, never an unhandled exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.codec import HEADER_LEN
from crypto_core.combiner import SignatureShare, combine
from crypto_core.errors import ProtocolAbort
from crypto_core.rng import DeterministicRng
from crypto_core.sign import PresignParty, SignConfig

from ..conftest import scaled
from ..harness import flip_bit, run_collect
from .dkg_util import keygen

SESSION = b"T" * 32
# round-3 direct: header | sigid | gamma_r | gamma_k | psi | rvole msg2
PSI = (HEADER_LEN + 32 + 33 + 33, HEADER_LEN + 32 + 33 + 33 + 32)
R2_MSG1 = HEADER_LEN + 32 * 3 + 32  # after echo (3 signers) and sigid, for t = 3
R3_MSG2 = PSI[1]
# share: header | sigid | R | digest | u | w
SHARE_UW = (HEADER_LEN + 32 + 33 + 32, HEADER_LEN + 32 + 33 + 32 + 64)
PARTS = [(1, "broadcast"), (2, "direct"), (3, "broadcast"), (3, "direct"), (4, "broadcast")]


def run_signing(keys, signers, digest, tamper):
    ps = {i: PresignParty(keys[i], SignConfig(SESSION, signers), DeterministicRng(b"x" + bytes([i]))) for i in signers}
    out = run_collect(ps, tamper)
    if out.aborts:
        return out.aborts, None
    shares = {}
    for i, p in ps.items():
        p.result.mark_used()
        share = p.result.signature_share(digest, key_id=keys[i].key_id, epoch=keys[i].epoch)
        raw = share.to_bytes(SESSION)
        for k in signers:  # the share is broadcast; the tamper hook sees it on the way to k
            if k != i:
                raw_k = tamper(4, i, k, "broadcast", raw)
                if raw_k != raw:
                    try:
                        share = SignatureShare.from_bytes(raw_k, SESSION, i)
                    except ProtocolAbort as e:
                        return {k: e}, None
        shares[i] = share
    try:
        return {}, combine(shares, digest, signers=signers, public_key=keys[signers[0]].public_key)
    except ProtocolAbort as e:
        return {0: e}, None


def check(t, n, signers, rnd, part, sender, receiver, mutate):
    keys = keygen(t, n)
    digest = bytes(range(32))

    def tamper(r, j, k, p, data):
        if (r, j, k, p) == (rnd, sender, receiver, part):
            return mutate(data)
        return data

    aborts, sig = run_signing(keys, signers, digest, tamper)
    assert sig is None, "a tampered run produced a signature"
    for i, e in aborts.items():  # nobody but the tampering sender ever names an honest party
        assert i == sender or e.party in (sender, None), aborts
    if receiver in aborts:
        err = aborts[receiver]
        if err.party is None:  # the sender's echo of a third party's message, or its sigid
            assert "cannot tell which" in err.reason and f"party {sender} " in err.reason, err
        else:
            assert err.party == sender, aborts
        return err
    # only the combiner can notice: it names the sender when it can tell, never signs
    assert 0 in aborts and aborts[0].party in (None, sender), aborts
    return aborts[0]


@settings(max_examples=scaled(30))
@given(part_index=st.integers(0, len(PARTS) - 1), pos=st.integers(0, 2**22), who=st.integers(0, 5))
def test_bit_flip_anywhere(part_index, pos, who):
    signers = (1, 2, 3)
    rnd, part = PARTS[part_index]
    sender = signers[who % 3]
    receiver = signers[(who // 3 + 1 + who) % 3]
    if receiver == sender:
        receiver = signers[(signers.index(sender) + 1) % 3]
    err = check(3, 4, signers, rnd, part, sender, receiver, flip_bit(pos))
    if err.party is None:  # unattributable: psi (round 3), the final shares (round 4), or in
        assert rnd in (3, 4) or "cannot tell which" in err.reason  # round 2 an echo of a third party or the sigid


@pytest.mark.parametrize("mutation", ["truncate", "extend", "other_session"])
@pytest.mark.parametrize("rnd,part", PARTS)
def test_truncate_extend_replay(rnd, part, mutation):
    def mutate(data):
        if mutation == "truncate":
            return data[:-1]
        if mutation == "extend":
            return data + b"\x00"
        return data[:4] + b"Z" * 32 + data[36:]

    err = check(3, 4, (1, 2, 4), rnd, part, 2, 4, mutate)
    assert err.party == 2


def test_broken_ot_extension_check_bans_bob():
    """A flipped bit in Bob's OT-extension message is caught by Alice's KOS check: ban."""
    err = check(3, 4, (1, 2, 3), 2, "direct", 3, 1, flip_bit(8 * R2_MSG1 + 5))
    assert err.party == 3 and err.ban and "check" in err.reason.lower()


def test_broken_multiplication_check_bans_alice():
    """A perturbed a~ entry in Alice's RVOLE reply is caught by Bob's mu check (if that
    column's choice bit is 1) or by the Gamma checks: either way a ban naming Alice."""
    seen_ban = 0
    for col in range(6):
        err = check(3, 4, (1, 2, 3), 3, "direct", 1, 2, flip_bit(8 * (R3_MSG2 + col * 96) + 3))
        assert err.party == 1 and err.ban
        seen_ban += 1
    assert seen_ban == 6


def test_psi_and_final_shares_are_caught_by_the_combiner():
    err = check(2, 3, (1, 2), 3, "direct", 1, 2, flip_bit(8 * PSI[0] + 1))
    assert err.party is None and "does not verify" in err.reason
    for off in (SHARE_UW[0], SHARE_UW[0] + 32):  # inside u, inside w
        err = check(2, 3, (1, 2), 4, "broadcast", 2, 1, flip_bit(8 * off + 9))
        assert err.party is None


def test_share_for_other_digest_or_presignature_names_signer():
    keys = keygen(2, 3)
    ps = {i: PresignParty(keys[i], SignConfig(SESSION, (1, 3))) for i in (1, 3)}
    run_collect(ps)
    d1, d2 = bytes(32), bytes([1]) * 32
    shares = {}
    for i, p in ps.items():
        p.result.mark_used()
        shares[i] = p.result.signature_share(d1 if i == 1 else d2, key_id=keys[i].key_id, epoch=keys[i].epoch)
    with pytest.raises(ProtocolAbort) as e:
        combine(shares, d1, signers=(1, 3), public_key=keys[1].public_key)
    assert e.value.party == 3 and "digest" in e.value.reason
    with pytest.raises(ProtocolAbort) as e:
        combine({1: shares[1]}, d1, signers=(1, 3), public_key=keys[1].public_key)
    assert e.value.party == 3
