"""Issue 12 on real processes (a supervised 3-of-5 dev cluster): a recovery order without the
admin quorum (or an export without the export quorum) is refused by the coordinator and by every
node; a ceremony with fewer than m officers is refused by every participant (the coordinator
keeps collecting, the target node refuses to restore, every drilled node reports failure), and
completes once the m-th officer contributes; a drill names the officer whose pieces are bound to
another ceremony; the coordinator's files and logs (and every node's log and audit log) never
contain a share or a piece (decrypted with the officers' keys to know what to scan for); an
officer's piece decrypts with Debian's ``age`` command-line tool."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

pytest.importorskip("governance.recovery", reason="governance/recovery.py (issue 12) is not merged yet")
pytest.importorskip("mpcnet.common.backup", reason="mpcnet/common/backup.py (issue 12) is not merged yet")

from crypto_core.keyshare import KeyShare
from governance.keyop import KeyOperation, KeyOpKind
from governance.recovery import (
    BackupBundle,
    BackupPiece,
    DrillReport,
    Officer,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    RecoveryOrder,
    RecoveryOrderKind,
    RecoveryTarget,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_recovery_config_change,
    sign_recovery_order,
)
from governance.roster import rotate_keys
from mpc_node.storage import NodeStore
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.demo import verify_with_openssl
from mpcnet.common import agekeys
from mpcnet.common.backup import officer_deliveries
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

from .recovery_util import (
    OFFICERS,
    RecoveryCluster,
    admin_signed,
    mpc_cluster,
    new_id,
    propose_and_approve,
    recovery_cluster,
    rpc_error,
    wait_until,
)

PENDING, APPLIED = coordinator_pb2.PROPOSAL_STATE_PENDING, coordinator_pb2.PROPOSAL_STATE_APPLIED
REFUSALS = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND)


@dataclass
class World:
    rc: RecoveryCluster
    config: RecoveryConfig
    key_id: bytes
    public_key: bytes
    chain_code: bytes
    bundle: BackupBundle
    bundle_file: bytes


def _bundle(rc: RecoveryCluster, key_id: bytes, epoch: int) -> bytes:
    """The key's current bundle at ``epoch`` (made by the coordinator right after keygen/op)."""
    def current() -> bytes | None:
        r = rc.coordinator("auditor1").ListBackups(coordinator_pb2.ListBackupsRequest(key_id=key_id), timeout=30)
        for b in r.backups:
            if b.epoch == epoch and not b.superseded:
                return bytes(b.bundle_digest)
        return None
    digest = wait_until(f"a backup bundle of epoch {epoch}", current, timeout=180)
    info = rc.coordinator("auditor1").ExportBackup(coordinator_pb2.ExportBackupRequest(key_id=key_id, bundle_digest=digest), timeout=30)
    return bytes(info.bundle)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with recovery_cluster(tmp_path_factory.mktemp("recovery")) as rc:
        admins, _ = rc.lay.governance()
        officers = tuple(Officer(o, rc.officer_publics[o]) for o in OFFICERS)
        config = RecoveryConfig(1, officers, 2, 3, 0)
        change = RecoveryConfigChange(admins.digest(), None, config)
        signed = SignedRecoveryConfigChange(change, admin_signed(rc, sign_recovery_config_change, change, ("admin1",)))
        p = propose_and_approve(rc, "ProposeRecoveryConfig", coordinator_pb2.ProposeRecoveryConfigRequest(signed_change=signed.to_bytes()),
                                change, sign_recovery_config_change, ("admin2",))
        assert p.state == APPLIED, p
        with MpcClient.from_cluster(rc.dir, identity="admin1", timeout=120) as admin1:
            key = admin1.create_key("recovery-refusals")
        data = _bundle(rc, key.key_id, 0)
        yield World(rc, config, key.key_id, key.public_key, key.chain_code, BackupBundle.from_file(data), data)


def _roster_version(rc: RecoveryCluster) -> int:
    with MpcClient.from_cluster(rc.dir, identity="auditor1", timeout=60) as c:
        return c.roster().version


def _order(w: World, kind: RecoveryOrderKind, targets: tuple[RecoveryTarget, ...], *, recipient: bytes = b"") -> RecoveryOrder:
    admins, _ = w.rc.lay.governance()
    roster_version = _roster_version(w.rc)
    follow_up = None
    if kind == RecoveryOrderKind.RESTORE:
        committee = tuple(range(1, 6))
        follow_up = KeyOperation(admins.digest(), new_id(), KeyOpKind.REFRESH, w.key_id, w.public_key, w.chain_code,
                                 w.bundle.key.epoch, 3, committee, 3, committee, roster_version, "restore follow-up")
    return RecoveryOrder(governance_root=admins.digest(), order_id=new_id(), kind=kind, key_id=w.key_id, public_key=w.public_key,
                         chain_code=w.chain_code, epoch=w.bundle.key.epoch, bundle_digest=w.bundle.digest(),
                         config_version=w.config.version, roster_version=roster_version, targets=targets, export_recipient=recipient,
                         follow_up=follow_up, reason="refusal test",
                         expires_ms=int(time.time() * 1000) + 3_600_000)


def _deliveries(w: World, officer: str, ceremony_id: bytes, purpose: PiecePurpose, targets: dict[int, bytes]) -> dict[int, bytes]:
    return officer_deliveries(w.bundle, w.rc.officer_keys[officer], ceremony_id=ceremony_id, purpose=purpose, targets=targets)


def _node_encryption_key(rc: RecoveryCluster, index: int) -> bytes:
    with MpcClient.from_cluster(rc.dir, identity="auditor1", timeout=60) as c:
        e = c.roster().roster.entry(index)
    assert e is not None
    return e.encryption_key


def test_an_order_without_the_admin_quorum_is_refused_by_every_participant(world: World) -> None:
    rc = world.rc
    order = _order(world, RecoveryOrderKind.RESTORE, (RecoveryTarget(3, 3),))
    signed = SignedRecoveryOrder(order, admin_signed(rc, sign_recovery_order, order, ("admin1",)))
    # the coordinator keeps it pending: no ceremony, no piece accepted for it
    p = rc.coordinator("admin1").ProposeRecoveryOrder(coordinator_pb2.ProposeRecoveryOrderRequest(signed_order=signed.to_bytes()),
                                                      timeout=60)
    assert p.state == PENDING
    e = rpc_error(lambda: rc.coordinator("officer1").GetCeremony(coordinator_pb2.GetCeremonyRequest(ceremony_id=order.order_id),
                                                                 timeout=30))
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
    pieces = _deliveries(world, "officer1", order.order_id, PiecePurpose.RESTORE, {3: _node_encryption_key(rc, 3)})
    submit = coordinator_pb2.SubmitRecoveryPiecesRequest(
        ceremony_id=order.order_id, officer="officer1",
        pieces=[coordinator_pb2.TargetPiece(share_index=i, ciphertext=c) for i, c in pieces.items()])
    e = rpc_error(lambda: rc.coordinator("officer1").SubmitRecoveryPieces(submit, timeout=30))
    assert e.code() in REFUSALS, e
    # every node refuses to install it, and to restore under it (a compromised coordinator's call)
    for i in range(1, 6):
        e = rpc_error(lambda i=i: rc.node(i).InstallRecoveryOrder(node_pb2.InstallRecoveryOrderRequest(signed_order=signed.to_bytes()),
                                                                  timeout=30))
        why = (e.details() or "").lower()
        assert e.code() in REFUSALS and ("quorum" in why or "signature" in why), (i, e)
        req = node_pb2.RestoreShareRequest(signed_order=signed.to_bytes(), bundle=world.bundle_file, pieces=list(pieces.values()))
        e = rpc_error(lambda i=i, req=req: rc.node(i).RestoreShare(req, timeout=30))
        assert e.code() in REFUSALS, (i, e)

    # a break-glass export signed by the admin quorum (2) but not the export quorum (3)
    _priv, recipient = agekeys.generate()
    export = _order(world, RecoveryOrderKind.EXPORT, tuple(RecoveryTarget(i, 0) for i in (1, 2, 3)), recipient=recipient)
    signed_export = SignedRecoveryOrder(export, admin_signed(rc, sign_recovery_order, export, ("admin1", "admin2")))
    p = propose_and_approve(rc, "ProposeRecoveryOrder", coordinator_pb2.ProposeRecoveryOrderRequest(
        signed_order=SignedRecoveryOrder(export, signed_export.signatures[:1]).to_bytes()), export, sign_recovery_order, ("admin2",))
    assert p.state == PENDING, p  # the third admin has not signed
    for i in range(1, 6):
        e = rpc_error(lambda i=i: rc.node(i).InstallRecoveryOrder(
            node_pb2.InstallRecoveryOrderRequest(signed_order=signed_export.to_bytes()), timeout=30))
        assert e.code() in REFUSALS, (i, e)


def test_a_drill_with_fewer_than_m_officers_is_refused_by_every_node(world: World) -> None:
    rc = world.rc
    c = rc.coordinator("officer1").StartDrill(coordinator_pb2.StartDrillRequest(key_id=world.key_id), timeout=60)
    targets = {t.share_index: bytes(t.recipient) for t in c.targets}
    assert sorted(targets) == [1, 2, 3, 4, 5]
    pieces = _deliveries(world, "officer1", bytes(c.ceremony_id), PiecePurpose.DRILL, targets)
    submit = coordinator_pb2.SubmitRecoveryPiecesRequest(
        ceremony_id=c.ceremony_id, officer="officer1",
        pieces=[coordinator_pb2.TargetPiece(share_index=i, ciphertext=x) for i, x in pieces.items()])
    c = rc.coordinator("officer1").SubmitRecoveryPieces(submit, timeout=60)
    time.sleep(2)
    c = rc.coordinator("auditor1").GetCeremony(coordinator_pb2.GetCeremonyRequest(ceremony_id=c.ceremony_id), timeout=30)
    assert c.state == "collecting" and list(c.officers) == ["officer1"], c
    # each node, handed one officer's piece directly (a coordinator that runs the drill early)
    for t in c.targets:
        req = node_pb2.DrillShareRequest(ceremony_id=c.ceremony_id, bundle=world.bundle_file, pieces=[pieces[t.share_index]])
        try:
            r = rc.node(t.node).DrillShare(req, timeout=60)
        except grpc.RpcError as e:
            assert e.code() in REFUSALS, (t.node, e)
            continue
        report = DrillReport.from_bytes(r.report)
        assert not report.ok and dict(report.outcomes).get(1) == "ok", (t.node, report)
        assert dict(report.outcomes).get(2) == "missing", (t.node, report)
    # the second officer completes it: every node reconstructs and checks its share
    pieces2 = _deliveries(world, "officer2", bytes(c.ceremony_id), PiecePurpose.DRILL, targets)
    rc.coordinator("officer2").SubmitRecoveryPieces(coordinator_pb2.SubmitRecoveryPiecesRequest(
        ceremony_id=c.ceremony_id, officer="officer2",
        pieces=[coordinator_pb2.TargetPiece(share_index=i, ciphertext=x) for i, x in pieces2.items()]), timeout=60)
    done = wait_until("the drill", lambda: (lambda x: x if x.state in ("done", "failed") else None)(
        rc.coordinator("auditor1").GetCeremony(coordinator_pb2.GetCeremonyRequest(ceremony_id=c.ceremony_id), timeout=30)))
    assert done.state == "done" and all(t.state == "ok" for t in done.targets), done


def test_a_drill_names_the_officer_whose_pieces_are_bound_to_another_ceremony(world: World) -> None:
    """officer2 replays pieces made for another ceremony: the coordinator cannot tell (it only
    relays ciphertexts), every node refuses them (``wrong-binding``), the drill fails naming her."""
    rc = world.rc
    c = rc.coordinator("officer1").StartDrill(coordinator_pb2.StartDrillRequest(key_id=world.key_id), timeout=60)
    targets = {t.share_index: bytes(t.recipient) for t in c.targets}
    for officer, cid in (("officer1", bytes(c.ceremony_id)), ("officer2", new_id())):
        pieces = _deliveries(world, officer, cid, PiecePurpose.DRILL, targets)
        rc.coordinator(officer).SubmitRecoveryPieces(coordinator_pb2.SubmitRecoveryPiecesRequest(
            ceremony_id=c.ceremony_id, officer=officer,
            pieces=[coordinator_pb2.TargetPiece(share_index=i, ciphertext=x) for i, x in pieces.items()]), timeout=60)
    done = wait_until("the drill", lambda: (lambda x: x if x.state in ("done", "failed") else None)(
        rc.coordinator("auditor1").GetCeremony(coordinator_pb2.GetCeremonyRequest(ceremony_id=c.ceremony_id), timeout=30)))
    assert done.state == "failed", done
    for t in done.targets:
        outcomes = {o.officer: (o.name, o.outcome) for o in t.outcomes}
        assert t.state == "failed" and outcomes[1] == ("officer1", "ok") and outcomes[2] == ("officer2", "wrong-binding"), t


def test_a_restore_with_fewer_than_m_officers_is_refused_then_completes_with_m(world: World) -> None:
    """Node 5 is wiped and replaced; the restore order (admin quorum) opens a ceremony; one
    officer's pieces are not enough for the coordinator nor for node 5; with the second officer's
    the share is restored, the follow-up refresh runs and the key signs again."""
    rc = world.rc
    assert mpc_cluster("wipe-node", "--dir", str(rc.dir), "5", "--quiet").returncode == 0
    rep = mpc_cluster("replace-node", "--dir", str(rc.dir), "5", "--json")
    assert rep.returncode == 0, rep
    enrol = json.loads(Path(json.loads(rep.stdout)["enrolment"]).read_text())
    with MpcClient.from_cluster(rc.dir, identity="admin1", timeout=60) as a1, MpcClient.from_cluster(rc.dir, identity="admin2",
                                                                                                   timeout=60) as a2:
        new = rotate_keys(a1.roster().roster, 5, identity_key=bytes.fromhex(enrol["identity_key"]),
                          encryption_key=bytes.fromhex(enrol["encryption_key"]), tls_fingerprint=bytes.fromhex(enrol["tls_fingerprint"]))
        p = a1.propose_roster_change(new)
        assert a2.approve_lifecycle(p.proposal_id, expect_digest=p.digest).state == "applied"
    up = mpc_cluster("up", "--dir", str(rc.dir), "--quiet")
    assert up.returncode == 0 and "started node-5" in up.stdout, up
    with MpcClient.from_cluster(rc.dir, identity="auditor1", timeout=60) as au:  # the coordinator reaches the new host
        wait_until("node 5 healthy at the coordinator", lambda: any(n.index == 5 and n.healthy for n in au.node_states()))

    order = _order(world, RecoveryOrderKind.RESTORE, (RecoveryTarget(5, 5),))
    signed = SignedRecoveryOrder(order, admin_signed(rc, sign_recovery_order, order, ("admin1",)))
    p = propose_and_approve(rc, "ProposeRecoveryOrder", coordinator_pb2.ProposeRecoveryOrderRequest(signed_order=signed.to_bytes()),
                            order, sign_recovery_order, ("admin2",))
    assert p.state == APPLIED, p
    full = SignedRecoveryOrder(order, admin_signed(rc, sign_recovery_order, order, ("admin1", "admin2")))
    c = wait_until("the restore ceremony", lambda: rc.coordinator("officer1").GetCeremony(
        coordinator_pb2.GetCeremonyRequest(ceremony_id=order.order_id), timeout=30))
    targets = {t.share_index: bytes(t.recipient) for t in c.targets}
    assert targets == {5: bytes.fromhex(enrol["encryption_key"])}
    pieces1 = _deliveries(world, "officer1", order.order_id, PiecePurpose.RESTORE, targets)
    rc.coordinator("officer1").SubmitRecoveryPieces(coordinator_pb2.SubmitRecoveryPiecesRequest(
        ceremony_id=order.order_id, officer="officer1",
        pieces=[coordinator_pb2.TargetPiece(share_index=i, ciphertext=x) for i, x in pieces1.items()]), timeout=60)
    time.sleep(2)
    c = rc.coordinator("auditor1").GetCeremony(coordinator_pb2.GetCeremonyRequest(ceremony_id=order.order_id), timeout=30)
    assert c.state == "collecting", c
    # node 5 itself refuses to restore from one officer's piece; a live holder refuses any restore
    req = node_pb2.RestoreShareRequest(signed_order=full.to_bytes(), bundle=world.bundle_file, pieces=[pieces1[5]])
    e = rpc_error(lambda: rc.node(5).RestoreShare(req, timeout=60))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e
    e = rpc_error(lambda: rc.node(1).RestoreShare(req, timeout=60))
    assert e.code() in REFUSALS, e
    # the second officer: restored, refreshed, and the key signs with node 5 among the signers
    pieces2 = _deliveries(world, "officer2", order.order_id, PiecePurpose.RESTORE, targets)
    rc.coordinator("officer2").SubmitRecoveryPieces(coordinator_pb2.SubmitRecoveryPiecesRequest(
        ceremony_id=order.order_id, officer="officer2",
        pieces=[coordinator_pb2.TargetPiece(share_index=i, ciphertext=x) for i, x in pieces2.items()]), timeout=60)
    done = wait_until("the restore and its refresh", lambda: (lambda x: x if x.state in ("done", "failed") else None)(
        rc.coordinator("auditor1").GetCeremony(coordinator_pb2.GetCeremonyRequest(ceremony_id=order.order_id), timeout=30)),
        timeout=240)
    assert done.state == "done", done
    digest = hashlib.sha256(b"after the restore").digest()
    with SigningTeam.from_cluster(rc.dir, timeout=120) as team:
        sig = team.sign(world.key_id, digest)
    verify_with_openssl(world.public_key.hex(), sig.der.hex(), digest)  # the same public key, no derivation path


def _scan_targets(rc: RecoveryCluster) -> list[Path]:
    lay = rc.lay
    files = sorted(lay.coordinator_dir.glob("coordinator.db*")) + sorted(lay.coordinator_dir.glob("audit.db*"))
    files += sorted((lay.dir / "logs").glob("*"))  # every process's log: no node logs a share or a piece either
    files += sorted(lay.dir.glob("nodes/node-*/audit.db*"))
    return files


def _node_shares(rc: RecoveryCluster) -> list[bytes]:
    lay = rc.lay
    out = []
    for i in range(1, lay.nodes + 1):
        nd = lay.node_dir(i)
        store = NodeStore.open(nd / "node.db", (nd / "passphrase").read_bytes().rstrip(b"\n"), i, scrypt_n=1024)
        try:
            for row in store.list_keys():
                ks = KeyShare.from_bytes(store.get_key_share(row.key_id, require_active=False))
                out.append(ks.secret_share.to_bytes(32, "big"))
        finally:
            store.close()
    return out


def test_the_coordinator_never_holds_a_share_or_a_piece(world: World) -> None:
    rc = world.rc
    with MpcClient.from_cluster(rc.dir, identity="auditor1", timeout=60) as au:
        epoch = au.get_key(world.key_id).epoch
    _bundle(rc, world.key_id, epoch)  # after the restore test: the bundle of its refresh (made in the background)
    r = rc.coordinator("auditor1").ListBackups(coordinator_pb2.ListBackupsRequest(key_id=world.key_id), timeout=30)
    secrets: list[bytes] = []
    for b in r.backups:
        data = rc.coordinator("auditor1").ExportBackup(
            coordinator_pb2.ExportBackupRequest(key_id=world.key_id, bundle_digest=b.bundle_digest), timeout=30).bundle
        bundle = BackupBundle.from_file(bytes(data))
        for sp in bundle.parts:
            for j, o in enumerate(OFFICERS):
                piece = BackupPiece.from_bytes(agekeys.decrypt(rc.officer_keys[o], sp.part.pieces[j]))
                assert piece.officer_index == j + 1
                secrets.append(piece.value)
    secrets += _node_shares(rc)
    found = len(secrets)  # never the secrets themselves in an assertion message
    assert found >= (epoch + 1) * 5 * 3, found  # every epoch's bundle, every part, every officer
    files = _scan_targets(rc)
    assert any(f.name == "coordinator.db" for f in files) and any(f.name == "node-5.log" for f in files)
    for f in files:
        data = f.read_bytes()
        for s in secrets:
            if s in data or s.hex().encode() in data:  # pytest.fail: the secret is never printed
                pytest.fail(f"{f.name} contains a share or a piece")


@pytest.mark.skipif(shutil.which("age") is None, reason="Debian's age is not installed (scripts/test installs it)")
def test_an_officer_piece_decrypts_with_the_age_command_line_tool(world: World, tmp_path: Path) -> None:
    rc = world.rc
    part = world.bundle.parts[0].part
    piece_file = tmp_path / "piece.age"
    piece_file.write_bytes(part.pieces[1])  # officer2's piece of share 1
    out = subprocess.run(["age", "--decrypt", "--identity", str(rc.identity_file("officer2")), str(piece_file)],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    same = hmac.compare_digest(out.stdout, agekeys.decrypt(rc.officer_keys["officer2"], part.pieces[1]))
    assert same  # (a plaintext piece: never in an assertion message)
    piece = BackupPiece.from_bytes(out.stdout)
    assert (piece.key_id, piece.share_index, piece.officer_index) == (world.key_id, 1, 2)
    wrong = subprocess.run(["age", "--decrypt", "--identity", str(rc.identity_file("officer1")), str(piece_file)],
                           capture_output=True, timeout=30)
    assert wrong.returncode != 0  # only its officer can open it
