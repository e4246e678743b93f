"""In-process fuzz of the node's issue-11 RPCs (StartSession with reshare parameters,
CommitEpoch, DiscardEpoch, GetPendingEpoch, InstallRosterChange, GetRoster,
InstallStagedCertificate): seeded random and mutated requests built from real templates (a real
admin-signed operation, real receipts, the real roster change) must be refused with an
:class:`RpcError` whose code is not INTERNAL or UNKNOWN (never an unhandled exception), and a
refused request changes nothing: the key keeps signing in its epoch.
The gRPC-level fuzz of every RPC is tests/integration/test_rpc_fuzz.py (real processes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from governance.keyop import KeyOpKind
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.conftest import scaled
from tests.integration.rpcfuzz import Fuzz

from .keyops_util import close, dkg, operation, run, services, share, sign

Code = grpc.StatusCode
BAD = (Code.INTERNAL, Code.UNKNOWN)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("lcfuzz"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _call(svc: NodeService, name: str, req: Message) -> None:
    try:
        getattr(svc, name)(req, None)
    except RpcError as e:
        assert e.code not in BAD, f"{name}: {e.code} {e.message}"
        # the field is named first (never a traceback or a repr)
        assert "Traceback" not in e.message and "object at 0x" not in e.message, e.message
    # any other exception fails the test with its traceback


def test_epoch_and_roster_rpcs_never_fail_internally(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = dkg(svcs, 2)
    root = svcs[1].gov.governance_root
    op = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2).to_bytes()
    sid = os.urandom(32)
    res = run(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=b"keyops"))
    receipts = [r.reshare_result.receipt for r in res.values()]
    history = svcs[1].GetRoster(node_pb2.GetRosterRequest(), None)
    svc = svcs[1]
    templates: list[tuple[str, Message]] = [
        ("StartSession", node_pb2.StartSessionRequest(
            session_id=os.urandom(32), reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=b"keyops"))),
        ("CommitEpoch", node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=receipts)),
        ("DiscardEpoch", node_pb2.DiscardEpochRequest(key_id=key.key_id, session_id=sid)),
        ("GetPendingEpoch", node_pb2.GetPendingEpochRequest(key_id=key.key_id, session_id=sid)),
        ("InstallStagedCertificate", node_pb2.InstallStagedCertificateRequest()),
        ("GetRoster", node_pb2.GetRosterRequest()),
    ]
    templates.append(("InstallRosterChange", node_pb2.InstallRosterChangeRequest(signed_change=history.signed_changes[0])))
    fz = Fuzz(20261130, hints={"key_id": [key.key_id], "session_id": [sid]})
    for _ in range(scaled(60)):
        for name, template in templates:
            kind = fz.rng.random()
            if kind < 0.6:
                data = fz.mutated(template)
            else:
                data = fz.fill(type(template)()).SerializeToString()
            req: Any = type(template)()
            req.ParseFromString(data)
            _call(svc, name, req)
            if name == "StartSession" and len(req.session_id) == 32:  # end an accepted session
                svc.AbortSession(node_pb2.AbortSessionRequest(session_id=req.session_id, reason="fuzz"), None)
    # nothing was lost: a mutated CommitEpoch that stayed valid may have committed node 1; the
    # refresh's certificate still commits everywhere and the key signs in epoch 1
    assert share(svc, key.key_id).epoch in (0, 1)  # type: ignore[union-attr]
    for s in svcs.values():
        s.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=receipts), None)
    assert all(share(s, key.key_id).epoch == 1 for s in svcs.values())  # type: ignore[union-attr]
    assert isinstance(sign(lay, svcs, key, [1, 2], (1, 2, 3), 1), bytes)
