"""FROST signing on the node (issue 16, RFC 9591 section 5): ``MakeNonces``, ``SignSchnorr``,
``DiscardNonces`` and the nonces' housekeeping.

Round 1 (``MakeNonces``, precomputed): the node draws ``count`` nonce pairs for one key at its
active epoch (RFC 9591 section 4.1, hedged with the secret share by
:func:`crypto_core.frost.signing.commit`), stores them fresh, sealed at rest
(:mod:`mpc_node.nonce_store`), in one transaction with a ``frost-nonces`` audit entry (the
count, never a nonce), and only then answers their public commitments.

Round 2 (``SignSchnorr``, one approved request): in order, field checks (INVALID_ARGUMENT naming
the field); a replay of the same ``(request, attempt, nonce_id)`` answers the stored share
(``replayed``); ``nonce-unknown`` / ``nonce-used`` / ``nonce-mismatch`` / ``epoch`` /
``mpc-banned``; the key must be a FROST key of the request's scheme; the message rules (ed25519:
SHA-256(message) equals the request's digest, compared with :func:`hmac.compare_digest`; bip340:
the message is the request's 32-byte digest and ``taproot_merkle_root`` its root); the signing
package (exactly t commitments, signers increasing, distinct, in the key's committee, not
banned, this node's equal to its stored nonce); the approvals exactly as a signing session
checks them (:meth:`mpc_node.governance.NodeGovernance.check_sign`: bundle, policy, clock,
attestation, rate limit); the reservation of the attempt (:func:`mpc_node.presign.attempt_grant`);
then ONE transaction consumes the nonce (its secret deleted; the tombstone keeps the request,
attempt, package digest and share), records the served request, the reservation and the rate
limit and queues the ``sign-share`` audit entry. The share z_i is computed in memory before and
released only after that transaction commits. Every refusal carries ``mpc-governance`` (its
kind) and is audited.

At start every fresh nonce is deleted (a restored store must never revive one: a nonce used for
two packages reveals the share; if the store cannot be written then, MakeNonces and SignSchnorr
retry it first and refuse until it is done), and only a nonce this run made and has not used
may sign (a store rolled back under the running node brings none back); an epoch commit or retirement of the key
(:mod:`mpc_node.epoch_store`) and ``DiscardNonces`` delete fresh ones; a used one's tombstone is
kept for good.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import grpc

from crypto_core.errors import DecodeError, ProtocolError, UsageError
from governance.approval import MAX_MESSAGE, SCHEME_BIP340, SCHEME_ECDSA, SCHEME_ED25519, ApprovalBundle
from governance.errors import GovernanceError
from governance.reservation import MAX_SIGN_ATTEMPTS
from governance.text import REQUEST_ID_RE, REQUEST_ID_RULE
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.fields import at_most, governance_blob
from mpc_node.governance import changed_refusal, refusal
from mpc_node.in_force import InForce, InForceChanged
from mpc_node.nonce_store import FreshNonce, NonceError, NonceInfo
from mpc_node.presign import Banned, _caller, _renamed, _signers, attempt_grant, ban_refusal, check_bans, discard_fields, not_banned
from mpc_node.storage import RateLimited, RequestAlreadyServed, ReservationConflict, ServedRequest, StoreError
from mpcnet.common.rpc import RpcError, check_len, invalid
from mpcnet.wire.mpc.v1 import node_pb2

if TYPE_CHECKING:
    from crypto_core.frost.keyshare import FrostKeyShare
    from mpc_node.service import NodeService

log = logging.getLogger("mpc_node.frost_sign")
Code = grpc.StatusCode

FROST_SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)
ELEMENT_LEN = {SCHEME_ED25519: 32, SCHEME_BIP340: 33}  # RFC 9591 SerializeElement
MAX_NONCE_BATCH = 64  # MakeNoncesRequest.count
SESSION_ID_LEN = 32
MADE_PRUNE_AT = 1 << 16  # nonce ids remembered as made by this run before the discarded ones are pruned
FAULT_CONSUMED = "nonce-consumed"  # mpc_node/faults.py point: the consume committed, the share not answered


def check_scheme(scheme: str, field: str) -> str:
    """The wire's scheme string as a scheme id ("" is ``ecdsa-secp256k1``); INVALID_ARGUMENT naming ``field``."""
    if scheme == "":
        return SCHEME_ECDSA
    if scheme not in (SCHEME_ECDSA, *FROST_SCHEMES):
        raise invalid(field, f"must be one of {SCHEME_ECDSA}, {', '.join(FROST_SCHEMES)} (or empty for {SCHEME_ECDSA})")
    return scheme


def is_frost_record(record: bytes) -> bool:
    """Whether a stored key record is a :class:`crypto_core.frost.keyshare.FrostKeyShare` (its magic)."""
    try:
        from crypto_core.frost.keyshare import is_frost_record as magic
    except ImportError:  # no FROST in this build: no FROST key was ever stored
        return False
    return bool(magic(record))


def scheme_refusal(key_id: bytes, scheme: str, what: str, field: str = "key_id") -> RpcError:
    """FAILED_PRECONDITION naming ``field``: key ``key_id`` is a ``scheme`` key and ``what`` does not apply to it."""
    article = "an" if scheme[:1] in "aeiou" else "a"
    return RpcError(Code.FAILED_PRECONDITION, f"{field}: key {key_id.hex()[:16]} is {article} {scheme} key: {what}")


class NodeNonces:
    """The node's side of FROST signing, bound to one :class:`~mpc_node.service.NodeService`."""

    def __init__(self, node: NodeService) -> None:
        self.node = node
        self._purge_lock = threading.Lock()
        self._purged = False  # the fresh nonces left from before this start are deleted
        # nonce ids this run made and has not used: only these may sign (a store rolled back
        # under the running node, or kept from before its start, never revives a nonce)
        self._made: set[bytes] = set()
        self._made_lock = threading.Lock()
        try:
            self._purge()
        except RpcError:  # unwritable now: logged; MakeNonces and SignSchnorr retry it first and refuse until it is done
            pass

    def _purge(self) -> None:
        """Delete every fresh nonce left from before this start, once: at start, else before the
        first MakeNonces/SignSchnorr that finds it undone (a store restored from an old copy must
        never revive a nonce, even when the store could not be written at start). UNAVAILABLE
        naming ``nonce_id`` while it cannot be done."""
        if self._purged:
            return
        node = self.node
        with self._purge_lock:
            if self._purged:
                return
            def entry(n: int) -> OutboxEntry | None:  # queued in the deleting transaction (the audit outbox)
                details: dict[str, str | int | bool] = {"count": n, "reason": "node-start"}
                return OutboxEntry(node.cfg.name, "frost-nonces-discard", "", "discarded", details) if n else None

            try:
                n = node.store.delete_all_fresh_nonces(audit=entry)
            except (StoreError, sqlite3.Error) as e:
                log.error("cannot delete the fresh FROST nonces left from before the start (%s)", e)
                raise RpcError(
                    Code.UNAVAILABLE,
                    f"nonce_id: {node.cfg.name} cannot yet delete the FROST nonces left from before its start; it uses and makes none",
                ) from None
            self._purged = True
        if n:
            node.outbox.notify()
            log.info("deleted %d fresh FROST nonce(s) at start (never revived)", n)

    def _remember(self, ids: list[bytes]) -> None:
        """Record nonce ids this run stored; past :data:`MADE_PRUNE_AT` keep only those still fresh."""
        with self._made_lock:
            self._made.update(ids)
            if len(self._made) > MADE_PRUNE_AT:  # discarded / deleted ones: never fresh again
                self._made &= {i.nonce_id for i in self.node.store.fresh_nonces()}

    def _forget(self, nonce_id: bytes) -> None:
        with self._made_lock:
            self._made.discard(nonce_id)

    def fresh_count(self) -> int:
        """Fresh nonce pairs stored, all keys (Health ``nonces``)."""
        return self.node.store.count_fresh_nonces()

    def frost_key(self, key_id: bytes, field: str = "key_id") -> FrostKeyShare:
        """This node's active FROST share of ``key_id``; FAILED_PRECONDITION naming ``field`` for an ECDSA key."""
        from crypto_core.frost.keyshare import FrostKeyShare

        key = self.node._any_key(key_id)
        if not isinstance(key, FrostKeyShare):
            raise scheme_refusal(key_id, SCHEME_ECDSA, "FROST signing (MakeNonces, SignSchnorr) is for ed25519 and bip340 keys", field)
        return key

    # --- MakeNonces ----------------------------------------------------------------------------
    def make_nonces(self, req: node_pb2.MakeNoncesRequest, ctx: Any) -> node_pb2.MakeNoncesResponse:
        """See the module. Refusals are audited (``frost-nonces`` refused)."""
        actor = _caller(ctx)
        try:
            return self._make_nonces(req, actor)
        except RpcError as e:
            e = _renamed(e, "")
            self.node._audit_sign("frost-nonces", "", "refused", e.message, actor=actor, key_id=bytes(req.key_id)[:32])
            raise e from None

    def _make_nonces(self, req: node_pb2.MakeNoncesRequest, actor: str) -> node_pb2.MakeNoncesResponse:
        from crypto_core.frost.signing import commit

        node = self.node
        cfg = node.cfg
        key_id = check_len(req.key_id, "key_id", 32)
        self._purge()  # never beside a nonce revived by a restored store copy
        if not 1 <= req.count <= MAX_NONCE_BATCH:
            raise invalid("count", f"must be 1..{MAX_NONCE_BATCH}, got {req.count}")
        if cfg.max_nonces_per_key == 0:
            raise RpcError(Code.FAILED_PRECONDITION, f"count: {cfg.name} makes no FROST nonces (max_nonces_per_key is 0)")
        if node.rotation.problem:
            raise RpcError(Code.FAILED_PRECONDITION, f"roster: {cfg.name}: {node.rotation.problem}; it signs nothing")
        if node.bans.closed(key_id) is not None:
            raise node._closed_error(key_id)
        key = self.frost_key(key_id)
        committee = node._committee(key_id, key, req.epoch)  # FAILED_PRECONDITION "epoch" naming sign.epoch
        if node.me not in committee:
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: {cfg.name} is not in the committee of key {key_id.hex()[:16]}")
        held = node.store.count_fresh_nonces(key_id)
        if held + req.count > cfg.max_nonces_per_key:
            raise RpcError(
                Code.RESOURCE_EXHAUSTED,
                f"count: key {key_id.hex()[:16]} has {held} fresh nonce(s) on {cfg.name}; {req.count} more exceed"
                f" max_nonces_per_key {cfg.max_nonces_per_key}",
            )
        now = node.clock.now_ms()
        batch = []
        for _ in range(req.count):
            nonces, c = commit(key.scheme, key.secret_share, identifier=key.index)
            info = NonceInfo(os.urandom(32), key_id, req.epoch, node.me, bytes(c.hiding), bytes(c.binding), now)
            batch.append(FreshNonce(info, nonces.to_bytes()))
            del nonces
        entry = OutboxEntry(actor[:64] or "coordinator", "frost-nonces", "", "stored", {
            "key_id": key_id.hex(), "epoch": req.epoch, "count": len(batch), "scheme": key.scheme,
        })
        out = [_commitment(f.info) for f in batch]
        ids = [f.info.nonce_id for f in batch]
        try:
            node.store.put_nonces(key_id, req.epoch, batch, cap=cfg.max_nonces_per_key, audit=entry)
        except NonceError as e:
            code = Code.RESOURCE_EXHAUSTED if e.kind == "cap" else Code.FAILED_PRECONDITION
            raise refusal(code, e.kind, f"{e} ({cfg.name})") from None
        finally:
            del batch  # the secrets live only in the store now (or nowhere)
        self._remember(ids)
        node.outbox.notify()
        log.info("key %s: %d FROST nonce pair(s) stored", key_id.hex()[:16], len(out))
        return node_pb2.MakeNoncesResponse(commitments=out, epoch=req.epoch)

    # --- SignSchnorr ---------------------------------------------------------------------------
    def sign_schnorr(self, req: node_pb2.SignSchnorrRequest, ctx: Any) -> node_pb2.SignSchnorrResponse:
        """See the module. Refusals are audited (``sign-share`` refused) and carry ``mpc-governance``."""
        actor = _caller(ctx)
        try:
            return self._sign_schnorr(req)
        except RpcError as e:
            e = _renamed(e, "")
            self.node._audit_sign("sign-share", req.request_id, "refused", e.message, actor=actor, key_id=bytes(req.key_id)[:32])
            raise e from None

    def _sign_schnorr(self, req: node_pb2.SignSchnorrRequest) -> node_pb2.SignSchnorrResponse:
        from crypto_core.frost.signing import SigningCommitment, SigningNonces, SigningPackage, sign_share

        node = self.node
        name = node.cfg.name
        # 1. the fields
        key_id = check_len(req.key_id, "key_id", 32)
        nonce_id = check_len(req.nonce_id, "nonce_id", 32)
        session = check_len(req.session_id, "session_id", SESSION_ID_LEN)
        if not REQUEST_ID_RE.fullmatch(req.request_id):
            raise invalid("request_id", REQUEST_ID_RULE)
        governance_blob(req.approval_bundle, "approval_bundle")
        governance_blob(req.policy_attestation, "policy_attestation")
        message = bytes(req.message)
        if not 1 <= len(message) <= MAX_MESSAGE:
            raise invalid("message", f"must be 1..{MAX_MESSAGE} bytes, got {len(message)}")
        root = bytes(req.taproot_merkle_root)
        if len(root) not in (0, 32):
            raise invalid("taproot_merkle_root", f"must be empty or 32 bytes, got {len(root)}")
        if not 1 <= req.attempt <= MAX_SIGN_ATTEMPTS:
            raise invalid("attempt", f"must be 1..{MAX_SIGN_ATTEMPTS}, got {req.attempt}")
        roster_version = node.roster_state.version  # before the peers: the consume refuses if it changed since
        peers = node.peers()
        at_most(req.commitments, "commitments", len(peers), "commitments (one per signer)")
        for k, c in enumerate(req.commitments):
            check_len(c.nonce_id, f"commitments[{k}].nonce_id", 32)
            for part in ("hiding", "binding"):
                if len(getattr(c, part)) not in (32, 33):
                    raise invalid(f"commitments[{k}].{part}", "must be an encoded group element (32 or 33 bytes)")
        signers = _signers([c.signer for c in req.commitments], "commitments.signer", peers, roster=False)
        at_most(req.reservation_receipts, "reservation_receipts", len(peers), "receipts (one per roster node)")
        for k, r in enumerate(req.reservation_receipts):
            governance_blob(r, f"reservation_receipts[{k}]")
        self._purge()  # a nonce revived by a restored store copy is never used
        package_sha256 = _package_sha256(req.commitments, message, root)
        # 2. a replay of the same package: the share already left durably, nothing else changes that
        found = node.store.frost_nonce(nonce_id)
        if found is not None and found[0].used:
            return self._replayed(nonce_id, req.request_id, req.attempt, package_sha256)
        # 3. the nonce, the key's epoch, the bans
        _signers(list(signers), "commitments.signer", peers)  # a signer not active in the roster
        not_banned(node, key_id, signers, "commitments.signer")
        key = self.frost_key(key_id)  # an ECDSA key: FAILED_PRECONDITION naming key_id
        if found is None:
            raise refusal(
                Code.FAILED_PRECONDITION, "nonce-unknown",
                f"nonce_id: {name} holds no nonce {nonce_id.hex()[:16]} (never made, discarded, or deleted at its start)",
            )
        info, record = found
        assert record is not None
        if nonce_id not in self._made:  # fresh in the store, yet not made by this run (or used by it already)
            raise refusal(
                Code.FAILED_PRECONDITION, "nonce-unknown",
                f"nonce_id: nonce {nonce_id.hex()[:16]} was not made by this run of {name}, or was used (a restore revives none)",
            )
        if info.key_id != key_id:
            raise refusal(Code.FAILED_PRECONDITION, "nonce-mismatch", f"key_id: differs from nonce {nonce_id.hex()[:16]}'s on {name}")
        if info.epoch != req.epoch:
            raise refusal(
                Code.FAILED_PRECONDITION, "epoch", f"epoch: is {req.epoch}, nonce {nonce_id.hex()[:16]} is for epoch {info.epoch}",
            )
        if node.rotation.problem:
            raise RpcError(Code.FAILED_PRECONDITION, f"roster: {name}: {node.rotation.problem}; it signs nothing")
        committee = node._committee(key_id, key, req.epoch)
        outside = [j for j in signers if j not in committee]
        if outside:
            raise invalid("commitments.signer", f"node {outside[0]} is not in the committee of key {key_id.hex()[:16]} ({list(committee)})")
        if len(signers) != key.threshold:
            raise invalid("commitments", f"key needs exactly {key.threshold} signers, got {len(signers)}")
        if node.me not in signers:
            raise invalid("commitments.signer", f"does not include this node ({node.me})")
        size = ELEMENT_LEN[key.scheme]
        mine = None
        for k, c in enumerate(req.commitments):
            for part in ("hiding", "binding"):
                if len(getattr(c, part)) != size:
                    raise invalid(f"commitments[{k}].{part}", f"must be {size} bytes for a key of scheme {key.scheme}")
            if c.signer == node.me:
                mine = c
        assert mine is not None
        same = (
            hmac.compare_digest(bytes(mine.nonce_id), nonce_id)
            & hmac.compare_digest(bytes(mine.hiding), info.hiding) & hmac.compare_digest(bytes(mine.binding), info.binding)
        )
        if not same:
            raise refusal(
                Code.FAILED_PRECONDITION, "nonce-mismatch",
                f"commitments.signer: this node's ({node.me}) commitment differs from its nonce {nonce_id.hex()[:16]} on {name}",
            )
        # 4. the request's scheme and message, then the approvals exactly as a signing session checks them
        digest = self._message_digest(req, key, message, root)
        approved = node.gov.check_sign(
            req.approval_bundle, key_id=key_id, digest=digest, path=(), request_id=req.request_id,
            attestation=bytes(req.policy_attestation), scheme=key.scheme, taproot_root=root,
        )
        request = approved.bundle.request
        limit = approved.policy.rate_limit
        # 5. the reservation of the attempt (session = the attempt's session id)
        reservation, quorum = attempt_grant(node, request, req.attempt, signers, session, tuple(req.reservation_receipts))
        served = ServedRequest(
            request.request_id, key_id, digest, reservation.created_ms, (limit.max_signatures, limit.window_seconds * 1000), reservation,
            InForce(approved.scope, approved.policy.version, roster_version,
                    still=lambda: check_bans(node, key_id, signers), attestation=approved.attestation),
        )
        if node.outbox.problem:  # the share would be released with nothing reaching the log
            raise RpcError(Code.UNAVAILABLE, f"audit: {name} cannot append to its audit log ({node.outbox.problem}); it signs nothing")
        # the share, in memory only until the consume transaction commits
        try:
            package = SigningPackage(
                key.scheme, message, tuple(
                    SigningCommitment(committee.index(c.signer) + 1, bytes(c.hiding), bytes(c.binding)) for c in req.commitments
                ), taproot_root=root,
            )
        except DecodeError as e:  # another signer's commitment: not a group element, or the identity
            raise invalid(e.field, e.reason) from None
        except UsageError as e:
            raise invalid("commitments", str(e)) from None
        try:
            share = sign_share(key, SigningNonces.from_bytes(record, key.scheme), package)
        except ProtocolError as e:
            why = f"commitments: unusable signing package on {name} ({_reason(e)})"
            raise refusal(Code.FAILED_PRECONDITION, "nonce-mismatch", why) from None

        def entry() -> OutboxEntry:
            return OutboxEntry(request.requester, "sign-share", request.request_id, "released", {
                "key_id": key_id.hex(), "scheme": key.scheme, "digest": digest.hex(), "nonce": nonce_id.hex()[:16],
                "signers": ",".join(map(str, signers)), "attempt": req.attempt, "session": session.hex()[:16],
                "self_granted": len(signers) >= quorum, "policy_version": approved.policy.version,
                "approved_by": ",".join(sorted(approved.result.approved)), "request_sha256": reservation.request_digest.hex(),
                "package_sha256": package_sha256.hex(),
            })

        # 6. one transaction
        try:
            node.store.consume_nonce(nonce_id, share, package_sha256=package_sha256, epoch=info.epoch, served=served, audit=entry)
        except ReservationConflict as e:
            raise refusal(Code.FAILED_PRECONDITION, "attempt-taken", f"{e} ({name})") from None
        except RequestAlreadyServed as e:
            raise refusal(Code.FAILED_PRECONDITION, "served", f"approval_bundle.request.{e} ({name})") from None
        except RateLimited as e:
            raise refusal(Code.FAILED_PRECONDITION, "rate-limited", f"{e} ({name})") from None
        except InForceChanged as e:  # the policy, its attestation or the roster
            raise changed_refusal(e, name) from None
        except Banned as e:
            raise ban_refusal(node, key_id, e, "commitments.signer") from None
        except NonceError as e:
            if e.kind == "nonce-used":  # a concurrent call won: the same (request, attempt) replays
                self._forget(nonce_id)
                return self._replayed(nonce_id, request.request_id, req.attempt, package_sha256)
            raise refusal(Code.FAILED_PRECONDITION, e.kind, f"{e} ({name})") from None
        self._forget(nonce_id)
        node.outbox.notify()
        node.faults.at(FAULT_CONSUMED)
        log.info("nonce %s: share released for request %s (attempt %d)", nonce_id.hex()[:12], request.request_id, req.attempt,
                 extra={"event": "sign-schnorr", "request_id": request.request_id})
        # 7. the answer
        return node_pb2.SignSchnorrResponse(share=share, signer=node.me, replayed=False)

    def _message_digest(self, req: node_pb2.SignSchnorrRequest, key: FrostKeyShare, message: bytes, root: bytes) -> bytes:
        """The approved request's ``digest`` the message must match (per the key's scheme; the
        request's scheme must be the key's). PERMISSION_DENIED ``denied`` naming the field."""
        try:
            request = ApprovalBundle.from_bytes(bytes(req.approval_bundle)).request
        except GovernanceError:
            request = None  # check_sign refuses it, naming the field
        if request is not None and request.scheme != key.scheme:
            raise refusal(
                Code.PERMISSION_DENIED, "denied",
                f"approval_bundle.request.scheme: is {request.scheme}, key {key.key_id.hex()[:16]} is a key of scheme {key.scheme}",
            )
        if key.scheme == SCHEME_ED25519:
            if root:
                raise invalid("taproot_merkle_root", "only for schnorr-secp256k1-bip340 keys: must be empty")
            digest = hashlib.sha256(message).digest()
        else:
            if len(message) != 32:
                raise invalid("message", f"a key of scheme {key.scheme} signs the request's 32-byte digest, got {len(message)} bytes")
            digest = message
        if request is not None and not hmac.compare_digest(digest, request.digest):
            what = "SHA-256 of the message" if key.scheme == SCHEME_ED25519 else "message"
            raise refusal(Code.PERMISSION_DENIED, "denied", f"message: the {what} differs from the approved request's digest")
        if request is not None and not hmac.compare_digest(root, request.taproot_root):
            raise refusal(Code.PERMISSION_DENIED, "denied", "taproot_merkle_root: differs from the approved request's taproot_root")
        return digest

    def _replayed(self, nonce_id: bytes, request_id: str, attempt: int, package_sha256: bytes) -> node_pb2.SignSchnorrResponse:
        """The stored share of ``nonce_id`` for exactly this request, attempt and signing package
        (a share answered for another package would not verify and would get this node blamed);
        FAILED_PRECONDITION ``nonce-used`` otherwise."""
        share = self.node.store.nonce_share(nonce_id, request_id, attempt, package_sha256)
        if share is None:
            raise refusal(
                Code.FAILED_PRECONDITION, "nonce-used",
                f"nonce_id: nonce {nonce_id.hex()[:16]} was used for another request, attempt or signing package on {self.node.cfg.name}",
            )
        return node_pb2.SignSchnorrResponse(share=share, signer=self.node.me, replayed=True)

    # --- DiscardNonces -------------------------------------------------------------------------
    def discard(self, req: node_pb2.DiscardNoncesRequest, ctx: Any) -> node_pb2.DiscardNoncesResponse:
        key_id, ids = discard_fields(req.key_id, req.nonce_ids, "nonce_ids", req.reason)
        actor = _caller(ctx)[:64] or "coordinator"

        def entry(n: int) -> OutboxEntry:
            return OutboxEntry(actor, "frost-nonces-discard", "", "discarded", {
                "key_id": key_id.hex(), "count": n, "reason": req.reason, "named": len(ids),
            })

        n = self.node.store.discard_nonces(key_id, ids or None, audit=entry)
        self.node.outbox.notify()
        log.info("key %s: %d fresh FROST nonce(s) discarded (%s)", key_id.hex()[:16], n, req.reason)
        return node_pb2.DiscardNoncesResponse(discarded=n)


def _package_sha256(commitments: Any, message: bytes, root: bytes) -> bytes:
    """SHA-256 of the signing package as sent (signers, commitments, message, root; each length-prefixed)."""
    parts = [x for c in commitments for x in (c.signer.to_bytes(4, "big"), bytes(c.hiding), bytes(c.binding))] + [message, root]
    return hashlib.sha256(b"".join(len(x).to_bytes(4, "big") + x for x in parts)).digest()


def _commitment(i: NonceInfo) -> node_pb2.NonceCommitment:
    return node_pb2.NonceCommitment(nonce_id=i.nonce_id, signer=i.signer, hiding=i.hiding, binding=i.binding)


def _reason(e: Exception) -> str:
    """A short, secret-free reason: the error's class and its field when it names one."""
    field = getattr(e, "field", None)
    return f"{type(e).__name__}{f' {field}' if isinstance(field, str) else ''}"
