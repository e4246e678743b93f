"""An in-process coordinator recovery world (issue 12): the coordinator's recovery parts
(configuration book, bundles, ceremonies, the two lifecycle proposal kinds) over a real
:class:`coordinator.db.CoordinatorDb` and audit log, and three fake nodes of a 2-of-3 key that
behave like the real ones at the RPC boundary: they verify the recovery configuration and
orders against their own admin set, make signed backup parts of their shares (Shamir split
among the officers, Feldman commitments, age-encrypted pieces), and open the officers'
deliveries (``open_deliveries``) to drill or restore, answering signed reports and receipts.
Officers make their deliveries with :func:`mpcnet.common.backup.officer_deliveries`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.backups import Backups
from coordinator.ceremonies import Ceremonies
from coordinator.db import AuditEvent, CoordinatorDb, KeyRecord, now_ms
from coordinator.keyop_store import KeyOpRecord
from coordinator.keyops import KeyOperations
from coordinator.lifecycle_proposals import LifecycleProposals
from coordinator.recovery_config import RecoveryConfigBook
from coordinator.recovery_proposals import CONFIG_KIND, ORDER_KIND, RecoveryProposals
from crypto_core.backup import split_share
from crypto_core.feldman import key_id_of
from crypto_core.group import G, Q, scalar_to_bytes
from governance.errors import GovernanceError
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation
from governance.policy import AdminSet
from governance.recovery import (
    BackupBundle,
    BackupKey,
    BackupPart,
    BackupPiece,
    DrillReport,
    EpochAttestation,
    Officer,
    PieceDelivery,
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
    sign_backup_part,
    sign_drill_report,
    sign_epoch_attestation,
    sign_recovery_config_change,
    sign_recovery_order,
    sign_recovery_receipt,
    verify_recovery_config_history,
    verify_recovery_order,
)
from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, sign_roster_change
from mpcnet.common import agekeys
from mpcnet.common.backup import officer_deliveries, open_deliveries
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2
from tests.governance.gov_util import ADMIN_KEYS, admin_set

N, T = 3, 2
OFFICERS = ("officer1", "officer2", "officer3")
ORDER_EXPIRES_MS = 4_102_444_800_000  # 2100-01-01: the test orders do not expire
Code = grpc.StatusCode


class NodeError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeNode:
    """Node ``index`` holding share ``share`` of the world's key (as its ``stub``)."""

    def __init__(self, world: World, index: int) -> None:
        self.world = world
        self.index = index
        self.name = f"node-{index}"
        self.label = f"node {index}"
        self.healthy: bool | None = True
        self.identity = Ed25519PrivateKey.generate()
        self.enc_private, self.enc_public = agekeys.generate()
        self.share: int | None = None
        self.epoch = 0
        self.history: list[bytes] = []
        self.orders: list[bytes] = []
        self.parts: dict[tuple[bytes, int, int], bytes] = {}
        self.down = False
        self.tamper = False
        self.drills = 0
        self.restored: int | None = None
        self.attest_as: int | None = None  # AttestEpoch claims this epoch (None: its own)
        self.live = False  # RestoreShare: this node still holds the key (refuses as a real node does)

    @property
    def stub(self) -> FakeNode:
        return self

    def _up(self) -> None:
        if self.down:
            raise NodeError(Code.UNAVAILABLE, "connection refused")

    def InstallRecoveryConfig(self, req: node_pb2.InstallRecoveryConfigRequest, **_: Any) -> node_pb2.InstallRecoveryConfigResponse:
        self._up()
        history = [bytes(b) for b in req.history]
        verify_recovery_config_history(self.world.admins, [SignedRecoveryConfigChange.from_bytes(b) for b in history])
        new = history != self.history
        self.history = history
        return node_pb2.InstallRecoveryConfigResponse(installed=new, version=len(history))

    def _config(self) -> SignedRecoveryConfigChange:
        return SignedRecoveryConfigChange.from_bytes(self.history[-1])

    def GetBackupPart(self, req: node_pb2.GetBackupPartRequest, **_: Any) -> node_pb2.GetBackupPartResponse:
        self._up()
        if not self.history:
            raise NodeError(Code.FAILED_PRECONDITION, "no recovery configuration")
        if self.share is None or req.epoch != self.epoch:
            raise NodeError(Code.FAILED_PRECONDITION, f"epoch: not the key's active epoch {self.epoch}")
        config = self._config().change.config
        slot = (bytes(req.key_id), req.epoch, config.version)
        if slot not in self.parts:
            w = self.world
            key = w.backup_key()
            values, commitments = split_share(self.share, config.quorum, len(config.officers))
            files = tuple(
                agekeys.encrypt(o.recipient, BackupPiece(w.key_id, self.epoch, self.index, j, config.version,
                                                         scalar_to_bytes(values[j - 1])).encode())
                for j, o in enumerate(config.officers, 1)
            )
            part = BackupPart(
                governance_root=w.admins.digest(), key_digest=key.digest(), key_id=w.key_id, epoch=self.epoch,
                share_index=self.index, node=self.index, roster_version=1, config_version=config.version,
                config_digest=config.digest(), commitments=tuple(c.encode() for c in commitments), pieces=files,
                created_ms=now_ms(),
            )
            self.parts[slot] = sign_backup_part(part, self.identity).to_bytes()
        data = self.parts[slot]
        if self.tamper:  # another node's signature: the bundle check must name this node
            sp = SignedBackupPart.from_bytes(data)
            data = sign_backup_part(sp.part, Ed25519PrivateKey.generate()).to_bytes()
        return node_pb2.GetBackupPartResponse(signed_part=data)

    def InstallRecoveryOrder(self, req: node_pb2.InstallRecoveryOrderRequest, **_: Any) -> node_pb2.InstallRecoveryOrderResponse:
        self._up()
        signed = SignedRecoveryOrder.from_bytes(bytes(req.signed_order))
        try:
            verify_recovery_order(signed, self.world.admins, self._config().change.config)
        except GovernanceError as e:
            raise NodeError(Code.PERMISSION_DENIED, f"signed_order.{e.field}: {e.reason}") from None
        new = bytes(req.signed_order) not in self.orders
        if new:
            self.orders.append(bytes(req.signed_order))
        return node_pb2.InstallRecoveryOrderResponse(installed=new)

    def _open(self, bundle_bytes: bytes, pieces: list[bytes], cid: bytes, purpose: PiecePurpose) -> tuple[int | None, dict[int, str]]:
        bundle = BackupBundle.from_file(bundle_bytes)
        by_officer: dict[int, bytes] = {}
        for ct in pieces:
            try:
                j = PieceDelivery.from_bytes(agekeys.decrypt(self.enc_private, ct)).officer_index
            except (agekeys.AgeKeyError, GovernanceError):
                continue  # judged "undecryptable" by open_deliveries' outcomes (missing here)
            by_officer[j] = ct
        return open_deliveries(bundle, self.index, by_officer, self.enc_private, ceremony_id=cid, purpose=purpose)

    def AttestEpoch(self, req: node_pb2.AttestEpochRequest, **_: Any) -> node_pb2.AttestEpochResponse:
        self._up()
        if self.share is None:
            raise NodeError(Code.FAILED_PRECONDITION, f"key_id: {self.name} holds no live share")
        epoch = self.epoch if self.attest_as is None else self.attest_as
        att = sign_epoch_attestation(EpochAttestation(bytes(req.ceremony_id), bytes(req.key_id), epoch, self.index,
                                                     attested_ms=now_ms()), self.identity)
        return node_pb2.AttestEpochResponse(attestation=att.to_bytes())

    def DrillShare(self, req: node_pb2.DrillShareRequest, **_: Any) -> node_pb2.DrillShareResponse:
        self._up()
        self.drills += 1
        bundle = BackupBundle.from_file(bytes(req.bundle))
        secret, outcomes = self._open(bytes(req.bundle), [bytes(p) for p in req.pieces], bytes(req.ceremony_id), PiecePurpose.DRILL)
        ok = secret is not None and secret == self.share
        report = sign_drill_report(DrillReport(
            bytes(req.ceremony_id), self.world.key_id, self.epoch, self.index, self.index, bundle.digest(), ok,
            tuple(sorted(outcomes.items())),
        ), self.identity)
        return node_pb2.DrillShareResponse(report=report.to_bytes(), outcomes=_outcomes(outcomes))

    def RestoreShare(self, req: node_pb2.RestoreShareRequest, **_: Any) -> node_pb2.RestoreShareResponse:
        self._up()
        order = SignedRecoveryOrder.from_bytes(bytes(req.signed_order)).order
        if self.live:
            raise NodeError(Code.FAILED_PRECONDITION, f"signed_order.order.key_id: node-{self.index} holds key "
                            f"{order.key_id.hex()[:16]} (active, epoch 0): a restore never replaces a live share")
        bundle = BackupBundle.from_file(bytes(req.bundle))
        secret, outcomes = self._open(bytes(req.bundle), [bytes(p) for p in req.pieces], order.order_id, PiecePurpose.RESTORE)
        if secret is None:
            bad = ", ".join(f"officer {j}: {o}" for j, o in sorted(outcomes.items()) if o != "ok")
            raise NodeError(Code.FAILED_PRECONDITION, f"pieces: fewer than the quorum verify ({bad})")
        self.restored = secret
        receipt = sign_recovery_receipt(RecoveryReceipt(
            order.order_id, order.key_id, order.epoch, self.index, self.index, bundle.key.public_shares[self.index - 1],
        ), self.identity)
        return node_pb2.RestoreShareResponse(receipt=receipt.to_bytes(), outcomes=_outcomes(outcomes))


def _outcomes(outcomes: dict[int, str]) -> list[node_pb2.OfficerOutcome]:
    return [node_pb2.OfficerOutcome(officer=j, name=OFFICERS[j - 1], outcome=o) for j, o in sorted(outcomes.items())]


class RecordingKeyOps(KeyOperations):
    """Key operations whose ``start`` only records (the follow-up of a restore)."""

    started: list[tuple[SignedKeyOperation, str]]

    def start(self, signed: SignedKeyOperation, authorized_by: str, actor: str, *, wait: bool = False) -> str:
        self.started.append((signed, authorized_by))
        return signed.operation.proposal_id


class World:
    node_class: type[FakeNode] = FakeNode  # issue 16: tests/coordinator/test_frost_backups.py's nodes also hold a FROST key

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.admins: AdminSet = admin_set(quorum=2)
        self.nodes = {i: self.node_class(self, i) for i in range(1, N + 1)}
        self.officer_keys = {name: agekeys.generate() for name in OFFICERS}
        # the key: f(z) = x + a*z, node i holds f(i)
        self.secret, slope = secrets.randbelow(Q - 1) + 1, secrets.randbelow(Q - 1) + 1
        for i, node in self.nodes.items():
            node.share = (self.secret + slope * i) % Q
        self.public_key = (G * self.secret).encode()
        self.chain_code = os.urandom(32)
        self.key_id = key_id_of(self.public_key, self.chain_code)
        entries = tuple(
            RosterEntry(i, n.name, n.identity.public_key().public_bytes_raw(), n.enc_public, hashlib.sha256(n.name.encode()).digest(),
                        f"127.0.0.1:{7000 + i}")
            for i, n in self.nodes.items()
        )
        change = RosterChange(Roster(1, 1, entries), None, self.admins.digest())
        self.roster_history = (SignedRosterChange(change, tuple(sign_roster_change(change, a, ADMIN_KEYS[a]) for a in ("ada", "bob"))),)
        self.roster = change.new_roster
        self.audit_key = Ed25519PrivateKey.generate()
        self.open()
        self.db.add_key(KeyRecord(self.key_id, "treasury", self.public_key, self.chain_code, T, N, "active", now_ms(), "keygen-1"))

    def open(self) -> None:
        self.db = CoordinatorDb(self.dir / "coordinator.db")
        self.audit = AuditLog.open(self.dir / "audit.db", component="coordinator", signing_key=self.audit_key)
        self.keyops = RecordingKeyOps(self.admins, self.db, self.audit, self.nodes, lambda: self.roster, self.flush,  # type: ignore[arg-type]
                                      timeout_s=5)
        self.keyops.started = []
        self.book = RecoveryConfigBook(self.admins, self.db, self.audit, self.nodes, self.flush)  # type: ignore[arg-type]
        self.backups = Backups(self.admins, self.db, self.audit, self.nodes, self.book, self.keyops.epoch_of,  # type: ignore[arg-type]
                               lambda: self.roster_history, self.flush)
        self.ceremonies = Ceremonies(self.db, self.audit, self.nodes, self.book, self.backups, self.keyops,  # type: ignore[arg-type]
                                     lambda: self.roster, self.flush, timeout_s=5)
        self.ceremonies.spawn = self.ceremonies.run  # inline
        self.backups.soon = lambda key_id=None: None  # type: ignore[method-assign]  # the test collects explicitly
        self.lifecycle = LifecycleProposals(self.admins, self.db, self.audit)
        self.lifecycle.flush_audit = self.flush
        self.proposals = RecoveryProposals(self.admins, self.db, self.book, self.keyops, self.ceremonies, self.nodes,  # type: ignore[arg-type]
                                           lambda: self.roster)
        self.lifecycle.register(CONFIG_KIND, self.proposals.decode_config, self.proposals.apply_config)
        self.lifecycle.register(ORDER_KIND, self.proposals.decode_order, self.proposals.apply_order)

    def close(self) -> None:
        self.keyops.stop()
        self.db.close()
        self.audit.close()

    def restart(self) -> None:
        self.close()
        self.open()

    def flush(self) -> None:
        for item in self.db.pending_audit():
            ev = item.audit
            self.audit.append_once(ev.actor, ev.action, event=item.event, request_id=ev.request_id, outcome=ev.outcome, details=ev.details)
            self.db.drop_audit([item.event])

    def actions(self) -> list[tuple[str, str]]:
        return [(e.action, e.outcome) for e in self.audit.entries()]

    # --- governance ----------------------------------------------------------------------------
    def backup_key(self) -> BackupKey:
        return BackupKey(
            key_id=self.key_id, public_key=self.public_key, chain_code=self.chain_code, label="treasury", threshold=T,
            epoch=self.nodes[1].epoch, committee=tuple(self.nodes),
            public_shares=tuple((G * n.share).encode() for n in self.nodes.values() if n.share is not None),
        )

    def config_change(self, *, quorum: int = 2, export_quorum: int = 3, drill_period_s: int = 0) -> RecoveryConfigChange:
        prev = self.book.current()
        officers = tuple(Officer(name, self.officer_keys[name][1]) for name in OFFICERS)
        config = RecoveryConfig(self.book.version + 1, officers, quorum, export_quorum, drill_period_s)
        return RecoveryConfigChange(self.admins.digest(), None if prev is None else prev.digest(), config)

    def propose_config(self, change: RecoveryConfigChange, *admins: str) -> coordinator_pb2.LifecycleProposal:
        signed = SignedRecoveryConfigChange(change, tuple(sign_recovery_config_change(change, a, ADMIN_KEYS[a]) for a in admins))
        return self.lifecycle.message(self.lifecycle.propose(CONFIG_KIND, signed.to_bytes(), admins[0], "signed_change"))

    def configure(self, **kw: int) -> None:
        self.propose_config(self.config_change(**kw), "ada", "bob")

    def restore_order(self, shares: tuple[int, ...], bundle_digest: bytes, expires_ms: int = ORDER_EXPIRES_MS) -> RecoveryOrder:
        committee = tuple(self.nodes)
        op = KeyOperation(self.admins.digest(), os.urandom(16), KeyOpKind.REFRESH, self.key_id, self.public_key, self.chain_code, 0, T,
                          committee, T, committee, 1, "after the restore")
        return RecoveryOrder(
            self.admins.digest(), os.urandom(16), RecoveryOrderKind.RESTORE, self.key_id, self.public_key, self.chain_code, 0,
            bundle_digest, self.book.version, 1, tuple(RecoveryTarget(s, committee[s - 1]) for s in shares), b"", op,
            "nodes lost in the fire", expires_ms,
        )

    def export_order(self, bundle_digest: bytes, recipient: bytes) -> RecoveryOrder:
        return RecoveryOrder(
            self.admins.digest(), os.urandom(16), RecoveryOrderKind.EXPORT, self.key_id, self.public_key, self.chain_code, 0,
            bundle_digest, self.book.version, 1, (RecoveryTarget(1, 0), RecoveryTarget(2, 0)), recipient, None, "migration",
            ORDER_EXPIRES_MS,
        )

    def propose_order(self, order: RecoveryOrder, *admins: str) -> coordinator_pb2.LifecycleProposal:
        signed = SignedRecoveryOrder(order, tuple(sign_recovery_order(order, a, ADMIN_KEYS[a]) for a in admins))
        return self.lifecycle.message(self.lifecycle.propose(ORDER_KIND, signed.to_bytes(), admins[0], "signed_order"))

    def approve(self, pid: str, admin: str, message: bytes) -> coordinator_pb2.LifecycleProposal:
        sig = ADMIN_KEYS[admin].sign(message)
        return self.lifecycle.message(self.lifecycle.approve(pid, admin, sig, admin))

    # --- officers ------------------------------------------------------------------------------
    def pieces(self, officer: str, cid: bytes, purpose: PiecePurpose) -> coordinator_pb2.SubmitRecoveryPiecesRequest:
        rec = self.ceremonies.get(cid)
        b = self.db.get_bundle(rec.bundle_digest)
        assert b is not None
        bundle = BackupBundle.from_file(b.bundle)
        targets = {t.share_index: t.recipient for t in rec.targets}
        files = officer_deliveries(bundle, self.officer_keys[officer][0], ceremony_id=cid, purpose=purpose, targets=targets)
        return coordinator_pb2.SubmitRecoveryPiecesRequest(
            ceremony_id=cid, officer=officer,
            pieces=[coordinator_pb2.TargetPiece(share_index=s, ciphertext=c) for s, c in sorted(files.items())],
        )

    def done_operation(self, op_id: str) -> None:
        signed, how = self.keyops.started[-1]
        t = now_ms()
        self.db.add_key_operation(
            KeyOpRecord(op_id, self.key_id, signed.to_bytes(), how, "done", b"", (), (), (), "", 1, t, t),
            AuditEvent("coordinator", "key-operation", "", "done", {"x": 1}),
        )
