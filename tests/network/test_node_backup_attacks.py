"""Attacks on the node's backup/recovery RPCs by a coordinator that replays admin orders
(issue 12 wiring review): each test is a finding, fixed."""

from __future__ import annotations

import grpc

from governance.recovery import PiecePurpose, SignedRecoveryConfigChange
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout
from mpcnet.wire.mpc.v1 import node_pb2

from .keyops_util import dkg
from .test_node_backup import T, _audit, _bundle, _order, _pieces, _refused, config, lay, officers, svcs  # noqa: F401

Code = grpc.StatusCode


def test_a_node_that_left_the_key_never_restores_a_share_of_an_epoch_before_it_left(
    lay: Layout, svcs: dict[int, NodeService], config: SignedRecoveryConfigChange, officers: list[tuple[bytes, bytes]]  # noqa: F811
) -> None:
    """Finding: a node that left a key's committee at epoch 1 (a reshare dropped it) accepted a
    RestoreShare of an epoch-0 order (still unexpired, replayed by the coordinator): it rebuilt
    and stored its refreshed-away epoch-0 share, which no operation can ever use."""
    key = dkg(svcs, T)
    bundle = _bundle(svcs, config, key)
    s3 = svcs[3]
    order, _ = _order(lay, svcs[1], key, bundle, [(3, 3)])
    assert s3.store.leave_key(key.key_id, epoch=1, threshold=T, committee=(1, 2))  # a reshare to (1, 2) dropped node 3
    pieces = _pieces(bundle, officers, [1, 2], order.order.order_id, PiecePurpose.RESTORE, s3, 3)
    req = node_pb2.RestoreShareRequest(signed_order=order.to_bytes(), bundle=bundle.to_file(), pieces=pieces)
    e = _refused(s3.RestoreShare, req)
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("signed_order.order.epoch:"), e.message
    assert "epoch 1" in e.message
    assert s3.store.restored_key(key.key_id) is None
    assert _audit(s3, "share-restored")[-1].outcome == "refused"


def test_the_store_refuses_a_restored_share_of_an_epoch_before_the_node_left(svcs: dict[int, NodeService]) -> None:  # noqa: F811
    """The same rule inside the write transaction (a leave racing a RestoreShare)."""
    import pytest

    from mpc_node.backup_store import BackupStateError, RestoredKey

    key = dkg(svcs, T)
    s2 = svcs[2]
    assert s2.store.leave_key(key.key_id, epoch=1, threshold=T, committee=(1, 3))
    rk = RestoredKey(key.key_id, 0, T, (1, 2, 3), key.public_key, "keyops", bytes(16), b"receipt")
    with pytest.raises(BackupStateError, match="left key .* at epoch 1"):
        s2.store.put_restored_share(rk, b"record")
    assert s2.store.restored_key(key.key_id) is None


def test_an_epoch_attestation_carries_the_nodes_clock(svcs: dict[int, NodeService]) -> None:  # noqa: F811
    """Officers count only recent attestations: the node signs its clock into each one."""
    import os

    from governance.recovery import EpochAttestation

    key = dkg(svcs, T)
    s1 = svcs[1]
    before = s1.clock.now_ms()
    raw = s1.AttestEpoch(node_pb2.AttestEpochRequest(key_id=key.key_id, ceremony_id=os.urandom(16)), None).attestation
    a = EpochAttestation.from_bytes(raw)
    assert before <= a.attested_ms <= s1.clock.now_ms() and a.verify(s1.keys.identity_public)
