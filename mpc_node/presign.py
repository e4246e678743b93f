"""Presignature pools on the node (issue 14; design D1-D6, /work contract "Presign session" and
"One-round signing"): presign sessions, ``SignPresigned``, ``ListPresignatures``,
``DiscardPresignatures`` and the pool's housekeeping.

A *presign session* is a signing session (``Session.kind == "sign"``, so ban locks, epoch commits
and roster changes end it like any signing session) whose :class:`PresignSetup` says it makes
``count`` presignatures (:class:`crypto_core.sign.PresignBatch`) for one key, epoch, derivation
path and signer set, with no digest and no approvals: a pool changes speed, never what may be
signed. On the delivery of round 3 it stores them *fresh* (sealed at rest) in one transaction
that checks again that the key is active at that epoch and the node's cap, with a ``presign``
audit entry; only then does it answer ``PresignResult``.

``SignPresigned`` signs one approved request with one stored presignature in one round. In
order: field checks (INVALID_ARGUMENT); a replay of the same ``(request, attempt)`` answers the
stored share (``replayed``); then ``presig-used`` / ``presig-unknown`` / ``presig-mismatch`` /
``epoch`` / ``mpc-banned``; the approvals exactly as a signing session checks them; the
reservation of the attempt (self-granted when the signer set is at least a reservation quorum
of the node's roster, else from ``reservation_receipts``); then ONE transaction consumes the
presignature, grants the attempt, records the served request and rate limit, stores the share
and queues the ``sign-share`` audit entry. The share (re-randomised, version 2) is computed in
memory before and released only after that transaction commits. Every refusal carries the
trailing metadata ``mpc-governance`` (its kind) and is audited.

At start every fresh presignature is deleted (a restored store cannot revive one; if the store
cannot be written then, they are refused, never listed nor counted, and deleted by the next pool
call that can write); an epoch commit (mpc_node/epoch_store.py), a ban (``NodeStore.add_ban``;
until the store has taken it, they are neither listed nor counted), a roster change revoking a
signer and ``DiscardPresignatures`` delete fresh ones; a used one's tombstone (with its share)
is kept for good, and a replay of it is answered before any check of the roster, bans or
approvals.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from crypto_core.bip32 import check_path
from crypto_core.errors import ProtocolError, UsageError
from crypto_core.hazmat.presignature import load_presignature
from crypto_core.params import MAX_PARTIES
from crypto_core.session import RoundOutput
from crypto_core.sign import BatchConfig, PresignBatch
from governance.errors import GovernanceError
from governance.reservation import MAX_SIGN_ATTEMPTS, Reservation, reservation_quorum, verify_receipts
from governance.text import REQUEST_ID_RE, REQUEST_ID_RULE
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.envelope import seal_broadcast
from mpc_node.fields import at_most, governance_blob
from mpc_node.governance import changed_refusal, refusal
from mpc_node.in_force import InForce, InForceChanged
from mpc_node.presig_store import FreshPresignature, PoolError, PoolPresignature
from mpc_node.storage import (
    RateLimited,
    RequestAlreadyServed,
    Reservation as StoredReservation,
    ReservationConflict,
    ServedRequest,
    StoreError,
)
from mpcnet.common import sign_trace
from mpcnet.common.rpc import RpcError, caller_identity, check_len, invalid
from mpcnet.common.urgent import GATE
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2

if TYPE_CHECKING:
    from governance.approval import SigningRequest
    from governance.roster import Roster
    from mpc_node.service import NodeService, Session

log = logging.getLogger("mpc_node.presign")
Code = grpc.StatusCode

SHARE_ROUND = 4  # the round a signing session's share is sealed as (service.SIGN_RELEASE_ROUND + 1)
REASON_RE = re.compile(r"[a-z0-9-]{1,32}")
MAX_DISCARD_IDS = 4096


def discard_fields(key_id: bytes, ids: Sequence[bytes], field: str, reason: str) -> tuple[bytes, tuple[bytes, ...]]:
    """The checked fields of a discard request (DiscardPresignatures, DiscardNonces): a 32-byte key
    id, at most MAX_DISCARD_IDS 32-byte ids (``field``) and a reason matching REASON_RE;
    INVALID_ARGUMENT naming the field otherwise."""
    checked_key = check_len(key_id, "key_id", 32)
    at_most(ids, field, MAX_DISCARD_IDS, "ids")
    checked = tuple(check_len(p, f"{field}[{k}]", 32) for k, p in enumerate(ids))
    if not REASON_RE.fullmatch(reason):
        raise invalid("reason", "1 to 32 of [a-z0-9-]")
    return checked_key, checked
# presignatures in live presign sessions, all keys (about 128 KiB of session state each at
# round 2): bounds a node's memory whatever a coordinator opens (max_sessions alone allows GiBs)
MAX_PRESIGNATURES_IN_MAKING = 256
FAULT_CONSUMED = "presign-consumed"  # mpc_node/faults.py point: the consume committed, the answer not sent


@dataclass(frozen=True)
class PresignSetup:
    """What a presign session makes: ``count`` presignatures of the key at ``epoch`` (the
    session's key id, path and participants are the :class:`~mpc_node.service.Session`'s);
    ``actor`` is the caller's certificate name (for the audit entry)."""

    epoch: int
    count: int
    actor: str


def _caller(ctx: Any) -> str:
    ident = caller_identity(ctx) if ctx is not None else None
    return ident.name if ident is not None else "unknown"


def _path_text(path: tuple[int, ...]) -> str:
    return "m" + "".join(f"/{i}" for i in path)


def _signers(values: Any, field: str, peers: dict[int, Any], *, pooled: bool = False, roster: bool = True) -> tuple[int, ...]:
    """Distinct roster indices of active nodes, in increasing order (INVALID_ARGUMENT naming
    ``field``). ``pooled``: a signer no longer active in the roster (revoked since the presignature
    was made) is FAILED_PRECONDITION ``presig-mismatch`` instead (the coordinator drops that pool).
    ``roster=False``: the shape only (the roster is state: a replay is answered before it)."""
    at_most(values, field, len(peers) if roster else MAX_PARTIES, "party indices")
    signers = tuple(int(j) for j in values)
    if not signers:
        raise invalid(field, "missing: give the signers' roster indices")
    if len(set(signers)) != len(signers):
        raise invalid(field, "duplicate party index")
    if list(signers) != sorted(signers):
        raise invalid(field, "must be in increasing order")
    for j in signers if roster else ():
        if j not in peers:
            why = f"party {j} is not an active node of this node's roster ({','.join(map(str, sorted(peers)))})"
            if pooled:
                raise refusal(Code.FAILED_PRECONDITION, "presig-mismatch", f"{field}: {why}")
            raise invalid(field, why)
    return signers


class Banned(Exception):
    """A signer is banned for the key (``bad``: those signers), or the key is fail-closed
    (``bad`` empty); raised by :func:`check_bans`."""

    def __init__(self, bad: tuple[int, ...]) -> None:
        super().__init__(",".join(map(str, bad)) or "fail-closed")
        self.bad = bad


def check_bans(node: Any, key_id: bytes, signers: Sequence[int]) -> None:
    """Raise :class:`Banned` unless every signer may still sign ``key_id`` here. Reads the ban
    registry only (its own lock, never held while it waits for another), so it also runs inside
    the releasing transaction (:class:`mpc_node.in_force.InForce` ``still``): a ban counts once
    it is pending, before its store write deletes the presignatures it concerns."""
    if node.bans.closed(key_id) is not None:
        raise Banned(())
    bad = tuple(sorted(set(signers) & node.bans.banned(key_id)))
    if bad:
        raise Banned(bad)


def ban_refusal(node: Any, key_id: bytes, e: Banned, field: str) -> RpcError:
    """The refusal of :class:`Banned` (outside any store transaction: it reads the roster for the
    names): PERMISSION_DENIED ``mpc-banned`` naming ``field`` with the banned signers in
    ``mpc-banned``, or the key's fail-closed UNAVAILABLE."""
    if not e.bad:
        return node._closed_error(key_id)  # type: ignore[no-any-return]
    return RpcError(
        Code.PERMISSION_DENIED,
        f"{field}: {node.node_name(e.bad[0])} is banned by {node.cfg.name} for key {key_id.hex()[:16]}",
        metadata=[("mpc-governance", "mpc-banned"), ("mpc-banned", ",".join(map(str, e.bad)))],
    )


def not_banned(node: Any, key_id: bytes, signers: Sequence[int], field: str) -> None:
    """:func:`check_bans`, raising its refusal (:func:`ban_refusal`); outside transactions."""
    try:
        check_bans(node, key_id, signers)
    except Banned as e:
        raise ban_refusal(node, key_id, e, field) from None


def attempt_grant(
    node: NodeService, request: SigningRequest, attempt: int, signers: tuple[int, ...], session: bytes, receipts: tuple[bytes, ...],
) -> tuple[StoredReservation, int]:
    """The one-round paths' reservation of ``attempt`` of the approved ``request`` for ``signers``
    (roster indices, increasing) in ``session`` (32 bytes): self-granted when the signer set is
    at least a reservation quorum of the node's roster, else established from ``receipts``
    (PERMISSION_DENIED ``unreserved`` naming the field when they do not grant exactly this).
    Returns the node's own reservation to record with the consume, and the quorum."""
    grant = Reservation(node.gov.governance_root, request.key_id, request.request_id, request.request_digest(), attempt, signers, session)
    roster = {i: p.identity_public for i, p in node.peers().items()}
    quorum = reservation_quorum(len(roster))
    if len(signers) < quorum:
        try:
            verify_receipts(receipts, grant, roster, quorum)
        except GovernanceError as e:
            raise refusal(Code.PERMISSION_DENIED, "unreserved", f"{e.field}: {e.reason} ({node.cfg.name})") from None
    stored = StoredReservation(request.request_id, attempt, request.key_id, grant.request_digest, signers, session, node.clock.now_ms())
    return stored, quorum


def _renamed(e: RpcError, prefix: str) -> RpcError:
    """A shared check's error names ``sign.<field>``: here the field is ``<prefix><field>``."""
    if e.message.startswith("sign."):
        return RpcError(e.code, prefix + e.message[len("sign."):], metadata=e.metadata)
    return e


class NodePools:
    """The node's side of presignature pools, bound to one :class:`~mpc_node.service.NodeService`."""

    def __init__(self, node: NodeService) -> None:
        self.node = node
        # the fresh presignatures found at start that could not be deleted then (an unwritable
        # store): refused, never listed nor counted, deleted by the next pool call that can write
        self._stale: dict[bytes, tuple[bytes, ...]] = {}
        self._stale_lock = threading.Lock()
        node.roster_state.add_listener(self._roster_changed)
        def entry(n: int) -> OutboxEntry | None:  # queued in the deleting transaction (the audit outbox)
            return OutboxEntry(node.cfg.name, "presign-discard", "", "discarded", {"count": n, "reason": "node-start"}) if n else None

        try:
            n = node.store.delete_all_fresh_presignatures(audit=entry)
        except StoreError as e:
            for p in node.store.fresh_presignatures():
                self._stale[p.key_id] = (*self._stale.get(p.key_id, ()), p.presig_id)
            log.error("cannot delete the %d fresh presignature(s) left from before the start (%s): refused until deleted",
                      sum(map(len, self._stale.values())), e)
            return
        if n:
            node.outbox.notify()
            log.info("deleted %d fresh presignature(s) at start (never revived)", n)

    def _stale_ids(self) -> frozenset[bytes]:
        """The ids left from before the start (see ``__init__``) after one more try to delete them."""
        node = self.node
        with self._stale_lock:
            for key_id, ids in list(self._stale.items()):
                try:
                    node.store.discard_presignatures(key_id, ids, audit=functools.partial(_discarded, node.cfg.name, "node-start", key_id))
                except StoreError:
                    break
                del self._stale[key_id]
                node.outbox.notify()
            return frozenset(i for ids in self._stale.values() for i in ids)

    def _roster_changed(self, old: Roster | None, new: Roster) -> None:
        """A roster change (a listener of the node's roster): delete the fresh presignatures with a
        signer no longer active (revocation is final and indices are never reused: they could never
        sign again), audited; used ones' tombstones stay. A store error is logged by the caller."""
        node = self.node
        peers = node.peers()
        gone: dict[bytes, set[int]] = {}
        for p in node.store.fresh_presignatures():
            gone.setdefault(p.key_id, set()).update(j for j in p.signers if j not in peers)
        for key_id, revoked in gone.items():
            for j in sorted(revoked):
                n = node.store.discard_presignatures(key_id, peer=j, audit=functools.partial(_discarded, node.cfg.name, "revoked", key_id))
                log.info("roster version %d: %d fresh presignature(s) of key %s with revoked node %d deleted", new.version, n,
                         key_id.hex()[:16], j)
        if gone:
            node.outbox.notify()

    # --- counts ----------------------------------------------------------------------------
    def live_sessions(self, key_id: bytes | None = None) -> list[Session]:
        node = self.node
        with node._lock:
            return [
                s for s in node._sessions.values()
                if s.presign is not None and not s.done and s.failed is None and (key_id is None or s.key_id == key_id)
            ]

    def fresh_count(self) -> int:
        """Fresh usable presignatures stored, all keys (Health, the pool-depth metric): see :meth:`usable`."""
        with self._stale_lock:
            stale = frozenset(i for ids in self._stale.values() for i in ids)
        return len(self.usable(self.node.store.fresh_presignatures(), stale))

    def usable(self, fresh: list[PoolPresignature], stale: frozenset[bytes]) -> list[PoolPresignature]:
        """``fresh`` without those left from before the start (``stale``) and those with a signer
        banned for the key whose ban the store has not taken yet (journaled or pending: the
        store deletes them with the ban, ``NodeStore.add_ban``, once the sweeper retries it)."""
        banned: dict[bytes, frozenset[int]] = {}
        out = []
        for p in fresh:
            if p.key_id not in banned:
                banned[p.key_id] = self.node.bans.banned(p.key_id)
            if p.presig_id not in stale and banned[p.key_id].isdisjoint(p.signers):
                out.append(p)
        return out

    # --- presign sessions -------------------------------------------------------------------
    def new_session(self, sid: bytes, p: node_pb2.PresignParams, ctx: Any) -> tuple[Session, Callable[[], RoundOutput]]:
        """The presign session ``sid`` (not yet registered) and its first round; RpcError naming
        the ``presign.*`` field when refused (audited)."""
        try:
            return self._new_session(sid, p, _caller(ctx))
        except RpcError as e:
            e = _renamed(e, "presign.")
            self._audit_refusal("presign", e.message, _caller(ctx), bytes(p.key_id))
            raise e from None

    def _new_session(self, sid: bytes, p: node_pb2.PresignParams, actor: str) -> tuple[Session, Callable[[], RoundOutput]]:
        from mpc_node.service import Session

        node = self.node
        cfg = node.cfg
        key_id = check_len(p.key_id, "presign.key_id", 32)
        if cfg.max_presignatures_per_key == 0:
            raise RpcError(Code.FAILED_PRECONDITION, f"presign: {cfg.name} makes no pool presignatures (max_presignatures_per_key is 0)")
        if node.bans.closed(key_id) is not None:
            raise node._closed_error(key_id)
        try:
            path = check_path(tuple(p.derivation_path))
        except UsageError as e:
            raise invalid("presign.derivation_path", str(e).split(": ", 1)[-1]) from None
        if not 1 <= p.count <= cfg.max_presign_batch:
            raise invalid("presign.count", f"must be 1..{cfg.max_presign_batch} (max_presign_batch), got {p.count}")
        peers = node.peers()
        signers = _signers(p.signers, "presign.signers", peers)
        if node.me not in signers:
            raise invalid("presign.signers", f"does not include this node ({node.me})")
        key = node._key(key_id)
        if p.epoch != key.epoch:
            raise refusal(
                Code.FAILED_PRECONDITION, "epoch",
                f"presign.epoch: is {p.epoch}, the active epoch of key {key_id.hex()[:16]} on {cfg.name} is {key.epoch}",
            )
        committee = node._committee(key_id, key, p.epoch)
        outside = [j for j in signers if j not in committee]
        if outside:
            raise invalid("presign.signers", f"node {outside[0]} is not in the committee of key {key_id.hex()[:16]} ({list(committee)})")
        if len(signers) != key.threshold:
            raise invalid("presign.signers", f"key needs exactly {key.threshold} signers, got {len(signers)}")
        banned = node.bans.banned(key_id)
        bad = sorted(set(signers) & banned)
        if bad:
            raise RpcError(
                Code.PERMISSION_DENIED,
                f"presign.signers: {node.node_name(bad[0])} is banned by {cfg.name} for key {key_id.hex()[:16]}",
                metadata=[("mpc-banned", ",".join(map(str, bad)))],
            )
        live = self.live_sessions()
        making = sum(s.presign.count for s in live if s.presign is not None)
        if making + p.count > MAX_PRESIGNATURES_IN_MAKING:
            raise RpcError(
                Code.RESOURCE_EXHAUSTED,
                f"presign.count: {cfg.name} has {making} presignature(s) in the making (all keys); {p.count} more exceed"
                f" {MAX_PRESIGNATURES_IN_MAKING}",
            )
        held = node.store.count_fresh(key_id) + sum(s.presign.count for s in live if s.presign is not None and s.key_id == key_id)
        if held + p.count > cfg.max_presignatures_per_key:
            raise RpcError(
                Code.RESOURCE_EXHAUSTED,
                f"presign.count: key {key_id.hex()[:16]} has {held} presignature(s) stored or in the making on {cfg.name};"
                f" {p.count} more exceed max_presignatures_per_key {cfg.max_presignatures_per_key}",
            )
        try:
            party = PresignBatch(key, BatchConfig(
                sid, tuple(sorted(committee.index(j) + 1 for j in signers)), p.count, path,
                frozenset(committee.index(j) + 1 for j in banned if j in committee),
            ))
        except UsageError as e:
            raise invalid("presign", str(e)) from None
        cmap = () if committee == tuple(range(1, len(committee) + 1)) else committee
        s = Session(
            sid, "sign", party, signers, tuple(j for j in signers if j != node.me), 1,
            key=key, key_id=key_id, path=path, committee=cmap, presign=PresignSetup(p.epoch, p.count, actor),
        )
        return s, party.start

    def finish(self, s: Session) -> node_pb2.StepResponse:
        """Round 3 delivered: store the batch fresh (one transaction: key active at the epoch,
        the cap, the ``presign`` audit entry), then answer ``PresignResult``. Nothing is stored
        on a refusal (FAILED_PRECONDITION ``epoch``, RESOURCE_EXHAUSTED ``presign.count``)."""
        node = self.node
        setup = s.presign
        assert setup is not None
        results = s.party.results
        now = node.clock.now_ms()
        batch = []
        for p in results:
            info = PoolPresignature(
                p.sigid, s.key_id, setup.epoch, s.path, s.participants, p.R.encode(), p.public_key.encode(), now,
            )
            batch.append(FreshPresignature(info, p.to_bytes()))
        entry = OutboxEntry(setup.actor[:64] or "coordinator", "presign", "", "stored", {
            "key_id": s.key_id.hex(), "epoch": setup.epoch, "path": _path_text(s.path),
            "signers": ",".join(map(str, s.participants)), "count": len(batch), "session": s.id.hex()[:16],
        })
        out = [_info(f.info) for f in batch]  # instance order
        try:
            node.store.put_presignatures(s.key_id, setup.epoch, batch, cap=node.cfg.max_presignatures_per_key, audit=entry)
        except PoolError as e:
            code = Code.RESOURCE_EXHAUSTED if e.kind == "cap" else Code.FAILED_PRECONDITION
            err = refusal(code, e.kind, f"{e} ({node.cfg.name})")
            self._audit_refusal("presign", err.message, setup.actor, s.key_id)
            raise err from None
        finally:
            s.party = None  # the secrets live only in the store now (or nowhere)
            del results, batch
        node.outbox.notify()
        s.done = True
        log.info("session %s (presign): %d presignature(s) of key %s stored", s.short, setup.count, s.key_id.hex()[:16],
                 extra={"event": "session-finished", "session_id": s.id.hex()})
        return node_pb2.StepResponse(session_id=s.id, round=0, finished=True, presign_result=node_pb2.PresignResult(presignatures=out))

    # --- SignPresigned ------------------------------------------------------------------------
    def sign_presigned(self, req: node_pb2.SignPresignedRequest, ctx: Any) -> node_pb2.SignPresignedResponse:
        """See the module. Refusals are audited (``sign-share`` refused) and carry ``mpc-governance``."""
        actor = _caller(ctx)
        sign_trace.begin(req.request_id, "node.received")
        try:
            with GATE.section():  # the audit outbox's flush waits for it (bounded: mpcnet/common/urgent.py)
                return self._sign_presigned(req, ctx)
        except RpcError as e:
            e = _renamed(e, "")
            self.node._audit_sign("sign-share", req.request_id, "refused", e.message, actor=actor, key_id=bytes(req.key_id)[:32])
            raise e from None
        finally:
            sign_trace.end(req.request_id, "node.replied")

    def _reply(self, presig_id: bytes, share: bytes, replayed: bool) -> node_pb2.SignPresignedResponse:
        node = self.node
        e = seal_broadcast(share, identity=node.keys.identity, session_id=presig_id, round=SHARE_ROUND, sender=node.me)
        env = common_pb2.Envelope(
            session_id=e.session_id, round=e.round, sender=e.sender, receiver=e.receiver, payload=e.payload,
            ephemeral_key=e.ephemeral_key, signature=e.signature,
        )
        return node_pb2.SignPresignedResponse(share=env, signer=node.me, replayed=replayed)

    def _sign_presigned(self, req: node_pb2.SignPresignedRequest, ctx: Any = None) -> node_pb2.SignPresignedResponse:
        node = self.node
        name = node.cfg.name
        # 1. the fields
        presig_id = check_len(req.presig_id, "presig_id", 32)
        key_id = check_len(req.key_id, "key_id", 32)
        digest = check_len(req.digest, "digest", 32)
        if not REQUEST_ID_RE.fullmatch(req.request_id):
            raise invalid("request_id", REQUEST_ID_RULE)
        try:
            path = check_path(tuple(req.derivation_path))
        except UsageError as e:
            raise invalid("derivation_path", str(e).split(": ", 1)[-1]) from None
        governance_blob(req.approval_bundle, "approval_bundle")
        governance_blob(req.policy_attestation, "policy_attestation")
        roster_version = node.roster_state.version  # before the peers: the consume refuses if it changed since
        peers = node.peers()
        signers = _signers(req.signers, "signers", peers, roster=False)  # the roster check follows the replay
        if not 1 <= req.attempt <= MAX_SIGN_ATTEMPTS:
            raise invalid("attempt", f"must be 1..{MAX_SIGN_ATTEMPTS}, got {req.attempt}")
        at_most(req.reservation_receipts, "reservation_receipts", len(peers), "receipts (one per roster node)")
        for k, r in enumerate(req.reservation_receipts):
            governance_blob(r, f"reservation_receipts[{k}]")
        # 2. a replay: the share already left durably, nothing else changes that
        found = node.store.pool_presignature(presig_id)
        if found is not None and found[0].used:
            return self._replayed(presig_id, req.request_id, req.attempt)
        if found is not None and presig_id in self._stale_ids():
            found = None  # left from before the start: never revived
        # 3. the presignature, the key's epoch, the bans
        _signers(req.signers, "signers", peers, pooled=True)  # a signer revoked since: presig-mismatch
        not_banned(node, key_id, signers, "signers")  # before the lookup: a ban deleted the key's fresh presignatures with that peer
        if found is None:
            raise refusal(
                Code.FAILED_PRECONDITION, "presig-unknown",
                f"presig_id: {name} holds no presignature {presig_id.hex()[:16]} (never made, discarded, or deleted at its start)",
            )
        info, record = found
        for field, same in (
            ("key_id", info.key_id == key_id), ("epoch", info.epoch == req.epoch),
            ("derivation_path", info.path == path), ("signers", info.signers == signers),
        ):
            if not same:
                raise refusal(
                    Code.FAILED_PRECONDITION, "presig-mismatch",
                    f"{field}: differs from presignature {presig_id.hex()[:16]}'s on {name}",
                )
        if node.rotation.problem:
            raise RpcError(Code.FAILED_PRECONDITION, f"roster: {name}: {node.rotation.problem}; it signs nothing")
        key = node._key(key_id)
        committee = node._committee(key_id, key, info.epoch)
        if node.me not in signers or any(j not in committee for j in signers):
            raise refusal(Code.FAILED_PRECONDITION, "presig-mismatch", f"signers: not in the committee of the key on {name}")
        # 4. the approvals, exactly as a signing session checks them
        node.faults.at("presign-checking")  # test mode: a slow node (a request may expire meanwhile)
        sign_trace.mark(req.request_id, "node.fields")
        approved = node.gov.check_sign(
            req.approval_bundle, key_id=key_id, digest=digest, path=path, request_id=req.request_id,
            attestation=bytes(req.policy_attestation),
        )
        request = approved.bundle.request
        limit = approved.policy.rate_limit
        sign_trace.mark(req.request_id, "node.approvals")
        # 5. the reservation of the attempt
        reservation, quorum = attempt_grant(node, request, req.attempt, signers, presig_id, tuple(req.reservation_receipts))
        served = ServedRequest(
            request.request_id, key_id, digest, reservation.created_ms, (limit.max_signatures, limit.window_seconds * 1000),
            reservation, InForce(
                approved.scope, approved.policy.version, roster_version, still=lambda: check_bans(node, key_id, signers),
                attestation=approved.attestation,
            ),
        )
        if node.outbox.problem:  # the share would be released with nothing reaching the log
            raise RpcError(Code.UNAVAILABLE, f"audit: {name} cannot append to its audit log ({node.outbox.problem}); it signs nothing")
        # the share, in memory only until the consume transaction commits
        try:
            presig = load_presignature(record)
            tomb = presig.mark_used()
            share = presig.signature_share(
                digest, key_id=key_id, epoch=info.epoch, derivation_path=path,
                signers=tuple(committee.index(j) + 1 for j in signers), sid_dkg=key.sid_dkg, rerandomize=True,
            ).to_bytes(presig_id)
        except ProtocolError as e:
            raise refusal(Code.FAILED_PRECONDITION, "presig-mismatch", f"presig_id: unusable on {name} ({type(e).__name__})") from None

        sign_trace.mark(req.request_id, "node.share")

        def entry() -> OutboxEntry:
            return OutboxEntry(request.requester, "sign-share", request.request_id, "released", {
                "key_id": key_id.hex(), "digest": digest.hex(), "path": _path_text(path), "presig": presig_id.hex()[:16],
                "signers": ",".join(map(str, signers)), "attempt": req.attempt, "presigned": True,
                "self_granted": len(signers) >= quorum, "policy_version": approved.policy.version,
                "approved_by": ",".join(sorted(approved.result.approved)), "request_sha256": reservation.request_digest.hex(),
            })

        # 6. one transaction
        try:
            node.store.consume_pool_presignature(presig_id, tomb, share, epoch=info.epoch, served=served, audit=entry)
        except ReservationConflict as e:
            raise refusal(Code.FAILED_PRECONDITION, "attempt-taken", f"{e} ({name})") from None
        except RequestAlreadyServed as e:
            raise refusal(Code.FAILED_PRECONDITION, "served", f"approval_bundle.request.{e} ({name})") from None
        except RateLimited as e:
            raise refusal(Code.FAILED_PRECONDITION, "rate-limited", f"{e} ({name})") from None
        except InForceChanged as e:  # the policy, its attestation or the roster
            raise changed_refusal(e, name) from None
        except Banned as e:
            raise ban_refusal(node, key_id, e, "signers") from None
        except PoolError as e:
            if e.kind == "presig-used":  # a concurrent call won: the same (request, attempt) replays
                return self._replayed(presig_id, request.request_id, req.attempt)
            raise refusal(Code.FAILED_PRECONDITION, e.kind, f"{e} ({name})") from None
        sign_trace.mark(req.request_id, "node.consumed")
        node.outbox.notify()
        node.faults.at(FAULT_CONSUMED)
        after_reply(ctx, functools.partial(
            log.info, "presignature %s: share released for request %s (attempt %d)", presig_id.hex()[:12], request.request_id,
            req.attempt, extra={"event": "sign-presigned", "request_id": request.request_id},
        ))
        # 7. the answer
        return self._reply(presig_id, share, False)

    def _replayed(self, presig_id: bytes, request_id: str, attempt: int) -> node_pb2.SignPresignedResponse:
        share = self.node.store.stored_share(presig_id, request_id, attempt)
        if share is None:
            raise refusal(
                Code.FAILED_PRECONDITION, "presig-used",
                f"presig_id: presignature {presig_id.hex()[:16]} was used for another request or attempt on {self.node.cfg.name}",
            )
        return self._reply(presig_id, share, True)

    # --- listing and discarding ---------------------------------------------------------------
    def list(self, req: node_pb2.ListPresignaturesRequest) -> node_pb2.ListPresignaturesResponse:
        key_id = check_len(req.key_id, "key_id", 32) if req.key_id else None
        return node_pb2.ListPresignaturesResponse(
            presignatures=[_info(p) for p in self.usable(self.node.store.fresh_presignatures(key_id), self._stale_ids())],
            cap_per_key=self.node.cfg.max_presignatures_per_key,
        )

    def discard(self, req: node_pb2.DiscardPresignaturesRequest, ctx: Any) -> node_pb2.DiscardPresignaturesResponse:
        key_id, ids = discard_fields(req.key_id, req.presig_ids, "presig_ids", req.reason)
        actor = _caller(ctx)[:64] or "coordinator"

        def entry(n: int) -> OutboxEntry:
            return OutboxEntry(actor, "presign-discard", "", "discarded", {
                "key_id": key_id.hex(), "count": n, "reason": req.reason, "named": len(ids),
            })

        n = self.node.store.discard_presignatures(key_id, ids or None, audit=entry)
        self.node.outbox.notify()
        log.info("key %s: %d fresh presignature(s) discarded (%s)", key_id.hex()[:16], n, req.reason)
        return node_pb2.DiscardPresignaturesResponse(discarded=n)

    def _audit_refusal(self, action: str, reason: str, actor: str, key_id: bytes) -> None:
        self.node._audit_sign(action, "", "refused", reason, actor=actor, key_id=key_id[:32])


def _discarded(actor: str, reason: str, key_id: bytes, n: int) -> OutboxEntry | None:
    """The audit entry of ``n`` fresh presignatures of ``key_id`` the node deleted by itself
    (``reason``: node-start, revoked); None when there were none."""
    return OutboxEntry(actor, "presign-discard", "", "discarded", {"key_id": key_id.hex(), "count": n, "reason": reason}) if n else None


def after_reply(ctx: Any, fn: Callable[[], object]) -> None:
    """Run ``fn`` (e.g. a log line) once the RPC of ``ctx`` has ended -- its answer sent -- on
    gRPC's serving thread (``ServicerContext.add_callback``), so it is not on the signing path;
    at once when there is no such context (tests driving the service directly) or the RPC
    already ended. Only for work nothing durable depends on."""
    add = getattr(ctx, "add_callback", None)
    if add is None or not add(fn):
        fn()


def _info(p: PoolPresignature) -> node_pb2.PresignatureInfo:
    return node_pb2.PresignatureInfo(
        presig_id=p.presig_id, key_id=p.key_id, epoch=p.epoch, derivation_path=p.path, signers=p.signers,
        big_r=p.big_r, public_key=p.public_key, created_unix_ms=p.created_ms,
    )

