"""FROST signing after a policy change (coordinator/frost_sign.py): a node that refuses with
``stale-policy`` (at SignSchnorr or at the reservation) has its policies resynced and the request
is retried with the next attempt and fresh nonce commitments, as the DKLs23 path does
(coordinator/service.py); a node still refusing after its resync ends the request."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coordinator.frost_sign import FrostDeps
from mpcnet.common.rpc import RpcError

from .frost_util import FrostCluster, frost_cluster
from .pool_util import refusal

MSG = b"pay 1 SOL to alice"


def _with_resync(c: FrostCluster, clears: bool = True) -> list[int]:
    """Resync calls recorded; ``clears``: a resync brings the node up to date (no more refusal)."""
    calls: list[int] = []

    def resync(i: int) -> None:
        calls.append(i)
        if clears:
            c.stubs[i].refuse = ""

    c.signing.deps = FrostDeps(**{**c.signing.deps.__dict__, "resync": resync})
    return calls


def _sign(c: FrostCluster, rid: str) -> tuple[tuple[int, ...], int]:
    sig, signers, attempt = c.signing.sign(rid, c.key, hashlib.sha256(MSG).digest(), MSG, b"", b"bundle")
    assert len(sig.schnorr) == 64
    return signers, attempt


def _no_commitment_offered_twice(c: FrostCluster, rid: str) -> None:
    rows = c.db.nonces_of(rid)
    assert len({r.nonce_id for r in rows}) == len(rows)  # every attempt had fresh commitments
    for stub in c.stubs.values():
        nids = [nid for _, _, nid in stub.signed]
        assert len(nids) == len(set(nids))


def test_a_stale_policy_refusal_resyncs_that_node_and_retries_with_fresh_nonces(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=3, n=3)  # every node must sign: the refuser cannot be signed around
    c.stubs[2].refuse = "stale-policy"
    calls = _with_resync(c)
    signers, attempt = _sign(c, "req-stale")
    assert calls == [2] and attempt == 2 and signers == (1, 2, 3)
    first = {r.node: r for r in c.db.nonces_of("req-stale") if r.attempt == 1}
    assert first[2].outcome == "failed" and c.stubs[2].discarded == [first[2].nonce_id]  # never consumed: freed there
    _no_commitment_offered_twice(c, "req-stale")
    assert not c.audited  # a missed policy change is no provable fault


def test_every_node_refusing_stale_policy_is_resynced_once_each(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=3)
    for stub in c.stubs.values():  # a policy change no node has seen yet
        stub.refuse = "stale-policy"
    calls = _with_resync(c)
    _, attempt = _sign(c, "req-all")
    assert calls == [1, 2] and attempt == 2  # the first attempt's two signers, once each
    _no_commitment_offered_twice(c, "req-all")


def test_a_node_still_stale_after_its_resync_ends_the_request(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=3, n=3)
    for stub in c.stubs.values():  # a resync that does not take (another governance root, a node that lies)
        stub.refuse = "stale-policy"
    calls = _with_resync(c, clears=False)
    with pytest.raises(RpcError) as e:
        _sign(c, "req-still")
    assert getattr(e.value, "governance", "") == "stale-policy" and e.value.code.name == "FAILED_PRECONDITION"
    assert calls == [1, 2, 3] and c.db.sign_attempts_taken("req-still") == 2  # one resync each, one retry
    _no_commitment_offered_twice(c, "req-still")


def test_a_stale_policy_refusal_at_the_reservation_resyncs_and_retries(tmp_path: Path) -> None:
    from coordinator.relay import Refused

    c = frost_cluster(tmp_path, t=2, n=5)  # 2 signers < a majority of 5: receipts needed
    seen: list[int] = []

    def reserve(rid, k, digest, path, bundle, attempt, signers, sid):  # type: ignore[no-untyped-def]
        seen.append(attempt)
        if len(seen) == 1:
            e = refusal("stale-policy", "approval_bundle")
            raise Refused(e.code(), e.details(), node=4, governance="stale-policy")
        return [b"receipt"]

    c.signing.deps = FrostDeps(**{**c.signing.deps.__dict__, "reserve": reserve})
    calls = _with_resync(c)
    _, attempt = _sign(c, "req-res")
    assert calls == [4] and seen == [1, 2] and attempt == 2
    first = [r for r in c.db.nonces_of("req-res") if r.attempt == 1]
    assert {r.outcome for r in first} == {"failed"}  # never sent: freed on the nodes, never offered again
    assert all(c.stubs[r.node].discarded == [r.nonce_id] for r in first)
    _no_commitment_offered_twice(c, "req-res")


def test_the_service_resyncs_through_the_policy_book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator wires FrostDeps.resync to the same resync as the DKLs23 path; a node no
    longer in the roster is skipped (no KeyError out of a signing)."""
    import dataclasses

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from coordinator.config import load_coordinator_config
    from coordinator.service import CoordinatorService
    from mpcnet.cluster.launcher import prepare

    lay = prepare(tmp_path / "lay", 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    cfg = load_coordinator_config(lay.coordinator_config)
    svc = CoordinatorService(dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db"), Ed25519PrivateKey.generate())
    try:
        synced: list[int] = []
        monkeypatch.setattr(svc.policies, "sync_node", lambda i: synced.append(i) or True)
        svc.frost.deps.resync(2)
        svc.frost.deps.resync(99)
        assert synced == [2] and not svc.policies.synced(2)
    finally:
        svc.stop()
