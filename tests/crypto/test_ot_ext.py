import hashlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.group import Q
from crypto_core.hazmat import base_ot, ot_ext
from crypto_core.hazmat.gf128 import Folder
from crypto_core.hazmat.pairwise import OteReceiverSeeds, OteSenderSeeds
from crypto_core.params import LAMBDA_C
from crypto_core.rng import DeterministicRng
from crypto_core.tags import Tag
from crypto_core.transcript import frame, u32

from ..conftest import scaled

LAY = ot_ext.layout(LAMBDA_C)

PEER = 7
SID = bytes(range(32))


@pytest.fixture(scope="module")
def seeds():
    """One real base-OT run (extension receiver = base-OT sender), as the DKG would do."""
    rng = DeterministicRng(b"ot-ext-test-seeds")
    setup_sid = b"o" * 32
    state, msg = base_ot.receiver_message(setup_sid, rng)
    keys, reply = base_ot.sender_reply(setup_sid, msg, rng, peer=1)
    got = base_ot.receiver_finish(setup_sid, state, reply, peer=2)
    recv = OteReceiverSeeds(tuple(k[0] for k in keys), tuple(k[1] for k in keys))
    send = OteSenderSeeds(base_ot.pack_bits(state.choices), tuple(got))
    return recv, send


@pytest.fixture(scope="module")
def run(seeds):
    recv, send = seeds
    rng = DeterministicRng(b"ot-ext-run")
    beta = rng.bytes(ot_ext.CHOICE_LEN)
    out = ot_ext.receiver_extend(recv, SID, beta, rng)
    q_cols = ot_ext.sender_extend(send, SID, out.msg, peer=PEER)
    return beta, out, q_cols


def test_sizes():
    assert ot_ext.XI == 512 and ot_ext.XI_EXT == 640
    for rows in (128, 256):
        lay = ot_ext.layout(rows)
        assert lay.msg_len == rows * 80 + 16 + rows * 16 and lay.col_len == rows // 8
    with pytest.raises(UsageError):
        ot_ext.layout(64)


@pytest.mark.parametrize("rows", [128, 256])
def test_correlation_both_security_levels(rows):
    """Q^(j) == T^(j) XOR beta_j * Delta at either lambda_c; a flipped U bit fails the check."""
    rng = DeterministicRng(b"rows" + bytes([rows // 8]))
    sid0 = b"r" * 32
    state, msg = base_ot.receiver_message(sid0, rng, count=rows)
    keys, reply = base_ot.sender_reply(sid0, msg, rng, peer=1, count=rows)
    got = base_ot.receiver_finish(sid0, state, reply, peer=2)
    recv = OteReceiverSeeds(tuple(k[0] for k in keys), tuple(k[1] for k in keys))
    send = OteSenderSeeds(base_ot.pack_bits(state.choices), tuple(got))
    beta = rng.bytes(ot_ext.CHOICE_LEN)
    out = ot_ext.receiver_extend(recv, SID, beta, rng)
    q_cols = ot_ext.sender_extend(send, SID, out.msg, peer=PEER)
    delta = np.frombuffer(send.delta, dtype=np.uint8)
    for j, b in enumerate(base_ot.unpack_bits(beta, ot_ext.XI)):
        assert (q_cols[j] == (out.t_cols[j] ^ delta if b else out.t_cols[j])).all()
    bad = bytearray(out.msg)
    bad[7] ^= 1
    with pytest.raises(ProtocolAbort) as e:
        ot_ext.sender_extend(send, SID, bytes(bad), peer=PEER)
    assert e.value.ban and e.value.party == PEER


def test_correlation(seeds, run):
    """Q^(j) == T^(j) XOR beta_j * Delta for every j."""
    _, send = seeds
    beta, out, q_cols = run
    bits = base_ot.unpack_bits(beta, ot_ext.XI)
    delta = np.frombuffer(send.delta, dtype=np.uint8)
    assert q_cols.shape == out.t_cols.shape == (ot_ext.XI, LAY.col_len)
    for j, b in enumerate(bits):
        want = out.t_cols[j] ^ delta if b else out.t_cols[j]
        assert (q_cols[j] == want).all(), j


def test_rows_match_notes_formulas(seeds, run):
    """White-box: U_k = T_k ^ PRG(K_{k,1}) ^ x and the check values are fold() of the rows."""
    recv, _ = seeds
    beta, out, _ = run

    def prg(k: int, seed: bytes) -> bytes:
        return hashlib.shake_256(frame((Tag.OTE_PRG.bytes, SID, u32(k), seed))).digest(80)

    u = out.msg[: LAY.u_len]
    x_tilde = out.msg[LAY.u_len: LAY.u_len + 16]
    t_tilde = out.msg[LAY.u_len + 16:]
    folder = Folder(ot_ext.challenges(SID, u))
    x = None
    for k in (0, 1, LAY.rows - 1):
        t_k, v_k = prg(k, recv.seeds0[k]), prg(k, recv.seeds1[k])
        u_k = u[80 * k: 80 * k + 80]
        x_k = bytes(a ^ b ^ c for a, b, c in zip(u_k, t_k, v_k, strict=True))
        assert x_k[:64] == beta
        x = x_k if x is None else x
        assert x_k == x  # the same x in every row
        assert t_tilde[16 * k: 16 * k + 16] == folder.fold_one(t_k)
    assert x is not None and x_tilde == folder.fold_one(x)


def test_pads_match_chosen_branch_only(seeds, run):
    _, send = seeds
    beta, out, q_cols = run
    d0, d1 = ot_ext.sender_digests(send, SID, q_cols)
    p0, p1 = ot_ext.pads(d0), ot_ext.pads(d1)
    got = ot_ext.pads(ot_ext.rot_digests(SID, out.t_cols))
    bits = base_ot.unpack_bits(beta, ot_ext.XI)
    assert 0 < sum(bits) < ot_ext.XI
    for j, b in enumerate(bits):
        for w in range(ot_ext.WIDTH):
            i = j * ot_ext.WIDTH + w
            assert 0 <= got[i] < Q
            assert got[i] == (p1 if b else p0)[i]
            assert got[i] != (p0 if b else p1)[i]
    # pad_ints are congruent to the reduced pads
    raw = ot_ext.pad_ints(d0)
    assert all(r % Q == p for r, p in zip(raw, p0, strict=True))


def test_pad_hash_framing(run):
    """Pad (j, w) = slot w of SHAKE-128(frame(OTE_ROT, sid, u32(j), column)), 32 bytes, mod q."""
    _, out, _ = run
    got = ot_ext.pads(ot_ext.rot_digests(SID, out.t_cols))
    for j in (0, 1, 300, 511):
        h = hashlib.shake_128(frame((Tag.OTE_ROT.bytes, SID, u32(j), out.t_cols[j].tobytes()))).digest(96)
        for w in range(3):
            assert got[3 * j + w] == int.from_bytes(h[32 * w: 32 * w + 32], "big") % Q


def test_pads_depend_on_sid(run):
    _, out, _ = run
    other = bytes(32)
    assert ot_ext.rot_digests(SID, out.t_cols) != ot_ext.rot_digests(other, out.t_cols)


@settings(max_examples=scaled(150), deadline=None)
@given(st.integers(0, LAY.msg_len * 8 - 1))
def test_any_single_bit_flip_is_caught_and_banned(seeds, run, pos):
    """Any bit of any U row, of x~ or of any t~_k: the sender's check fails, with a ban."""
    _, send = seeds
    _, out, _ = run
    msg = bytearray(out.msg)
    msg[pos >> 3] ^= 1 << (pos & 7)
    with pytest.raises(ProtocolAbort) as e:
        ot_ext.sender_extend(send, SID, bytes(msg), peer=PEER)
    assert e.value.party == PEER and e.value.ban


@pytest.mark.parametrize(
    "pos",
    [0, LAY.u_len - 1, LAY.u_len, LAY.u_len + 15, LAY.u_len + 16, LAY.msg_len - 1,
     80 * 5 + 64],  # first/last byte of U, x~, t~; a padding-column byte of row 5
)
def test_each_region_is_checked(seeds, run, pos):
    _, send = seeds
    _, out, _ = run
    for bit in (0, 7):
        msg = bytearray(out.msg)
        msg[pos] ^= 1 << bit
        with pytest.raises(ProtocolAbort) as e:
            ot_ext.sender_extend(send, SID, bytes(msg), peer=PEER)
        assert e.value.party == PEER and e.value.ban


def test_honest_message_passes_repeatedly(seeds, run):
    _, send = seeds
    _, out, q_cols = run
    again = ot_ext.sender_extend(send, SID, out.msg, peer=PEER)
    assert (again == q_cols).all()


def test_wrong_session_fails_check(seeds, run):
    _, send = seeds
    _, out, _ = run
    with pytest.raises(ProtocolAbort) as e:
        ot_ext.sender_extend(send, bytes(32), out.msg, peer=PEER)
    assert e.value.ban


@pytest.mark.parametrize("delta", [-1, 1, -16, 16, -LAY.msg_len])
def test_wrong_sizes_rejected_without_ban(seeds, run, delta):
    _, send = seeds
    _, out, _ = run
    msg = out.msg[:delta] if delta < 0 else out.msg + bytes(delta)
    with pytest.raises(ProtocolAbort) as e:
        ot_ext.sender_extend(send, SID, msg, peer=PEER)
    assert e.value.party == PEER and not e.value.ban


def test_local_misuse(seeds):
    recv, send = seeds
    rng = DeterministicRng(b"misuse")
    with pytest.raises(UsageError):
        ot_ext.receiver_extend(recv, SID, bytes(63), rng)
    with pytest.raises(UsageError):
        ot_ext.receiver_extend(recv, SID[:31], bytes(64), rng)
    with pytest.raises(UsageError):
        ot_ext.sender_extend(send, SID + b"x", bytes(LAY.msg_len), peer=PEER)


def test_padding_columns_and_sid_reuse(seeds):
    """Same sid and choices twice: the real columns of U repeat exactly (why a sid must never be
    reused: the PRG is keyed by sid only), while the fresh padding bits change x~."""
    recv, _ = seeds
    beta = bytes(range(64))
    a = ot_ext.receiver_extend(recv, SID, beta, DeterministicRng(b"a")).msg
    b = ot_ext.receiver_extend(recv, SID, beta, DeterministicRng(b"b")).msg
    ua = np.frombuffer(a[: LAY.u_len], dtype=np.uint8).reshape(LAY.rows, 80)
    ub = np.frombuffer(b[: LAY.u_len], dtype=np.uint8).reshape(LAY.rows, 80)
    assert (ua[:, :64] == ub[:, :64]).all()
    assert (ua[:, 64:] != ub[:, 64:]).any()
    assert a[LAY.u_len: LAY.u_len + 16] != b[LAY.u_len: LAY.u_len + 16]
