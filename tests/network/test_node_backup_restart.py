"""A node killed at each step of a restore (issue 12), in process: the node is closed and opened
again from its files (like ``kill -9`` then the supervisor's restart) right after it stored its
restored share (the coordinator never saw the receipt) and again after the follow-up session
stored its outcome. The coordinator's retry gets the same signed receipt, the restored share
survives until the follow-up commits, the follow-up deals with it and the key signs with the
same public key; the node audits the first restore (``restored``) and the retry
(``answered-again``: so a node killed between storing the share and auditing it still has an
entry saying the share was restored)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.keyop import SignedKeyOperation
from governance.recovery import PiecePurpose, RecoveryReceipt, SignedRecoveryConfigChange
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common import agekeys
from mpcnet.wire.mpc.v1 import node_pb2

from .keyops_util import close, dkg, run, services, share, sign
from .test_node_backup import LABEL, T, _audit, _bundle, _config_for, _order, _pieces, _wipe


@pytest.fixture
def lay(tmp_path: Path) -> Layout:
    return prepare(tmp_path / "c", 3, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _restart(lay: Layout, svcs: dict[int, NodeService], i: int) -> NodeService:
    """Node ``i`` dies and starts again on the same files."""
    svcs[i].store.close()
    svcs[i].audit.close()
    svcs[i] = services(lay, only=i)[i]
    return svcs[i]


def test_a_node_killed_after_storing_its_restored_share_answers_the_retry_and_the_key_recovers(
    lay: Layout, svcs: dict[int, NodeService]
) -> None:
    officers = [agekeys.generate() for _ in range(3)]
    config: SignedRecoveryConfigChange = _config_for(lay, svcs, officers)
    key = dkg(svcs, T)
    bundle = _bundle(svcs, config, key)
    _wipe(lay, svcs, 3)
    svcs[3].InstallRecoveryConfig(node_pb2.InstallRecoveryConfigRequest(history=[config.to_bytes()]), None)
    order, follow = _order(lay, svcs[1], key, bundle, [(3, 3)])
    for i in (1, 2):
        svcs[i].InstallRecoveryOrder(node_pb2.InstallRecoveryOrderRequest(signed_order=order.to_bytes()), None)
    pieces = _pieces(bundle, officers, [1, 3], order.order.order_id, PiecePurpose.RESTORE, svcs[3], 3)
    req = node_pb2.RestoreShareRequest(signed_order=order.to_bytes(), bundle=bundle.to_file(), pieces=pieces)
    first = svcs[3].RestoreShare(req, None)
    # killed before the answer reached the coordinator: the coordinator asks again
    s3 = _restart(lay, svcs, 3)
    again = s3.RestoreShare(req, None)
    assert again.receipt == first.receipt and RecoveryReceipt.from_bytes(again.receipt).verify(s3.keys.identity_public)
    assert len([e for e in _audit(s3, "share-restored") if e.outcome == "restored"]) == 1
    [retry] = [e for e in _audit(s3, "share-restored") if e.outcome == "answered-again"]  # audited even if the first entry was lost
    assert retry.details["order_id"] == order.order.order_id.hex() and retry.details["share_index"] == 3
    # the follow-up refresh: node 3 deals with its restored share; it dies after storing its outcome
    sid = os.urandom(32)
    op = SignedKeyOperation(follow, ()).to_bytes()
    res = run(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=LABEL))
    assert all(r.finished for r in res.values()), res
    s3 = _restart(lay, svcs, 3)
    assert s3.store.restored_key(key.key_id) is not None  # kept until the commit
    receipts = [r.reshare_result.receipt for r in res.values()]
    for s in svcs.values():
        s.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=receipts), None)
    s3 = _restart(lay, svcs, 3)
    assert s3.store.restored_key(key.key_id) is None
    ks = share(s3, key.key_id)
    assert ks is not None and ks.epoch == 1 and ks.public_key.encode() == key.public_key
    assert isinstance(sign(lay, svcs, key, [1, 3], (1, 2, 3), 1), bytes)
