"""Attack (issue 11): a corrupted dealer (node 2, with its real keys, so its envelopes verify)
deals a wrong constant term in a reshare run through the nodes' real session code. Every
receiver must abort naming node 2, store no pending share and no receipt (so no certificate can
exist), and the key must stay signable in its old epoch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from crypto_core.group import Q
from crypto_core.reshare import ReshareConfig, ReshareParty
from governance.keyop import KeyOpKind
from mpc_node import epochs
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .keyops_util import close, dkg, operation, run, services, share, sign


class _Cheat(ReshareParty):
    def _constant(self) -> int:
        return (super()._constant() + 1) % Q


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("cheat"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def test_a_dealer_with_a_wrong_constant_term_is_named_and_nothing_is_stored(
    lay: Layout, svcs: dict[int, NodeService], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = dkg(svcs, 2)
    op = operation(lay, svcs[1].gov.governance_root, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2, 3), old_t=2,
                   new_t=3).to_bytes()

    def party(config: ReshareConfig, share: Any) -> ReshareParty:
        return (_Cheat if config.index == 2 else ReshareParty)(config, share)

    monkeypatch.setattr(epochs, "ReshareParty", party)
    sid = os.urandom(32)
    res = run(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=b"keyops"))
    assert res and all(isinstance(e, RpcError) for e in res.values())
    for i in (1, 3):
        assert i in res and "node 2 (node-2)" in res[i].message, res  # type: ignore[attr-defined]
    monkeypatch.undo()
    for s in svcs.values():
        info = s.GetPendingEpoch(node_pb2.GetPendingEpochRequest(key_id=key.key_id, session_id=sid), None)
        assert not (info.pending or info.committed or info.receipt) and info.active_epoch == 0
        assert share(s, key.key_id).epoch == 0  # type: ignore[union-attr]
    assert isinstance(sign(lay, svcs, key, [1, 3], (1, 2, 3), 0), bytes)
    # the epoch is still open: an honest run of the same operation finishes
    res2 = run(svcs, os.urandom(32), [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=b"keyops"))
    assert all(r.finished for r in res2.values())
