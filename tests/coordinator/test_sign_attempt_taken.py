"""A signer that answers the release round with "attempt-taken" (its store says the attempt
went to another session) disagrees with the majority that reserved the attempt for this one.
It is left out for the rest of the request: before, the coordinator retried with the next
attempt and could pick the same node again, so one corrupted node burned every reserved attempt
of an approved request without ever being named."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import coincurve
import grpc
import pytest

import coordinator.service as service
from coordinator.anomaly_hook import AnomalyMonitor
from coordinator.db import KeyRecord
from coordinator.relay import Refused
from coordinator.service import SIGN_RELEASE_ROUND, CoordinatorService
from governance.reservation import MAX_SIGN_ATTEMPTS
from mpcnet.common.rpc import RpcError


class _Signed(Exception):
    def __init__(self, signers: tuple[int, ...]) -> None:
        self.signers = signers


def _svc(n: int) -> SimpleNamespace:
    nodes = {i: SimpleNamespace(index=i, healthy=True, clock_suspect="", inflight=0, label=f"node {i}", last_error="")
             for i in range(1, n + 1)}
    taken = [0]

    def next_attempt(rid: str) -> int:
        taken[0] += 1
        return taken[0]

    svc = SimpleNamespace(
        nodes=nodes, _lock=threading.Lock(), _rr=0, _sessions=threading.BoundedSemaphore(4),
        policies=SimpleNamespace(synced=lambda i: True, attestation=lambda: b""),
        db=SimpleNamespace(sign_attempts_taken=lambda rid: taken[0], next_sign_attempt=next_attempt, get_key=lambda key_id: None),
        cfg=SimpleNamespace(step_timeout_s=1.0), _reserve=lambda *a: [],
        keyops=SimpleNamespace(signing=lambda k: (0, tuple(range(1, n + 1)), set())),  # epoch 0, committee 1..n
        anomaly=AnomalyMonitor.off(),
    )
    svc._pick = lambda t, ex, d=frozenset(), b=frozenset(): CoordinatorService._pick(svc, t, ex, d, b)  # type: ignore[arg-type]
    svc._unattributed = lambda *a: CoordinatorService._unattributed(svc, *a)  # type: ignore[arg-type]
    return svc


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (7, 4)])
@pytest.mark.parametrize("corrupted", [1, 2, 3])
@pytest.mark.parametrize("rr", [0, 1, 2, 3, 4])
def test_a_signer_claiming_attempt_taken_cannot_burn_every_attempt(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int, corrupted: int, rr: int
) -> None:
    def run_session(nodes: dict[int, Any], sid: bytes, start: Any, timeout: float, *, before_step: Any, **_: Any) -> Any:
        before_step(SIGN_RELEASE_ROUND)  # the attempt is reserved
        if corrupted in nodes:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "attempt taken", node=corrupted, governance="attempt-taken")
        raise _Signed(tuple(sorted(nodes)))

    monkeypatch.setattr(service, "run_session", run_session)
    svc = _svc(n)
    svc._rr = rr
    pub = coincurve.PrivateKey().public_key.format(compressed=True)
    k = KeyRecord(b"\x01" * 32, "k", pub, b"\x02" * 32, t, n, "active", 0, "r")
    with pytest.raises(_Signed) as e:
        CoordinatorService._sign(svc, "req-1", k, b"\x03" * 32, (), b"")  # type: ignore[arg-type]
    assert corrupted not in e.value.signers
    assert svc.db.sign_attempts_taken("req-1") <= MAX_SIGN_ATTEMPTS


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
@pytest.mark.parametrize("corrupted", [1, 2, 3])
def test_a_signer_claiming_its_co_signers_are_banned_does_not_exclude_them(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int, corrupted: int
) -> None:
    """``mpc-banned`` is one node's word against another's: the coordinator cannot tell which of
    the two cheated, so the pair is never put together again (a dispute). Before, the named
    nodes were left out and the claimant kept, so one corrupted node could make a request
    UNAVAILABLE ("node 2: banned for this key; node 3: banned for this key") although the
    honest nodes could sign."""

    def run_session(nodes: dict[int, Any], sid: bytes, start: Any, timeout: float, **_: Any) -> Any:
        if corrupted in nodes:
            others = tuple(i for i in nodes if i != corrupted)
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, "banned", banned=others, node=corrupted)
        raise _Signed(tuple(sorted(nodes)))

    monkeypatch.setattr(service, "run_session", run_session)
    monkeypatch.setattr(service, "RESTART_WAIT_S", 0.05)
    svc = _svc(n)
    pub = coincurve.PrivateKey().public_key.format(compressed=True)
    k = KeyRecord(b"\x01" * 32, "k", pub, b"\x02" * 32, t, n, "active", 0, "r")
    with pytest.raises(_Signed) as e:
        CoordinatorService._sign(svc, "req-1", k, b"\x03" * 32, (), b"")  # type: ignore[arg-type]
    assert corrupted not in e.value.signers


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (7, 4)])
@pytest.mark.parametrize("corrupted", [1, 2, 3])
@pytest.mark.parametrize("at_release", [False, True])
def test_a_signer_aborting_without_naming_anyone_is_signed_around(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int, corrupted: int, at_release: bool
) -> None:
    """A corrupted signer that makes an honest co-signer abort naming nobody (blame it cannot
    prove) retires that exact signer set for the request: the coordinator tries another set and
    the request is signed by honest nodes, within the attempt bound, instead of failing."""
    from coordinator.relay import Aborted

    def run_session(nodes: dict[int, Any], sid: bytes, start: Any, timeout: float, *, before_step: Any, **_: Any) -> Any:
        if corrupted in nodes:
            if at_release:
                before_step(SIGN_RELEASE_ROUND)  # the abort costs the attempt
            raise Aborted("node x aborted: cannot tell which party cheated", None, reporter=min(set(nodes) - {corrupted}))
        before_step(SIGN_RELEASE_ROUND)
        raise _Signed(tuple(sorted(nodes)))

    monkeypatch.setattr(service, "run_session", run_session)
    svc = _svc(n)
    pub = coincurve.PrivateKey().public_key.format(compressed=True)
    k = KeyRecord(b"\x01" * 32, "k", pub, b"\x02" * 32, t, n, "active", 0, "r")
    with pytest.raises(_Signed) as e:
        CoordinatorService._sign(svc, "req-1", k, b"\x03" * 32, (), b"")  # type: ignore[arg-type]
    assert corrupted not in e.value.signers
    assert svc.db.sign_attempts_taken("req-1") <= MAX_SIGN_ATTEMPTS


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
@pytest.mark.parametrize("corrupted", [1, 2, 3])
def test_a_signer_always_refusing_the_epoch_is_signed_around(
    monkeypatch: pytest.MonkeyPatch, n: int, t: int, corrupted: int
) -> None:
    """Issue 11: a node answering every signing session with the "epoch" refusal (it says it is
    in another epoch of the key) is retried a few times (a commit being pushed), then left out
    for the request. Before, after five retries the request failed FAILED_PRECONDITION: one
    corrupted node (or one the commit push cannot reach) denied every signature it was picked
    for. No attempt is spent on the refusals (they come before the release round)."""

    def run_session(nodes: dict[int, Any], sid: bytes, start: Any, timeout: float, *, before_step: Any, **_: Any) -> Any:
        if corrupted in nodes:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"node {corrupted}: sign.epoch: is 0, not 1", node=corrupted,
                          governance="epoch")
        before_step(SIGN_RELEASE_ROUND)
        raise _Signed(tuple(sorted(nodes)))

    monkeypatch.setattr(service, "run_session", run_session)
    svc = _svc(n)
    waits: list[float] = []
    svc._stop = SimpleNamespace(wait=waits.append)
    pub = coincurve.PrivateKey().public_key.format(compressed=True)
    k = KeyRecord(b"\x01" * 32, "k", pub, b"\x02" * 32, t, n, "active", 0, "r")
    for _ in range(3):  # the same node again and again (the round-robin start moves)
        with pytest.raises(_Signed) as e:
            CoordinatorService._sign(svc, "req-1", k, b"\x03" * 32, (), b"")  # type: ignore[arg-type]
        assert corrupted not in e.value.signers
    assert svc.db.sign_attempts_taken("req-1") == 3  # one attempt per signature, none for the refusals
    assert len(waits) <= 3 * (service.EPOCH_REFUSALS - 1)


@pytest.mark.parametrize("always", [False, True])
def test_a_release_refused_stale_roster_is_retried_once_per_node(monkeypatch: pytest.MonkeyPatch, always: bool) -> None:
    """p14e review: a node whose roster changed between its checks and its release refuses the
    share ``stale-roster`` (mpc_node/in_force.py), releasing nothing. The request failed at once
    (FAILED_PRECONDITION), though a session started under the new roster signs; now it is tried
    again once per refusing node, and a node that keeps refusing fails it with the node's reason."""
    refused: list[int] = []

    def run_session(nodes: dict[int, Any], sid: bytes, start: Any, timeout: float, *, before_step: Any, **_: Any) -> Any:
        before_step(SIGN_RELEASE_ROUND)
        if 1 in nodes and (always or not refused):
            refused.append(1)
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "node 1: sign.roster: changed to version 2", node=1,
                          governance="stale-roster")
        raise _Signed(tuple(sorted(nodes)))

    monkeypatch.setattr(service, "run_session", run_session)
    svc = _svc(3)
    pub = coincurve.PrivateKey().public_key.format(compressed=True)
    k = KeyRecord(b"\x01" * 32, "k", pub, b"\x02" * 32, 3, 3, "active", 0, "r")  # 3 of 3: node 1 is always picked
    if not always:
        with pytest.raises(_Signed):
            CoordinatorService._sign(svc, "req-1", k, b"\x03" * 32, (), b"")  # type: ignore[arg-type]
        assert refused == [1] and svc.db.sign_attempts_taken("req-1") == 2
        return
    with pytest.raises(RpcError) as e:
        CoordinatorService._sign(svc, "req-1", k, b"\x03" * 32, (), b"")  # type: ignore[arg-type]
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "sign.roster" in e.value.message
    assert refused == [1, 1]
