"""Signer selection around blame: a node that aborts naming another creates a *dispute* (one of
the two cheated; the coordinator cannot tell which). Later sessions of the request never put a
disputed pair in one signer set, so one corrupted node cannot fail every request it is picked
for, and a proven bad share (the combiner's own check) excludes its sender alone."""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

from coordinator.service import CoordinatorService


def _svc(n: int) -> SimpleNamespace:
    nodes = {i: SimpleNamespace(index=i, healthy=True, clock_suspect="", inflight=0, label=f"node {i}") for i in range(1, n + 1)}
    svc = SimpleNamespace(nodes=nodes, _lock=threading.Lock(), _rr=0, policies=SimpleNamespace(synced=lambda i: True))
    return svc


def pick(svc: SimpleNamespace, t: int, excluded: set[int], disputes: set[frozenset[int]]) -> tuple[int, ...] | None:
    return CoordinatorService._pick(svc, t, excluded, frozenset(disputes))  # type: ignore[arg-type]


def test_no_disputed_pair_is_ever_picked_together() -> None:
    for n, t in ((3, 2), (4, 2), (5, 3), (7, 4)):
        svc = _svc(n)
        for k in range(1, 4):
            for disputes in itertools.combinations([frozenset(p) for p in itertools.combinations(range(1, n + 1), 2)], k):
                got = pick(svc, t, set(), set(disputes))
                feasible = [c for c in itertools.combinations(range(1, n + 1), t) if not any(d <= set(c) for d in disputes)]
                if not feasible:
                    assert got is None
                else:
                    assert got is not None and len(got) == t and not any(d <= set(got) for d in disputes)


def test_a_corrupted_node_blaming_or_blamed_by_everyone_is_signed_around() -> None:
    svc = _svc(5)
    disputes = {frozenset({5, j}) for j in range(1, 5)}  # node 5 fought with every other node
    got = pick(svc, 3, set(), disputes)
    assert got is not None and 5 not in got
    assert pick(svc, 3, {1, 2}, disputes) is None  # only 3, 4, 5 left: 5 may sign with neither


def test_a_proven_bad_share_excludes_its_sender_alone() -> None:
    svc = _svc(3)
    assert pick(svc, 2, set(), {frozenset({2})}) == (1, 3)


def _sessions_until_signed(n: int, t: int, corrupted: int, rr: int) -> int:
    """Sessions a request needs when ``corrupted`` aborts every session it is in at the release
    round (each costs a reserved attempt), each time blaming a co-signer it has not blamed yet."""
    svc = _svc(n)
    svc._rr = rr
    disputes: set[frozenset[int]] = set()
    for session in itertools.count(1):
        got = pick(svc, t, set(), disputes)
        assert got is not None
        if corrupted not in got:
            return session
        victim = next(j for j in got if j != corrupted and frozenset({corrupted, j}) not in disputes)
        disputes.add(frozenset({corrupted, victim}))
    raise AssertionError("unreachable")


def test_a_corrupted_node_cannot_burn_every_reserved_attempt_by_blaming() -> None:
    # MAX_SIGN_ATTEMPTS is 3: an honest signer set must be found within 3 sessions whenever
    # one exists (t < n); before, the node stayed first in the order and took all three
    for n, t in ((3, 2), (4, 2), (4, 3), (5, 3), (5, 4), (7, 4), (7, 5)):
        for corrupted in range(1, n + 1):
            for rr in range(n):
                assert _sessions_until_signed(n, t, corrupted, rr) <= 3, (n, t, corrupted, rr)
