"""Review of issue 14 (attacker): a corrupted node poisoning pools through its presign answers.
Each poisoned batch is discarded (held), but without a culprit the refiller comes back to the
same signer set after every back-off, so honest nodes spend presign CPU on it for ever. A node
whose own answer is wrong (another key, epoch, path or signer set, a PK' that is not the
coordinator's derivation, the wrong count) is named alone; two answers that disagree name the
pair (one of the two lied): either way no pool puts them together again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import coordinator.pool as pool_mod
from coordinator.pool_config import PresignConfig
from mpcnet.wire.mpc.v1 import node_pb2

from .pool_util import cluster, derived
from .test_pool_refill import FakeSessions, _point


def _sets_due(c) -> set[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    return {p[3] for _, p, _ in c.pools.due()}


def test_disagreeing_answers_dispute_the_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=4, refill_at=0, cap=8, batch=4))
    monkeypatch.setattr(pool_mod, "run_session", FakeSessions(c, tamper=2))
    assert c.pools.run_presign(c.key, (c.key.key_id, 0, (), (1, 2)), 4) == 0
    assert frozenset({1, 2}) in c.pools.disputes(c.key.key_id)
    c.pools._backoff.clear()  # after the back-off: the pair is not pooled again
    assert (1, 2) not in _sets_due(c) and _sets_due(c)


class _OwnBad(FakeSessions):
    """Node ``bad``'s own answer names a PK' that is not the key's derivation."""

    def __init__(self, c: Any, bad: int) -> None:
        super().__init__(c)
        self.bad = bad

    def __call__(self, nodes: dict[int, Any], sid: bytes, start: dict[int, Any], timeout: float, **kw: Any) -> dict[int, Any]:
        out = super().__call__(nodes, sid, start, timeout, **kw)
        for x in out[self.bad].presign_result.presignatures:
            x.public_key = _point()
        return out


def test_a_node_whose_own_answer_is_wrong_is_named_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=4, refill_at=0, cap=8, batch=4))
    monkeypatch.setattr(pool_mod, "run_session", _OwnBad(c, 2))
    assert c.pools.run_presign(c.key, (c.key.key_id, 0, (), (1, 2)), 4) == 0
    assert frozenset({2}) in c.pools.disputes(c.key.key_id)
    c.pools._backoff.clear()
    assert _sets_due(c) == {(1, 3)}


def test_an_honest_batch_disputes_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=4, refill_at=0, cap=8, batch=4))
    monkeypatch.setattr(pool_mod, "run_session", FakeSessions(c))
    assert c.pools.run_presign(c.key, (c.key.key_id, 0, (), (1, 2)), 4) == 4
    assert c.pools.disputes(c.key.key_id) == frozenset()
    assert derived(c) and node_pb2  # the helpers stay imported for the fixtures above
