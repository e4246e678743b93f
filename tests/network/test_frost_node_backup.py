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
from pathlib import Path
from typing import Any

import grpc
import pytest

from crypto_core.frost.group import ED25519, SECP256K1, Group
from crypto_core.frost.keyshare import FrostKeyShare, is_frost_record
from governance.approval import SCHEME_BIP340, SCHEME_ED25519
from governance.encoding import Encoder
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation
from governance.recovery import (
    RECOVERY_ORDER_V2_TAG,
    BackupBundle,
    DrillReport,
    EpochAttestation,
    Officer,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    RecoveryOrder,
    RecoveryOrderKind,
    RecoveryReceipt,
    RecoveryTarget,
    SignedBackupPart,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_recovery_config_change,
    sign_recovery_order,
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
from .keyops_util import close, run, services
from .test_frost_keyops_node import sign_at

N, T, M = 3, 2, 2
SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)
GROUPS: dict[str, Group] = {SCHEME_ED25519: ED25519, SCHEME_BIP340: SECP256K1}
Code = grpc.StatusCode
ORDER_EXPIRES_MS = 4_102_444_800_000  # 2100-01-01: the test orders do not expire


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


# --- restore (last in this module: it empties node 3's store) ------------------------------------


def _wipe(lay: Layout, svcs: dict[int, NodeService], i: int) -> None:
    """Empty node ``i``'s store (its disk was lost; it keeps its roster keys) and start it again."""
    svcs[i].store.close()
    svcs[i].audit.close()
    store = Path(svcs[i].cfg.store)
    for f in store.parent.glob(store.name + "*"):
        f.unlink()
    svcs[i] = services(lay, only=i)[i]


def _order(lay: Layout, svc: NodeService, key: node_pb2.DkgResult, bundle: BackupBundle) -> tuple[SignedRecoveryOrder, KeyOperation]:
    """A RESTORE order (v2: the key's scheme) of share 3 to node 3 with its follow-up refresh, admin-signed."""
    root = svc.gov.governance_root
    follow = KeyOperation(root, os.urandom(16), KeyOpKind.REFRESH, key.key_id, bytes(key.public_key), b"", 0, T, (1, 2, 3), T,
                          (1, 2, 3), 1, "recovery follow-up", scheme=key.scheme)
    order = RecoveryOrder(root, os.urandom(16), RecoveryOrderKind.RESTORE, key.key_id, bytes(key.public_key), b"", 0,
                          bundle.digest(), 1, 1, (RecoveryTarget(3, 3),), b"", follow, "node 3 lost its disk", ORDER_EXPIRES_MS,
                          key.scheme)
    sigs = tuple(sign_recovery_order(order, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    return SignedRecoveryOrder(order, sigs), follow


@pytest.mark.parametrize("scheme", SCHEMES)
def test_restore_a_frost_share_then_the_follow_up_refresh_and_sign(
    lay: Layout, svcs: dict[int, NodeService], config: SignedRecoveryConfigChange, officers: list[tuple[bytes, bytes]],
    scheme: str,
) -> None:
    key = frost_dkg(svcs, scheme, T)
    bundle = _bundle(svcs, config, key)
    _wipe(lay, svcs, 3)
    s3 = svcs[3]
    assert s3.store.get_key_share(key.key_id) is None
    s3.InstallRecoveryConfig(node_pb2.InstallRecoveryConfigRequest(history=[config.to_bytes()]), None)
    order, follow = _order(lay, svcs[1], key, bundle)
    assert order.order.encode().startswith(Encoder(RECOVERY_ORDER_V2_TAG).finish())
    assert SignedRecoveryOrder.from_bytes(order.to_bytes()) == order
    for i in (1, 2):
        assert svcs[i].InstallRecoveryOrder(node_pb2.InstallRecoveryOrderRequest(signed_order=order.to_bytes()), None).installed
    oid = order.order.order_id
    target = s3.keys.encryption_public

    def pieces(which: list[int], ceremony: bytes) -> list[bytes]:
        return [officer_deliveries(bundle, officers[k - 1][0], ceremony_id=ceremony, purpose=PiecePurpose.RESTORE,
                                   targets={3: target})[3] for k in which]

    few = pieces([1], oid) + pieces([2], os.urandom(16))
    with pytest.raises(RpcError) as e:
        s3.RestoreShare(node_pb2.RestoreShareRequest(signed_order=order.to_bytes(), bundle=bundle.to_file(), pieces=few), None)
    assert e.value.code == Code.FAILED_PRECONDITION and "officer 2 (officer2): wrong-binding" in e.value.message
    out = s3.RestoreShare(node_pb2.RestoreShareRequest(signed_order=order.to_bytes(), bundle=bundle.to_file(),
                                                       pieces=pieces([2, 3], oid)), None)
    receipt = RecoveryReceipt.from_bytes(out.receipt)
    assert receipt.verify(s3.keys.identity_public) and receipt.public_share == bundle.key.public_shares[2]
    record = s3.store.restored_share(key.key_id)
    assert record is not None and is_frost_record(record)
    restored = FrostKeyShare.from_bytes(record)  # the stored share is a complete FROST share of its key
    assert (restored.scheme, restored.index, restored.epoch, restored.public_key) == (scheme, 3, 0, bytes(key.public_key))
    assert _audit(s3, "share-restored")[-1].outcome == "restored"
    # the follow-up refresh (authorized by the installed order); node 3 deals with its restored share
    sid = os.urandom(32)
    op = SignedKeyOperation(follow, ()).to_bytes()
    res = run(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=b"frost"))
    assert all(not isinstance(r, RpcError) and r.finished for r in res.values()), res
    receipts = [r.reshare_result.receipt for r in res.values()]
    for s in svcs.values():
        s.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=receipts), None)
    assert s3.store.restored_key(key.key_id) is None  # erased by the commit
    ks = _share(s3, key.key_id)
    assert ks.epoch == 1 and ks.public_key == bytes(key.public_key) and ks.scheme == scheme
    assert s3.store.key_epoch(key.key_id) is not None
    sign_at(lay, svcs, key, ks.public(), (1, 3), (1, 2, 3), 1)
    sign_at(lay, svcs, key, ks.public(), (2, 3), (1, 2, 3), 1)
