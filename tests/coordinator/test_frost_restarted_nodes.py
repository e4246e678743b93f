"""Nodes that lost their fresh FROST nonces (restarted) with fake nodes (issue 16):
coordinator/frost_nonce_sync.py drops the commitments they no longer hold after two probes that
report fewer than the coordinator holds (never after one), and asks the nodes to delete those
ids; coordinator/frost_sign.py does not exclude a signer from a request for its first
``nonce-unknown`` (a fresh batch of it signs the next attempt), but does for a second one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from coordinator.frost_nonce_sync import REASON, NonceSync

from .frost_util import FrostCluster, frost_cluster

MSG = b"pay 1 SOL to alice"


def _restart(c: FrostCluster, *nodes: int) -> None:
    """The nodes start again: every fresh nonce pair is deleted."""
    for i in nodes:
        c.stubs[i].fresh.clear()


def _sign(c: FrostCluster, rid: str) -> tuple[tuple[int, ...], int]:
    _, signers, attempt = c.signing.sign(rid, c.key, hashlib.sha256(MSG).digest(), MSG, b"", b"bundle")
    return signers, attempt


def _sync(c: FrostCluster) -> NonceSync:
    return NonceSync(c.db, lambda: c.handles)  # type: ignore[arg-type,return-value]


def _reported(c: FrostCluster) -> dict[int, int]:
    return {i: len(s.fresh) for i, s in c.stubs.items()}


def test_every_signer_restarted_the_request_still_signs(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=3, n=5)
    c.signing.refill()
    _restart(c, 1, 2, 3, 4, 5)  # quicker than a probe: the coordinator still offers the lost commitments
    signers, attempt = _sign(c, "req-restarted")
    assert attempt == 2 and signers == (1, 2, 3)  # before: attempt 1 named nodes 1-3 failed, 4-5 could not make t
    first = {r.node: r.outcome for r in c.db.nonces_of("req-restarted") if r.attempt == 1}
    assert first == {1: "failed", 2: "failed", 3: "failed"}


def test_a_second_nonce_unknown_excludes_the_signer(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=3)
    c.stubs[1].refuse = "nonce-unknown"  # every time: not a restart, a misbehaving node
    signers, attempt = _sign(c, "req-liar")
    assert attempt == 3 and 1 not in signers
    assert [r.node for r in c.db.nonces_of("req-liar") if r.attempt == 3] == [2, 3]


def test_one_short_probe_changes_nothing_two_drop_the_lost_commitments(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=3)
    c.signing.refill()
    sync = _sync(c)
    held = sync.held()
    assert held == _reported(c) and all(held.values())
    assert sync.observe(_reported(c)) == {}  # in step
    _restart(c, 2)
    assert sync.observe(_reported(c)) == {}  # one short probe: maybe a batch recorded between answer and count
    assert sync.held() == held
    assert sync.observe(_reported(c)) == {2: held[2]}
    assert sync.held() == {1: held[1], 3: held[3]}
    rows = c.db._query("SELECT state, reason FROM frost_nonces WHERE node = 2")
    assert {(s, r) for s, r in rows} == {("discarded", REASON)}
    c.signing.refill()  # the background pass makes new ones
    assert sync.held()[2] == len(c.stubs[2].fresh) > 0
    assert sync.observe(_reported(c)) == {}


def test_a_wrong_guess_deletes_the_ids_on_the_node_too(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=3)
    c.signing.refill()
    sync = _sync(c)
    had = set(c.stubs[3].fresh)
    low = _reported(c) | {3: 0}  # node 3 says it holds none, yet still has them
    sync.observe(low)
    assert sync.observe(low) == {3: len(had)}
    assert set(c.stubs[3].discarded) == had and not c.stubs[3].fresh  # both sides empty: no orphan secret


def test_an_unshared_shortfall_resets(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=3)
    c.signing.refill()
    sync = _sync(c)
    short = _reported(c) | {1: 0}
    assert sync.observe(short) == {}
    assert sync.observe(_reported(c)) == {}  # in step again: the suspicion is forgotten
    assert sync.observe(short) == {}
    assert sync.held()[1] > 0


def test_assigned_commitments_are_never_touched(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=3)
    _sign(c, "req-before")
    sync = _sync(c)
    assigned = {(r.nonce_id, r.state) for r in c.db.nonces_of("req-before")}
    for _ in range(2):
        sync.observe({1: 0, 2: 0, 3: 0})
    assert {(r.nonce_id, r.state) for r in c.db.nonces_of("req-before")} == assigned
