"""The issue 12 RPCs wired into the real :class:`coordinator.service.CoordinatorService` (built
from a prepared dev-cluster layout, no node running): ClusterStatus before and after a recovery
configuration, ProposeRecoveryConfig by an admin (a second admin's approval applies it; the
nodes being down only leaves them unsynced), GetRecoveryConfig, and the refusals of the new RPCs
naming their field."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import load_coordinator_config
from coordinator.service import CoordinatorService
from governance.recovery import (
    Officer,
    RecoveryConfig,
    RecoveryConfigChange,
    SignedRecoveryConfigChange,
    sign_recovery_config_change,
)
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common import agekeys
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

Code = grpc.StatusCode


class Ctx:
    """A servicer context whose caller presents ``name``'s certificate."""

    def __init__(self, lay: Layout, name: str) -> None:
        self.pem = (lay.dir / "identities" / name / f"{name}.pem").read_bytes()

    def peer_identity_key(self) -> str:
        return "x509_pem_cert"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self.pem]}


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("recovery-svc"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture
def svc(lay: Layout, tmp_path: Path) -> Iterator[CoordinatorService]:
    cfg = load_coordinator_config(lay.coordinator_config)
    s = CoordinatorService(dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db"), Ed25519PrivateKey.generate())
    yield s
    s.stop()


def _signed(lay: Layout, svc: CoordinatorService, *admins: str) -> tuple[RecoveryConfigChange, bytes]:
    officers = tuple(Officer(f"officer{j}", agekeys.generate()[1]) for j in (1, 2, 3))
    admin_set = svc.cfg.admin_set
    change = RecoveryConfigChange(admin_set.digest(), None, RecoveryConfig(1, officers, 2, admin_set.quorum + 1, 86400))
    sigs = tuple(sign_recovery_config_change(change, a, load_identity(lay.dir, a).signing_key) for a in admins)
    return change, SignedRecoveryConfigChange(change, sigs).to_bytes()


def test_status_configuration_and_history_through_the_service(lay: Layout, svc: CoordinatorService) -> None:
    st = svc.ClusterStatus(cpb.ClusterStatusRequest(), None)
    assert st.recovery_config_version == 0 and not st.backups
    change, data = _signed(lay, svc, "admin1")
    p = svc.ProposeRecoveryConfig(cpb.ProposeRecoveryConfigRequest(signed_change=data), Ctx(lay, "admin1"))
    assert p.kind == "recovery-config" and p.state == cpb.PROPOSAL_STATE_PENDING
    key2 = load_identity(lay.dir, "admin2").signing_key
    applied = svc.ApproveLifecycleProposal(cpb.ApproveLifecycleProposalRequest(
        proposal_id=p.proposal_id, admin="admin2", signature=key2.sign(change.encode())), Ctx(lay, "admin2"))
    assert applied.state == cpb.PROPOSAL_STATE_APPLIED
    assert svc.ClusterStatus(cpb.ClusterStatusRequest(), None).recovery_config_version == 1
    hist = svc.GetRecoveryConfig(cpb.GetRecoveryConfigRequest(), None)
    assert len(hist.history) == 1 and SignedRecoveryConfigChange.from_bytes(hist.history[0]).change == change
    assert hist.governance_root == svc.cfg.admin_set.digest()
    assert not any(svc.recovery.book.synced(i) for i in svc.nodes)  # no node is running: pushed later


def _refused(fn: Any, req: Any, ctx: Any) -> RpcError:
    with pytest.raises(RpcError) as e:
        fn(req, ctx)
    return e.value


def test_the_new_rpcs_refuse_naming_the_field(lay: Layout, svc: CoordinatorService) -> None:
    admin = Ctx(lay, "admin1")
    _, data = _signed(lay, svc, "admin2")  # the proposer must sign its own proposal
    e = _refused(svc.ProposeRecoveryConfig, cpb.ProposeRecoveryConfigRequest(signed_change=data), admin)
    assert e.code == Code.PERMISSION_DENIED and e.message.startswith("signed_change.signatures:")
    e = _refused(svc.ProposeRecoveryConfig, cpb.ProposeRecoveryConfigRequest(signed_change=b"junk"), admin)
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("signed_change.")
    e = _refused(svc.ProposeRecoveryOrder, cpb.ProposeRecoveryOrderRequest(signed_order=b"junk"), admin)
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("signed_order.")
    e = _refused(svc.ExportBackup, cpb.ExportBackupRequest(key_id=b"k" * 32), admin)
    assert e.code == Code.NOT_FOUND and e.message.startswith("key_id:")
    e = _refused(svc.ExportBackup, cpb.ExportBackupRequest(key_id=b"k" * 31), admin)
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("key_id:")
    e = _refused(svc.StartDrill, cpb.StartDrillRequest(key_id=b"k" * 32), admin)
    assert e.code == Code.NOT_FOUND and e.message.startswith("key_id:")
    e = _refused(svc.GetCeremony, cpb.GetCeremonyRequest(ceremony_id=b"c" * 16), admin)
    assert e.code == Code.NOT_FOUND and e.message.startswith("ceremony_id:")
    e = _refused(svc.GetCeremony, cpb.GetCeremonyRequest(ceremony_id=b"c" * 15), admin)
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("ceremony_id:")
    big = cpb.SubmitRecoveryPiecesRequest(ceremony_id=b"c" * 16, officer="officer1",
                                          pieces=[cpb.TargetPiece(share_index=1, ciphertext=b"x" * 4097)])
    e = _refused(svc.SubmitRecoveryPieces, big, admin)
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("pieces[0].ciphertext:")
    assert svc.ListBackups(cpb.ListBackupsRequest(), admin).backups == []
    assert svc.ListCeremonies(cpb.ListCeremoniesRequest(), admin).ceremonies == []


def test_a_node_back_from_an_outage_ends_the_backup_backoff(svc: CoordinatorService) -> None:
    """The health pass calls ``node_back`` when a node that was down answers: the keys whose
    bundle waited for it are collected at the next pass, not after a backoff of up to an hour."""
    backups = svc.recovery.backups
    backups._backoff[b"\x01" * 32] = (7, 2**62)
    svc.recovery.node_back(2)
    assert backups._backoff == {}


def test_the_first_background_pass_applies_recovery_proposals_a_restart_left_pending(
    svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[str, ...], str]] = []
    def retry(kinds: tuple[str, ...], actor: str) -> list[str]:
        calls.append((kinds, actor))
        return []

    monkeypatch.setattr(svc.recovery.lifecycle, "retry_pending", retry)
    svc.recovery.background()
    svc.recovery.background()
    assert calls == [(("recovery-config", "recovery-order"), svc.cfg.name)]  # once per start


def test_a_hung_node_does_not_stall_the_health_loop(svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundle collection and ceremonies wait up to their deadlines for a node that answers
    nothing (SIGSTOP, black-holed link): the health loop's pass must not wait with them, and a
    second pass does not start another collection while the first still waits."""
    import threading
    import time

    release = threading.Event()
    calls: list[str] = []

    def hung(*_: object) -> list[bytes]:
        calls.append("backups")
        release.wait(10)
        return []

    monkeypatch.setattr(svc.recovery.backups, "check", hung)
    monkeypatch.setattr(svc.recovery.ceremonies, "check", lambda: calls.append("ceremonies"))
    t0 = time.monotonic()
    svc.recovery.background()
    svc.recovery.background()
    took = time.monotonic() - t0
    release.set()
    assert took < 1.0
    deadline = time.monotonic() + 5
    while "ceremonies" not in calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls.count("backups") == 1 and "ceremonies" in calls
