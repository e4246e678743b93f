"""An in-memory fake of the coordinator's backup and recovery RPCs (issue 12) for SDK and CLI
tests, on top of :class:`tests.client.lifecycle_fake.FakeCoordinator`: a recovery-config chain,
real bundles (the fake's key 12345*G at threshold 3 of nodes 1..5, split among the officers and
age-encrypted), recovery-order proposals (applied at the admin quorum, an export at the export
quorum) that open ceremonies, and ceremonies that run as soon as m officers gave their pieces:
each target node opens its pieces with its own X25519 key (:func:`mpcnet.common.backup.open_deliveries`)
as the real node does. ``evil`` hooks (inherited) let a test make it lie."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from crypto_core.backup import split_share
from crypto_core.group import G, Point, Q
from governance.keyop import SignedKeyOperation
from governance.policy import AdminSignature, require_admin_quorum
from governance.recovery import (
    BackupBundle,
    BackupKey,
    BackupPart,
    BackupPiece,
    EpochAttestation,
    Officer,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    RecoveryOrderKind,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_backup_part,
    sign_epoch_attestation,
    sign_recovery_config_change,
)
from mpcnet.common import agekeys
from mpcnet.common.backup import open_deliveries
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2
from tests.governance.gov_util import ADMIN_KEYS

from .lifecycle_fake import CHAIN_CODE, KEY_ID, PUBLIC, FakeCoordinator, FakeRpcError, node_keys

S = coordinator_pb2.ProposalState
COEFFS = (12345, 7, 11)  # f(x) = 12345 + 7x + 11x^2: the fake key's shares x_i = f(i), threshold 3
OFFICERS = ("officer1", "officer2", "officer3")


def share(i: int) -> int:
    return sum(c * i**k for k, c in enumerate(COEFFS)) % Q


def node_x25519(index: int) -> bytes:
    """Node ``index``'s raw X25519 private key (lifecycle_fake.node_keys' encryption key)."""
    return hashlib.sha256(b"enc%d" % index).digest()


def officer_keys() -> dict[str, tuple[bytes, bytes]]:
    """Fresh (private, public) age keys of officer1..3."""
    return {name: agekeys.generate() for name in OFFICERS}


def signed_config(admins_root: bytes, keys: dict[str, tuple[bytes, bytes]], *, version: int = 1, quorum: int = 2,
                  export_quorum: int = 3, prev: RecoveryConfig | None = None, signers: tuple[str, ...] = ("ada", "bob"),
                  ) -> SignedRecoveryConfigChange:
    config = RecoveryConfig(version, tuple(Officer(n, pub) for n, (_p, pub) in keys.items()), quorum, export_quorum, 0)
    change = RecoveryConfigChange(admins_root, None if prev is None else prev.digest(), config)
    return SignedRecoveryConfigChange(change, tuple(sign_recovery_config_change(change, a, ADMIN_KEYS[a]) for a in signers))


class RecoveryFake(FakeCoordinator):
    """FakeCoordinator plus the issue-12 RPCs (see the module docstring)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.config_history: list[SignedRecoveryConfigChange] = []
        self.bundles: list[tuple[bytes, bytes, bool]] = []  # (digest, file, superseded), oldest first
        self.ceremonies: dict[bytes, coordinator_pb2.Ceremony] = {}
        self.pieces: dict[bytes, dict[str, list[coordinator_pb2.TargetPiece]]] = {}
        self.drill_ok_ms = 0

    # --- bundles ---
    def make_bundle(self, *, tamper: str = "") -> bytes:
        """A bundle of the key at its epoch for the configuration in force; ``tamper``:
        ``"piece"`` (share 2's piece of officer 1 encrypts another value) or ``"commitment"``."""
        signed = self.config_history[-1]
        config = signed.change.config
        n = len(self.committee)
        key = BackupKey(KEY_ID, self.public, self.chain_code, "", self.threshold, self.epoch, self.committee,
                        tuple((G * share(i)).encode() for i in range(1, n + 1)))
        parts = []
        for i in range(1, n + 1):
            pieces, commitments = split_share(share(i), config.quorum, len(config.officers))
            files = []
            for j, (piece, o) in enumerate(zip(pieces, config.officers, strict=True), 1):
                if tamper == "piece" and (i, j) == (2, 1):
                    piece = (piece + 1) % Q
                plain = BackupPiece(KEY_ID, self.epoch, i, j, config.version, piece.to_bytes(32, "big")).encode()
                files.append(agekeys.encrypt(o.recipient, plain))
            cs = [c.encode() for c in commitments]
            if tamper == "commitment" and i == 3:
                cs[0] = (Point.decode(cs[0], "c") + G).encode()  # C_0 is no longer node 3's public share
            part = BackupPart(self.admins.digest(), key.digest(), KEY_ID, self.epoch, i, self.committee[i - 1], 1,
                              config.version, config.digest(), tuple(cs), tuple(files), 1_700_000_000_000)
            parts.append(sign_backup_part(part, node_keys(self.committee[i - 1])[0]))
        bundle = BackupBundle(1, self.admins.digest(), key, signed, tuple(self.history), tuple(parts), 1_700_000_000_000)
        data = bundle.to_file()
        self.bundles = [(d, f, True) for d, f, _s in self.bundles]
        self.bundles.append((hashlib.sha256(data).digest(), data, False))
        return data

    # --- RPCs ---
    def _GetRecoveryConfig(self, req: Any) -> Any:
        return coordinator_pb2.RecoveryConfigHistory(history=[h.to_bytes() for h in self.config_history],
                                                     governance_root=self.admins.digest())

    def _ProposeRecoveryConfig(self, req: Any) -> Any:
        s = SignedRecoveryConfigChange.from_bytes(bytes(req.signed_change))
        return self._record("recovery-config", s.to_bytes(), s.change.digest(), s.signatures[0].admin)

    def _ProposeRecoveryOrder(self, req: Any) -> Any:
        s = SignedRecoveryOrder.from_bytes(bytes(req.signed_order))
        return self._record("recovery-order", s.to_bytes(), s.order.digest(), s.signatures[0].admin)

    def _ApproveLifecycleProposal(self, req: Any) -> Any:
        p = self.proposals[req.proposal_id]
        if p.kind not in ("recovery-config", "recovery-order"):
            return super()._ApproveLifecycleProposal(req)
        sig = AdminSignature(req.admin, bytes(req.signature))
        if p.kind == "recovery-config":
            c = SignedRecoveryConfigChange.from_bytes(bytes(p.signed))
            p.signed = SignedRecoveryConfigChange(c.change, (*c.signatures, sig)).to_bytes()
        else:
            o = SignedRecoveryOrder.from_bytes(bytes(p.signed))
            p.signed = SignedRecoveryOrder(o.order, (*o.signatures, sig)).to_bytes()
        return self._maybe_apply(req.proposal_id)

    def _maybe_apply(self, pid: str) -> coordinator_pb2.LifecycleProposal:
        p = self.proposals[pid]
        if p.kind not in ("recovery-config", "recovery-order"):
            return super()._maybe_apply(pid)
        if p.kind == "recovery-config":
            c = SignedRecoveryConfigChange.from_bytes(bytes(p.signed))
            msg, sigs, need = c.change.encode(), c.signatures, self.admins.quorum
        else:
            o = SignedRecoveryOrder.from_bytes(bytes(p.signed))
            msg, sigs = o.order.encode(), o.signatures
            need = self.config_history[-1].change.config.export_quorum if o.order.kind is RecoveryOrderKind.EXPORT else 0
        try:
            require_admin_quorum(self.admins, msg, sigs)
        except Exception:
            return p
        if len({s.admin for s in sigs}) < need:
            return p
        p.state = S.PROPOSAL_STATE_APPLIED
        if p.kind == "recovery-config":
            self.config_history.append(c)
            self.make_bundle()
        else:
            self._open(o)
        return p

    def _open(self, signed: SignedRecoveryOrder) -> None:
        o = signed.order
        roster = self.history[-1].change.new_roster
        targets = []
        for t in o.targets:
            recipient = o.export_recipient if t.node == 0 else roster.entry(t.node).encryption_key  # type: ignore[union-attr]
            targets.append(coordinator_pb2.CeremonyTarget(share_index=t.share_index, node=t.node, recipient=recipient, state="waiting"))
        kind = "export" if o.kind is RecoveryOrderKind.EXPORT else "restore"
        self.ceremonies[o.order_id] = coordinator_pb2.Ceremony(
            ceremony_id=o.order_id, kind=kind, key_id=o.key_id, epoch=o.epoch, bundle_digest=o.bundle_digest,
            state="collecting", targets=targets, quorum=self.config_history[-1].change.config.quorum,
            signed_order=signed.to_bytes(), follow_up_operation=o.follow_up.proposal_id if o.follow_up else "",
        )

    def _ExportBackup(self, req: Any) -> Any:
        for d, f, sup in reversed(self.bundles):
            if not req.bundle_digest or bytes(req.bundle_digest) == d:
                return coordinator_pb2.BackupInfo(key_id=KEY_ID, epoch=self.epoch, bundle_digest=d, bundle=f, superseded=sup,
                                                  recovery_config_version=len(self.config_history), size_bytes=len(f))
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "bundle_digest: no such bundle")

    def _ListBackups(self, req: Any) -> Any:
        return coordinator_pb2.ListBackupsResponse(backups=[
            coordinator_pb2.BackupInfo(key_id=KEY_ID, epoch=self.epoch, bundle_digest=d, superseded=sup,
                                       recovery_config_version=len(self.config_history), size_bytes=len(f))
            for d, f, sup in reversed(self.bundles)])

    def _StartDrill(self, req: Any) -> Any:
        cid = secrets.token_bytes(16)
        roster = self.history[-1].change.new_roster
        d = self.bundles[-1][0]
        targets = [coordinator_pb2.CeremonyTarget(share_index=i, node=n, recipient=roster.entry(n).encryption_key,  # type: ignore[union-attr]
                                                  state="waiting") for i, n in enumerate(self.committee, 1)]
        self.ceremonies[cid] = coordinator_pb2.Ceremony(
            ceremony_id=cid, kind="drill", key_id=KEY_ID, epoch=self.epoch, bundle_digest=d, state="collecting", targets=targets,
            quorum=self.config_history[-1].change.config.quorum, started_by="ada",
            epoch_attestations=[self.attestation(cid, n) for n in self.committee],
        )
        return self.ceremonies[cid]

    def attestation(
        self, cid: bytes, node: int, *, epoch: int | None = None, key_id: bytes = KEY_ID, seed: int | None = None,
        attested_ms: int | None = None,
    ) -> bytes:
        """Node ``node``'s EpochAttestation for drill ``cid`` (its live epoch: the fake's, or
        ``epoch``; signed now, or at ``attested_ms``), signed with its identity key
        (``node_keys(seed or node)``)."""
        when = int(time.time() * 1000) if attested_ms is None else attested_ms
        a = EpochAttestation(cid, key_id, self.epoch if epoch is None else epoch, node, attested_ms=when)
        return sign_epoch_attestation(a, node_keys(seed or node)[0]).to_bytes()

    def _GetCeremony(self, req: Any) -> Any:
        if bytes(req.ceremony_id) not in self.ceremonies:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "ceremony_id: no such ceremony")
        return self.ceremonies[bytes(req.ceremony_id)]

    def _ListCeremonies(self, req: Any) -> Any:
        return coordinator_pb2.ListCeremoniesResponse(ceremonies=list(self.ceremonies.values()))

    def _SubmitRecoveryPieces(self, req: Any) -> Any:
        cid = bytes(req.ceremony_id)
        c = self.ceremonies[cid]
        got = self.pieces.setdefault(cid, {})
        got[req.officer] = list(req.pieces)
        c.officers.append(req.officer)
        if len(got) >= c.quorum:
            self._run(c, got)
        return c

    def _run(self, c: coordinator_pb2.Ceremony, got: dict[str, list[coordinator_pb2.TargetPiece]]) -> None:
        if c.kind == "export":
            c.export_pieces.extend(p for ps in got.values() for p in ps)
            c.state = "done"
            return
        bundle = BackupBundle.from_file(next(f for d, f, _s in self.bundles if d == bytes(c.bundle_digest)))
        names = [o.name for o in bundle.config.change.config.officers]
        purpose = PiecePurpose.DRILL if c.kind == "drill" else PiecePurpose.RESTORE
        for t in c.targets:
            cts = {bundle.config.change.config.officer_index(name): p.ciphertext for name, ps in got.items() for p in ps
                   if p.share_index == t.share_index}
            secret, outcomes = open_deliveries(bundle, t.share_index, cts, node_x25519(t.node), ceremony_id=bytes(c.ceremony_id),
                                               purpose=purpose)
            t.state = "ok" if secret == share(t.share_index) else "failed"
            t.outcomes.extend(node_pb2.OfficerOutcome(officer=i, name=names[i - 1], outcome=o) for i, o in sorted(outcomes.items()))
        c.state = "done" if all(t.state == "ok" for t in c.targets) else "failed"
        if c.kind == "drill" and c.state == "done":
            self.drill_ok_ms = 1_700_000_100_000
        if c.kind == "restore" and c.state == "done" and c.follow_up_operation:  # the coordinator runs the follow-up
            op = SignedRecoveryOrder.from_bytes(bytes(c.signed_order)).order.follow_up
            assert op is not None
            self.ops[c.follow_up_operation] = coordinator_pb2.KeyOperationStatus(
                operation_id=c.follow_up_operation, key_id=op.key_id, kind=op.kind.name.lower(), state="done",
                old_epoch=op.old_epoch, new_epoch=op.new_epoch, old_committee=op.old_committee, new_committee=op.new_committee,
                old_threshold=op.old_threshold, new_threshold=op.new_threshold, authorized_by="recovery-order",
                signed_operation=SignedKeyOperation(op, ()).to_bytes(), attempts=1,
            )


def x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _status(self: RecoveryFake, req: Any) -> coordinator_pb2.ClusterStatusResponse:
    st = FakeCoordinator._ClusterStatus(self, req)  # type: ignore[attr-defined]
    if self.config_history:
        st.recovery_config_version = len(self.config_history)
        st.backups.append(coordinator_pb2.KeyBackupStatus(
            key_id=KEY_ID, epoch=self.epoch, backed_up=bool(self.bundles), bundle_digest=self.bundles[-1][0] if self.bundles else b"",
            backup_unix_ms=1_700_000_000_000, last_drill_unix_ms=self.drill_ok_ms, drill_overdue=not self.drill_ok_ms,
            last_drill_outcome="ok" if self.drill_ok_ms else "",
        ))
    return st


RecoveryFake._ClusterStatus = _status  # type: ignore[attr-defined]

__all__ = ["CHAIN_CODE", "KEY_ID", "OFFICERS", "PUBLIC", "RecoveryFake", "node_x25519", "officer_keys", "share", "signed_config",
           "x25519_public"]
