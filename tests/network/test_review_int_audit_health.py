"""Review of the merged issue-14 branch as an operator: a node whose audit log cannot be written
refuses every signing session (UNAVAILABLE) until an outbox flush succeeds, so its ``Health``
must say so (``serving`` false, the reason naming the audit log and why): the coordinator then
marks it down with that reason (its log, ``mpcnet_node_up``) and picks other signers, instead of
offering it sessions it refuses while every probe calls it healthy. Serving again once the log
can be written."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from governance.errors import GovernanceError
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2

from .test_bans import N, T, _params, _run, _service


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("audit-health"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: _service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        s.stop()
        s.store.close()
        s.audit.close()


def _wait(cond: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_health_says_not_serving_while_the_audit_log_cannot_be_written(
    lay: Layout, svcs: dict[int, NodeService], monkeypatch: pytest.MonkeyPatch
) -> None:
    res = _run(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"audit-health"))
    key: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), None)
    node = svcs[1]
    assert node.Health(node_pb2.NodeHealthRequest(), None).serving
    real = node.audit._write

    @contextlib.contextmanager
    def full() -> Iterator[Any]:
        raise GovernanceError("database", "database or disk is full")
        yield  # pragma: no cover

    monkeypatch.setattr(node.audit, "_write", full)
    _run(svcs, os.urandom(32), [1, 2], sign=_params(lay, key, (1, 2)))  # its entries cannot reach the log
    _wait(lambda: node.outbox.problem != "")
    h = node.Health(node_pb2.NodeHealthRequest(), None)
    assert not h.serving
    assert "audit log" in h.reason and "disk is full" in h.reason, h.reason
    monkeypatch.setattr(node.audit, "_write", real)
    _wait(lambda: node.outbox.problem == "")
    h = node.Health(node_pb2.NodeHealthRequest(), None)
    assert h.serving and h.reason == "", h


def test_a_start_with_entries_queued_and_an_unwritable_audit_log_names_the_audit_log(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start flushes the outbox first; if the log cannot take the entries the node refuses
    to start (they stay queued), and its one-line error names the audit log, not only
    ``database: database or disk is full`` (which the store's own errors say too)."""
    lay2 = prepare(tmp_path_factory.mktemp("audit-start"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    s = _service(lay2, 1)
    s.stop()
    s.store.queue_audit(OutboxEntry("requester1", "sign-start", "req-queued", "accepted", {"session": "00"}))
    s.audit.close()
    s.store.close()

    @contextlib.contextmanager
    def full(self: AuditLog) -> Iterator[Any]:
        raise GovernanceError("database", "database or disk is full")
        yield  # pragma: no cover

    monkeypatch.setattr(AuditLog, "_write", full)
    with pytest.raises(GovernanceError) as e:
        _service(lay2, 1)
    assert e.value.field == "audit_db" and "disk is full" in e.value.reason and "queued" in e.value.reason, e.value
    monkeypatch.undo()
    s = _service(lay2, 1)  # the log can be written again: the queued entry is appended at the start
    try:
        assert [x.request_id for x in s.audit.entries() if x.action == "sign-start"] == ["req-queued"]
    finally:
        s.stop()
        s.audit.close()
        s.store.close()
