"""Tampering with every field of every message of the FROST refresh and quorum change, both
groups (crypto_core.frost.reshare): the receiver of the tampered part aborts naming the sender
exactly when the sender's own message proves it (a malformed field, a Feldman vector that does
not open its commitment, a bad proof or share, a contradicted echo or confirmation), and
unattributed otherwise (another configuration or old-shares digest, an echo of a third party's
message); no honest party is ever named; after a tampered round 1-3 no party ends with a new
share or is told to retire (after round 4 only the parties that saw every echo agree finish, and
the caller commits only when every party finished).

Semantic cheats by dishonest subclasses: a wrong constant term in a quorum change (named by a
receiver holding the old public shares, unattributed for one without them), a non-zero constant
in a refresh (not on the wire: the shares betray it), a wrong share to one receiver, a copied
session contribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.codec import HEADER_LEN
from crypto_core.commitment import commit
from crypto_core.frost.poly import feldman_commit
from crypto_core.frost.reshare import FrostReshareParty
from crypto_core.frost.scheme import group_for
from crypto_core.local import Tamper
from crypto_core.session import RoundOutput
from crypto_core.tags import Tag

from ...conftest import scaled
from ...harness import Outcome, run_collect
from .reshare_util import SCHEMES, Epoch, dealer_keygen, reshare_parties, run_all

# plan: old committee, dealers, new committee, t', refresh (old key 2-of-3, roster ids != indices)
PLANS = {
    "refresh": ((2, 5, 7), (2, 5, 7), (2, 5, 7), 2, True),
    "quorum": ((2, 5, 7), (2, 7), (2, 5, 8, 9), 3, False),  # 5 keeps a new share without dealing, 7 leaves
}
# (round, part, sender, receiver) of every kind of message each plan sends
LINKS = {
    "refresh": [(1, "broadcast", 5, 2), (2, "broadcast", 5, 2), (2, "direct", 5, 7), (3, "broadcast", 7, 2), (4, "broadcast", 2, 5)],
    "quorum": [
        (1, "broadcast", 7, 8), (1, "broadcast", 8, 2), (2, "broadcast", 7, 5), (2, "broadcast", 8, 9),
        (2, "direct", 2, 8), (3, "broadcast", 9, 7), (4, "broadcast", 5, 2),
    ],
}


def parties_of(
    scheme: str, plan: str, cls: dict[int, type[FrostReshareParty]] | None = None, give_old_shares: bool = True
) -> dict[int, FrostReshareParty]:
    committee, dealers, new, t2, refresh = PLANS[plan]
    old = Epoch(committee, dealer_keygen(scheme, 2, 3))
    return reshare_parties(old, dealers, new, t2, refresh=refresh, cls=cls, give_old_shares=give_old_shares)


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    length: int
    blame: bool  # the receiver names the sender (else: unattributed)


def layout(scheme: str, plan: str, rnd: int, part: str, sender: int, receiver: int) -> tuple[list[Field], int]:
    """Every field of the message, in order, and its total length."""
    _, dealers, new, t2, refresh = PLANS[plan]
    g = group_for(scheme)
    everyone = sorted(set(dealers) | set(new))
    out = [
        Field("header.version", 0, 1, True), Field("header.protocol", 1, 1, True), Field("header.round", 2, 1, True),
        Field("header.kind", 3, 1, True), Field("header.session", 4, 32, True), Field("header.sender", 36, 2, True),
        Field("header.receiver", 38, 2, True),
    ]
    off = HEADER_LEN

    def add(name: str, length: int, blame: bool) -> None:
        nonlocal off
        out.append(Field(name, off, length, blame))
        off += length

    def echoes() -> None:
        for m in everyone:  # an echo contradicts the sender's own message or ours: its fault
            add(f"echo[{m}]", 32, m in (sender, receiver))

    if rnd == 1:
        add("config_digest", 32, False)
        add("sid", 32, True)
        if sender in dealers:
            add("commit_feldman", 32, True)
            add("old_public_shares", 32, False)
    elif rnd == 2 and part == "broadcast":
        echoes()
        if sender in dealers:
            first = 1 if refresh else 0
            for k in range(first, t2):
                add(f"feldman[{k}]", g.element_len, True)
            for k in range(first, t2):
                add(f"proof[{k}].T", g.element_len, True)
                add(f"proof[{k}].z", g.scalar_len, True)
            add("salt_feldman", 32, True)
    elif rnd == 2:
        add("share", g.scalar_len, True)
    elif rnd == 3:
        echoes()
        add("confirm", 32, True)
    else:
        echoes()
    return out, off


CASES = [
    pytest.param(scheme, plan, link, f, id=f"{scheme}-{plan}-r{link[0]}{link[1][0]}-{link[2]}to{link[3]}-{f.name}")
    for scheme in SCHEMES
    for plan, links in LINKS.items()
    for link in links
    for f in layout(scheme, plan, *link)[0]
]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("plan", PLANS)
def test_the_layout_covers_every_byte_of_every_message(scheme: str, plan: str) -> None:
    out = run_collect(parties_of(scheme, plan))
    assert not out.aborts
    for link in LINKS[plan]:
        fields, total = layout(scheme, plan, *link)
        rnd, part, sender, receiver = link
        assert len(out.transcript[(rnd, sender, receiver, part)]) == total, link
        assert [f.offset for f in fields[7:]] == sorted(f.offset for f in fields[7:])
    sent = {(r, p) for (r, _, _, p) in out.transcript}
    assert sent == {(r, p) for links in LINKS.values() for (r, p, _, _) in links}  # no other kind of message


def flip(link: tuple[int, str, int, int], f: Field, bit: int = 0) -> Tamper:
    """Flip bit ``bit`` (0 = the lowest of the field's first byte) of field ``f`` on ``link``."""
    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if (rnd, part, sender, receiver) != link:
            return payload
        b = bytearray(payload)
        b[f.offset + bit // 8] ^= 1 << (bit % 8)
        return bytes(b)

    return tamper


def assert_no_honest_party_named(out: Outcome, culprit: int) -> None:
    """Every abort but the culprit's own names the culprit or nobody (the culprit, here the
    sender of the tampered part, may name the receiver that contradicts its message)."""
    for p, e in out.aborts.items():
        if p != culprit:
            assert e.party in (culprit, None), (p, e)


def blamed(out: Outcome, culprit: int) -> dict[int, int | None]:
    """Who each party but the culprit named."""
    return {p: e.party for p, e in out.aborts.items() if p != culprit}


@pytest.mark.parametrize("scheme,plan,link,field", CASES)
def test_a_flipped_bit_in_any_field_aborts_naming_the_sender_only_when_proven(
    scheme: str, plan: str, link: tuple[int, str, int, int], field: Field
) -> None:
    check_flip(scheme, plan, link, field, 0)


@given(case=st.sampled_from([c.values for c in CASES]), data=st.data())
@settings(max_examples=scaled(40), deadline=None)
def test_any_bit_of_any_field(case: tuple[str, str, tuple[int, str, int, int], Field], data: st.DataObject) -> None:
    scheme, plan, link, field = case
    check_flip(scheme, plan, link, field, data.draw(st.integers(0, 8 * field.length - 1), label="bit"))


def check_flip(scheme: str, plan: str, link: tuple[int, str, int, int], field: Field, bit: int) -> None:
    rnd, _, sender, receiver = link
    tamper = flip(link, field, bit)
    out = run_collect(parties_of(scheme, plan), tamper)
    assert receiver in out.aborts, out.aborts
    assert out.aborts[receiver].party == (sender if field.blame else None), out.aborts[receiver]
    assert_no_honest_party_named(out, sender)
    assert receiver not in out.finished and (rnd == 4 or not out.finished)
    parties = parties_of(scheme, plan)
    assert run_all(parties, tamper)
    assert parties[receiver].result is None and not parties[receiver].retired
    if rnd < 4:
        assert all(p.result is None and not p.retired and not p.done for p in parties.values())
    else:  # the others saw consistent echoes and finished with one sharing; the caller waits for all
        assert len({p.result.public_shares for p in parties.values() if p.result is not None}) <= 1


# semantic cheats ------------------------------------------------------------------------------
class WrongConstant(FrostReshareParty):
    """A quorum-change dealer whose constant term is lam_i * x_i + 1, under a commitment that opens."""

    def _round1(self) -> RoundOutput:
        out = super()._round1()
        g = self.group
        self._coeffs[0] = (self._coeffs[0] + 1) % g.order
        self._G = feldman_commit(g, self._coeffs)
        com, self._rho = commit(Tag.FROST_RESHARE_COMMIT_G, self.cfg.session + self._sid_i, self.cfg.index,
                                self._g_bytes(self._G), self._rng)
        assert out.broadcast is not None
        at = HEADER_LEN + 64
        msg = out.broadcast[:at] + com + out.broadcast[at + 32:]
        self._com, self._r1_self = com, msg
        return RoundOutput(1, broadcast=msg)


class RefreshConstant(FrostReshareParty):
    """A refresh dealer dealing a non-zero constant: G[0] is not on the wire, its shares show it."""

    def _round1(self) -> RoundOutput:
        out = super()._round1()
        self._coeffs[0] = 1
        return out


class WrongShare(FrostReshareParty):
    """Sends receiver 8 (quorum) / 7 (refresh) its share plus one."""

    def _round2(self, inbox):  # type: ignore[no-untyped-def]
        out = super()._round2(inbox)
        victim = 8 if 8 in out.direct else 7
        d = out.direct[victim]
        g = self.group
        s = g.decode_scalar(d[HEADER_LEN:], "share")
        direct = {**out.direct, victim: d[:HEADER_LEN] + g.encode_scalar((s + 1) % g.order)}
        return RoundOutput(2, broadcast=out.broadcast, direct=direct)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wrong_constant_term_is_named_by_receivers_holding_the_old_public_shares(scheme: str) -> None:
    out = run_collect(parties_of(scheme, "quorum", cls={7: WrongConstant}))
    assert blamed(out, 7) == {2: 7, 5: 7, 8: 7, 9: 7}
    assert all("lambda_i times its old public share" in e.reason for p, e in out.aborts.items() if p != 7)
    out = run_collect(parties_of(scheme, "quorum", cls={7: WrongConstant}, give_old_shares=False))
    assert out.aborts[2].party == 7  # a dealer holds them always
    for newcomer in (5, 8, 9):  # receivers without them (5 keeps a share but does not deal)
        assert out.aborts[newcomer].party is None and "do not sum to the public key" in out.aborts[newcomer].reason
    parties = parties_of(scheme, "quorum", cls={7: WrongConstant})
    run_all(parties)
    assert all(p.result is None and not p.retired for p in parties.values())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_non_zero_constant_in_a_refresh_is_named_by_every_receiver(scheme: str) -> None:
    out = run_collect(parties_of(scheme, "refresh", cls={5: RefreshConstant}))
    assert blamed(out, 5) == {2: 5, 7: 5}
    assert all("share does not match its Feldman commitment" in e.reason for p, e in out.aborts.items() if p != 5)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("plan,cheat,victim", [("refresh", 2, 7), ("quorum", 2, 8)])
def test_a_wrong_share_to_one_receiver_is_named_by_it(scheme: str, plan: str, cheat: int, victim: int) -> None:
    out = run_collect(parties_of(scheme, plan, cls={cheat: WrongShare}))
    assert blamed(out, cheat) == {victim: cheat}
    parties = parties_of(scheme, plan, cls={cheat: WrongShare})
    run_all(parties)
    assert all(p.result is None and not p.retired for p in parties.values())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_copied_session_contribution_names_the_copier_only_where_proven(scheme: str) -> None:
    honest = parties_of(scheme, "quorum")
    b = honest[2].start().broadcast
    assert b is not None
    sid_of_2 = b[HEADER_LEN + 32:HEADER_LEN + 64]

    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if rnd == 1 and sender == 8:
            return payload[:HEADER_LEN + 32] + sid_of_2 + payload[HEADER_LEN + 64:]
        return payload

    out = run_collect(parties_of(scheme, "quorum"), tamper)
    assert out.aborts[2].party == 8 and "repeats ours" in out.aborts[2].reason
    assert all(e.party is None for p, e in out.aborts.items() if p != 2)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("plan,culprit,receiver", [("refresh", 5, 2), ("quorum", 7, 8)])
@pytest.mark.parametrize("change", ["one element short", "one element long", "truncated", "one byte appended"])
def test_a_message_of_the_wrong_length_names_its_sender(scheme: str, plan: str, culprit: int, receiver: int, change: str) -> None:
    """Counts are protocol constants: a Feldman vector of another length (a lower or higher
    degree) cannot parse, nor can any message cut short or extended."""
    g = group_for(scheme)
    fields, _ = layout(scheme, plan, 2, "broadcast", culprit, receiver)
    at = next(f.offset for f in fields if f.name.startswith("feldman["))
    extra = g.encode(g.base_mul(5))

    def tamper(rnd: int, sender: int, to: int, part: str, payload: bytes) -> bytes:
        if rnd != 2 or sender != culprit or part != "broadcast":
            return payload
        if change == "one element short":
            return payload[:at] + payload[at + g.element_len:]
        if change == "one element long":
            return payload[:at] + extra + payload[at:]
        return payload[:-1] if change == "truncated" else payload + b"\x00"

    out = run_collect(parties_of(scheme, plan), tamper)
    assert out.aborts and all(e.party == culprit and "malformed" in e.reason for p, e in out.aborts.items() if p != culprit)
    assert receiver in out.aborts
