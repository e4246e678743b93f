"""Review of issue 14 (attacker), seen on a real 2-of-3 cluster: with one node hung (SIGSTOP)
and already marked down by the health poll, every reservation fan-out (the full protocol's, and
the pool path's receipts when ``t < reservation_quorum(n)``, e.g. 2-of-5) still sent the hung
node a ReserveSigning and waited its whole step timeout (20 s) for it, although a quorum of the
others had answered. A node known down is not asked (nor waited for); without a quorum of the
rest the reservation still fails naming it."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.db import KeyRecord
from coordinator.relay import NodesUnavailable
from coordinator.service import CoordinatorService
from governance.reservation import Reservation, sign_reservation
from mpcnet.wire.mpc.v1 import node_pb2

from .pool_util import NodeError

HANG_S = 3.0


def _svc(down: set[int]) -> tuple[SimpleNamespace, list[int]]:
    asked: list[int] = []

    def stub(i: int) -> SimpleNamespace:
        def reserve(req: node_pb2.ReserveSigningRequest, **_: Any) -> node_pb2.ReserveSigningResponse:
            asked.append(i)
            if i in down:
                time.sleep(HANG_S)  # hung: answers nothing before the deadline
                raise NodeError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            res = Reservation(b"\x07" * 32, bytes(req.key_id), req.request_id, b"\x08" * 32, req.attempt, tuple(req.signers),
                              bytes(req.session_id))
            return node_pb2.ReserveSigningResponse(receipt=sign_reservation(res, i, Ed25519PrivateKey.generate()).to_bytes())
        return SimpleNamespace(ReserveSigning=reserve)

    nodes = {i: SimpleNamespace(index=i, healthy=i not in down, label=f"node {i}", last_error="hung" if i in down else "",
                                stub=stub(i), mark_down=lambda reason: None) for i in range(1, 6)}
    return SimpleNamespace(nodes=nodes, cfg=SimpleNamespace(step_timeout_s=HANG_S + 5), _lock=threading.Lock()), asked


def _reserve(svc: Any) -> list[bytes]:
    k = KeyRecord(b"\x01" * 32, "k", b"\x02" * 33, b"\x03" * 32, 2, 5, "active", 0, "r")
    return CoordinatorService._reserve(svc, "req-1", k, b"\x04" * 32, (), b"", 1, (1, 2), b"\x05" * 32)  # type: ignore[arg-type]


def test_a_node_known_down_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    svc, asked = _svc({5})
    t0 = time.perf_counter()
    receipts = _reserve(svc)
    assert len(receipts) == 4 and 5 not in asked
    assert time.perf_counter() - t0 < HANG_S


def test_without_a_quorum_of_the_rest_it_fails_naming_the_nodes_down() -> None:
    svc, asked = _svc({3, 4, 5})
    with pytest.raises(NodesUnavailable) as e:
        _reserve(svc)
    assert set(e.value.failures) == {3, 4, 5} and sorted(asked) == [1, 2]
