"""The node's protocol engine: sessions of the sans-IO crypto_core parties behind envelopes.

Every outgoing protocol payload is sealed (signed; direct parts also encrypted to the receiver)
with the node's operational keys; every incoming envelope is opened against the node's *own*
roster, so the coordinator can relay but never forge, alter, re-route or replay a message: any
such attempt aborts the session with a message naming the node and what was wrong.

A session accepts exactly one delivery per round. Re-delivering the very same round (a relay
retrying a call) returns the cached answer; a different delivery for a round already processed
is treated as equivocation by the relay and aborts the session.

Durability: a DKG result is stored (pending) before the node answers the last round; a
presignature is stored and then durably marked used before its signature share leaves the node.

Governance: a signing session starts only with an approval bundle that meets the quorum of the
node's own copy of the key's policy (see :mod:`mpc_node.governance`); the request is recorded as
served (refusing a replay or a rate-limit excess) in the same transaction that marks the
presignature used. Every decision goes to the node's signed, hash-chained audit log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc

from crypto_core.bip32 import check_path
from crypto_core.dkg import DkgConfig, DkgParty
from crypto_core.errors import ProtocolAbort, ProtocolError, UsageError
from crypto_core.keyshare import MAX_LABEL, KeyShare
from crypto_core.session import Delivery, RoundOutput
from governance.approval import REQUEST_ID_RE
from governance.audit import AuditLog
from mpc_node.config import NodeConfig
from mpc_node.envelope import Envelope, EnvelopeError, open_envelope, seal_broadcast, seal_direct
from mpc_node.faults import FaultInjector, flip
from mpc_node.governance import Approved, NodeGovernance, refusal
from mpc_node.keystore import OperationalKeys
from mpc_node.storage import NodeStore, RateLimited, RequestAlreadyServed, StoreError
from mpcnet.govwire import audit_page, policy_state
from mpcnet.rpc import RpcError, caller_identity, check_len, invalid
from proto.mpc.v1 import common_pb2, governance_pb2, node_pb2

log = logging.getLogger("mpc_node.service")

SESSION_ID_LEN = 32
MAX_REQUEST_ID = 256
SEEN_SESSIONS = 100_000
FINISHED_GRACE_S = 10.0
VERSION = "mpcnet-node/0.1"

Code = grpc.StatusCode


@dataclass
class Session:
    id: bytes
    kind: str  # "dkg" | "sign"
    party: Any
    participants: tuple[int, ...]
    peers: tuple[int, ...]
    expect_round: int  # the round whose messages the next Step must deliver
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: float = field(default_factory=time.monotonic)
    touched: float = field(default_factory=time.monotonic)
    failed: RpcError | None = None
    done: bool = False
    last: tuple[int, bytes, node_pb2.StepResponse] | None = None  # (round, inbox digest, answer)
    # signing only
    key: KeyShare | None = None
    key_id: bytes = b""
    digest: bytes = b""
    path: tuple[int, ...] = ()
    request_id: str = ""
    approved: Approved | None = None
    # dkg only
    label: str = ""

    @property
    def short(self) -> str:
        return self.id.hex()[:12]


class NodeService:
    """The Node RPCs, independent of gRPC transport details (handlers raise RpcError)."""

    def __init__(self, cfg: NodeConfig, keys: OperationalKeys, store: NodeStore, audit: AuditLog) -> None:
        self.cfg = cfg
        self.keys = keys
        self.store = store
        self.audit = audit
        self.me = cfg.index
        self.faults = FaultInjector(cfg.test_mode)
        self.health: Any = None  # the standard health servicer, set by the server
        self._sessions: dict[bytes, Session] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._keys: dict[bytes, KeyShare] = {}
        self._keys_lock = threading.Lock()
        self._stop = threading.Event()
        mine = cfg.roster[self.me]
        if mine.identity_public != keys.identity_public or mine.encryption_public != keys.encryption_public:
            raise RuntimeError(
                f"roster entry {self.me} does not match this node's keystore (wrong keystore or stale roster)"
            )
        self.gov = NodeGovernance(cfg.name, cfg.admin_set, cfg.initial_policy, store, audit)

    # ---------------------------------------------------------------------------------------
    def node_name(self, i: int | None) -> str:
        if i is None:
            return "unattributable"
        p = self.cfg.roster.get(i)
        return f"node {i} ({p.name})" if p else f"party {i}"

    def warm_up(self) -> None:
        """Decode active key shares into the cache in the background (the first signature with a
        key then does not pay for decoding and validating its share)."""

        def run() -> None:
            for row in self.store.list_keys():
                if row.status == "active" and not self._stop.is_set():
                    try:
                        self._key(row.key_id)
                    except Exception:
                        log.exception("key %s: cannot load", row.key_id.hex()[:16])

        threading.Thread(target=run, name="warm-up", daemon=True).start()

    def start_sweeper(self) -> threading.Thread:
        t = threading.Thread(target=self._sweep_loop, name="session-sweeper", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Drop sessions idle for longer than the timeout. Returns how many were dropped."""
        now = time.monotonic() if now is None else now
        limit = self.cfg.session_timeout_s
        # an ended session is kept briefly (to answer a relay's retry) but not for the whole timeout:
        # its cached last answer can be large
        ended_limit = min(limit, FINISHED_GRACE_S)
        with self._lock:
            old = [
                s for s in self._sessions.values()
                if now - s.touched > (ended_limit if (s.done or s.failed is not None) else limit)
            ]
            for s in old:
                del self._sessions[s.id]
        for s in old:
            if not s.done and s.failed is None:
                log.info("session %s (%s): expired after %.0fs idle, dropped", s.short, s.kind, limit)
        return len(old)

    @property
    def active_sessions(self) -> int:
        with self._lock:
            return sum(1 for s in self._sessions.values() if not s.done and s.failed is None)

    # --- info --------------------------------------------------------------------------------
    def GetInfo(self, req: node_pb2.GetInfoRequest, ctx: Any) -> node_pb2.NodeInfo:
        return node_pb2.NodeInfo(
            index=self.me,
            name=self.cfg.name,
            identity_public=self.keys.identity_public,
            encryption_public=self.keys.encryption_public,
            parties=self.cfg.parties,
            threshold=self.cfg.threshold,
            version=VERSION,
            governance_root=self.gov.governance_root,
        )

    def Health(self, req: node_pb2.NodeHealthRequest, ctx: Any) -> node_pb2.NodeHealthResponse:
        return node_pb2.NodeHealthResponse(serving=True, active_sessions=self.active_sessions, max_sessions=self.cfg.max_sessions)

    # --- sessions ----------------------------------------------------------------------------
    def StartSession(self, req: node_pb2.StartSessionRequest, ctx: Any) -> node_pb2.StepResponse:
        sid = check_len(req.session_id, "session_id", SESSION_ID_LEN)
        which = req.WhichOneof("params")
        if which == "dkg":
            s, out = self._new_dkg(sid, req.dkg)
        elif which == "sign":
            s, out = self._new_sign(sid, req.sign, ctx)
        else:
            raise invalid("params", "missing: give dkg or sign parameters")
        with self._lock:
            if sid in self._seen:
                raise RpcError(Code.ALREADY_EXISTS, f"session_id: session {sid.hex()[:12]} was already used on this node")
            if self.active_sessions_locked() >= self.cfg.max_sessions:
                raise RpcError(Code.RESOURCE_EXHAUSTED, f"sessions: {self.cfg.name} already runs {self.cfg.max_sessions} sessions (the limit)")
            self._seen[sid] = None
            while len(self._seen) > SEEN_SESSIONS:
                self._seen.popitem(last=False)
            self._sessions[sid] = s
        if s.kind == "sign":
            self._audit_sign_start(s)
        with s.lock:
            try:
                resp = self._emit(s, out)
            except RpcError as e:
                s.failed = e
                raise
        log.info("session %s (%s): started, participants %s", s.short, s.kind, list(s.participants))
        return resp

    def active_sessions_locked(self) -> int:
        return sum(1 for s in self._sessions.values() if not s.done and s.failed is None)

    def _new_dkg(self, sid: bytes, p: node_pb2.DkgParams) -> tuple[Session, Callable[[], RoundOutput]]:
        n = self.cfg.parties
        if p.parties != n:
            raise invalid("dkg.parties", f"must be {n} (this node's roster size), got {p.parties}")
        if p.threshold != self.cfg.threshold:
            raise invalid("dkg.threshold", f"this node accepts only threshold {self.cfg.threshold}, got {p.threshold}")
        if len(p.key_label) > MAX_LABEL:
            raise invalid("dkg.key_label", f"at most {MAX_LABEL} bytes, got {len(p.key_label)}")
        try:
            label = p.key_label.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("dkg.key_label", "must be UTF-8") from None
        party = DkgParty(DkgConfig(sid, p.threshold, n, self.me, p.key_label))
        parts = tuple(range(1, n + 1))
        s = Session(sid, "dkg", party, parts, tuple(j for j in parts if j != self.me), 1, label=label)
        return s, party.start

    def _new_sign(self, sid: bytes, p: node_pb2.SignParams, ctx: Any = None) -> tuple[Session, Callable[[], RoundOutput]]:
        try:
            return self._new_sign_checked(sid, p)
        except RpcError as e:
            self._audit_sign("sign-start", p.request_id, "refused", e.message, actor=_caller(ctx), key_id=p.key_id)
            raise

    def _new_sign_checked(self, sid: bytes, p: node_pb2.SignParams) -> tuple[Session, Callable[[], RoundOutput]]:
        from crypto_core.sign import PresignParty, SignConfig

        key_id = check_len(p.key_id, "sign.key_id", 32)
        digest = check_len(p.digest, "sign.digest", 32)
        if len(p.request_id) > MAX_REQUEST_ID:
            raise invalid("sign.request_id", f"at most {MAX_REQUEST_ID} characters")
        try:
            path = check_path(tuple(p.derivation_path))
        except UsageError as e:
            raise invalid("sign.derivation_path", str(e).split(": ", 1)[-1]) from None
        signers = tuple(p.signers)
        if len(set(signers)) != len(signers):
            raise invalid("sign.signers", "duplicate party index")
        for j in signers:
            if j not in self.cfg.roster:
                raise invalid("sign.signers", f"party {j} is not in this node's roster (1..{self.cfg.parties})")
        if self.me not in signers:
            raise invalid("sign.signers", f"does not include this node ({self.me})")
        key = self._key(key_id)
        if len(signers) != key.threshold:
            raise invalid("sign.signers", f"key needs exactly {key.threshold} signers, got {len(signers)}")
        approved = self.gov.check_sign(p.approval_bundle, key_id=key_id, digest=digest, path=path, request_id=p.request_id)
        banned = self.store.banned(key_id)
        bad = sorted(set(signers) & banned)
        if bad:
            raise RpcError(
                Code.PERMISSION_DENIED,
                f"sign.signers: {self.node_name(bad[0])} is banned by {self.cfg.name} for key {key_id.hex()[:16]}",
                metadata=[("mpc-banned", ",".join(map(str, bad)))],
            )
        try:
            party = PresignParty(key, SignConfig(sid, signers, path, banned))
        except UsageError as e:
            raise invalid("sign", str(e)) from None
        ordered = tuple(sorted(signers))
        s = Session(
            sid, "sign", party, ordered, tuple(j for j in ordered if j != self.me), 1,
            key=key, key_id=key_id, digest=digest, path=path, request_id=p.request_id, approved=approved,
        )
        return s, party.start

    def _audit_sign_start(self, s: Session) -> None:
        approved = s.approved
        assert approved is not None
        req = approved.bundle.request
        self.audit.append(
            req.requester, "sign-start", request_id=req.request_id, outcome="accepted",
            details={
                "key_id": s.key_id.hex(), "digest": s.digest.hex(), "path": _path_text(s.path), "session": s.id.hex()[:16],
                "signers": ",".join(map(str, s.participants)), "policy_version": approved.policy.version,
                "approved_by": ",".join(sorted(approved.result.approved)),
            },
        )

    def _audit_sign(self, action: str, request_id: str, outcome: str, reason: str, *, actor: str, key_id: bytes = b"") -> None:
        details: dict[str, str | int | bool] = {"reason": reason[:500]}
        if key_id:
            details["key_id"] = key_id.hex()[:64]
        rid = request_id if REQUEST_ID_RE.fullmatch(request_id or "") else ""
        if request_id and not rid:
            details["request"] = request_id[:200]
        try:
            self.audit.append(actor, action, request_id=rid, outcome=outcome, details=details)
        except Exception:
            log.exception("cannot write the audit log")
            raise

    def _key(self, key_id: bytes) -> KeyShare:
        with self._keys_lock:
            ks = self._keys.get(key_id)
        if ks is not None:
            return ks
        record = self.store.get_key_share(key_id, require_active=True)
        if record is None:
            if self.store.get_key_share(key_id, require_active=False) is not None:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"sign.key_id: key {key_id.hex()} is pending on {self.cfg.name}: not activated by CommitKey",
                )
            raise RpcError(Code.NOT_FOUND, f"sign.key_id: {self.cfg.name} holds no key {key_id.hex()}")
        ks = KeyShare.from_bytes(record)
        with self._keys_lock:
            self._keys[key_id] = ks
        return ks

    def _session(self, sid: bytes) -> Session:
        check_len(sid, "session_id", SESSION_ID_LEN)
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            raise RpcError(Code.NOT_FOUND, f"session_id: {self.cfg.name} has no session {sid.hex()[:12]} (unknown, expired or node restarted)")
        return s

    def Step(self, req: node_pb2.StepRequest, ctx: Any) -> node_pb2.StepResponse:
        s = self._session(req.session_id)
        with s.lock:
            s.touched = time.monotonic()
            if s.failed is not None:
                raise s.failed
            digest = _inbox_digest(req)
            if s.last is not None and req.round == s.last[0]:
                if digest == s.last[1]:
                    return s.last[2]  # the relay retried the same call
                self._fail(s, None, f"round-{req.round} messages delivered again with different content (relay replay or equivocation)")
            if s.done:
                raise RpcError(Code.FAILED_PRECONDITION, f"session {s.short}: already finished on {self.cfg.name}")
            if req.round != s.expect_round:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"round: session {s.short} on {self.cfg.name} expects round-{s.expect_round} messages, got round {req.round}",
                )
            try:
                inbox = self._open_inbox(s, req.round, req.envelopes)
                resp = self._advance(s, inbox)
            except RpcError as e:
                s.failed = e
                raise
            s.last = (req.round, digest, resp)
            return resp

    def AbortSession(self, req: node_pb2.AbortSessionRequest, ctx: Any) -> node_pb2.AbortSessionResponse:
        check_len(req.session_id, "session_id", SESSION_ID_LEN)
        with self._lock:
            s = self._sessions.pop(req.session_id, None)
        if s is not None:
            log.info("session %s (%s): aborted by the coordinator: %s", s.short, s.kind, req.reason[:200])
        return node_pb2.AbortSessionResponse(existed=s is not None)

    # --- protocol steps ----------------------------------------------------------------------
    def _fail(self, s: Session, culprit: int | None, reason: str, *, ban: bool = False) -> None:
        who = self.node_name(culprit)
        msg = f"{self.cfg.name} aborted {s.kind} session {s.short}: {who}: {reason}"
        md = [("mpc-culprit", str(culprit or 0)), ("mpc-reporter", str(self.me))]
        if ban:
            md.append(("mpc-ban", "1"))
        err = RpcError(Code.ABORTED, msg, metadata=md)
        s.failed = err
        log.warning("%s", msg)
        raise err

    def _open_inbox(self, s: Session, rnd: int, envelopes: Any) -> dict[int, Delivery]:
        parts: dict[int, dict[str, bytes]] = {}
        for k, pe in enumerate(envelopes):
            try:
                env = Envelope(pe.session_id, pe.round, pe.sender, pe.receiver, pe.payload, pe.ephemeral_key, pe.signature)
            except EnvelopeError as e:
                self._fail(s, None, f"round-{rnd} envelopes[{k}]: malformed: {e}")
            sender = env.sender
            if sender not in s.peers:
                self._fail(s, None, f"round-{rnd} envelopes[{k}]: sender {sender} is not a peer in this session")
            kind = "broadcast" if env.receiver == 0 else "direct"
            what = f"round-{rnd} {kind} message from {self.node_name(sender)}"
            if env.receiver not in (0, self.me):
                self._fail(s, None, f"{what}: addressed to party {env.receiver}, not to this node (misrouted)")
            if kind in parts.setdefault(sender, {}):
                self._fail(s, None, f"{what}: delivered twice (replay)")
            try:
                payload = open_envelope(
                    env,
                    sender_identity_public=self.cfg.roster[sender].identity_public,
                    my_encryption=self.keys.encryption,
                    expected_session_id=s.id,
                    expected_round=rnd,
                    expected_sender=sender,
                    me=self.me,
                )
            except EnvelopeError as e:
                self._fail(s, None, f"{what}: {e.field}: {e.reason} (altered, replayed or forged in transit)")
            parts[sender][kind] = payload
        return {j: Delivery(p.get("broadcast"), p.get("direct")) for j, p in parts.items()}

    def _advance(self, s: Session, inbox: dict[int, Delivery]) -> node_pb2.StepResponse:
        t0 = time.perf_counter()
        try:
            out = s.party.receive(inbox)
        except ProtocolAbort as e:
            if e.ban and e.party is not None and s.kind == "sign":
                try:
                    self.store.add_ban(s.key_id, e.party, e.reason[:1000])
                    log.warning("key %s: banned %s: %s", s.key_id.hex()[:16], self.node_name(e.party), e.reason)
                except StoreError:
                    log.exception("could not persist a ban")
            self._fail(s, e.party, e.reason, ban=e.ban)
        except ProtocolError as e:
            self._fail(s, None, f"protocol error: {e}")
        if out is not None:
            resp = self._emit(s, lambda: out)
        elif s.kind == "dkg":
            resp = self._finish_dkg(s)
        else:
            resp = self._finish_sign(s)
        log.debug("session %s (%s): round %d processed in %.1f ms", s.short, s.kind, s.expect_round - 1, (time.perf_counter() - t0) * 1e3)
        return resp

    def _emit(self, s: Session, produce: Callable[[], RoundOutput]) -> node_pb2.StepResponse:
        out = produce()
        fault = self.faults.check(s.kind, out.round)
        envs = self._seal(s, out.round, out.broadcast, out.direct, fault.action if fault else None)
        s.expect_round = out.round
        return node_pb2.StepResponse(session_id=s.id, round=out.round, envelopes=envs)

    def _seal(
        self, s: Session, rnd: int, broadcast: bytes | None, direct: Any, fault: str | None
    ) -> list[common_pb2.Envelope]:
        envs = []
        ident = self.keys.identity
        if broadcast is not None:
            if fault == "tamper-payload":
                broadcast = flip(broadcast)
            envs.append(seal_broadcast(broadcast, identity=ident, session_id=s.id, round=rnd, sender=self.me))
        for j in sorted(direct):
            payload = direct[j]
            if fault == "tamper-payload":
                payload = flip(payload)
            envs.append(
                seal_direct(
                    payload,
                    identity=ident,
                    recipient_encryption_public=self.cfg.roster[j].encryption_public,
                    session_id=s.id,
                    round=rnd,
                    sender=self.me,
                    receiver=j,
                )
            )
        out = []
        for e in envs:
            payload = flip(e.payload) if fault == "tamper-signature" else e.payload
            out.append(
                common_pb2.Envelope(
                    session_id=e.session_id, round=e.round, sender=e.sender, receiver=e.receiver,
                    payload=payload, ephemeral_key=e.ephemeral_key, signature=e.signature,
                )
            )
        return out

    def _finish_dkg(self, s: Session) -> node_pb2.StepResponse:
        ks: KeyShare = s.party.result
        pk = ks.public_key.encode()
        try:
            self.store.put_key_share(
                ks.key_id, ks.to_bytes(), label=s.label, public_key=pk, threshold=ks.threshold, parties=ks.parties
            )
        except StoreError as e:
            self._fail(s, None, f"cannot store the key share: {e}")
        s.done = True
        self.audit.append(
            "coordinator", "keygen", outcome="stored-pending",
            details={"key_id": ks.key_id.hex(), "public_key": pk.hex(), "threshold": ks.threshold, "parties": ks.parties,
                     "session": s.id.hex()[:16], "label": s.label[:200]},
        )
        log.info("session %s (dkg): finished, key %s stored as pending", s.short, ks.key_id.hex()[:16])
        return node_pb2.StepResponse(
            session_id=s.id,
            round=0,
            finished=True,
            dkg_result=node_pb2.DkgResult(
                key_id=ks.key_id, public_key=pk, chain_code=ks.chain_code, threshold=ks.threshold, parties=ks.parties
            ),
        )

    def _finish_sign(self, s: Session) -> node_pb2.StepResponse:
        presig = s.party.result
        key = s.key
        assert key is not None
        rnd = 4
        fault = self.faults.check("sign", rnd)
        approved = s.approved
        assert approved is not None
        req = approved.bundle.request
        try:
            served = self.gov.recheck(approved, s.key_id)
        except RpcError as e:
            self._audit_sign("sign-share", s.request_id, "refused", e.message, actor=req.requester, key_id=s.key_id)
            s.failed = e
            raise
        try:
            tomb = presig.mark_used()
            # only the tombstone is ever written (never the secrets), durable before the share
            # leaves, together with the request's served record
            self.store.put_used_presignature(presig.sigid, s.key_id, tomb, request=served)
        except (RequestAlreadyServed, RateLimited) as e:
            kind = "served" if isinstance(e, RequestAlreadyServed) else "rate-limited"
            msg = f"sign.approval_bundle.request.{e}" if kind == "served" else str(e)
            err = refusal(Code.FAILED_PRECONDITION, kind, f"{msg} ({self.cfg.name})")
            self._audit_sign("sign-share", s.request_id, "refused", err.message, actor=req.requester, key_id=s.key_id)
            s.failed = err
            raise err from None
        except StoreError as e:
            self._fail(s, None, f"cannot persist the presignature: {e}")
        share = presig.signature_share(s.digest, key_id=s.key_id, derivation_path=s.path)
        payload = share.to_bytes(s.id)
        envs = self._seal(s, rnd, payload, {}, fault.action if fault else None)
        s.done = True
        s.expect_round = rnd
        self.audit.append(
            req.requester, "sign-share", request_id=req.request_id, outcome="released",
            details={
                "key_id": s.key_id.hex(), "digest": s.digest.hex(), "path": _path_text(s.path),
                "session": s.id.hex()[:16], "signers": ",".join(map(str, s.participants)),
                "policy_version": approved.policy.version, "approved_by": ",".join(sorted(approved.result.approved)),
            },
        )
        log.info("session %s (sign): signing contribution released for key %s (request %s)", s.short, s.key_id.hex()[:16], req.request_id)
        return node_pb2.StepResponse(session_id=s.id, round=rnd, envelopes=envs, finished=True)

    # --- keys --------------------------------------------------------------------------------
    def _row(self, key_id: bytes) -> Any:
        for r in self.store.list_keys():
            if r.key_id == key_id:
                return r
        return None

    def CommitKey(self, req: node_pb2.CommitKeyRequest, ctx: Any) -> node_pb2.CommitKeyResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        check_len(req.public_key, "public_key", 33)
        row = self._row(key_id)
        if row is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: {self.cfg.name} holds no key {key_id.hex()}")
        if row.public_key != req.public_key:
            raise RpcError(Code.FAILED_PRECONDITION, f"public_key: differs from the key {self.cfg.name} generated")
        self.store.activate_key(key_id)
        if row.status != "active":
            self.audit.append(_caller(ctx), "key-activate", outcome="active", details={"key_id": key_id.hex()})
            log.info("key %s: activated", key_id.hex()[:16])
            threading.Thread(target=self._key, args=(key_id,), name="load-key", daemon=True).start()
        return node_pb2.CommitKeyResponse(status=common_pb2.KEY_STATUS_ACTIVE)

    def DiscardKey(self, req: node_pb2.DiscardKeyRequest, ctx: Any) -> node_pb2.DiscardKeyResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        row = self._row(key_id)
        if row is None:
            return node_pb2.DiscardKeyResponse(discarded=False)
        if row.status == "active":
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: key {key_id.hex()} is active on {self.cfg.name}; refusing to discard it")
        self.store.discard_pending_key(key_id)
        self.audit.append(_caller(ctx), "key-discard", outcome="discarded", details={"key_id": key_id.hex()})
        log.info("key %s: pending key discarded", key_id.hex()[:16])
        return node_pb2.DiscardKeyResponse(discarded=True)

    def ListKeys(self, req: node_pb2.NodeListKeysRequest, ctx: Any) -> node_pb2.NodeListKeysResponse:
        out = []
        for r in self.store.list_keys():
            status = common_pb2.KEY_STATUS_ACTIVE if r.status == "active" else common_pb2.KEY_STATUS_PENDING
            out.append(
                common_pb2.KeyInfo(
                    key_id=r.key_id, label=r.label, public_key=r.public_key, threshold=r.threshold,
                    parties=r.parties, status=status, created_unix_ms=r.created_at * 1000,
                )
            )
        return node_pb2.NodeListKeysResponse(keys=out)


    # --- governance --------------------------------------------------------------------------
    def InstallPolicy(self, req: node_pb2.InstallPolicyRequest, ctx: Any) -> node_pb2.InstallPolicyResponse:
        installed, signed = self.gov.install(bytes(req.signed_change), actor=_caller(ctx))
        return node_pb2.InstallPolicyResponse(installed=installed, policy=policy_state(signed))

    def GetPolicies(self, req: node_pb2.GetPoliciesRequest, ctx: Any) -> node_pb2.GetPoliciesResponse:
        return node_pb2.GetPoliciesResponse(
            governance_root=self.gov.governance_root, policies=[policy_state(p) for p in self.gov.policies()]
        )

    def GetAuditLog(self, req: governance_pb2.AuditLogRequest, ctx: Any) -> governance_pb2.AuditPage:
        return audit_page(self.audit, req.after_seq, req.limit)


def _caller(ctx: Any) -> str:
    ident = caller_identity(ctx) if ctx is not None else None
    return ident.name if ident is not None else "unknown"


def _path_text(path: tuple[int, ...]) -> str:
    return "m" + "".join(f"/{i}" for i in path)


def _inbox_digest(req: node_pb2.StepRequest) -> bytes:
    h = hashlib.sha256()
    for e in sorted(req.envelopes, key=lambda e: (e.sender, e.receiver, e.signature)):
        h.update(e.SerializeToString(deterministic=True))
    return h.digest()


def new_session_id() -> bytes:
    return os.urandom(SESSION_ID_LEN)
