"""Review (issue 14, P5): Bob's vectorised RVOLE finish against the per-element big-int formulas
it replaced, on adversarial messages from Alice (every ``a~`` and ``eta~`` at the edges of the
canonical range, so the 16-bit limb sums of ``dbar = gamma + beta * a~`` reach ``2^17``): Bob
accepts exactly the ``mu`` the old formula gives and returns the same ``d``, byte for byte."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from crypto_core.errors import ProtocolAbort
from crypto_core.group import Q
from crypto_core.hazmat import rvole
from crypto_core.hazmat.ot_ext import WIDTH, XI
from crypto_core.rng import DeterministicRng
from crypto_core.tags import Tag
from crypto_core.transcript import hash64

from ..conftest import scaled
from .sign_util import keygen

SID = b"R" * 32
# 0, q-1 (every 16-bit limb of q-1 but the lowest is large), a lone top bit, all ones below 2^224
EDGE_SCALARS = [0, 1, Q - 1, Q - 2, 1 << 255, (1 << 256) - (1 << 224) - 1]
scalar = st.one_of(st.sampled_from(EDGE_SCALARS), st.integers(0, Q - 1))


def _bob(seed: bytes) -> rvole.RvoleBob:
    keys = keygen(2, 3)
    bob, _ = rvole.RvoleBob.start(keys[1].peer(2).as_bob, SID, DeterministicRng(seed), peer=2)
    return bob


def _old_finish(bob: rvole.RvoleBob, a_tilde: list[int], eta_tilde: int) -> tuple[bytes, tuple[int, int]]:
    """The per-element formulas of main (before P5): mu' and d from Python integers."""
    gamma = [int.from_bytes(bob._gamma[i : i + 32], "big") for i in range(0, len(bob._gamma), 32)]
    beta = list(bob._beta)
    g = rvole.gadget(SID)
    th0, th1 = rvole.thetas(SID, b"".join(v.to_bytes(32, "big") for v in a_tilde))
    dbar = [gm + beta[i // WIDTH] * a for i, (gm, a) in enumerate(zip(gamma, a_tilde, strict=True))]
    vals = [
        (z + x * th0 + y * th1 - b * eta_tilde) % Q
        for x, y, z, b in zip(dbar[0::3], dbar[1::3], dbar[2::3], beta, strict=True)
    ]
    mu = hash64(Tag.RVOLE_MU, SID, b"".join(v.to_bytes(32, "big") for v in vals))
    d = tuple(sum(gj * dbar[WIDTH * j + i] for j, gj in enumerate(g)) % Q for i in (0, 1))
    return mu, (d[0], d[1])


def _msg2(a_tilde: list[int], eta_tilde: int, mu: bytes) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in a_tilde) + eta_tilde.to_bytes(32, "big") + mu


@settings(max_examples=scaled(8), deadline=None)
@given(st.binary(min_size=4, max_size=4), st.sampled_from(EDGE_SCALARS), scalar, st.data())
def test_bob_finish_matches_the_big_int_formula_on_adversarial_messages(seed, fill, eta_tilde, data):
    bob = _bob(seed)
    a_tilde = [fill] * (XI * WIDTH)
    for _ in range(data.draw(st.integers(0, 8))):  # a few entries elsewhere in the range
        a_tilde[data.draw(st.integers(0, XI * WIDTH - 1))] = data.draw(scalar)
    mu, d = _old_finish(bob, a_tilde, eta_tilde)
    assert bob.finish(_msg2(a_tilde, eta_tilde, mu)) == d


def test_bob_refuses_the_mu_of_any_other_a_tilde():
    """A mu computed for one a~ does not pass for a~ changed in one entry (ban)."""
    bob = _bob(b"one")
    a_tilde = [Q - 1] * (XI * WIDTH)
    mu, _ = _old_finish(_bob(b"one"), a_tilde, 0)
    a_tilde[5] = 0
    try:
        bob.finish(_msg2(a_tilde, 0, mu))
    except ProtocolAbort as e:
        assert e.party == 2 and e.ban
    else:  # pragma: no cover - only if beta_1 = 0: then the change is invisible to Bob, as in the paper
        assert bob._beta == [] and _bob(b"one")._beta[5 // WIDTH] == 0


def _old_alice(a: tuple[int, int], eta: int, d0: bytes, d1: bytes) -> tuple[tuple[int, int], bytes]:
    """Alice steps 1 and 3-7 with Python integers (main before P5)."""
    x0 = [int.from_bytes(d0[i : i + 32], "big") for i in range(0, len(d0), 32)]
    x1 = [int.from_bytes(d1[i : i + 32], "big") for i in range(0, len(d1), 32)]
    g = rvole.gadget(SID)
    c = tuple(-sum(gj * x0[WIDTH * j + i] for j, gj in enumerate(g)) % Q for i in (0, 1))
    a_tilde = [(x - y + z) % Q for x, y, z in zip(x0, x1, [a[0], a[1], eta] * XI, strict=True)]
    enc = b"".join(v.to_bytes(32, "big") for v in a_tilde)
    th0, th1 = rvole.thetas(SID, enc)
    eta_tilde = (eta + th0 * a[0] + th1 * a[1]) % Q
    vals = [(z + x * th0 + y * th1) % Q for x, y, z in zip(x0[0::3], x0[1::3], x0[2::3], strict=True)]
    mu = hash64(Tag.RVOLE_MU, SID, b"".join(v.to_bytes(32, "big") for v in vals))
    return (c[0], c[1]), enc + eta_tilde.to_bytes(32, "big") + mu


PADS = st.sampled_from([b"\xff" * 32, bytes(32), (1 << 255).to_bytes(32, "big"), Q.to_bytes(32, "big"), (Q - 1).to_bytes(32, "big")])


@settings(max_examples=scaled(8), deadline=None)
@given(st.binary(min_size=4, max_size=4), scalar, scalar, scalar, PADS, PADS, st.booleans())
def test_alice_message_matches_the_big_int_formula_on_extreme_pads(seed, a0, a1, eta, fill0, fill1, mixed):
    """Pads at 0, 2^255, q - 1, q and 2^256 - 1 (OT digests are not reduced mod q)."""
    n = XI * WIDTH
    rng = DeterministicRng(seed)
    d0, d1 = fill0 * n, fill1 * n
    if mixed:  # random pads with the extremes in between
        d0 = b"".join(rng.bytes(32) if i % 2 else fill0 for i in range(n))
        d1 = b"".join(fill1 if i % 3 else rng.bytes(32) for i in range(n))
    assert rvole._alice_message(SID, (a0, a1), eta, d0, d1) == _old_alice((a0, a1), eta, d0, d1)
