"""The node's key-epoch RPCs and the reshare session's ends (design section 3), for
:class:`mpc_node.service.NodeService` (which delegates to :class:`EpochService`).

* :meth:`EpochService.new_reshare`: ``StartSession(reshare=...)`` checked by
  :func:`mpc_node.keyops.check_reshare` (refusals audited as ``key-reshare`` refused); party
  ids are roster indices. An unsigned refresh is authorized by the schedule only when the
  node's own policy for the key has ``refresh_period_s`` and its own record says the active
  share is at least that old by its own clock (:meth:`EpochService.schedule`).
* :meth:`EpochService.finish_reshare`: a receiver stores its new share *pending* with its
  signed :class:`governance.keyop.EpochReceipt` (one transaction) before the answer carrying
  the receipt leaves; a retiring dealer stores a marker. The old share stays active.
* :meth:`EpochService.commit`: ``CommitEpoch``: the certificate is verified against the node's
  own roster and governance root and must be for the pending outcome this node stored (same
  operation digest, epoch, threshold, committee); then the store switches the key in one
  transaction (:meth:`mpc_node.epoch_store.EpochStore.commit_epoch`), the key cache is dropped
  and live signing sessions of the key are aborted. Idempotent.
* :meth:`EpochService.discard`, :meth:`EpochService.pending`: ``DiscardEpoch`` and
  ``GetPendingEpoch``.

FROST keys (issue 16) take the same path with :class:`crypto_core.frost.reshare.FrostReshareParty`:
same checks, receipts, atomic commit/discard and abandonment rules; ``ReshareResult`` and
``PendingEpochInfo`` carry the new epoch's public shares (the coordinator verifies signature
shares against them); a joining node's key row takes the scheme of its pending share (which came
from the authorized operation); the commit deletes the key's fresh nonces with the old epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from crypto_core.frost.keyshare import FrostKeyShare, is_frost_record
from crypto_core.frost.reshare import FrostReshareConfig, FrostReshareParty
from crypto_core.keyshare import KeyShare
from crypto_core.params import MAX_LABEL
from crypto_core.reshare import ReshareParty
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.keyop import (
    CommitCertificate,
    EpochAbandonment,
    KeyOperation,
    session_abandoned,
    sign_epoch_abandonment,
    sign_epoch_receipt,
    verify_commit_certificate,
)
from governance.roster import MAX_INDEX, Roster, active_entries
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.epoch_store import CommitOutcome, EpochStateError, KeyEpoch, PendingEpoch
from mpc_node.fields import at_most, governance_blob, utf8_text_field
from mpc_node.keyops import NO_ROSTER, RefreshSchedule, ReshareSetup, anchor_after, check_reshare, joined_versions, receipt_for
from mpcnet.common.rpc import RpcError, check_len
from mpcnet.wire.mpc.v1 import node_pb2

if TYPE_CHECKING:
    from crypto_core.backup import RecoveredShare
    from mpc_node.service import NodeService, Session

log = logging.getLogger("mpc_node.epochs")
Code = grpc.StatusCode
SESSION_ID_LEN = 32


class EpochService:
    """Key refresh/reshare on one node; ``node`` is its :class:`NodeService`."""

    def __init__(self, node: NodeService) -> None:
        self.node = node

    # --- helpers -----------------------------------------------------------------------------
    def roster(self) -> Roster | None:
        """The roster in force (None: a legacy config with a fixed roster)."""
        return self.node.roster_state.current()

    def schedule(self, held: KeyEpoch) -> RefreshSchedule | None:
        """The node's own refresh schedule of ``held``: the period of its policy in force for
        the key (key scope, else default) and the share's age by the node's expiry clock (a wall
        step back does not make a due refresh wait: mpcnet/common/steadyclock.py)."""
        found = self.node.gov.policy_for(held.key_id)
        if found is None:
            return None
        age = self.node.expiry_clock.now_ms() - held.changed_ms
        steady_age = self.node.store.key_change_age_ms(held.key_id)  # a step back across a restart shortens no age
        return RefreshSchedule(found[1].refresh_period_s, age if steady_age is None else max(age, steady_age))

    def audit_event(self, actor: str, action: str, outcome: str, details: dict[str, str | int | bool]) -> None:
        """Append an entry that records no store change (a refusal, a session's start) directly."""
        self.node.audit.append(actor, action, outcome=outcome, details=details)

    # --- starting ----------------------------------------------------------------------------
    def new_reshare(self, sid: bytes, p: node_pb2.ReshareParams, actor: str) -> tuple[ReshareSetup, ReshareParty | FrostReshareParty]:
        """Check ``p`` (see :func:`mpc_node.keyops.check_reshare`); audited when refused."""
        try:
            return self._new_reshare(sid, p)
        except RpcError as e:
            self.audit_event(actor, "key-reshare", "refused", {**detail_text("reason", e.message), "session": sid.hex()[:16]})
            raise

    def _new_reshare(self, sid: bytes, p: node_pb2.ReshareParams) -> tuple[ReshareSetup, ReshareParty | FrostReshareParty]:
        node = self.node
        governance_blob(p.operation, "reshare.operation")
        at_most(p.abandoned, "reshare.abandoned", MAX_INDEX, "abandonment statements")
        for k, a in enumerate(p.abandoned):
            governance_blob(a, f"reshare.abandoned[{k}]")
        at_most(p.dealers, "reshare.dealers", MAX_INDEX, "roster indices")
        utf8_text_field(p.key_label, "reshare.key_label", MAX_LABEL)
        try:
            peeked: KeyOperation | None = _peek_operation(bytes(p.operation))
        except ValueError:
            peeked = None
        key_id = peeked.key_id if peeked is not None else b""
        held = node.store.key_epoch(key_id) if len(key_id) == 32 else None
        share: KeyShare | FrostKeyShare | RecoveredShare | None = (
            _held_share(node, key_id) if held is not None and held.status == "active" else None
        )
        anchor = node.store.committee_roster_version(key_id, held.epoch) if held is not None and held.status == "active" else None
        schedule = self.schedule(held) if held is not None and share is not None else None
        # issue 12: a share restored by a recovery order deals in that order's follow-up only (and
        # only a node holding no live share of the key uses one)
        ordered = peeked is not None and node.backups.orders_follow_up(peeked, unsigned=_unsigned(bytes(p.operation)))
        restored = node.backups.restored(key_id, peeked.old_epoch) if ordered and peeked is not None and share is None else None
        if restored is not None:
            rk, share = restored
            held = KeyEpoch(key_id, rk.public_key, rk.label, rk.epoch, rk.threshold, rk.committee, "active")
            anchor, schedule = None, None
        setup = check_reshare(
            bytes(p.operation), tuple(p.dealers), bytes(p.key_label), session_id=sid, me=node.me, admins=node.cfg.admin_set,
            roster=self.roster(), held=held, share=share, schedule=schedule, committee_roster_version=anchor,
            joined=joined_versions(node.roster_state.history()) if anchor is not None else None, ordered=ordered,
        )
        op = setup.operation
        other = node.store.confirmed_session(op.key_id, op.new_epoch) if setup.receiver else None
        if other is not None and other != sid and self._abandoned_by_a_member(op.key_id, other, p):
            other = node.store.confirmed_session(op.key_id, op.new_epoch)  # released: another one may remain
        if other is not None and other != sid:
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"reshare.operation.old_epoch: this node already confirmed epoch {op.new_epoch} of key {op.key_id.hex()[:16]}"
                f" in session {other.hex()[:12]}; only that session's certificate can commit it (one epoch, one session)",
            )
        if isinstance(setup.config, FrostReshareConfig):  # issue 16: a FROST key (check_reshare checked the share's scheme)
            assert share is None or isinstance(share, FrostKeyShare)
            return setup, FrostReshareParty(setup.config, share if setup.dealer else None)
        assert not isinstance(share, FrostKeyShare)
        return setup, ReshareParty(setup.config, share if setup.dealer else None)

    def audit_start(self, s: Session, actor: str) -> None:
        setup = s.reshare
        assert setup is not None
        op = setup.operation
        self.audit_event(actor, "key-reshare", "accepted", {
            "key_id": op.key_id.hex(), "session": s.id.hex()[:16], "kind": op.kind.name.lower(), "old_epoch": op.old_epoch,
            "dealers": ",".join(map(str, setup.dealers)), "new_committee": ",".join(map(str, op.new_committee)),
            "new_threshold": op.new_threshold, "authorized_by": setup.authorized_by, "op": op.digest().hex(),
        })

    # --- finishing ---------------------------------------------------------------------------
    def finish_reshare(self, s: Session) -> node_pb2.StepResponse:
        """Store the outcome durably (pending share + signed receipt, or the retiring marker),
        then answer with the ReshareResult."""
        node = self.node
        setup = s.reshare
        assert setup is not None
        op = setup.operation
        result: KeyShare | FrostKeyShare | None = s.party.result
        raw = b""
        if result is not None:
            receipt = sign_epoch_receipt(receipt_for(result, op, s.id, node.me, node.gov.governance_root), node.keys.identity)
            raw = receipt.to_bytes()
        outcome = "stored-pending" if result is not None else "retiring"
        entry = OutboxEntry("coordinator", "key-reshare", "", outcome, {
            "key_id": op.key_id.hex(), "session": s.id.hex()[:16], "epoch": op.new_epoch, "op": op.digest().hex(),
        })
        try:  # the store refuses (nothing stored, no receipt leaves) e.g. a session abandoned meanwhile (DiscardEpoch)
            node.store.put_pending_epoch(  # the outcome and its key-reshare entry: one transaction (the audit outbox)
                PendingEpoch(
                    op.key_id, s.id, op.new_epoch, op.new_threshold, op.new_committee, op.digest(), raw, result is None, True, False
                ),
                None if result is None else result.to_bytes(),
                roster_version=anchor_after(op, setup.authorized_by, node.store.committee_roster_version(op.key_id, op.old_epoch)),
                audit=entry,
            )
        except EpochStateError as e:
            err = node._abort_error(s, None, f"its outcome is not stored: {e}")
            node._kill(s, err)  # the session is over here; its party (the new share) is dropped
            log.warning("%s", err.message)
            raise err from None
        s.done = True
        s.party = None
        node.audit_queued("key-reshare", outcome)
        log.info("session %s (reshare): finished, key %s epoch %d %s", s.short, op.key_id.hex()[:16], op.new_epoch,
                 "stored pending" if result is not None else "(this node retires at the commit)")
        node.faults.at("reshare-stored")
        return node_pb2.StepResponse(
            session_id=s.id, round=0, finished=True,
            reshare_result=node_pb2.ReshareResult(
                key_id=op.key_id, epoch=op.new_epoch, receipt=raw, retired=result is None,
                # issue 16: the new epoch's public shares of a FROST key (the coordinator checks FROST signature shares against them)
                public_shares=list(result.public_shares) if isinstance(result, FrostKeyShare) else [],
            ),
        )

    # --- CommitEpoch / DiscardEpoch / GetPendingEpoch -----------------------------------------
    def commit(self, req: node_pb2.CommitEpochRequest, actor: str, abort_key: Callable[[bytes, str], int]) -> node_pb2.CommitEpochResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        sid = check_len(req.session_id, "session_id", SESSION_ID_LEN)
        try:
            return self._commit(key_id, sid, req, actor, abort_key)
        except RpcError as e:
            details = {**detail_text("reason", e.message), "key_id": key_id.hex(), "session": sid.hex()[:16]}
            self.audit_event(actor, "key-epoch", "refused", details)
            raise

    def _commit(
        self, key_id: bytes, sid: bytes, req: node_pb2.CommitEpochRequest, actor: str, abort_key: Callable[[bytes, str], int]
    ) -> node_pb2.CommitEpochResponse:
        node = self.node
        at_most(req.receipts, "receipts", MAX_INDEX, "receipts (one per new-committee member)")
        for k, r in enumerate(req.receipts):
            governance_blob(r, f"receipts[{k}]")
        roster = self.roster()
        if roster is None:
            raise RpcError(Code.FAILED_PRECONDITION, f"receipts: {NO_ROSTER}")
        identities = {e.index: e.identity_key for e in active_entries(roster)}
        try:
            cert = verify_commit_certificate(
                [bytes(r) for r in req.receipts], governance_root=node.gov.governance_root, key_id=key_id, session_id=sid,
                identities=identities,
            )
        except GovernanceError as e:
            code = Code.PERMISSION_DENIED if e.field.endswith("signature") or e.field.endswith("holder") else Code.INVALID_ARGUMENT
            raise RpcError(code, f"{e.field}: {e.reason}") from None
        pending = node.store.pending_epoch(key_id, sid)
        held = node.store.key_epoch(key_id)
        if pending is None and held is not None and node.me not in cert.committee and held.status in ("active", "left"):
            return self._leave(key_id, sid, held.epoch, cert, actor, abort_key)
        if pending is None and held is None and node.me not in cert.committee and node.store.restored_key(key_id) is None:
            # an old-committee member that holds nothing of the key (wiped or replaced) and is not
            # in the new committee: nothing to switch here
            return node_pb2.CommitEpochResponse(epoch=cert.epoch, holds_share=False, changed=False)
        if pending is None:
            if held is not None and held.epoch >= cert.epoch:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"receipts: the certificate is for epoch {cert.epoch}, not newer than the key's active epoch {held.epoch} here",
                )
            raise RpcError(
                Code.FAILED_PRECONDITION, f"session_id: {node.cfg.name} holds no outcome of session {sid.hex()[:12]} for this key"
            )
        mismatch = [
            name for name, a, b in (
                ("op_digest", cert.op_digest, pending.op_digest), ("epoch", cert.epoch, pending.epoch),
                ("threshold", cert.threshold, pending.threshold), ("committee", cert.committee, pending.committee),
            ) if a != b
        ]
        if mismatch:
            raise RpcError(Code.FAILED_PRECONDITION, f"receipts: {mismatch[0]} differs from the session this node took part in")
        restored = node.store.restored_key(key_id) if held is None else None
        scheme = "ecdsa-secp256k1"
        if held is not None:
            label, public_key = held.label, held.public_key
        elif restored is not None:  # a restored dealer (issue 12): it has no key row yet
            label, public_key = restored.label, restored.public_key
            record = node.store.restored_share(key_id)  # issue 16: a restored FROST share keeps its key's scheme
            if record is not None and is_frost_record(record):
                scheme = FrostKeyShare.from_bytes(record).scheme
        else:
            label, public_key, scheme = _joining(node, key_id, sid)
        def entry(o: CommitOutcome) -> OutboxEntry:
            return OutboxEntry(actor, "key-epoch", "", "committed", {
                "key_id": key_id.hex(), "session": sid.hex()[:16], "epoch": o.epoch, "holds_share": o.holds_share,
                "committee": ",".join(map(str, cert.committee)), "threshold": cert.threshold, "op": cert.op_digest.hex(),
            })

        try:  # the switch and its key-epoch entry: one transaction (the audit outbox)
            out = node.store.commit_epoch(
                key_id, sid, label=label, public_key=public_key, epoch=cert.epoch, scheme=scheme, audit=entry
            )
        except EpochStateError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"session_id: {e}") from None
        if out.changed:
            node.audit_queued("key-epoch", "committed")
            node.drop_key(key_id)
            self._abort_sessions(actor, key_id, sid, out.epoch, abort_key(key_id, f"key switched to epoch {out.epoch}"))
            log.info("key %s: epoch %d committed (%s)", key_id.hex()[:16], out.epoch, "share active" if out.holds_share else "share erased")
            node.faults.at("epoch-committed")
        return node_pb2.CommitEpochResponse(epoch=out.epoch, holds_share=out.holds_share, changed=out.changed)

    def _leave(
        self, key_id: bytes, sid: bytes, epoch: int, cert: CommitCertificate, actor: str, abort_key: Callable[[bytes, str], int]
    ) -> node_pb2.CommitEpochResponse:
        """A certificate for a new committee without this node, whose session it took no part in
        (dropped while unavailable): the key moved on without it, so its share is erased."""
        entry = OutboxEntry(actor, "key-epoch", "", "left", {
            "key_id": key_id.hex(), "session": sid.hex()[:16], "epoch": cert.epoch, "from_epoch": epoch,
            "committee": ",".join(map(str, cert.committee)), "op": cert.op_digest.hex(),
        })
        try:  # the erasure and its key-epoch entry: one transaction (the audit outbox)
            changed = self.node.store.leave_key(
                key_id, epoch=cert.epoch, threshold=cert.threshold, committee=cert.committee, audit=entry
            )
        except EpochStateError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"receipts: {e}") from None
        if changed:
            self.node.audit_queued("key-epoch", "left")
            self.node.drop_key(key_id)
            aborted = abort_key(key_id, f"key switched to epoch {cert.epoch} without this node")
            self._abort_sessions(actor, key_id, sid, cert.epoch, aborted)
            log.info("key %s: epoch %d committed without this node: share erased", key_id.hex()[:16], cert.epoch)
        return node_pb2.CommitEpochResponse(epoch=cert.epoch, holds_share=False, changed=changed)

    def _abort_sessions(self, actor: str, key_id: bytes, sid: bytes, epoch: int, aborted: int) -> None:
        """After a committed switch of ``key_id`` (its entry already queued with it): audit the
        live signing sessions of the key it aborted (``key-epoch`` ``sessions-aborted``; none: no
        entry). Those sessions lived in memory only: nothing in the store to commit with it."""
        if aborted:
            self.audit_event(actor, "key-epoch", "sessions-aborted", {
                "key_id": key_id.hex(), "session": sid.hex()[:16], "epoch": epoch, "aborted_sessions": aborted,
            })

    def discard(self, req: node_pb2.DiscardEpochRequest, actor: str) -> node_pb2.DiscardEpochResponse:
        """Abandon the session here (see ``DiscardEpoch`` in node.proto): the store records it
        durably, then this node signs an :class:`EpochAbandonment` of it."""
        key_id = check_len(req.key_id, "key_id", 32)
        sid = check_len(req.session_id, "session_id", SESSION_ID_LEN)
        def entry(dropped: bool) -> OutboxEntry:
            return OutboxEntry(actor, "key-epoch", "", "abandoned", {"key_id": key_id.hex(), "session": sid.hex()[:16], "dropped": dropped})

        try:  # the abandonment and its key-epoch entry: one transaction (the audit outbox)
            done = self.node.store.discard_epoch(key_id, sid, audit=entry)
        except EpochStateError as e:
            self.audit_event(actor, "key-epoch", "discard-refused", {**detail_text("reason", str(e)), "key_id": key_id.hex()})
            raise RpcError(Code.FAILED_PRECONDITION, f"session_id: {e}") from None
        self.node.audit_queued("key-epoch", "abandoned")
        with self.node.keys_lock:
            identity = self.node.keys.identity
        proof = sign_epoch_abandonment(EpochAbandonment(self.node.gov.governance_root, key_id, sid, self.node.me), identity)
        return node_pb2.DiscardEpochResponse(discarded=done, abandonment=proof.to_bytes())

    def _abandoned_by_a_member(self, key_id: bytes, session_id: bytes, p: node_pb2.ReshareParams) -> bool:
        """This node confirmed ``session_id`` of the key (its receipt left it): if ``p.abandoned``
        holds a valid abandonment of that session by a member of its new committee (which then
        never confirms it, so its certificate can never complete), or a member of that committee
        is revoked in the roster in force (its receipt is refused everywhere), erase this node's
        outcome of it (audited) and return True; else False."""
        node = self.node
        held = node.store.pending_epoch(key_id, session_id)
        if held is None or held.committed:
            return False
        peers = node.peers()
        who = session_abandoned(
            list(p.abandoned), governance_root=node.gov.governance_root, key_id=key_id, session_id=session_id,
            committee=held.committee, identities={i: peer.identity_public for i, peer in peers.items()},
        )
        # a member revoked since can never confirm it either (every certificate is checked
        # against the active roster's keys, and a revoked index never comes back): without this,
        # revoking the node that lost the session left the key unable to change epoch for good
        roster = self.roster()
        revoked = None if roster is None else next((i for i in held.committee if i not in peers), None)
        if who is None and revoked is None:
            return False
        how: dict[str, str | int | bool] = {"abandoned_by": who} if who is not None else {"revoked_member": revoked or 0}

        def entry(p: PendingEpoch) -> OutboxEntry:
            return OutboxEntry("coordinator", "key-epoch", "", "confirmation-released", {
                "key_id": key_id.hex(), "session": session_id.hex()[:16], **how, "epoch": p.epoch,
            })

        if not node.store.release_confirmation(key_id, session_id, audit=entry):  # with its entry: one transaction
            return False
        node.audit_queued("key-epoch", "confirmation-released")
        log.info("key %s: session %s %s: its pending epoch %d erased here", key_id.hex()[:16], session_id.hex()[:12],
                 f"abandoned by node {who}" if who is not None else f"can never commit (node {revoked} was revoked)", held.epoch)
        return True

    def pending(self, req: node_pb2.GetPendingEpochRequest) -> node_pb2.PendingEpochInfo:
        """``GetPendingEpoch``: this node's outcome of the session, and whether it holds a share of
        the key it can deal with (``holds_key``, at ``active_epoch``): its live share, or a share
        restored by a recovery order (issue 12; it deals in that order's follow-up only). The
        coordinator picks the dealers of a key operation among the holders at its old epoch."""
        key_id = check_len(req.key_id, "key_id", 32)
        sid = check_len(req.session_id, "session_id", SESSION_ID_LEN)
        p = self.node.store.pending_epoch(key_id, sid)
        held = self.node.store.key_epoch(key_id)
        holds = held is not None and held.status == "active"
        epoch = held.epoch if holds and held is not None else 0
        if held is None:  # a share restored by a recovery order (issue 12) deals like a live one
            restored = self.node.store.restored_key(key_id)
            if restored is not None:
                holds, epoch = True, restored.epoch
        return node_pb2.PendingEpochInfo(
            pending=p is not None and not p.committed and not p.retiring, committed=p is not None and p.committed,
            receipt=p.receipt if p is not None else b"", retired=p is not None and p.retiring,
            active_epoch=epoch, holds_key=holds, public_shares=self._frost_public_shares(key_id, sid, p, held),
        )

    def _frost_public_shares(self, key_id: bytes, sid: bytes, p: PendingEpoch | None, held: KeyEpoch | None) -> list[bytes]:
        """Issue 16: the public shares of the session's new epoch of a FROST key, from this node's
        pending share, or its active one once committed (same epoch); [] otherwise."""
        if p is None or p.retiring:
            return []
        if not p.committed:
            raw = self.node.store.pending_share(key_id, sid)
            return list(FrostKeyShare.from_bytes(raw).public_shares) if raw is not None and is_frost_record(raw) else []
        if held is None or held.status != "active" or held.epoch != p.epoch:
            return []
        ks = _held_share(self.node, key_id)
        return list(ks.public_shares) if isinstance(ks, FrostKeyShare) and ks.epoch == p.epoch else []


def _peek_operation(operation: bytes) -> KeyOperation:
    """The operation of an encoded SignedKeyOperation, for loading this node's state before the
    full check (which decodes it again); ValueError if it does not decode."""
    from governance.keyop import SignedKeyOperation

    try:
        return SignedKeyOperation.from_bytes(operation).operation
    except GovernanceError:
        raise ValueError("operation") from None


def _unsigned(operation: bytes) -> bool:
    """Whether an encoded SignedKeyOperation carries no admin signature (True if it does not decode)."""
    from governance.keyop import SignedKeyOperation

    try:
        return not SignedKeyOperation.from_bytes(operation).signatures
    except GovernanceError:
        return True


def _held_share(node: NodeService, key_id: bytes) -> KeyShare | FrostKeyShare | None:
    """This node's active share of ``key_id``, a DKLs23 or (issue 16) a FROST one; None if it holds none."""
    try:
        ks = node._any_key(key_id)
    except RpcError:
        return None
    assert isinstance(ks, (KeyShare, FrostKeyShare))
    return ks


def _joining(node: Any, key_id: bytes, sid: bytes) -> tuple[str, bytes, str]:
    """A joining node's (label, public key, scheme) for its new key row: from its pending share
    (a FROST share by its record's magic, issue 16: it came from the session's operation)."""
    raw = node.store.pending_share(key_id, sid)
    if raw is None:
        raise RpcError(Code.FAILED_PRECONDITION, "session_id: no pending share to commit")
    if is_frost_record(raw):
        fs = FrostKeyShare.from_bytes(raw)
        return fs.key_label.decode("utf-8", "replace"), fs.public_key, fs.scheme
    ks = KeyShare.from_bytes(raw)
    return ks.key_label.decode("utf-8", "replace"), bytes(ks.public_key.encode()), "ecdsa-secp256k1"
