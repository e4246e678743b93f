"""The role matrix of issue 12 (coordinator/roles.py): officers call exactly the ceremony,
bundle, drill and read RPCs; only admins propose recovery configurations and orders; the
certificate role ``officer`` exists and is a default client role."""

from __future__ import annotations

from coordinator.config import DEFAULT_CLIENT_ROLES
from coordinator.roles import OFFICER, RPC_ROLES, allowed
from mpcnet.common.pki import ROLES
from mpcnet.wire.mpc.v1 import coordinator_pb2


def test_the_matrix_covers_every_rpc() -> None:
    assert {m.name for m in coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].methods} == set(RPC_ROLES)


def test_officers_call_exactly_the_recovery_and_read_rpcs() -> None:
    assert {m for m, roles in RPC_ROLES.items() if OFFICER in roles} == {
        "SubmitRecoveryPieces", "GetCeremony", "ListCeremonies", "ExportBackup", "ListBackups", "StartDrill",
        "GetRecoveryConfig", "GetRoster", "ClusterStatus",
    }
    assert allowed("SubmitRecoveryPieces") == (OFFICER,)


def test_only_admins_propose_recovery_and_auditors_read_bundles() -> None:
    assert allowed("ProposeRecoveryConfig") == ("admin",) and allowed("ProposeRecoveryOrder") == ("admin",)
    assert "auditor" in allowed("ExportBackup") and "requester" not in allowed("ExportBackup")
    assert "auditor" not in allowed("StartDrill")


def test_officer_is_a_certificate_role_and_a_default_client_role() -> None:
    assert OFFICER in ROLES and OFFICER in DEFAULT_CLIENT_ROLES
