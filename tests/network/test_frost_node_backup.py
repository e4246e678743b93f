"""Backups and drills of FROST keys on the node (issue 16 item 5), driven in process (no gRPC).

Three :class:`NodeService` instances of a 2-of-3 cluster make an ed25519 and a
schnorr-secp256k1-bip340 key with the FROST DKG; three recovery officers (quorum 2). The test plays
the coordinator (collects the signed parts, assembles the bundle) and the officers (re-encrypt
their pieces to each node): every node's part verifies in the key's group, every node drills its
share from two officers' pieces, a wrongly bound piece fails the drill naming its officer, and the
node never puts a share or piece in its audit or errors. A FROST restore is refused cleanly (it
needs the FROST follow-up refresh, piece C2)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from crypto_core.frost.group import ED25519, SECP256K1, Group
from crypto_core.frost.keyshare import FrostKeyShare
from governance.approval import SCHEME_BIP340, SCHEME_ED25519
from governance.recovery import (
    BackupBundle,
    DrillReport,
    EpochAttestation,
    Officer,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    SignedBackupPart,
    SignedRecoveryConfigChange,
    sign_recovery_config_change,
)
from governance.roster import SignedRosterChange
from mpc_node.service import NodeService
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common import agekeys
from mpcnet.common.backup import key_record, officer_deliveries
from mpcnet.common.bundle import assemble_bundle, verify_bundle
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .frost_util import frost_dkg
from .keyops_util import close, services

N, T, M = 3, 2, 2
SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)
GROUPS: dict[str, Group] = {SCHEME_ED25519: ED25519, SCHEME_BIP340: SECP256K1}
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("frost-backup"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


@pytest.fixture(scope="module")
def officers() -> list[tuple[bytes, bytes]]:
    return [agekeys.generate() for _ in range(3)]


@pytest.fixture(scope="module")
def config(lay: Layout, svcs: dict[int, NodeService], officers: list[tuple[bytes, bytes]]) -> SignedRecoveryConfigChange:
    cfg = RecoveryConfig(1, tuple(Officer(f"officer{k}", pub) for k, (_, pub) in enumerate(officers, 1)), M, 3, 0)
    change = RecoveryConfigChange(svcs[1].gov.governance_root, None, cfg)
    sigs = tuple(sign_recovery_config_change(change, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedRecoveryConfigChange(change, sigs)
    for s in svcs.values():
        assert s.InstallRecoveryConfig(node_pb2.InstallRecoveryConfigRequest(history=[signed.to_bytes()]), None).installed
    return signed


@pytest.fixture(scope="module")
def keys(svcs: dict[int, NodeService]) -> dict[str, node_pb2.DkgResult]:
    return {s: frost_dkg(svcs, s, T) for s in SCHEMES}


def _share(svc: NodeService, key_id: bytes) -> FrostKeyShare:
    raw = svc.store.get_key_share(key_id)
    assert raw is not None
    return FrostKeyShare.from_bytes(raw)


def _bundle(svcs: dict[int, NodeService], config: SignedRecoveryConfigChange, key: node_pb2.DkgResult) -> BackupBundle:
    parts = []
    for s in svcs.values():
        raw = s.GetBackupPart(node_pb2.GetBackupPartRequest(key_id=key.key_id, epoch=0), None).signed_part
        assert s.GetBackupPart(node_pb2.GetBackupPartRequest(key_id=key.key_id, epoch=0), None).signed_part == raw  # made once
        parts.append(SignedBackupPart.from_bytes(raw))
    record = key_record(_share(svcs[1], key.key_id), (1, 2, 3))
    history = tuple(SignedRosterChange.from_bytes(b) for b in svcs[1].roster_state.history())
    return assemble_bundle(record, config, history, parts, 1)


def _pieces(bundle: BackupBundle, officers: list[tuple[bytes, bytes]], which: list[int], ceremony: bytes, svc: NodeService,
            share_index: int) -> list[bytes]:
    target = svc.keys.encryption_public
    return [
        officer_deliveries(bundle, officers[k - 1][0], ceremony_id=ceremony, purpose=PiecePurpose.DRILL,
                           targets={share_index: target})[share_index]
        for k in which
    ]


def _audit(svc: NodeService, action: str) -> list[Any]:
    return [e for e in svc.audit.entries() if e.action == action]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_node_backs_up_and_drills_its_frost_share(
    svcs: dict[int, NodeService], config: SignedRecoveryConfigChange, officers: list[tuple[bytes, bytes]],
    keys: dict[str, node_pb2.DkgResult], scheme: str,
) -> None:
    key = keys[scheme]
    group = GROUPS[scheme]
    bundle = _bundle(svcs, config, key)
    summary = verify_bundle(bundle, svcs[1].cfg.admin_set)
    assert summary.scheme == scheme and summary.public_key == key.public_key and summary.key_id == key.key_id
    assert bundle.key.chain_code == b"" and all(len(c) == group.element_len for p in bundle.parts for c in p.part.commitments)
    assert _audit(svcs[1], "backup-part")[-1].outcome == "made"
    ceremony = os.urandom(16)
    for i, s in svcs.items():
        out = s.DrillShare(node_pb2.DrillShareRequest(
            ceremony_id=ceremony, bundle=bundle.to_file(), pieces=_pieces(bundle, officers, [1, 3], ceremony, s, i)), None)
        report = DrillReport.from_bytes(out.report)
        assert report.ok and report.verify(s.keys.identity_public) and (report.node, report.share_index) == (i, i)
        assert {(o.officer, o.outcome) for o in out.outcomes} == {(1, "ok"), (2, "missing"), (3, "ok")}
        assert _audit(s, "drill")[-1].outcome == "ok"
        att = EpochAttestation.from_bytes(
            s.AttestEpoch(node_pb2.AttestEpochRequest(key_id=key.key_id, ceremony_id=ceremony), None).attestation)
        assert (att.key_id, att.epoch, att.node) == (key.key_id, 0, i)
    # a piece bound to another ceremony is named and the drill fails (one good piece of two)
    s = svcs[2]
    pieces = _pieces(bundle, officers, [1], ceremony, s, 2) + _pieces(bundle, officers, [2], os.urandom(16), s, 2)
    out = s.DrillShare(node_pb2.DrillShareRequest(ceremony_id=ceremony, bundle=bundle.to_file(), pieces=pieces), None)
    report = DrillReport.from_bytes(out.report)
    assert not report.ok and dict(report.outcomes) == {1: "ok", 2: "wrong-binding", 3: "missing"}
    assert _audit(s, "drill")[-1].outcome == "failed"
    # no share or piece in the audit log
    secrets = [group.encode_scalar(_share(svcs[i], key.key_id).secret_share) for i in svcs]
    for sv in svcs.values():
        text = repr([e for e in sv.audit.entries()])
        assert not any(x.hex() in text for x in secrets)


def test_a_bad_frost_bundle_is_named_never_an_internal_error(
    svcs: dict[int, NodeService], config: SignedRecoveryConfigChange, officers: list[tuple[bytes, bytes]],
    keys: dict[str, node_pb2.DkgResult],
) -> None:
    bundle = _bundle(svcs, config, keys[SCHEME_ED25519])
    s = svcs[1]
    ceremony = os.urandom(16)
    pieces = _pieces(bundle, officers, [1, 2], ceremony, s, 1)
    with pytest.raises(RpcError) as e:
        s.DrillShare(node_pb2.DrillShareRequest(ceremony_id=ceremony, bundle=bundle.to_file()[:-1], pieces=pieces), None)
    assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("bundle"), e.value
    assert _audit(s, "drill")[-1].outcome == "refused"
    # the bip340 key's bundle drilled with pieces of the ed25519 bundle: nothing decrypts to a binding of it
    other = _bundle(svcs, config, keys[SCHEME_BIP340])
    out = s.DrillShare(node_pb2.DrillShareRequest(ceremony_id=ceremony, bundle=other.to_file(), pieces=pieces), None)
    report = DrillReport.from_bytes(out.report)
    assert not report.ok and set(dict(report.outcomes).values()) == {"wrong-binding", "missing"}
