import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.group import Q
from crypto_core.hazmat import base_ot, rvole
from crypto_core.hazmat.pairwise import OteReceiverSeeds, OteSenderSeeds
from crypto_core.rng import DeterministicRng
from crypto_core.tags import Tag
from crypto_core.transcript import hash_to_scalar

from ..conftest import scaled

BOB, ALICE = 3, 5  # party indices: Alice's errors name BOB, Bob's name ALICE
XI, W = rvole.XI, 3
ETA_OFF = rvole.A_TILDE_LEN
MU_OFF = rvole.A_TILDE_LEN + 32

scalars = st.one_of(st.sampled_from([0, 1, Q - 1]), st.integers(0, Q - 1))


@pytest.fixture(scope="module")
def seeds():
    rng = DeterministicRng(b"rvole-test-seeds")
    setup_sid = b"r" * 32
    state, msg = base_ot.receiver_message(setup_sid, rng)
    keys, reply = base_ot.sender_reply(setup_sid, msg, rng, peer=ALICE)
    got = base_ot.receiver_finish(setup_sid, state, reply, peer=BOB)
    recv = OteReceiverSeeds(tuple(k[0] for k in keys), tuple(k[1] for k in keys))
    send = OteSenderSeeds(base_ot.pack_bits(state.choices), tuple(got))
    return recv, send


class _Counter:
    n = 0

    @classmethod
    def sid(cls) -> bytes:
        cls.n += 1
        return cls.n.to_bytes(32, "big")


def _start(recv, seed=b"bob", sid=None):
    sid = sid or _Counter.sid()
    bob, msg1 = rvole.RvoleBob.start(recv, sid, DeterministicRng(seed + sid), peer=ALICE)
    return sid, bob, msg1


class ZeroFirstRng:
    """Returns zero bytes for the first request (Bob's beta), then a deterministic stream."""

    def __init__(self) -> None:
        self._first = True
        self._rest = DeterministicRng(b"zero-first")

    def bytes(self, n: int) -> bytes:
        if self._first:
            self._first = False
            return bytes(n)
        return self._rest.bytes(n)


def test_message_sizes():
    assert rvole.MSG1_LEN == rvole.msg1_len(128) == 128 * 80 + 16 + 128 * 16
    assert rvole.msg1_len(256) == 256 * 80 + 16 + 256 * 16
    assert rvole.MSG2_LEN == XI * 3 * 32 + 32 + 64


@settings(max_examples=scaled(12), deadline=None)
@given(scalars, scalars, st.binary(min_size=1, max_size=8))
def test_correctness(seeds, a0, a1, seed):
    recv, send = seeds
    sid, bob, msg1 = _start(recv, seed)
    assert len(msg1) == rvole.MSG1_LEN
    (c0, c1), msg2 = rvole.RvoleAlice.respond(send, sid, (a0, a1), msg1, DeterministicRng(seed), peer=BOB)
    assert len(msg2) == rvole.MSG2_LEN
    d0, d1 = bob.finish(msg2)
    assert all(0 <= v < Q for v in (c0, c1, d0, d1, bob.chi))
    assert (c0 + d0) % Q == a0 * bob.chi % Q
    assert (c1 + d1) % Q == a1 * bob.chi % Q


def test_chi_is_gadget_inner_product(seeds):
    recv, _ = seeds
    sid, bob, _ = _start(recv)
    g = rvole.gadget(sid)
    assert len(g) == XI and all(0 <= v < Q for v in g)
    assert bob.chi == sum(b * gj for b, gj in zip(bob._beta, g, strict=True)) % Q
    # the gadget is bound to the session id
    assert g != rvole.gadget(bytes(32))


def test_chi_low_bit_roughly_uniform(seeds):
    recv, _ = seeds
    ones = sum(_start(recv, b"chi-dist")[1].chi & 1 for _ in range(48))
    assert 8 <= ones <= 40


def test_thetas_are_hash_to_scalar_shaped():
    th0, th1 = rvole.thetas(b"s" * 32, b"x" * 64)
    assert 0 <= th0 < Q and 0 <= th1 < Q and th0 != th1
    assert (th0, th1) != rvole.thetas(b"t" * 32, b"x" * 64)
    assert hash_to_scalar(Tag.RVOLE_THETA, b"s" * 32, b"x" * 64) == th0  # first 64 bytes of the XOF


def test_second_finish_is_refused(seeds):
    recv, send = seeds
    sid, bob, msg1 = _start(recv)
    _, msg2 = rvole.RvoleAlice.respond(send, sid, (1, 2), msg1, DeterministicRng(b"a"), peer=BOB)
    bob.finish(msg2)
    with pytest.raises(UsageError):
        bob.finish(msg2)


def test_state_consumed_even_after_failure(seeds):
    recv, send = seeds
    sid, bob, msg1 = _start(recv)
    _, msg2 = rvole.RvoleAlice.respond(send, sid, (1, 2), msg1, DeterministicRng(b"a"), peer=BOB)
    with pytest.raises(ProtocolAbort):
        bob.finish(msg2[:-1])
    with pytest.raises(UsageError):
        bob.finish(msg2)


def _tampered_run(seeds, j, i, e, rng=None):
    """A cheating Alice adds e to a~[j][i] *before* deriving theta, eta~ and mu from it."""
    recv, send = seeds
    sid = _Counter.sid()
    bob, msg1 = rvole.RvoleBob.start(recv, sid, rng or DeterministicRng(sid), peer=ALICE)

    def hook(a_tilde):
        a_tilde[W * j + i] = (a_tilde[W * j + i] + e) % Q

    _, msg2 = rvole._respond(send, sid, (11, 22), msg1, DeterministicRng(b"alice"), BOB, hook)
    return bob, msg2


@settings(max_examples=scaled(20), deadline=None)
@given(st.integers(0, XI - 1), st.integers(0, 2), st.integers(1, Q - 1))
def test_selective_failure_iff_beta_j(seeds, j, i, e):
    """Adding e != 0 to a~[j][i] fails the mu check exactly when beta_j = 1."""
    bob, msg2 = _tampered_run(seeds, j, i, e)
    beta_j = bob._beta[j]
    if beta_j:
        with pytest.raises(ProtocolAbort) as exc:
            bob.finish(msg2)
        assert exc.value.party == ALICE and exc.value.ban
    else:
        bob.finish(msg2)  # undetectable, and harmless: Bob's dbar[j] does not use a~[j]


def test_selective_failure_both_cases_seen(seeds):
    seen = set()
    for j in range(8):
        bob, msg2 = _tampered_run(seeds, j, j % 3, 12345)
        try:
            bob.finish(msg2)
            seen.add(0)
            assert bob._beta == []  # state wiped
        except ProtocolAbort as exc:
            assert exc.ban and exc.party == ALICE
            seen.add(1)
    assert seen == {0, 1}


def test_all_zero_beta_cannot_see_tampering(seeds):
    """With beta = 0 neither a~ nor eta~ reaches Bob's check (the 'unless' of notes section 12)."""
    recv, send = seeds
    sid = _Counter.sid()
    bob, msg1 = rvole.RvoleBob.start(recv, sid, ZeroFirstRng(), peer=ALICE)
    assert bob.chi == 0 and not any(bob._beta)
    c, msg2 = rvole.RvoleAlice.respond(send, sid, (5, 6), msg1, DeterministicRng(b"z"), peer=BOB)
    eta = int.from_bytes(msg2[ETA_OFF:MU_OFF], "big")
    bad = msg2[:ETA_OFF] + ((eta + 1) % Q).to_bytes(32, "big") + msg2[MU_OFF:]
    d = bob.finish(bad)
    assert all((ci + di) % Q == 0 for ci, di in zip(c, d, strict=True))
    bob2, msg2_tampered = _tampered_run(seeds, 17, 1, 999, rng=ZeroFirstRng())
    bob2.finish(msg2_tampered)


@settings(max_examples=scaled(10), deadline=None)
@given(st.integers(1, Q - 1))
def test_eta_tilde_tamper_fails(seeds, e):
    recv, send = seeds
    sid, bob, msg1 = _start(recv)
    assert any(bob._beta)
    _, msg2 = rvole.RvoleAlice.respond(send, sid, (5, 6), msg1, DeterministicRng(b"z"), peer=BOB)
    eta = int.from_bytes(msg2[ETA_OFF:MU_OFF], "big")
    bad = msg2[:ETA_OFF] + ((eta + e) % Q).to_bytes(32, "big") + msg2[MU_OFF:]
    with pytest.raises(ProtocolAbort) as exc:
        bob.finish(bad)
    assert exc.value.party == ALICE and exc.value.ban


@settings(max_examples=scaled(10), deadline=None)
@given(st.integers(0, 63), st.integers(1, 255))
def test_mu_tamper_always_fails(seeds, pos, x):
    recv, send = seeds
    sid, bob, msg1 = _start(recv)
    _, msg2 = rvole.RvoleAlice.respond(send, sid, (5, 6), msg1, DeterministicRng(b"m"), peer=BOB)
    bad = bytearray(msg2)
    bad[MU_OFF + pos] ^= x
    with pytest.raises(ProtocolAbort) as exc:
        bob.finish(bytes(bad))
    assert exc.value.party == ALICE and exc.value.ban


@pytest.mark.parametrize("cut", [-1, -64, 1, 32])
def test_wrong_sizes_msg2(seeds, cut):
    recv, send = seeds
    sid, bob, msg1 = _start(recv)
    _, msg2 = rvole.RvoleAlice.respond(send, sid, (5, 6), msg1, DeterministicRng(b"m"), peer=BOB)
    bad = msg2[:cut] if cut < 0 else msg2 + bytes(cut)
    with pytest.raises(ProtocolAbort) as exc:
        bob.finish(bad)
    assert exc.value.party == ALICE and not exc.value.ban


@pytest.mark.parametrize("cut", [-1, -4096, 1, 80])
def test_wrong_sizes_msg1(seeds, cut):
    recv, send = seeds
    sid, _, msg1 = _start(recv)
    bad = msg1[:cut] if cut < 0 else msg1 + bytes(cut)
    with pytest.raises(ProtocolAbort) as exc:
        rvole.RvoleAlice.respond(send, sid, (5, 6), bad, DeterministicRng(b"m"), peer=BOB)
    assert exc.value.party == BOB and not exc.value.ban


@pytest.mark.parametrize(
    "index,value,field",
    [(0, Q, "a~[0][0]"), (XI * W - 1, 2**256 - 1, f"a~[{XI - 1}][2]"), (7, Q + 5, "a~[2][1]"), (XI * W, Q, "eta~")],
)
def test_non_canonical_scalars_rejected_without_ban(seeds, index, value, field):
    recv, send = seeds
    sid, bob, msg1 = _start(recv)
    _, msg2 = rvole.RvoleAlice.respond(send, sid, (5, 6), msg1, DeterministicRng(b"m"), peer=BOB)
    bad = msg2[: 32 * index] + value.to_bytes(32, "big") + msg2[32 * index + 32:]
    with pytest.raises(ProtocolAbort) as exc:
        bob.finish(bad)
    assert exc.value.party == ALICE and not exc.value.ban
    assert field in exc.value.reason and "non-canonical" in exc.value.reason


def test_local_misuse(seeds):
    recv, send = seeds
    rng = DeterministicRng(b"u")
    with pytest.raises(UsageError):
        rvole.RvoleBob.start(recv, b"short", rng, peer=ALICE)
    sid, _, msg1 = _start(recv)
    for a in [(Q, 0), (0, -1), (1,)]:
        with pytest.raises(UsageError):
            rvole.RvoleAlice.respond(send, sid, a, msg1, rng, peer=BOB)


@settings(max_examples=scaled(60), deadline=None)
@given(st.integers(0, rvole.MSG1_LEN - 1), st.integers(1, 255))
def test_msg1_single_byte_mutation(seeds, pos, x):
    """Any mutated byte of U, x~ or t~ is caught by Alice's OT-extension check (with a ban)."""
    recv, send = seeds
    sid, _, msg1 = _start(recv, b"m1")
    bad = bytearray(msg1)
    bad[pos] ^= x
    with pytest.raises(ProtocolAbort) as exc:
        rvole.RvoleAlice.respond(send, sid, (5, 6), bytes(bad), DeterministicRng(b"m"), peer=BOB)
    assert exc.value.party == BOB and exc.value.ban


@settings(max_examples=scaled(60), deadline=None)
@given(st.integers(0, rvole.MSG2_LEN - 1), st.integers(1, 255))
def test_msg2_single_byte_mutation(seeds, pos, x):
    """Any mutated byte of a~, eta~ or mu: Bob aborts naming Alice, never accepts silently.

    A mutation of a~ changes theta, so mu fails whatever beta is (w.h.p.); a mutation that makes
    a scalar non-canonical is a plain (no-ban) abort.
    """
    recv, send = seeds
    sid, bob, msg1 = _start(recv, b"m2")
    _, msg2 = rvole.RvoleAlice.respond(send, sid, (5, 6), msg1, DeterministicRng(b"m"), peer=BOB)
    bad = bytearray(msg2)
    bad[pos] ^= x
    with pytest.raises(ProtocolAbort) as exc:
        bob.finish(bytes(bad))
    assert exc.value.party == ALICE
    if pos < MU_OFF:
        idx = pos // 32
        canonical = int.from_bytes(bad[32 * idx: 32 * idx + 32], "big") < Q
        assert exc.value.ban == canonical
    else:
        assert exc.value.ban
