"""Issue 16 item 5 on real processes: a 2-of-3 cluster creates an ed25519 and a Taproot (BIP340)
key, admins set three recovery officers, the coordinator collects a backup bundle of each key
(the parts made by the nodes in the key's own group), and a drill of each key, opened by an
officer and contributed to by two officers through the SDK, completes with every node rebuilding
its FROST share and recorded ``ok``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from governance.recovery import (
    BackupBundle,
    Officer,
    RecoveryConfig,
    RecoveryConfigChange,
    SignedRecoveryConfigChange,
    sign_recovery_config_change,
)
from mpcnet.client import MpcClient
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.common import agekeys
from mpcnet.common.bundle import verify_bundle
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .conftest import make_cluster
from .test_recovery_crashes import stub, wait_for

N, T = 3, 2
OFFICERS = ("officer1", "officer2", "officer3")
SCHEMES = ("ed25519", "schnorr-secp256k1-bip340")


@pytest.fixture
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "frost-drill-2of3", N, T)
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


def test_frost_keys_are_backed_up_and_drilled_on_a_real_cluster(kc: LocalCluster) -> None:
    officers = {o: agekeys.generate() for o in OFFICERS}
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as a1:
        keys = {s: a1.create_key(f"frost-{s[:7]}", scheme=s) for s in SCHEMES}
    admins, _ = kc.lay.governance()
    change = RecoveryConfigChange(admins.digest(), None, RecoveryConfig(1, tuple(Officer(o, officers[o][1]) for o in OFFICERS), 2, 3, 0))
    sig1 = sign_recovery_config_change(change, "admin1", load_identity(kc.lay.dir, "admin1").signing_key)
    p = stub(kc, "admin1").ProposeRecoveryConfig(coordinator_pb2.ProposeRecoveryConfigRequest(
        signed_change=SignedRecoveryConfigChange(change, (sig1,)).to_bytes()), timeout=60)
    sig2 = sign_recovery_config_change(change, "admin2", load_identity(kc.lay.dir, "admin2").signing_key)
    p = stub(kc, "admin2").ApproveLifecycleProposal(coordinator_pb2.ApproveLifecycleProposalRequest(
        proposal_id=p.proposal_id, admin="admin2", signature=sig2.signature), timeout=60)
    assert p.state == coordinator_pb2.PROPOSAL_STATE_APPLIED, p

    def backed_up(key_id: bytes) -> Any:
        rows = stub(kc, "auditor1").ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30).backups
        return next((b for b in rows if b.key_id == key_id and b.backed_up), None)

    for scheme, key in keys.items():
        wait_for(f"a bundle of the {scheme} key", lambda k=key: backed_up(k.key_id), timeout=90)
        with MpcClient.from_cluster(kc.lay.dir, identity="officer1", timeout=120) as o1:
            _info, _data, bundle, summary = o1.export_backup(key.key_id)  # verified against the admin set
            assert summary.scheme == scheme and isinstance(bundle, BackupBundle) and bundle.key.chain_code == b""
            assert verify_bundle(bundle, admins).key_id == key.key_id
            c = o1.start_drill(key.key_id)
        for o in ("officer1", "officer3"):
            with MpcClient.from_cluster(kc.lay.dir, identity=o, timeout=120) as oc:
                oc.contribute(c.ceremony_id, officers[o][0])
        with MpcClient.from_cluster(kc.lay.dir, identity="officer1", timeout=120) as o1:
            done = o1.wait_ceremony(c.ceremony_id, timeout=90)
        assert done.state == "done", done
        row = backed_up(key.key_id)
        assert row is not None and row.last_drill_outcome == "ok", row
