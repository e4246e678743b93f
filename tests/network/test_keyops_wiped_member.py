"""A member of a key's committee that lost its share (its disk was wiped, or a replaced host with
an empty store) takes part in a key operation only as a receiver, never as a dealer (issue 12's
disaster recovery with a reshare follow-up), driven in process (no gRPC).

Three :class:`NodeService` instances of a 2-of-3 cluster; the test plays the coordinator. Every
test makes its own key (DKG) and then empties node 3's store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from governance.keyop import KeyOpKind
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .keyops_util import close, dkg, operation, run, services, share, sign

N, T = 3, 2
LABEL = b"keyops"
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("keyops-wiped"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _wipe(lay: Layout, svcs: dict[int, NodeService], i: int) -> None:
    """Empty node ``i``'s store (its disk was lost; it keeps its roster keys) and start it again."""
    svcs[i].store.close()
    svcs[i].audit.close()
    store = Path(svcs[i].cfg.store)
    for f in store.parent.glob(store.name + "*"):
        f.unlink()
    svcs[i] = services(lay, only=i)[i]


def _key_without_node_3(lay: Layout, svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    key = dkg(svcs, T)
    _wipe(lay, svcs, 3)
    assert share(svcs[3], key.key_id) is None
    return key


def _op(lay: Layout, svcs: dict[int, NodeService], key: Any, **kw: Any) -> bytes:
    return operation(lay, svcs[1].gov.governance_root, key, **kw).to_bytes()


def _start(svc: NodeService, sid: bytes, op: bytes, dealers: list[int]) -> Any:
    return svc.StartSession(
        node_pb2.StartSessionRequest(session_id=sid, reshare=node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=LABEL)),
        None,
    )


def _holds(svc: NodeService, key_id: bytes) -> tuple[bool, int]:
    info = svc.GetPendingEpoch(node_pb2.GetPendingEpochRequest(key_id=key_id, session_id=os.urandom(32)), None)
    return info.holds_key, info.active_epoch


def test_a_wiped_member_receives_a_share_in_a_reshare_dealt_by_the_holders(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _key_without_node_3(lay, svcs)
    assert _holds(svcs[1], key.key_id) == (True, 0) and _holds(svcs[3], key.key_id) == (False, 0)
    op = _op(lay, svcs, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=3)
    sid = os.urandom(32)
    res = run(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2], key_label=LABEL))
    assert all(not isinstance(r, RpcError) and r.finished for r in res.values()), res
    accepted = [e for e in svcs[3].audit.entries() if e.action == "key-reshare" and e.outcome == "accepted"]
    assert accepted and accepted[-1].details["dealers"] == "1,2"
    receipts = [r.reshare_result.receipt for r in res.values()]
    for s in svcs.values():
        out = s.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=receipts), None)
        assert out.holds_share and out.epoch == 1
    ks = share(svcs[3], key.key_id)
    assert ks is not None and ks.epoch == 1 and ks.public_key.encode() == key.public_key
    assert _holds(svcs[3], key.key_id) == (True, 1)
    assert isinstance(sign(lay, svcs, key, [1, 2, 3], (1, 2, 3), 1), bytes)


def test_a_wiped_member_never_deals_and_a_refresh_needs_its_share(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _key_without_node_3(lay, svcs)
    reshare = _op(lay, svcs, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=3)
    refresh = _op(lay, svcs, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    for op in (reshare, refresh):
        with pytest.raises(RpcError) as e:
            _start(svcs[3], os.urandom(32), op, [1, 2, 3])
        assert e.value.code == Code.FAILED_PRECONDITION
        assert e.value.message.startswith(f"reshare.dealers: node 3 holds no share of key {key.key_id.hex()[:16]} at epoch 0 to deal")
    refused = [e for e in svcs[3].audit.entries() if e.action == "key-reshare" and e.outcome == "refused"]
    assert len(refused) >= 2 and "holds no share" in str(refused[-1].details["reason"])
    assert share(svcs[3], key.key_id) is None and svcs[3].store.key_epoch(key.key_id) is None  # nothing changed
    assert _holds(svcs[1], key.key_id) == _holds(svcs[2], key.key_id) == (True, 0)


def test_a_wiped_member_left_out_of_the_new_committee_has_nothing_to_switch(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _key_without_node_3(lay, svcs)
    op = _op(lay, svcs, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2), old_t=2, new_t=2)
    with pytest.raises(RpcError) as e:  # neither a dealer nor a receiver
        _start(svcs[3], os.urandom(32), op, [1, 2])
    assert e.value.code == Code.FAILED_PRECONDITION and e.value.message.startswith("reshare.dealers: node 3 is neither")
    sid = os.urandom(32)
    res = run(svcs, sid, [1, 2], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2], key_label=LABEL))
    assert all(not isinstance(r, RpcError) and r.finished for r in res.values()), res
    req = node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=[r.reshare_result.receipt for r in res.values()])
    for i in (1, 2):
        assert svcs[i].CommitEpoch(req, None).holds_share
    out = svcs[3].CommitEpoch(req, None)
    assert (out.epoch, out.holds_share, out.changed) == (1, False, False)
    assert svcs[3].store.key_epoch(key.key_id) is None
    assert isinstance(sign(lay, svcs, key, [1, 2], (1, 2), 1), bytes)
    # a certificate that is not valid is still refused there
    bad = node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=[res[1].reshare_result.receipt])
    with pytest.raises(RpcError):
        svcs[3].CommitEpoch(bad, None)


def test_a_reshare_that_names_the_wiped_member_with_a_forged_key_is_refused(lay: Layout, svcs: dict[int, NodeService]) -> None:
    """A receiver without a record learns the key from the operation: its id must be the id of
    the public key and chain code it names."""
    key = _key_without_node_3(lay, svcs)
    other = dkg({i: svcs[i] for i in (1, 2, 3)}, T)

    class Forged:
        key_id, public_key, chain_code = key.key_id, other.public_key, other.chain_code

    op = _op(lay, svcs, Forged(), kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=3)
    with pytest.raises(RpcError) as e:
        _start(svcs[3], os.urandom(32), op, [1, 2])
    assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("reshare.operation.key_id:")
