"""Issue 14 red team, on real processes: a node's key state changes (keygen's pending share,
CommitKey, DiscardKey) are each ONE transaction with their audit entry (the store's audit
outbox). A node killed right after the commit, before the entry reached its audit log
(test-mode crash point ``audit-queued``), logs the entry exactly once after its restart, and
its audit chain verifies. CommitKey racing DiscardKey is refused FAILED_PRECONDITION naming
``key_id`` (never INTERNAL), and exactly one of the two is audited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .audit_crash_util import _dkg, crash, make_layout, matching, restart_entries
from .keyops_util import close, services

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_layout(tmp_path_factory.mktemp("keyops-audit-crash"))


def test_a_kill_after_keygen_stored_the_pending_share_logs_its_entry_once(lay: Layout) -> None:
    crash(lay, "keygen")
    held = 0
    for i in (1, 2, 3):
        svcs = services(lay, only=i)
        try:
            keys = svcs[i].store.list_keys()
        finally:
            close(svcs)
        entries = restart_entries(lay, i)
        for k in keys:  # every pending share stored has its keygen entry, once
            assert k.status == "pending"
            assert len(matching(entries, "keygen", "stored-pending", key_id=k.key_id.hex())) == 1
            held += 1
        assert len(matching(entries, "keygen")) == len(keys)  # and no entry without its share
    assert held >= 1  # the crash fired after a commit


def test_a_kill_after_commit_key_logs_key_activate_once(lay: Layout) -> None:
    said = crash(lay, "commit-key")
    key_id = said[0]["key_id"]
    entries = restart_entries(lay, 1)
    assert len(matching(entries, "key-activate", "active", key_id=key_id)) == 1
    svcs = services(lay, only=1)
    try:
        assert {k.key_id.hex(): k.status for k in svcs[1].store.list_keys()}[key_id] == "active"
        # CommitKey again (the coordinator's retry): idempotent, no second entry
        row = next(k for k in svcs[1].store.list_keys() if k.key_id.hex() == key_id)
        svcs[1].CommitKey(node_pb2.CommitKeyRequest(key_id=row.key_id, public_key=row.public_key), None)
    finally:
        close(svcs)
    assert len(matching(restart_entries(lay, 1), "key-activate", key_id=key_id)) == 1


def test_a_kill_after_discard_key_logs_key_discard_once(lay: Layout) -> None:
    said = crash(lay, "discard-key")
    key_id = said[0]["key_id"]
    entries = restart_entries(lay, 1)
    assert len(matching(entries, "key-discard", "discarded", key_id=key_id)) == 1
    svcs = services(lay, only=1)
    try:
        assert key_id not in {k.key_id.hex() for k in svcs[1].store.list_keys()}
        again = svcs[1].DiscardKey(node_pb2.DiscardKeyRequest(key_id=bytes.fromhex(key_id)), None)
        assert not again.discarded  # nothing left to discard: no second entry
    finally:
        close(svcs)
    assert len(matching(restart_entries(lay, 1), "key-discard", key_id=key_id)) == 1


# --- CommitKey racing DiscardKey (in process) ---------------------------------------------------


@pytest.fixture()
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _between(svc: NodeService, monkeypatch: pytest.MonkeyPatch, then: Any) -> None:
    """Run ``then()`` once, right after the RPC's first read of the key row (the race window)."""
    real = svc._row
    fired: list[bool] = []

    def row(key_id: bytes) -> Any:
        r = real(key_id)
        if not fired:
            fired.append(True)
            then()
        return r

    monkeypatch.setattr(svc, "_row", row)


def _entries(svc: NodeService, key_id: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in svc.audit.entries():
        if e.action in ("key-activate", "key-discard") and e.details.get("key_id") == key_id.hex():
            out[e.action] = out.get(e.action, 0) + 1
    return out


def test_commit_key_after_a_racing_discard_is_failed_precondition_naming_key_id(
    svcs: dict[int, NodeService], monkeypatch: pytest.MonkeyPatch
) -> None:
    k = _dkg(svcs)
    svc = svcs[1]
    _between(svc, monkeypatch, lambda: svc.store.discard_pending_key(k.key_id))
    with pytest.raises(RpcError) as ei:
        svc.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    assert ei.value.code == Code.FAILED_PRECONDITION and ei.value.message.startswith("key_id: ")
    assert _entries(svc, k.key_id) == {}  # nothing activated, nothing logged as active
    assert k.key_id not in {r.key_id for r in svc.store.list_keys()}


def test_discard_key_after_a_racing_commit_is_failed_precondition_naming_key_id(
    svcs: dict[int, NodeService], monkeypatch: pytest.MonkeyPatch
) -> None:
    k = _dkg(svcs)
    svc = svcs[1]
    req = node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key)
    _between(svc, monkeypatch, lambda: svc.CommitKey(req, None))
    with pytest.raises(RpcError) as ei:
        svc.DiscardKey(node_pb2.DiscardKeyRequest(key_id=k.key_id), None)
    assert ei.value.code == Code.FAILED_PRECONDITION and ei.value.message.startswith("key_id: ")
    svc.outbox.flush()
    assert _entries(svc, k.key_id) == {"key-activate": 1}
    assert {r.key_id: r.status for r in svc.store.list_keys()}[k.key_id] == "active"


def _race(svc: NodeService, k: node_pb2.DkgResult) -> list[BaseException]:
    """CommitKey and DiscardKey of ``k`` at once; the unexpected errors (anything but
    FAILED_PRECONDITION / NOT_FOUND naming ``key_id``)."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def call(fn: Any, req: Any) -> None:
        start.wait()
        try:
            fn(req, None)
        except RpcError as e:
            if not (e.code in (Code.FAILED_PRECONDITION, Code.NOT_FOUND) and e.message.startswith("key_id: ")):
                errors.append(e)
        except BaseException as e:  # anything else would reach the caller as INTERNAL
            errors.append(e)

    ts = [
        threading.Thread(target=call, args=(svc.CommitKey, node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key))),
        threading.Thread(target=call, args=(svc.DiscardKey, node_pb2.DiscardKeyRequest(key_id=k.key_id))),
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return errors


def test_concurrent_commit_and_discard_end_in_one_audited_outcome(svcs: dict[int, NodeService]) -> None:
    for _ in range(3):
        k = _dkg(svcs)
        svc = svcs[2]
        assert _race(svc, k) == []
        svc.outbox.flush()
        status = {r.key_id: r.status for r in svc.store.list_keys()}.get(k.key_id)
        assert _entries(svc, k.key_id) == ({"key-activate": 1} if status == "active" else {"key-discard": 1})
