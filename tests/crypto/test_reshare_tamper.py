"""Tampering with refresh and quorum change through the harness (issue 11, "Tests asserting real
outcomes", third bullet, at the crypto_core level): the session aborts naming the culprit, no
honest party is ever named, and no party ends with a new share (so never with a changed key).

Party ids are roster indices that differ from share indices (committee (2, 5, 7): party 7 holds
share 3). tests/crypto/test_reshare.py already covers, for 2-of-3 with ids = indices: a Feldman
vector one byte short, an off-curve Feldman point, every share of one dealer flipped, a cheating
constant term (refresh and quorum change), a newcomer without the old public shares, a tampered
base-OT reply. This file adds whole-point length changes and a dealer raising the degree of its
polynomial, the constant term of a refresh rewritten on the wire, shares inconsistent across
receivers (one receiver gets a share of another polynomial with the same constant term), an
equivocated commitment, and the constant-term cheats over random committees and cheaters.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.commitment import commit
from crypto_core.group import Point, Q
from crypto_core.local import Tamper
from crypto_core.reshare import ReshareParty
from crypto_core.session import RoundOutput
from crypto_core.shamir import feldman_commit
from crypto_core.tags import Tag
from tests.harness import Outcome, run_collect

from ..conftest import scaled
from .dkg_util import keygen
from .reshare_util import Epoch, reshare_parties, run_all

HEADER = 40  # codec header of every message
SCALAR = 32
POINT = 33
ZERO_POINT = bytes(POINT)  # the identity as sent in a refresh's G[0]

OLD = (2, 5, 7)  # old committee (roster indices), 2-of-3
REFRESH = ("refresh", OLD, OLD, 2)
QUORUM = ("quorum", (2, 7), (2, 5, 8, 9), 3)  # 7 leaves (an old-only dealer), 8 and 9 join, t' = 3
PLANS = {"refresh": REFRESH, "quorum": QUORUM}


def old_epoch() -> Epoch:
    return Epoch(OLD, keygen(2, 3))


def parties_of(plan: str, cls: dict[int, type[ReshareParty]] | None = None) -> dict[int, ReshareParty]:
    kind, dealers, committee, t2 = PLANS[plan]
    return reshare_parties(old_epoch(), dealers, committee, t2, refresh=kind == "refresh", cls=cls)


def feldman_offset(parties: dict[int, ReshareParty]) -> int:
    """Where G starts in a round-2 broadcast: after the header and one echo per participant."""
    return HEADER + 32 * len(parties)


def assert_culprit_named(out: Outcome, culprit: int, everyone: Iterable[int], reason: str) -> None:
    """Every party in ``everyone`` aborted naming ``culprit`` for ``reason``; no other abort names
    anyone but the culprit (the culprit's own abort does not count)."""
    assert out.aborts, "the session must abort"
    for p in everyone:
        assert p in out.aborts, f"party {p} did not abort"
        assert out.aborts[p].party == culprit and reason in out.aborts[p].reason, (p, out.aborts[p])
    for p, e in out.aborts.items():
        if p != culprit:
            assert e.party in (culprit, None), (p, e)
    assert not out.finished


def assert_nobody_gets_a_share(parties: dict[int, ReshareParty], tamper: Tamper | None = None) -> None:
    """Run a fresh copy of the session to the end of every party: nobody finishes, nobody holds a
    new share (a changed key is impossible), no old-only dealer is told to erase its share."""
    errors = run_all(parties, tamper)
    assert errors
    for p in parties.values():
        assert p.result is None and not p.retired and not p.done


# wrong-length Feldman vectors ------------------------------------------------------------------
@pytest.mark.parametrize("plan,culprit", [("refresh", 5), ("refresh", 7), ("quorum", 2), ("quorum", 7)])
@pytest.mark.parametrize("change", ["one point short", "one point long"])
def test_a_feldman_vector_of_the_wrong_length_names_its_dealer(plan: str, culprit: int, change: str) -> None:
    t2 = PLANS[plan][3]
    off = feldman_offset(parties_of(plan))

    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if rnd == 2 and sender == culprit and part == "broadcast":
            if change == "one point short":
                return payload[: off + POINT] + payload[off + 2 * POINT :]  # drop G[1]
            end = off + t2 * POINT
            return payload[:end] + Point.base_mul(5).encode() + payload[end:]  # a G[t'] appended
        return payload

    parties = parties_of(plan)
    out = run_collect(parties, tamper)
    assert_culprit_named(out, culprit, [p for p in parties if p != culprit], "malformed")
    assert_nobody_gets_a_share(parties_of(plan), tamper)


class RaisesTheDegree(ReshareParty):
    """Deals a polynomial of degree t' (one coefficient more, so that t' new shares would not
    determine the secret) under a commitment that opens: only the vector's length betrays it."""

    def _round1(self) -> RoundOutput:
        out = super()._round1()
        self._coeffs = [*self._coeffs, 12345]
        self._G = feldman_commit(self._coeffs)
        com, self._rho = commit(Tag.RESHARE_COMMIT_G, self.cfg.session + self._sid_i, self.cfg.index, self._g_bytes(self._G), self._rng)
        assert out.broadcast is not None
        at = HEADER + 64  # header, config digest, sid_i, then the commitment
        msg = out.broadcast[:at] + com + out.broadcast[at + 32 :]
        self._com, self._r1_self = com, msg
        return RoundOutput(1, broadcast=msg)


@pytest.mark.parametrize("plan,culprit", [("refresh", 2), ("quorum", 7)])
def test_a_dealer_raising_the_degree_of_its_polynomial_is_named(plan: str, culprit: int) -> None:
    parties = parties_of(plan, {culprit: RaisesTheDegree})
    out = run_collect(parties)
    assert_culprit_named(out, culprit, [p for p in parties if p != culprit], "malformed")
    assert_nobody_gets_a_share(parties_of(plan, {culprit: RaisesTheDegree}))


# the constant term of a refresh -------------------------------------------------------------------
def test_a_constant_term_rewritten_on_the_wire_in_a_refresh_names_the_sender() -> None:
    off = feldman_offset(parties_of("refresh"))

    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if rnd == 2 and sender == 7 and part == "broadcast":
            assert payload[off : off + POINT] == ZERO_POINT  # a refresh deals zero
            return payload[:off] + Point.base_mul(1).encode() + payload[off + POINT :]
        return payload

    parties = parties_of("refresh")
    out = run_collect(parties, tamper)
    assert_culprit_named(out, 7, [2, 5], "does not open the round-1 commitment")
    assert_nobody_gets_a_share(parties_of("refresh"), tamper)


class ShiftsTheConstant(ReshareParty):
    """Deals a constant term off by one: not zero in a refresh, not lam_i * x_i in a quorum change."""

    def _constant(self) -> int:
        return (super()._constant() + 1) % Q


Case = tuple[Epoch, tuple[int, ...], tuple[int, ...], int, int]


@st.composite
def committees(draw: st.DrawFn, refresh: bool) -> Case:
    """(old epoch, dealers, new committee, t', cheating dealer) with roster indices in 1..9."""
    n = draw(st.integers(2, 4))
    t = draw(st.integers(2, n))
    committee = tuple(sorted(draw(st.sets(st.integers(1, 6), min_size=n, max_size=n))))
    old = Epoch(committee, keygen(t, n))
    if refresh:
        return old, committee, committee, t, draw(st.sampled_from(committee))
    dealers = tuple(sorted(draw(st.sets(st.sampled_from(committee), min_size=t, max_size=n))))
    kept = draw(st.sets(st.sampled_from(committee), max_size=3))
    joining = draw(st.sets(st.integers(7, 9), min_size=max(0, 2 - len(kept)), max_size=3 - len(kept)))
    new = tuple(sorted(kept | joining))
    return old, dealers, new, draw(st.integers(2, len(new))), draw(st.sampled_from(dealers))


@given(committees(refresh=True))
@settings(max_examples=scaled(4), deadline=None)
def test_a_non_identity_constant_term_in_a_refresh_is_named_by_every_other_party(case: Case) -> None:
    old, dealers, committee, t, cheat = case

    def parties() -> dict[int, ReshareParty]:
        return reshare_parties(old, dealers, committee, t, refresh=True, cls={cheat: ShiftsTheConstant}, seed=b"nz")

    ps = parties()
    out = run_collect(ps)
    assert_culprit_named(out, cheat, [p for p in ps if p != cheat], "non-identity constant term in a refresh")
    assert_nobody_gets_a_share(parties())


@given(committees(refresh=False), st.booleans())
@settings(max_examples=scaled(4), deadline=None)
def test_a_wrong_constant_term_in_a_quorum_change_is_named_or_refused(case: Case, newcomers_know_old_shares: bool) -> None:
    """Parties that know the old public shares (every dealer, and newcomers given them) name the
    cheating dealer; a newcomer without them cannot say who lied but refuses the changed key."""
    old, dealers, committee, t2, cheat = case

    def parties() -> dict[int, ReshareParty]:
        return reshare_parties(
            old, dealers, committee, t2, cls={cheat: ShiftsTheConstant}, seed=b"wc", give_old_shares=newcomers_know_old_shares
        )

    ps = parties()
    out = run_collect(ps)
    informed = [p for p in ps if p != cheat and (newcomers_know_old_shares or p in dealers)]
    assert_culprit_named(out, cheat, informed, "constant term is not lambda_i times its old public share")
    for p in ps:
        if p not in informed and p != cheat:
            assert out.aborts[p].party is None and "sum to the public key" in out.aborts[p].reason
    assert_nobody_gets_a_share(parties())


# inconsistent shares and equivocation ------------------------------------------------------------
@pytest.mark.parametrize("plan,dealer,victim", [("quorum", 7, 8), ("quorum", 2, 5), ("refresh", 5, 7)])
def test_shares_inconsistent_across_receivers_name_the_dealer(plan: str, dealer: int, victim: int) -> None:
    """The victim gets g'(x) for g' = g + c*X (same constant term, another polynomial) while the
    other receivers get g(x): the victim names the dealer; nobody else blames anyone in that step."""
    committee = PLANS[plan][2]
    x = committee.index(victim) + 1

    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if rnd == 2 and sender == dealer and receiver == victim and part == "direct":
            s = int.from_bytes(payload[HEADER : HEADER + SCALAR], "big")
            other = (s + 424242 * x) % Q
            return payload[:HEADER] + other.to_bytes(SCALAR, "big") + payload[HEADER + SCALAR :]
        return payload

    parties = parties_of(plan)
    out = run_collect(parties, tamper)
    assert set(out.aborts) == {victim}
    assert out.aborts[victim].party == dealer and "does not match its Feldman commitment" in out.aborts[victim].reason
    assert_nobody_gets_a_share(parties_of(plan), tamper)


@pytest.mark.parametrize("plan,dealer,victim", [("quorum", 7, 9), ("refresh", 2, 5)])
def test_an_equivocated_commitment_never_blames_an_honest_party(plan: str, dealer: int, victim: int) -> None:
    """The dealer's round-1 commitment differs for one receiver: that receiver names the dealer
    (its own echo contradicts our copy); the others cannot tell who lied and name nobody."""

    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if rnd == 1 and sender == dealer and receiver == victim and part == "broadcast":
            at = HEADER + 64
            return payload[:at] + bytes(b ^ 0xFF for b in payload[at : at + 32]) + payload[at + 32 :]
        return payload

    parties = parties_of(plan)
    out = run_collect(parties, tamper)
    assert out.aborts[victim].party == dealer and "equivocation" in out.aborts[victim].reason
    for p, e in out.aborts.items():
        if p not in (dealer, victim):
            assert e.party is None, (p, e)
    assert_nobody_gets_a_share(parties_of(plan), tamper)
