"""A roster change that revokes a node or replaces its keys waits for the key operations still
switching that node to a new epoch (issue 11): commit certificates are checked against the active
roster's keys, so a node that had not switched yet could otherwise never verify its certificate."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
import pytest

from coordinator.roster_proposals import RosterProposals
from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, change_endpoint, revoke_node, sign_roster_change
from mpcnet.common.rpc import RpcError
from tests.governance.gov_util import ADMIN_KEYS, admin_set, raw
from tests.governance.test_keyop import NODE_KEYS, _x25519

ADMINS = admin_set()


def _entry(i: int) -> RosterEntry:
    return RosterEntry(i, f"node-{i}", raw(NODE_KEYS[i]), _x25519(i), hashlib.sha256(b"c %d" % i).digest(), f"localhost:{7000 + i}")


R1 = Roster(1, 0, tuple(_entry(i) for i in (1, 2, 3)))


class Book:
    def __init__(self) -> None:
        self.applied: list[SignedRosterChange] = []

    def current(self) -> Roster:
        return R1

    def signed_history(self) -> tuple[SignedRosterChange, ...]:
        return ()  # R1 came from the config (no applied change)

    def apply(self, signed: SignedRosterChange, actor: str) -> Roster:
        self.applied.append(signed)
        return signed.change.new_roster


def _signed(new: Roster) -> bytes:
    change = RosterChange(new, R1.digest(), ADMINS.digest())
    return SignedRosterChange(change, tuple(sign_roster_change(change, a, ADMIN_KEYS[a]) for a in ("ada", "bob"))).to_bytes()


def _proposals(busy: Any, wait_s: float) -> tuple[RosterProposals, Book]:
    book = Book()
    p = RosterProposals(book, lambda old, new: [], busy)  # type: ignore[arg-type]
    p.wait_s = wait_s
    return p, book


def test_a_revocation_waits_for_the_operations_switching_the_node_then_applies() -> None:
    calls: list[set[int]] = []

    def busy(nodes: set[int]) -> list[str]:
        calls.append(nodes)
        return ["op1"] if len(calls) < 3 else []

    p, book = _proposals(busy, 10.0)
    assert p.apply(_signed(revoke_node(R1, 3, epoch=1)), "admin1") == []
    assert len(book.applied) == 1 and calls[0] == {3}


def test_a_revocation_is_refused_while_an_operation_keeps_switching_the_node() -> None:
    p, book = _proposals(lambda nodes: ["op1"], 0.0)
    with pytest.raises(RpcError) as e:
        p.apply(_signed(revoke_node(R1, 3, epoch=1)), "admin1")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "op1" in e.value.message and "[3]" in e.value.message
    assert book.applied == []


def test_an_endpoint_change_never_waits() -> None:
    p, book = _proposals(lambda nodes: ["op1"], 0.0)
    p.apply(_signed(change_endpoint(R1, 2, "localhost:9999")), "admin1")
    assert len(book.applied) == 1


class AppliedBook(Book):
    """The coordinator's roster book after the change was applied (its proposal not yet marked)."""

    def __init__(self, signed: bytes) -> None:
        super().__init__()
        self.in_force = SignedRosterChange.from_bytes(signed)

        class Cfg:
            admin_set = ADMINS

        self.cfg = Cfg()

    def current(self) -> Roster:
        return self.in_force.change.new_roster

    def signed_history(self) -> tuple[SignedRosterChange, ...]:
        return (self.in_force,)


def test_a_change_applied_before_a_kill_cut_its_proposal_short_decodes_and_applies_as_a_no_op() -> None:
    """Review 2 (p16): the roster change commits before its proposal is marked applied; after a
    kill between the two, the proposal stayed pending at its quorum for ever: its decode refused
    it as not extending the roster in force (it IS the roster in force), so neither the start's
    retry nor a signer approving again could record it applied."""
    data = _signed(revoke_node(R1, 3, epoch=1))
    book = AppliedBook(data)
    p = RosterProposals(book, lambda old, new: ["should-not-follow"], lambda nodes: ["busy"])  # type: ignore[arg-type]
    p.wait_s = 0.0
    assert p.decode(data).details["version"] == 2
    assert p.apply(data, "coordinator") == []
    assert book.applied == []  # not applied again
    with pytest.raises(RpcError) as e:  # an older change is still refused as stale
        p.decode(_signed(change_endpoint(R1, 2, "localhost:9999")))
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
