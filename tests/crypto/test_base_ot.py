import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import ProtocolAbort
from crypto_core.group import INFINITY, G
from crypto_core.hazmat import base_ot
from crypto_core.rng import DeterministicRng

from ..conftest import scaled


@settings(max_examples=scaled(5))
@given(st.binary(min_size=1, max_size=8))
def test_receiver_key_matches_chosen_branch_only(seed):
    rng = DeterministicRng(seed)
    sid = b"s" * 32
    state, msg = base_ot.receiver_message(sid, rng, count=32)
    keys, reply = base_ot.sender_reply(sid, msg, rng, peer=2, count=32)
    got = base_ot.receiver_finish(sid, state, reply, peer=1)
    for k, c in enumerate(state.choices):
        assert got[k] == keys[k][c]
        assert got[k] != keys[k][1 - c]


def test_other_session_gives_unrelated_keys():
    rng = DeterministicRng(b"x")
    state, msg = base_ot.receiver_message(b"a" * 32, rng, count=8)
    keys, reply = base_ot.sender_reply(b"b" * 32, msg, rng, peer=2, count=8)
    got = base_ot.receiver_finish(b"a" * 32, state, reply, peer=1)
    assert all(g not in ks for g, ks in zip(got, keys, strict=True))


def test_rejects_bad_sizes_and_identity():
    rng = DeterministicRng(b"y")
    state, msg = base_ot.receiver_message(b"a" * 32, rng, count=4)
    with pytest.raises(ProtocolAbort) as e:
        base_ot.sender_reply(b"a" * 32, msg[:-1], rng, peer=2, count=4)
    assert e.value.party == 2
    with pytest.raises(ProtocolAbort):
        base_ot.sender_reply(b"a" * 32, [INFINITY] + msg[1:], rng, peer=2, count=4)
    with pytest.raises(ProtocolAbort):
        base_ot.receiver_finish(b"a" * 32, state, [G] * 3, peer=1)
    with pytest.raises(ProtocolAbort):
        base_ot.receiver_finish(b"a" * 32, state, [INFINITY] * 4, peer=1)


def test_receiver_points_look_alike_for_both_choices():
    """The compressed-prefix bit of r_0 is about 50/50 whatever the choice (no encoding tell)."""
    rng = DeterministicRng(b"dist")
    state, msg = base_ot.receiver_message(b"d" * 32, rng, count=256)
    for c in (0, 1):
        prefixes = [msg[2 * k].encode()[0] for k, ck in enumerate(state.choices) if ck == c]
        frac = sum(p == 3 for p in prefixes) / len(prefixes)
        assert 0.35 < frac < 0.65


def test_bit_packing_roundtrip():
    bits = [1, 0, 1, 1, 0, 0, 0, 1, 1]
    assert base_ot.unpack_bits(base_ot.pack_bits(bits), len(bits)) == bits
