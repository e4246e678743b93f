"""The ``recovery-config`` and ``recovery-order`` kinds of lifecycle proposals (issue 12).

* ``recovery-config``: a new recovery-officer configuration (officers' age keys, quorum m,
  export quorum, drill period) as the next link of the chain; at the admin quorum it is applied
  by :meth:`coordinator.recovery_config.RecoveryConfigBook.apply` (stored with its audit entry,
  pushed to every node, new bundles of every key follow).
* ``recovery-order``: a RESTORE order (the admin quorum) or a break-glass EXPORT order (the
  configuration's ``export_quorum`` distinct admins). Checked against the coordinator's own
  state as it is proposed (governance root, configuration version, key, public key, chain code,
  epoch, a stored bundle of that epoch and configuration, the roster version, every restore
  target at its committee position, the follow-up operation as
  :meth:`coordinator.keyops.KeyOperations.check` checks any operation); at its quorum it is
  verified (:func:`governance.recovery.verify_recovery_order`), installed on the nodes
  (``InstallRecoveryOrder``: each verifies and audits it; every node of the key's committee and
  of the follow-up's new committee must) and opened as a ceremony
  (:meth:`coordinator.ceremonies.Ceremonies.open_order`). An order whose ``expires_ms`` has
  passed by the coordinator's clock is refused when proposed, approved or applied.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

import grpc

from coordinator.ceremonies import Ceremonies
from coordinator.db import CoordinatorDb, now_ms
from coordinator.keyops import KeyOperations
from coordinator.lifecycle_proposals import Proposed
from coordinator.recovery_config import RecoveryConfigBook, config_details
from coordinator.relay import NodeHandle, fanout
from governance.errors import GovernanceError
from governance.policy import AdminSet, AdminSignature
from governance.recovery import (
    RecoveryOrder,
    RecoveryOrderKind,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    verify_recovery_order,
)
from governance.roster import Roster
from governance.text import escape
from mpcnet.common.rpc import RpcError, status_of
from mpcnet.wire.mpc.v1 import node_pb2

CONFIG_KIND = "recovery-config"
ORDER_KIND = "recovery-order"
Code = grpc.StatusCode
INSTALL_TIMEOUT_S = 10.0


class RecoveryProposals:
    """``decode`` and ``apply`` of both kinds for :class:`LifecycleProposals`."""

    def __init__(
        self, admins: AdminSet, db: CoordinatorDb, book: RecoveryConfigBook, keyops: KeyOperations, ceremonies: Ceremonies,
        nodes: Mapping[int, NodeHandle], roster: Callable[[], Roster | None],
    ) -> None:
        self.admins = admins
        self.db = db
        self.book = book
        self.keyops = keyops
        self.ceremonies = ceremonies
        self.nodes = nodes
        self.roster = roster

    # --- recovery-config -----------------------------------------------------------------------
    def decode_config(self, data: bytes) -> Proposed:
        """A proposed configuration change: well formed, for this cluster, the next link of the
        chain, an export quorum above the admin quorum (INVALID_ARGUMENT / PERMISSION_DENIED /
        FAILED_PRECONDITION naming ``signed_change.<field>``)."""
        try:
            signed = SignedRecoveryConfigChange.from_bytes(data)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"signed_change.{e.field}: {e.reason}") from None
        change = signed.change
        if not hmac.compare_digest(change.governance_root, self.admins.digest()):
            raise RpcError(Code.PERMISSION_DENIED, "signed_change.governance_root: names another cluster or admin set")
        version = self.book.version
        prev = self.book.current()
        expected = None if prev is None else prev.digest()
        if self.book.applied(change):  # applied by a coordinator killed before marking its proposal
            pass
        elif change.config.version != version + 1 or change.previous_digest != expected:
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"signed_change.previous_digest: does not extend the recovery configuration in force (version {version}); "
                "make the change again from the current configuration",
            )
        eq = change.config.export_quorum
        if not self.admins.quorum < eq <= len(self.admins.admins):
            raise RpcError(
                Code.INVALID_ARGUMENT,
                f"signed_change.config.export_quorum: must be more than the admin quorum ({self.admins.quorum}) and at most "
                f"the number of admins ({len(self.admins.admins)}), got {eq}",
            )

        def rebuild(sigs: tuple[AdminSignature, ...]) -> bytes:
            return SignedRecoveryConfigChange(change, sigs).to_bytes()

        return Proposed(change.proposal_id, change.encode(), signed.signatures, rebuild, config_details(signed))

    def apply_config(self, data: bytes, actor: str) -> list[str]:
        self.decode_config(data)
        self.book.apply(SignedRecoveryConfigChange.from_bytes(data), actor)
        return []

    # --- recovery-order ------------------------------------------------------------------------
    def decode_order(self, data: bytes) -> Proposed:
        """A proposed order, checked against the coordinator's state (see the module doc);
        its quorum is the export quorum for an EXPORT order."""
        try:
            signed = SignedRecoveryOrder.from_bytes(data)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"signed_order.{e.field}: {e.reason}") from None
        order = signed.order
        self.check_order(order)
        config = self.book.current()
        assert config is not None
        export = order.kind == RecoveryOrderKind.EXPORT

        def rebuild(sigs: tuple[AdminSignature, ...]) -> bytes:
            return SignedRecoveryOrder(order, sigs).to_bytes()

        details: dict[str, str | int | bool] = {
            "order_kind": "export" if export else "restore", "key_id": order.key_id.hex(), "epoch": order.epoch,
            "bundle_digest": order.bundle_digest.hex(), "shares": ",".join(str(t.share_index) for t in order.targets),
            "nodes": ",".join(str(t.node) for t in order.targets), "reason": escape(order.reason)[:200],
        }
        if export:
            details["break_glass"] = True
        quorum = config.export_quorum if export else self.admins.quorum
        return Proposed(order.proposal_id, order.encode(), signed.signatures, rebuild, details, quorum=quorum)

    def check_order(self, order: RecoveryOrder) -> None:
        f = "signed_order.order"
        if not hmac.compare_digest(order.governance_root, self.admins.digest()):
            raise RpcError(Code.PERMISSION_DENIED, f"{f}.governance_root: names another cluster or admin set")
        config = self.book.current()
        if config is None:
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.config_version: no recovery officers are configured")
        if order.config_version != config.version:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"{f}.config_version: is {order.config_version}, the configuration in force is {config.version}"
            )
        now = self.db.expiry_ms(now_ms())  # expiry clock: a wall clock stepped back revives no order
        if now >= order.expires_ms:
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.expires_ms: the order expired at {order.expires_ms} ms (now {now} ms)")
        k = self.db.get_key(order.key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"{f}.key_id: unknown key {order.key_id.hex()}")
        if k.status != "active":
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.key_id: key {order.key_id.hex()[:16]} is {k.status}, not active")
        if order.public_key != k.public_key:
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.public_key: differs from key {order.key_id.hex()[:16]}'s")
        if order.chain_code != k.chain_code:
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.chain_code: differs from key {order.key_id.hex()[:16]}'s")
        if order.scheme != k.scheme:  # issue 16
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.scheme: is {order.scheme}, key {order.key_id.hex()[:16]} is a {k.scheme} key")
        epoch, committee = self.keyops.epoch_of(k)
        if order.epoch != epoch:
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.epoch: is {order.epoch}, the key's is {epoch}")
        b = self.db.get_bundle(order.bundle_digest)
        if b is None or b.key_id != order.key_id:
            raise RpcError(Code.FAILED_PRECONDITION, f"{f}.bundle_digest: no stored bundle {order.bundle_digest.hex()[:16]} of this key")
        if (b.epoch, b.config_version) != (epoch, config.version):
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"{f}.bundle_digest: bundle {order.bundle_digest.hex()[:16]} is of epoch {b.epoch} and configuration "
                f"{b.config_version}, not epoch {epoch} and configuration {config.version}",
            )
        roster = self.roster()
        if roster is None or order.roster_version != roster.version:
            have = 0 if roster is None else roster.version
            raise RpcError(
                Code.FAILED_PRECONDITION, f"{f}.roster_version: is {order.roster_version}, the roster in force is version {have}"
            )
        if order.kind == RecoveryOrderKind.EXPORT:
            return
        for i, t in enumerate(order.targets):
            if t.share_index > len(committee) or committee[t.share_index - 1] != t.node:
                raise RpcError(
                    Code.FAILED_PRECONDITION, f"{f}.targets[{i}]: node {t.node} does not hold share {t.share_index} of the key"
                )
            entry = roster.entry(t.node)
            if entry is None or not entry.active:
                raise RpcError(Code.FAILED_PRECONDITION, f"{f}.targets[{i}].node: node {t.node} is not active in the roster")
        if order.follow_up is None:
            raise RpcError(Code.INVALID_ARGUMENT, f"{f}.follow_up: a restore order needs its follow-up key operation")
        self.keyops.check(order.follow_up, f"{f}.follow_up")

    def apply_order(self, data: bytes, actor: str) -> list[str]:
        """At the order's quorum: verify, install on the nodes, open the ceremony."""
        self.decode_order(data)
        signed = SignedRecoveryOrder.from_bytes(data)
        config = self.book.current()
        assert config is not None
        try:
            order = verify_recovery_order(signed, self.admins, config, now_ms=self.db.expiry_ms(now_ms()))
        except GovernanceError as e:
            if e.field == "expires_ms":  # expired between check_order and here
                raise RpcError(Code.FAILED_PRECONDITION, f"signed_order.order.expires_ms: {e.reason}") from None
            raise RpcError(Code.PERMISSION_DENIED, f"signed_order.{e.field}: {e.reason}") from None
        self._install(signed, order)
        self.ceremonies.open_order(signed, actor)
        return []

    def _install(self, signed: SignedRecoveryOrder, order: RecoveryOrder) -> None:
        """``InstallRecoveryOrder`` on every reachable node; the nodes that act on the order must
        all install it (UNAVAILABLE / FAILED_PRECONDITION naming them otherwise: nothing is
        opened; approve or propose again to retry): the restore's targets and the follow-up's new
        committee (a refresh: the whole committee, every member deals). An old member that the
        follow-up leaves out and that is gone for good does not block the recovery (it takes no
        part: dealers are chosen among the reachable holders, which all got the order). An
        export involves no node: every reachable node records and audits it."""
        required = {t.node for t in order.targets if t.node} | (
            set(order.follow_up.new_committee) if order.follow_up is not None else set()
        )
        for i in sorted(required):  # a replaced node starts with an empty store: it needs the configuration first
            if i in self.nodes:
                self.book.sync_node(i)
        req = node_pb2.InstallRecoveryOrderRequest(signed_order=signed.to_bytes())
        ok, errs = fanout({i: (h.stub.InstallRecoveryOrder, req) for i, h in self.nodes.items()}, INSTALL_TIMEOUT_S)
        missing = sorted(i for i in required if i not in ok)
        if not missing:
            return
        why = []
        refused = False
        for i in missing:
            if i in errs:
                code, details = status_of(errs[i])
                refused = refused or code not in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED)
                why.append(f"node {i}: {code.name}: {escape(details[:300])}")
            else:
                why.append(f"node {i}: not reachable")
        raise RpcError(
            Code.FAILED_PRECONDITION if refused else Code.UNAVAILABLE,
            f"signed_order: not installed on every node of the key ({'; '.join(why)}); nothing was opened",
        )
