"""The start-time deletion of the fresh FROST nonces (and presignatures) left from before a start,
when it fails at start and is redone later: its discard entry is queued in the deleting
transaction (the audit outbox), as the start's own deletion does (service.py
``_discard_fresh_at_start``). Review: the redone purge appended ``frost-nonces-discard``
directly after its deletion committed, so a failing append (or a kill) between the two lost it
while the nonces were gone. Here the direct append of that action fails: the entry still reaches
the log, exactly once, through the outbox."""

from __future__ import annotations

from typing import Any

import pytest

from governance.approval import SCHEME_ED25519
from governance.errors import GovernanceError
from mpc_node.storage import NodeStore, StoreError
from mpcnet.cluster.launcher import prepare
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2

from .frost_util import frost_dkg, make_nonces
from .presign_util import close, presign, run_session, service


def _no_direct(action: str) -> Any:
    real = AuditLog.append

    def append(self: AuditLog, actor: str, act: str, *a: Any, **kw: Any) -> Any:
        if act == action:
            raise GovernanceError("database", "disk I/O error (test: the direct append after the deletion fails)")
        return real(self, actor, act, *a, **kw)

    return append


def _discards(svc: Any, action: str) -> list[Any]:
    svc.outbox.flush()
    return [e for e in svc.audit.entries() if e.action == action and e.details.get("reason") == "node-start"]


def test_a_redone_nonce_purge_queues_its_entry_with_the_deletion(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = {i: service(lay, i) for i in (1, 2, 3)}
    try:
        key = frost_dkg(svcs, SCHEME_ED25519, 2)
        make_nonces(svcs, key, (1,), count=3)  # left fresh by the restart below
        close(svcs[1])

        def locked(self: NodeStore, **kw: object) -> int:  # the start purge cannot write
            raise StoreError("database is locked")

        with monkeypatch.context() as m:
            m.setattr(NodeStore, "delete_all_fresh_nonces", locked)
            svcs[1] = service(lay, 1)
        before = len(_discards(svcs[1], "frost-nonces-discard"))
        monkeypatch.setattr(AuditLog, "append", _no_direct("frost-nonces-discard"))
        # the first MakeNonces redoes the purge (writable now) before making any
        svcs[1].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1), None)
        got = _discards(svcs[1], "frost-nonces-discard")[before:]
        assert [e.details["count"] for e in got] == [3], got
    finally:
        for s in svcs.values():
            close(s)


def test_a_presignature_purge_redone_by_the_pools_queues_its_entry_with_the_deletion(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = {i: service(lay, i) for i in (1, 2, 3)}
    try:
        res = run_session(svcs, bytes(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=2, parties=3, key_label=b"purge"))
        key = res[1].dkg_result
        for s in svcs.values():
            s.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), None)
        presign(svcs, key, (1, 2), count=2)  # left fresh by the restart below
        close(svcs[1])
        real = NodeStore.delete_all_fresh_presignatures
        calls: list[int] = []

        def once_locked(self: NodeStore, **kw: Any) -> int:  # the service's start deletion fails, the pools' succeeds
            calls.append(1)
            if len(calls) == 1:
                raise StoreError("database is locked")
            return real(self, **kw)

        monkeypatch.setattr(NodeStore, "delete_all_fresh_presignatures", once_locked)
        monkeypatch.setattr(AuditLog, "append", _no_direct("presign-discard"))
        svcs[1] = service(lay, 1)
        assert len(calls) == 2
        got = _discards(svcs[1], "presign-discard")
        assert [e.details["count"] for e in got] == [2], got
    finally:
        for s in svcs.values():
            close(s)
