"""The node's backup and recovery RPCs (issue 12, design section 4), for
:class:`mpc_node.service.NodeService` (which delegates to :class:`NodeBackups`).

* ``InstallRecoveryConfig``: the admin-signed recovery officer configuration chain
  (:func:`governance.recovery.verify_recovery_config_history` against the node's *own* admin
  set); the stored chain must be a prefix of the one given. Audited ``recovery-config``.
* ``GetBackupPart``: this node's signed backup part of a key it holds live at its active epoch,
  for the configuration in force (:func:`mpcnet.common.backup.make_part`); made once per (key,
  epoch, configuration version) and stored, so every call answers the same part. Audited
  ``backup-part`` when made.
* ``InstallRecoveryOrder``: verifies an admin-signed :class:`governance.recovery.RecoveryOrder`
  (own admin set, configuration in force; a RESTORE order's follow-up names the key as this node
  holds it) and records it. Audited ``recovery-order`` (an export: outcome ``break-glass``). The
  follow-up operation of an installed RESTORE order is then authorized here
  (``authorized_by = "recovery-order"``, :meth:`NodeBackups.orders_follow_up`).
* ``RestoreShare``: on a target of a RESTORE order (this node at its roster index in the
  order's targets), holding no live share of the key: the bundle must be the one the order
  names (digest), verify publicly (:func:`mpcnet.common.bundle.verify_bundle`), name the key as
  the order does (id, public key, chain code, epoch) and carry a roster history that is a prefix
  of this node's own; the officers' pieces (age, to this node's roster encryption key, each a
  :class:`governance.recovery.PieceDelivery` bound to the order id as ceremony id) are opened
  and checked against the commitments; with at least m good ones the share is rebuilt, checked
  against its public share and stored as a restored share with the key's epoch state (one
  transaction). Audited ``share-restored``; a refusal is audited with the officers at fault.
* ``DrillShare``: on a holder of the key at the bundle's epoch (a bundle of any other epoch is
  refused: a drill needs no admin order, and a superseded bundle would hand a holder its
  refreshed-away share): the same checks and reconstruction in memory, compared with the live
  share, then destroyed; a signed :class:`governance.recovery.DrillReport` is answered. Audited
  ``drill``.
* ``AttestEpoch``: a signed :class:`governance.recovery.EpochAttestation` of this node's live
  epoch of a key, bound to a drill's ceremony id (the coordinator and the officers open a drill
  only with at least the key's threshold of them naming the bundle's epoch). Audited
  ``epoch-attestation``.

Recovery orders expire (``RecoveryOrder.expires_ms``, against this node's clock): an expired order
is refused at InstallRecoveryOrder and RestoreShare, and no longer authorizes a follow-up
operation that has not started here.

Every refusal is an :class:`mpcnet.common.rpc.RpcError` naming the field (INVALID_ARGUMENT:
malformed; PERMISSION_DENIED: signatures, quorum, another cluster; FAILED_PRECONDITION: the
node's state). No piece, share or secret ever reaches a log, an error or the audit log.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from crypto_core.backup import RecoveredShare
from crypto_core.errors import DecodeError
from crypto_core.frost.keyshare import FrostKeyShare, is_frost_record
from crypto_core.keyshare import KeyShare
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.keyop import KeyOperation
from governance.recovery import (
    BackupBundle,
    DrillReport,
    EpochAttestation,
    PiecePurpose,
    RecoveryConfig,
    RecoveryOrder,
    RecoveryOrderKind,
    RecoveryReceipt,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_drill_report,
    sign_epoch_attestation,
    sign_recovery_receipt,
    verify_recovery_config_history,
    verify_recovery_order,
)
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.backup_store import BackupStateError, RestoredKey, StoredOrder
from mpc_node.fields import at_most, governance_blob
from mpcnet.common import agekeys
from mpcnet.common.backup import (
    attribute_deliveries,
    key_record,
    make_part,
    open_deliveries,
    recovered_frost_share,
    recovered_share,
)
from mpcnet.common.bundle import BundleError, verify_bundle
from mpcnet.common.key_group import encode_scalar, public_share_of
from mpcnet.common.rpc import RpcError, check_len, invalid
from mpcnet.wire.mpc.v1 import node_pb2

if TYPE_CHECKING:
    from mpc_node.service import NodeService

log = logging.getLogger("mpc_node.backups")
Code = grpc.StatusCode

CEREMONY_ID_LEN = 16
KEY_ID_LEN = 32
MAX_BUNDLE = 16 << 20  # governance.recovery.BackupBundle.from_file's bound
MAX_PIECES = 255  # at most one per officer (k <= 255)
MAX_PIECE = 4096  # an age file of one PieceDelivery (a few hundred bytes)
MAX_CONFIG_HISTORY = 1024


class NodeBackups:
    """The backup/recovery RPCs of one node (thread-safe)."""

    def __init__(self, node: NodeService) -> None:
        self.node = node
        self._lock = threading.RLock()  # one install / part / restore at a time
        self._config: RecoveryConfig | None = None
        self._loaded = False

    # --- shared ------------------------------------------------------------------------------
    def audit_event(self, actor: str, action: str, outcome: str, details: Mapping[str, str | int | bool]) -> None:
        """Append an entry that records no store change (a refusal, a drill, an attestation) directly."""
        self.node.audit.append(actor, action, outcome=outcome, details=dict(details))

    def refuse(self, actor: str, action: str, err: RpcError, details: Mapping[str, str | int | bool] | None = None) -> RpcError:
        """Audit a refusal of ``action`` (a security decision) and return ``err`` to raise."""
        self.audit_event(actor, action, "refused", {**detail_text("reason", err.message), **(details or {})})
        return err

    def config(self) -> RecoveryConfig | None:
        """The recovery configuration in force here (None: none installed), from the stored
        chain re-verified against this node's own admin set at first use."""
        with self._lock:
            if not self._loaded:
                try:
                    history = [SignedRecoveryConfigChange.from_bytes(b) for b in self.node.store.recovery_config_changes()]
                    self._config = verify_recovery_config_history(self.node.cfg.admin_set, history) if history else None
                except GovernanceError as e:  # the store was altered, or another cluster's admin set
                    log.error("the recovery configuration stored here does not verify: %s: %s", e.field, e.reason)
                    raise RpcError(
                        Code.FAILED_PRECONDITION,
                        f"recovery configuration: the chain stored on {self.node.cfg.name} does not verify against its admin set",
                    ) from None
                self._loaded = True
            return self._config

    def _identity(self) -> Any:
        with self.node.keys_lock:
            return self.node.keys.identity

    def _encryption_private(self) -> bytes:
        with self.node.keys_lock:
            key = self.node.keys.encryption
        return bytes(key.private_bytes_raw())

    # --- InstallRecoveryConfig ---------------------------------------------------------------
    def install_config(self, req: node_pb2.InstallRecoveryConfigRequest, actor: str) -> node_pb2.InstallRecoveryConfigResponse:
        at_most(req.history, "history", MAX_CONFIG_HISTORY, "changes")
        if not req.history:
            raise invalid("history", "missing: the canonical SignedRecoveryConfigChange history, version 1 first")
        raw = [governance_blob(b, f"history[{k}]") for k, b in enumerate(req.history)]
        try:
            given = [SignedRecoveryConfigChange.from_bytes(b) for b in raw]
        except GovernanceError as e:
            raise self.refuse(actor, "recovery-config", invalid(f"history.{e.field}", e.reason)) from None
        admins = self.node.cfg.admin_set
        try:
            config = verify_recovery_config_history(admins, given)
        except GovernanceError as e:
            raise self.refuse(actor, "recovery-config", RpcError(Code.PERMISSION_DENIED, f"{e.field}: {e.reason}")) from None
        assert config is not None
        with self._lock:
            stored = self.node.store.recovery_config_changes()
            if [c.to_bytes() for c in given[: len(stored)]] != stored or len(given) < len(stored):
                raise self.refuse(actor, "recovery-config", RpcError(
                    Code.FAILED_PRECONDITION,
                    f"history: does not extend the recovery configuration installed here (version {len(stored)})",
                ))
            if len(given) == len(stored):
                return node_pb2.InstallRecoveryConfigResponse(installed=False, version=config.version)
            entry = OutboxEntry(actor, "recovery-config", "", "installed", {
                "version": config.version, "officers": ",".join(o.name for o in config.officers), "quorum": config.quorum,
                "export_quorum": config.export_quorum, "drill_period_s": config.drill_period_s,
                "admins": ",".join(sorted({s.admin for s in given[-1].signatures})),
            })
            try:  # the changes and their recovery-config entry: one transaction (the audit outbox)
                self.node.store.put_recovery_config_changes(len(stored) + 1, [c.to_bytes() for c in given[len(stored):]], audit=entry)
            except BackupStateError as e:
                raise RpcError(Code.ABORTED, f"history: {e}") from None
            self._config, self._loaded = config, True
        self.node.audit_queued("recovery-config", "installed")
        log.info("recovery configuration is now version %d (%d officers, quorum %d)", config.version, len(config.officers), config.quorum)
        return node_pb2.InstallRecoveryConfigResponse(installed=True, version=config.version)

    # --- GetBackupPart -----------------------------------------------------------------------
    def backup_part(self, req: node_pb2.GetBackupPartRequest, actor: str) -> node_pb2.GetBackupPartResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        node = self.node
        config = self.config()
        if config is None:
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: {node.cfg.name} has no recovery configuration (InstallRecoveryConfig)")
        held = node.store.key_epoch(key_id)
        if held is None or held.status != "active":
            why = "holds no live share of" if held is None or held.status == "left" else f"holds a {held.status} share of"
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: {node.cfg.name} {why} key {key_id.hex()[:16]}")
        if req.epoch != held.epoch:
            raise RpcError(Code.FAILED_PRECONDITION, f"epoch: is {req.epoch}, the key's active epoch here is {held.epoch}")
        stored = node.store.backup_part(key_id, held.epoch, config.version)
        if stored is not None:
            return node_pb2.GetBackupPartResponse(signed_part=stored)
        share = _live_share(node, key_id)  # issue 16: a DKLs23 or a FROST share
        if share is None or share.epoch != held.epoch:
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: {node.cfg.name} holds no live share of key {key_id.hex()[:16]}")
        roster = node.roster_state.current()
        if roster is None:
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: {node.cfg.name} has no signed roster (config roster_history)")
        change = SignedRecoveryConfigChange.from_bytes(node.store.recovery_config_changes()[config.version - 1])
        with self._lock:
            stored = node.store.backup_part(key_id, held.epoch, config.version)
            if stored is not None:
                return node_pb2.GetBackupPartResponse(signed_part=stored)
            try:
                signed = make_part(
                    share, node=node.me, roster_version=roster.version, governance_root=node.gov.governance_root,
                    config_change=change, key=key_record(share, held.committee), identity=self._identity(),
                    now_ms=node.clock.now_ms(),
                )
            except (BundleError, agekeys.AgeKeyError, GovernanceError) as e:  # no secret in their text
                raise RpcError(Code.FAILED_PRECONDITION, f"key_id: no backup part of this share can be made here ({e})") from None
            entry = OutboxEntry(actor, "backup-part", "", "made", {
                "key_id": key_id.hex(), "epoch": held.epoch, "config_version": config.version, "roster_version": roster.version,
                "officers": len(config.officers), "quorum": config.quorum,
            })  # queued with the part, in its transaction (the audit outbox)
            raw = node.store.put_backup_part(key_id, held.epoch, config.version, signed.to_bytes(), audit=entry)
        node.audit_queued("backup-part", "made")
        log.info("key %s: backup part of epoch %d made for recovery configuration %d", key_id.hex()[:16], held.epoch, config.version)
        return node_pb2.GetBackupPartResponse(signed_part=raw)

    # --- InstallRecoveryOrder ----------------------------------------------------------------
    def install_order(self, req: node_pb2.InstallRecoveryOrderRequest, actor: str) -> node_pb2.InstallRecoveryOrderResponse:
        try:
            order, signed_raw = self._verified_order(req.signed_order, actor)
            installed = self._record(order, signed_raw, actor)
        except RpcError as e:
            raise self.refuse(actor, "recovery-order", e) from None
        return node_pb2.InstallRecoveryOrderResponse(installed=installed)

    def _verified_order(self, data: bytes, actor: str, field: str = "signed_order") -> tuple[RecoveryOrder, bytes]:
        """Decode and verify an order against this node's admin set, configuration and key state."""
        raw = governance_blob(data, field)
        if not raw:
            raise invalid(field, "missing: a canonical SignedRecoveryOrder")
        try:
            signed = SignedRecoveryOrder.from_bytes(raw)
        except GovernanceError as e:
            raise invalid(f"{field}.{e.field}", e.reason) from None
        config = self.config()
        if config is None:
            raise RpcError(Code.FAILED_PRECONDITION, f"{field}: {self.node.cfg.name} has no recovery configuration")
        try:
            order = verify_recovery_order(signed, self.node.cfg.admin_set, config, now_ms=self.node.expiry_clock.now_ms())
        except GovernanceError as e:
            code = Code.FAILED_PRECONDITION if e.field.endswith(("config_version", "expires_ms")) else Code.PERMISSION_DENIED
            raise RpcError(code, f"{field}.{e.field}: {e.reason}") from None
        held = self.node.store.key_epoch(order.key_id)
        if held is not None and held.status == "active":  # the order must name the key as this node holds it
            # (an export may use an older epoch's bundle: its shares interpolate to the same key)
            checks: list[tuple[str, object, object]] = [("public_key", order.public_key, held.public_key)]
            if order.kind is RecoveryOrderKind.RESTORE:
                checks.append(("epoch", order.epoch, held.epoch))
            for name, a, b in checks:
                if a != b:
                    raise RpcError(
                        Code.FAILED_PRECONDITION, f"{field}.order.{name}: differs from key {order.key_id.hex()[:16]} as this node holds it"
                    )
            fu = order.follow_up
            if order.kind is RecoveryOrderKind.RESTORE and fu is not None and fu.old_committee != held.committee:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"{field}.order.follow_up.old_committee: is {list(fu.old_committee)},"
                    f" the key's committee here is {list(held.committee)}",
                )
        return order, raw

    def _record(self, order: RecoveryOrder, raw: bytes, actor: str) -> bool:
        restore = order.kind is RecoveryOrderKind.RESTORE
        stored = StoredOrder(
            order.order_id, "restore" if restore else "export", order.key_id,
            order.follow_up.encode() if restore and order.follow_up is not None else b"", raw,
        )
        details: dict[str, str | int | bool] = {
            "order_id": order.order_id.hex(), "kind": stored.kind, "key_id": order.key_id.hex(), "epoch": order.epoch,
            "targets": ",".join(f"{t.share_index}:{t.node}" for t in order.targets),
            "bundle": order.bundle_digest.hex(), "config_version": order.config_version,
            **detail_text("reason", order.reason),
        }
        if restore and order.follow_up is not None:
            details["follow_up"] = order.follow_up.digest().hex()
        outcome = "installed" if restore else "break-glass"
        try:  # the order and its recovery-order entry: one transaction (the audit outbox)
            installed = self.node.store.put_recovery_order(stored, audit=OutboxEntry(actor, "recovery-order", "", outcome, details))
        except BackupStateError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"signed_order.order.order_id: {e}") from None
        if installed:
            self.node.audit_queued("recovery-order", outcome)
            if restore:
                log.info("recovery order %s (restore) of key %s installed", order.order_id.hex(), order.key_id.hex()[:16])
            else:
                log.warning("BREAK-GLASS: export order %s of key %s installed", order.order_id.hex(), order.key_id.hex()[:16])
        return installed

    def orders_follow_up(self, operation: KeyOperation, *, unsigned: bool = True) -> bool:
        """Whether ``operation`` is exactly the follow-up of a RESTORE order installed here and
        not expired by this node's clock (it is then authorized ``"recovery-order"``). Called when
        a session of the operation starts here, so an order that expires later does not stop a
        follow-up already under way. When every order that names it has expired: RpcError
        FAILED_PRECONDITION naming ``reshare.operation`` for an ``unsigned`` operation (it has no
        other authorization), False for one that carries admin signatures (checked as usual)."""
        enc = operation.encode()
        expired: list[int] = []
        for o in self.node.store.recovery_orders_for(operation.key_id):
            if o.kind != "restore" or not hmac.compare_digest(o.follow_up, enc):
                continue
            try:
                expires = SignedRecoveryOrder.from_bytes(o.signed_order).order.expires_ms
            except GovernanceError:  # the store was altered: this order authorizes nothing
                log.error("recovery order %s stored here does not decode", o.order_id.hex())
                continue
            if self.node.expiry_clock.now_ms() < expires:  # a wall step back revives no order
                return True
            expired.append(expires)
        if expired and unsigned:
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"reshare.operation: the recovery order that ordered this follow-up expired at {max(expired)} ms"
                " (a new admin order is needed)",
            )
        return False

    # --- RestoreShare ------------------------------------------------------------------------
    def restore(self, req: node_pb2.RestoreShareRequest, actor: str) -> node_pb2.RestoreShareResponse:
        try:
            return self._restore(req, actor)
        except RpcError as e:
            raise self.refuse(actor, "share-restored", e) from None

    def _restore(self, req: node_pb2.RestoreShareRequest, actor: str) -> node_pb2.RestoreShareResponse:
        node = self.node
        pieces = _pieces(req.pieces)
        order, raw = self._verified_order(req.signed_order, actor)
        if order.kind is not RecoveryOrderKind.RESTORE:
            raise RpcError(Code.FAILED_PRECONDITION, "signed_order.order.kind: is not a RESTORE order")
        mine = [t for t in order.targets if t.node == node.me]
        if not mine:
            raise RpcError(Code.FAILED_PRECONDITION, f"signed_order.order.targets: do not name node {node.me} ({node.cfg.name})")
        share_index = mine[0].share_index
        if node.roster_state.entry(node.me) is None or node.me not in node.peers():
            raise RpcError(Code.FAILED_PRECONDITION, f"signed_order.order.targets: node {node.me} is not active in this node's roster")
        held = node.store.key_epoch(order.key_id)
        if held is not None and held.status != "left":
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"signed_order.order.key_id: {node.cfg.name} holds key {order.key_id.hex()[:16]} ({held.status}, epoch"
                f" {held.epoch}): a restore never replaces a live share",
            )
        if held is not None and order.epoch < held.epoch:  # it left the committee at held.epoch
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"signed_order.order.epoch: is {order.epoch}; {node.cfg.name} left key {order.key_id.hex()[:16]} at epoch"
                f" {held.epoch}: a share of an epoch the key moved past is never restored",
            )
        done = node.store.restored_key(order.key_id)
        if done is not None and done.order_id == order.order_id and done.epoch == order.epoch:  # a retry: the same answer
            # audited too (an answer repeated; the restore's own entry was committed with the share)
            self.audit_event(actor, "share-restored", "answered-again", {
                "order_id": order.order_id.hex(), "key_id": order.key_id.hex(), "epoch": done.epoch, "share_index": share_index,
            })
            return node_pb2.RestoreShareResponse(receipt=done.receipt)
        if done is not None and done.epoch != order.epoch:
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"signed_order.order.epoch: is {order.epoch}; this node holds a share of key {order.key_id.hex()[:16]} restored"
                f" at epoch {done.epoch} (order {done.order_id.hex()})",
            )
        # (a restored share of this epoch from an earlier order whose follow-up did not complete is
        # replaced by this order's restore: a new order can always retry the ceremony)
        bundle = self._bundle(req.bundle, order.bundle_digest)
        key = bundle.key
        installed = node.store.recovery_config_changes()
        if bundle.config.change.config.version != order.config_version or len(installed) < order.config_version or (
            bundle.config.to_bytes() != installed[order.config_version - 1]
        ):
            raise RpcError(
                Code.FAILED_PRECONDITION, f"bundle.config: is not recovery configuration {order.config_version} as installed here"
            )
        for name, a, b in (
            ("key_id", key.key_id, order.key_id), ("public_key", key.public_key, order.public_key),
            ("chain_code", key.chain_code, order.chain_code), ("epoch", key.epoch, order.epoch), ("scheme", key.scheme, order.scheme),
        ):
            if a != b:
                raise RpcError(Code.FAILED_PRECONDITION, f"bundle.key.{name}: differs from the order's")
        if share_index > len(key.committee) or key.committee[share_index - 1] != node.me:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"signed_order.order.targets: share index {share_index} is not node {node.me}'s in the bundle"
            )
        fu = order.follow_up
        if fu is None or fu.old_committee != key.committee or fu.old_threshold != key.threshold:
            raise RpcError(Code.FAILED_PRECONDITION, "signed_order.order.follow_up: does not name the bundle's committee and threshold")
        self._record(order, raw, actor)  # every target has it installed, whichever RPC came first
        secret, outcomes, stray = self._open(bundle, share_index, pieces, order.order_id, PiecePurpose.RESTORE)
        names = _officer_names(bundle)
        if secret is None:
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"pieces: fewer than {_quorum(bundle)} officers' pieces verify ({_faults(outcomes, names, stray)})",
            )
        restored: RecoveredShare | FrostKeyShare
        try:  # issue 16: a FROST key's share is restored as a FrostKeyShare (it deals in the FROST follow-up)
            restored = recovered_frost_share(bundle, share_index, secret) if key.is_frost else recovered_share(bundle, share_index, secret)
        except (DecodeError, ValueError):  # never echo anything about the secret
            raise RpcError(Code.FAILED_PRECONDITION, f"pieces: the rebuilt share does not match public share {share_index}") from None
        finally:
            secret = 0
        with node.keys_lock:
            identity = node.keys.identity
        receipt = sign_recovery_receipt(
            RecoveryReceipt(order.order_id, order.key_id, order.epoch, share_index, node.me, key.public_shares[share_index - 1]),
            identity,
        ).to_bytes()
        entry = OutboxEntry(actor, "share-restored", "", "restored", {
            "order_id": order.order_id.hex(), "key_id": order.key_id.hex(), "epoch": key.epoch, "share_index": share_index,
            "officers": _officers_text(outcomes, names),
        })
        try:  # the share and its share-restored entry: one transaction (the audit outbox)
            node.store.put_restored_share(
                RestoredKey(
                    order.key_id, key.epoch, key.threshold, tuple(key.committee), key.public_key, key.label, order.order_id, receipt
                ),
                restored.to_bytes(),
                audit=entry,
            )
        except BackupStateError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"signed_order.order.key_id: {e}") from None
        node.audit_queued("share-restored", "restored")
        log.info("key %s: share %d of epoch %d restored (order %s)", order.key_id.hex()[:16], share_index, key.epoch, order.order_id.hex())
        return node_pb2.RestoreShareResponse(receipt=receipt, outcomes=_outcomes(outcomes, names))

    def _bundle(self, data: bytes, digest: bytes | None) -> BackupBundle:
        """Decode the bundle file, check it names ``digest`` (None: any) and verify it publicly."""
        at_most(data, "bundle", MAX_BUNDLE)
        if not data:
            raise invalid("bundle", "missing: the backup bundle file")
        try:
            bundle = BackupBundle.from_file(bytes(data))
        except GovernanceError as e:
            raise invalid(f"bundle.{e.field}", e.reason) from None
        if digest is not None and not hmac.compare_digest(bundle.digest(), digest):
            raise RpcError(Code.FAILED_PRECONDITION, "bundle: is not the bundle the order names (bundle_digest)")
        try:
            verify_bundle(bundle, self.node.cfg.admin_set)
        except BundleError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"bundle.{e}") from None  # names the field, node or officer at fault
        except GovernanceError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"bundle.{e.field}: {e.reason}") from None
        own = self.node.roster_state.history()
        given = tuple(c.to_bytes() for c in bundle.roster_history)
        if given != own[: len(given)]:
            raise RpcError(Code.FAILED_PRECONDITION, "bundle.roster_history: is not a prefix of this node's roster history")
        return bundle

    # --- DrillShare --------------------------------------------------------------------------
    def drill(self, req: node_pb2.DrillShareRequest, actor: str) -> node_pb2.DrillShareResponse:
        try:
            return self._drill(req, actor)
        except RpcError as e:
            raise self.refuse(actor, "drill", e) from None

    def _drill(self, req: node_pb2.DrillShareRequest, actor: str) -> node_pb2.DrillShareResponse:
        node = self.node
        ceremony = check_len(req.ceremony_id, "ceremony_id", CEREMONY_ID_LEN)
        pieces = _pieces(req.pieces)
        bundle = self._bundle(req.bundle, None)
        key = bundle.key
        held = node.store.key_epoch(key.key_id)
        if held is None or held.status != "active":
            raise RpcError(
                Code.FAILED_PRECONDITION, f"bundle.key.key_id: {node.cfg.name} holds no live share of key {key.key_id.hex()[:16]}"
            )
        for name, a, b in (
            ("public_key", key.public_key, held.public_key), ("epoch", key.epoch, held.epoch),
            ("committee", tuple(key.committee), held.committee), ("threshold", key.threshold, held.threshold),
        ):
            if a != b:
                raise RpcError(Code.FAILED_PRECONDITION, f"bundle.key.{name}: differs from the key's active epoch here")
        share = _live_share(node, key.key_id)  # issue 16: a DKLs23 or a FROST share
        if share is None or _scheme(share) != key.scheme:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"bundle.key.scheme: differs from this node's share of key {key.key_id.hex()[:16]}"
            )
        if isinstance(share, KeyShare) and share.chain_code != key.chain_code:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"bundle.key.chain_code: differs from this node's share of key {key.key_id.hex()[:16]}"
            )
        share_index = held.committee.index(node.me) + 1
        secret, outcomes, stray = self._open(bundle, share_index, pieces, ceremony, PiecePurpose.DRILL)
        ok = False
        if secret is not None:  # in the key's group (mpcnet.common.key_group)
            pub_ok = hmac.compare_digest(public_share_of(key.scheme, secret), key.public_shares[share_index - 1])
            ok = pub_ok and hmac.compare_digest(encode_scalar(key.scheme, secret), encode_scalar(key.scheme, share.secret_share))
        secret = None  # destroyed: never stored, logged or returned
        names = _officer_names(bundle)
        report = sign_drill_report(
            DrillReport(ceremony, key.key_id, key.epoch, share_index, node.me, bundle.digest(), ok, tuple(sorted(outcomes.items()))),
            self._identity(),
        ).to_bytes()
        self.audit_event(actor, "drill", "ok" if ok else "failed", {
            "ceremony": ceremony.hex(), "key_id": key.key_id.hex(), "epoch": key.epoch, "share_index": share_index,
            "bundle": bundle.digest().hex(), "officers": _officers_text(outcomes, names), "unattributable_pieces": len(stray),
        })
        log.info("key %s: drill %s %s", key.key_id.hex()[:16], ceremony.hex(), "succeeded" if ok else "failed")
        return node_pb2.DrillShareResponse(report=report, outcomes=_outcomes(outcomes, names))

    # --- AttestEpoch ---------------------------------------------------------------------------
    def attest_epoch(self, req: node_pb2.AttestEpochRequest, actor: str) -> node_pb2.AttestEpochResponse:
        try:
            return self._attest_epoch(req, actor)
        except RpcError as e:
            raise self.refuse(actor, "epoch-attestation", e) from None

    def _attest_epoch(self, req: node_pb2.AttestEpochRequest, actor: str) -> node_pb2.AttestEpochResponse:
        node = self.node
        key_id = check_len(req.key_id, "key_id", KEY_ID_LEN)
        ceremony = check_len(req.ceremony_id, "ceremony_id", CEREMONY_ID_LEN)
        held = node.store.key_epoch(key_id)
        share = _live_share(node, key_id) if held is not None and held.status == "active" else None
        if held is None or share is None or share.epoch != held.epoch or node.me not in held.committee:
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: {node.cfg.name} holds no live share of key {key_id.hex()[:16]}")
        attestation = sign_epoch_attestation(
            EpochAttestation(ceremony, key_id, held.epoch, node.me, attested_ms=node.clock.now_ms()), self._identity()
        )
        self.audit_event(actor, "epoch-attestation", "signed", {
            "ceremony": ceremony.hex(), "key_id": key_id.hex(), "epoch": held.epoch,
        })
        return node_pb2.AttestEpochResponse(attestation=attestation.to_bytes())

    def _open(
        self, bundle: BackupBundle, share_index: int, pieces: Sequence[bytes], ceremony: bytes, purpose: PiecePurpose
    ) -> tuple[int | None, dict[int, str], list[int]]:
        """The share rebuilt from the officers' ``pieces`` (age files to this node's encryption
        key, in any order), an outcome per officer and the positions of the pieces no officer can
        be named for (they do not decrypt with this node's key to a delivery naming one of the
        configuration's officers; they are not used). A piece is attributed to the officer its
        :class:`PieceDelivery` names (the binding itself is checked by
        :func:`mpcnet.common.backup.open_deliveries`); an officer who sent two is ``duplicate``
        and none of hers is used."""
        private = self._encryption_private()
        by_officer, duplicate, stray = attribute_deliveries(pieces, private, len(bundle.config.change.config.officers))
        for j in duplicate:
            del by_officer[j]
        try:
            secret, outcomes = open_deliveries(bundle, share_index, by_officer, private, ceremony_id=ceremony, purpose=purpose)
        except BundleError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"bundle.{e}") from None
        for j in duplicate:
            outcomes[j] = "duplicate"
        return secret, outcomes, stray

    # --- the restored share in the node's other paths ------------------------------------------
    def restored(self, key_id: bytes, epoch: int) -> tuple[RestoredKey, RecoveredShare | FrostKeyShare] | None:
        """The restored share of ``key_id`` at ``epoch`` here (None: none); a FROST key's is a
        :class:`FrostKeyShare` (issue 16, by the record's magic)."""
        rk = self.node.store.restored_key(key_id)
        if rk is None or rk.epoch != epoch:
            return None
        record = self.node.store.restored_share(key_id)
        if record is None:
            return None
        return rk, FrostKeyShare.from_bytes(record) if is_frost_record(record) else RecoveredShare.from_bytes(record)


def _live_share(node: NodeService, key_id: bytes) -> KeyShare | FrostKeyShare | None:
    """This node's active share of ``key_id``: a DKLs23 or (issue 16) a FROST one; None if it holds none."""
    try:
        ks = node._any_key(key_id)
    except RpcError:
        return None
    return ks if isinstance(ks, (KeyShare, FrostKeyShare)) else None


def _scheme(share: KeyShare | FrostKeyShare) -> str:
    return share.scheme if isinstance(share, FrostKeyShare) else "ecdsa-secp256k1"


def _pieces(items: Sequence[bytes]) -> list[bytes]:
    at_most(items, "pieces", MAX_PIECES, "ciphertexts (one per officer)")
    out = []
    for k, p in enumerate(items):
        at_most(p, f"pieces[{k}]", MAX_PIECE)
        if not p:
            raise invalid(f"pieces[{k}]", "empty: an age file")
        out.append(bytes(p))
    if not out:
        raise invalid("pieces", "missing: the officers' age ciphertexts to this node")
    return out


def _officer_names(bundle: BackupBundle) -> dict[int, str]:
    return {k: o.name for k, o in enumerate(bundle.config.change.config.officers, 1)}


def _quorum(bundle: BackupBundle) -> int:
    return int(bundle.config.change.config.quorum)


def _officers_text(outcomes: Mapping[int, str], names: Mapping[int, str]) -> str:
    return ",".join(f"{names.get(j, j)}={o}" for j, o in sorted(outcomes.items()))


def _faults(outcomes: Mapping[int, str], names: Mapping[int, str], stray: Sequence[int] = ()) -> str:
    bad = [f"officer {j} ({names.get(j, '?')}): {o}" for j, o in sorted(outcomes.items()) if o != "ok"]
    if stray:
        bad.append(f"pieces{list(stray)}: undecryptable here (no officer can be named)")
    return "; ".join(bad) if bad else "no officer's piece"


def _outcomes(outcomes: Mapping[int, str], names: Mapping[int, str]) -> list[node_pb2.OfficerOutcome]:
    return [node_pb2.OfficerOutcome(officer=j, name=names.get(j, ""), outcome=o) for j, o in sorted(outcomes.items())]
