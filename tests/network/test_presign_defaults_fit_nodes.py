"""The pool defaults (coordinator config and the dev cluster's) fit what a node takes by default
(issue 14): a session's ``batch`` within the node's ``max_presign_batch`` (else every refill is
refused and the pool backs off), and the refiller's two signer sets per key at ``cap`` within the
node's ``max_presignatures_per_key`` (a node in both sets holds both pools)."""

from __future__ import annotations

import dataclasses

from coordinator.pool import SETS_PER_KEY
from coordinator.pool_config import PresignConfig
from mpc_node.config import NodeConfig
from mpcnet.cluster.presign_config import DEFAULT_PRESIGN


def _node_default(name: str) -> int:
    [f] = [f for f in dataclasses.fields(NodeConfig) if f.name == name]
    assert isinstance(f.default, int)
    return f.default


def test_the_pool_defaults_fit_a_default_node() -> None:
    for batch, cap, target, refill_at in (
        (PresignConfig().batch, PresignConfig().cap, PresignConfig().target, PresignConfig().refill_at),
        (DEFAULT_PRESIGN["batch"], DEFAULT_PRESIGN["cap"], DEFAULT_PRESIGN["target"], DEFAULT_PRESIGN["refill_at"]),
    ):
        assert batch <= _node_default("max_presign_batch")
        assert SETS_PER_KEY * cap <= _node_default("max_presignatures_per_key")
        assert target - refill_at <= batch  # a pool at refill_at is topped up in one session
