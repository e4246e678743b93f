"""The client-facing Coordinator RPCs: key creation, signing, request status.

Keys are created by a DKG across all n nodes; a key is activated on the nodes (CommitKey) only
once every node reported the same key. Signing picks t available nodes (least loaded first) and
retries with another t-subset when a node fails mid-protocol; with too few nodes left it answers
UNAVAILABLE naming them. Every request and its outcome is stored in SQLite, so a restarted
coordinator still answers for it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any

import grpc

from coordinator.config import CoordinatorConfig
from coordinator.db import CoordinatorDb, KeyRecord, RequestRecord, now_ms
from coordinator.relay import Aborted, NodeHandle, NodesUnavailable, Refused, fanout, run_session, wait_ready
from crypto_core.bip32 import check_path, derive
from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.group import Point
from crypto_core.keyshare import MAX_LABEL
from mpcnet.pki import channel_credentials
from mpcnet.rpc import RpcError, check_len, invalid, status_of
from proto.mpc.v1 import common_pb2, coordinator_pb2, node_pb2

log = logging.getLogger("coordinator.service")
Code = grpc.StatusCode
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_KEY_STATUS = {
    "pending": common_pb2.KEY_STATUS_PENDING,
    "active": common_pb2.KEY_STATUS_ACTIVE,
    "discarded": common_pb2.KEY_STATUS_DISCARDED,
}
_STATE = {
    "running": coordinator_pb2.REQUEST_STATE_RUNNING,
    "succeeded": coordinator_pb2.REQUEST_STATE_SUCCEEDED,
    "failed": coordinator_pb2.REQUEST_STATE_FAILED,
}
_KIND = {"keygen": coordinator_pb2.REQUEST_KIND_KEYGEN, "sign": coordinator_pb2.REQUEST_KIND_SIGN}


def key_info(k: KeyRecord) -> common_pb2.KeyInfo:
    return common_pb2.KeyInfo(
        key_id=k.key_id, label=k.label, public_key=k.public_key, chain_code=k.chain_code, threshold=k.threshold,
        parties=k.parties, status=_KEY_STATUS[k.status], created_unix_ms=k.created_ms,
    )


class CoordinatorService:
    def __init__(self, cfg: CoordinatorConfig) -> None:
        self.cfg = cfg
        self.db = CoordinatorDb(cfg.db)
        creds = channel_credentials(cfg.cert, cfg.ca_cert)
        self.nodes = {i: NodeHandle(ep, creds) for i, ep in cfg.nodes.items()}
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._active = 0
        self._rr = 0
        self._stop = threading.Event()
        self.health: Any = None  # the standard health servicer, set by the server
        self._sessions = threading.BoundedSemaphore(cfg.max_parallel_sessions)
        for r in self.db.requests_in_state("running"):
            self.db.update_request(
                r.request_id, state="failed", error_code=Code.UNAVAILABLE.value[0],
                error_message="interrupted by a coordinator restart; resubmit with the same request_id to retry",
            )
            log.info("request %s (%s) was interrupted by a restart: marked failed", r.request_id, r.kind)

    # --- background: health probes and activation of pending keys --------------------------
    def start_background(self) -> None:
        threading.Thread(target=self._background, name="health", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for h in self.nodes.values():
            h.close()
        self.db.close()

    def _background(self) -> None:
        while not self._stop.is_set():
            try:
                self.probe()
                for k in self.db.list_keys("pending"):
                    self._commit(k)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("background check failed")
            self._stop.wait(self.cfg.health_interval_s)

    def probe(self) -> None:
        ok, errs = fanout(
            {i: (h.stub.Health, node_pb2.NodeHealthRequest()) for i, h in self.nodes.items()}, 1.0, wait_for_ready=True
        )
        for i in ok:
            self.nodes[i].mark_up()
        for i, e in errs.items():
            code, details = status_of(e)
            self.nodes[i].mark_down(f"{code.name}: {details}")

    # --- admission ----------------------------------------------------------------------------
    def _admit(self) -> None:
        with self._lock:
            if self._active >= self.cfg.max_requests:
                raise RpcError(Code.RESOURCE_EXHAUSTED, f"coordinator: {self.cfg.max_requests} requests already in progress")
            self._active += 1

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    def _request_id(self, given: str) -> str:
        if not given:
            return "req-" + os.urandom(12).hex()
        if not _REQUEST_ID.match(given):
            raise invalid("request_id", "must be 1-64 characters of [A-Za-z0-9._-]")
        return given

    def _claim(self, rid: str, kind: str, same: Any) -> RequestRecord | None:
        """Register ``rid`` as running here. Returns the finished record if it already succeeded;
        waits for a concurrent run of the same request id."""
        while True:
            with self._lock:
                ev = self._running.get(rid)
                if ev is None:
                    rec = self.db.get_request(rid)
                    if rec is not None:
                        if rec.kind != kind or not same(rec):
                            raise RpcError(Code.ALREADY_EXISTS, f"request_id: {rid!r} was already used for a different request")
                        if rec.state == "succeeded":
                            return rec
                    self._running[rid] = threading.Event()
                    if rec is None:
                        return None
                    break
            ev.wait()
        self.db.restart_request(rid)
        return None

    def _done(self, rid: str) -> None:
        with self._lock:
            ev = self._running.pop(rid, None)
        if ev is not None:
            ev.set()

    def _fail(self, rid: str, err: RpcError, attempts: int = 0) -> RpcError:
        self.db.update_request(rid, state="failed", error_code=err.code.value[0], error_message=err.message, attempts=attempts)
        log.warning("request %s failed: %s: %s", rid, err.code.name, err.message)
        return err

    # --- keys --------------------------------------------------------------------------------
    def CreateKey(self, req: coordinator_pb2.CreateKeyRequest, ctx: Any) -> coordinator_pb2.CreateKeyResponse:
        label = req.label
        if len(label.encode()) > MAX_LABEL:
            raise invalid("label", f"at most {MAX_LABEL} bytes, got {len(label.encode())}")
        rid = self._request_id(req.request_id)
        self._admit()
        try:
            done = self._claim(rid, "keygen", lambda r: r.label == label)
            if done is not None:
                k = self.db.get_key(done.key_id or b"")
                assert k is not None
                return coordinator_pb2.CreateKeyResponse(request_id=rid, key=key_info(k))
            if self.db.get_request(rid) is None:
                self.db.create_request(rid, "keygen", label=label)
            try:
                k = self._keygen(rid, label)
            except RpcError as e:
                raise self._fail(rid, e, 1) from None
            self.db.update_request(rid, state="succeeded", key_id=k.key_id, attempts=1)
            return coordinator_pb2.CreateKeyResponse(request_id=rid, key=key_info(k))
        finally:
            self._done(rid)
            self._release()

    def _keygen(self, rid: str, label: str) -> KeyRecord:
        t0 = time.perf_counter()
        sid = os.urandom(32)
        n, t = self.cfg.parties, self.cfg.threshold
        params = node_pb2.StartSessionRequest(
            session_id=sid, dkg=node_pb2.DkgParams(threshold=t, parties=n, key_label=label.encode())
        )
        for attempt in (1, 2):
            try:
                with self._sessions:
                    final = run_session(self.nodes, sid, {i: params for i in self.nodes}, self.cfg.dkg_timeout_s)
                break
            except NodesUnavailable as e:
                if attempt == 1 and e.phase == "start":
                    # nodes that just restarted may still be reconnecting: one more try if they do
                    missing = [self.nodes[i] for i in e.failures]
                    if len(wait_ready(missing, 3.0)) == len(missing):
                        sid = os.urandom(32)
                        params.session_id = sid
                        continue
                raise RpcError(Code.UNAVAILABLE, f"keygen: needs all {n} nodes; unavailable: {e}") from None
            except Aborted as e:
                raise RpcError(Code.ABORTED, f"keygen aborted: {e}") from None
            except Refused as e:
                raise RpcError(e.code, e.message) from None
        results = {i: r.dkg_result for i, r in final.items()}
        first = results[1]
        differ = [i for i, r in results.items() if r.SerializeToString(deterministic=True) != first.SerializeToString(deterministic=True)]
        if differ:
            self._discard(first.key_id)
            for i in differ:
                self._discard(results[i].key_id)
            raise RpcError(Code.ABORTED, f"keygen aborted: node {differ[0]} finished the DKG with a different key than node 1")
        k = KeyRecord(
            key_id=first.key_id, label=label, public_key=first.public_key, chain_code=first.chain_code,
            threshold=first.threshold, parties=first.parties, status="pending", created_ms=now_ms(), request_id=rid,
        )
        self.db.add_key(k)
        k = self._commit(k)
        log.info(
            "request %s: key %s created (%s) in %.0f ms", rid, k.key_id.hex()[:16], k.status, (time.perf_counter() - t0) * 1e3
        )
        return k

    def _commit(self, k: KeyRecord) -> KeyRecord:
        req = node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key)
        ok, errs = fanout({i: (h.stub.CommitKey, req) for i, h in self.nodes.items()}, self.cfg.step_timeout_s)
        if errs:
            log.warning(
                "key %s: not yet activated on %s; will retry",
                k.key_id.hex()[:16], ", ".join(f"{self.nodes[i].label} ({status_of(e)[0].name})" for i, e in sorted(errs.items())),
            )
            return k
        self.db.set_key_status(k.key_id, "active")
        return self.db.get_key(k.key_id) or k

    def _discard(self, key_id: bytes) -> None:
        fanout({i: (h.stub.DiscardKey, node_pb2.DiscardKeyRequest(key_id=key_id)) for i, h in self.nodes.items()}, 5.0)

    def GetKey(self, req: coordinator_pb2.GetKeyRequest, ctx: Any) -> common_pb2.KeyInfo:
        key_id = check_len(req.key_id, "key_id", 32)
        k = self.db.get_key(key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
        return key_info(k)

    def ListKeys(self, req: coordinator_pb2.ListKeysRequest, ctx: Any) -> coordinator_pb2.ListKeysResponse:
        return coordinator_pb2.ListKeysResponse(keys=[key_info(k) for k in self.db.list_keys()])

    # --- signing -----------------------------------------------------------------------------
    def Sign(self, req: coordinator_pb2.SignRequest, ctx: Any) -> coordinator_pb2.SignResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        digest = check_len(req.digest, "digest", 32)
        try:
            path = check_path(tuple(req.derivation_path))
        except UsageError as e:
            msg = str(e)
            raise RpcError(Code.INVALID_ARGUMENT, msg if msg.startswith("derivation_path") else f"derivation_path: {msg}") from None
        rid = self._request_id(req.request_id)
        k = self.db.get_key(key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
        if k.status != "active":
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: key {key_id.hex()} is {k.status}, not active")
        self._admit()
        try:
            done = self._claim(rid, "sign", lambda r: r.key_id == key_id and r.digest == digest and r.path == path)
            if done is not None:
                return self._sign_response(done)
            if self.db.get_request(rid) is None:
                self.db.create_request(rid, "sign", key_id=key_id, digest=digest, path=path)
            try:
                sig, signers, attempts = self._sign(rid, k, digest, path)
            except RpcError as e:
                raise self._fail(rid, e, getattr(e, "attempts", 0)) from None
            self.db.update_request(rid, state="succeeded", signature=sig.SerializeToString(), signers=signers, attempts=attempts)
            return coordinator_pb2.SignResponse(request_id=rid, signature=sig, signers=signers)
        finally:
            self._done(rid)
            self._release()

    def _sign_response(self, rec: RequestRecord) -> coordinator_pb2.SignResponse:
        return coordinator_pb2.SignResponse(
            request_id=rec.request_id, signature=common_pb2.Signature.FromString(rec.signature or b""), signers=rec.signers
        )

    def _pick(self, t: int, excluded: set[int]) -> tuple[int, ...] | None:
        with self._lock:
            self._rr += 1
            rr = self._rr
            n = len(self.nodes)
            cands = [h for i, h in self.nodes.items() if i not in excluded]
            if len(cands) < t:
                return None
            # available first, then least loaded, then round robin
            cands.sort(key=lambda h: (h.healthy is False, h.inflight, (h.index - rr) % n))
            return tuple(sorted(h.index for h in cands[:t]))

    def _sign(self, rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...]) -> tuple[common_pb2.Signature, tuple[int, ...], int]:
        from crypto_core.sign import SignatureShare, combine

        t = k.threshold
        # the key the signature must verify under: from our own record, never from the nodes
        expected = derive(Point.decode(k.public_key), k.chain_code, path).public_key
        down: dict[int, str] = {}
        banned: set[int] = set()
        attempts = 0
        t0 = time.perf_counter()
        second_chance = True
        while True:
            with self._sessions:  # at most max_parallel_sessions at once; the rest queue here
                signers = self._pick(t, set(down))
                if signers is None and second_chance:
                    # nodes that failed may just have restarted: give their channels a moment
                    second_chance = False
                    came_back = wait_ready([self.nodes[i] for i in down if i not in banned], 3.0)
                    for h in came_back:
                        del down[h.index]
                    if came_back:
                        log.info("request %s: %s reconnected; retrying", rid, ", ".join(h.label for h in came_back))
                        continue
                if signers is None:
                    names = "; ".join(r for _, r in sorted(down.items()))
                    err = RpcError(
                        Code.UNAVAILABLE,
                        f"sign: needs {t} of {len(self.nodes)} nodes but only {len(self.nodes) - len(down)} are available; unavailable: {names}",
                    )
                    err.attempts = attempts  # type: ignore[attr-defined]
                    raise err
                attempts += 1
                sid = os.urandom(32)
                params = node_pb2.SignParams(key_id=k.key_id, signers=signers, derivation_path=path, digest=digest, request_id=rid)
                start = node_pb2.StartSessionRequest(session_id=sid, sign=params)
                subset = {i: self.nodes[i] for i in signers}
                try:
                    final = run_session(subset, sid, {i: start for i in signers}, self.cfg.step_timeout_s)
                    shares = {}
                    for i, r in final.items():
                        envs = [e for e in r.envelopes if e.receiver == 0]
                        if len(envs) != 1:
                            raise Aborted(f"node {i} returned no signature share", i)
                        shares[i] = SignatureShare.from_bytes(envs[0].payload, sid, i)
                    sig = combine(shares, digest, signers=signers, public_key=expected)
                except NodesUnavailable as e:
                    down.update(e.failures)
                    log.warning("request %s: attempt %d with nodes %s failed (%s); retrying", rid, attempts, list(signers), e)
                    continue
                except Aborted as e:
                    err = RpcError(Code.ABORTED, f"sign aborted: {e}")
                    err.attempts = attempts  # type: ignore[attr-defined]
                    raise err from None
                except ProtocolAbort as e:
                    who = self.nodes[e.party].label if e.party in self.nodes else "unattributable"
                    err = RpcError(Code.ABORTED, f"sign aborted: {who}: {e.reason}")
                    err.attempts = attempts  # type: ignore[attr-defined]
                    raise err from None
                except Refused as e:
                    if e.code == Code.PERMISSION_DENIED and e.banned and not set(e.banned) & set(down):
                        for b in e.banned:  # a node refuses a banned peer for this key: leave it out
                            banned.add(b)
                            down[b] = f"{self.nodes[b].label}: banned for this key ({e.message})"
                        continue
                    err = RpcError(e.code, e.message)
                    err.attempts = attempts  # type: ignore[attr-defined]
                    raise err from None
                out = common_pb2.Signature(
                    r=sig.r.to_bytes(32, "big"), s=sig.s.to_bytes(32, "big"), recovery_id=sig.recovery_id, der=sig.der(),
                    public_key=sig.public_key.encode(),
                )
                log.info(
                    "request %s: signed with key %s by nodes %s in %.0f ms (%d attempt%s)",
                    rid, k.key_id.hex()[:16], list(signers), (time.perf_counter() - t0) * 1e3, attempts, "" if attempts == 1 else "s",
                )
                return out, signers, attempts

    # --- requests ----------------------------------------------------------------------------
    def GetRequest(self, req: coordinator_pb2.GetRequestRequest, ctx: Any) -> coordinator_pb2.RequestStatus:
        if not _REQUEST_ID.match(req.request_id):
            raise invalid("request_id", "must be 1-64 characters of [A-Za-z0-9._-]")
        r = self.db.get_request(req.request_id)
        if r is None:
            raise RpcError(Code.NOT_FOUND, f"request_id: unknown request {req.request_id!r}")
        out = coordinator_pb2.RequestStatus(
            request_id=r.request_id, kind=_KIND[r.kind], state=_STATE[r.state], key_id=r.key_id or b"", digest=r.digest or b"",
            derivation_path=r.path, error_code=r.error_code, error_message=r.error_message, signers=r.signers,
            created_unix_ms=r.created_ms, updated_unix_ms=r.updated_ms, attempts=r.attempts,
        )
        if r.signature:
            out.signature.CopyFrom(common_pb2.Signature.FromString(r.signature))
        if r.kind == "keygen" and r.key_id:
            k = self.db.get_key(r.key_id)
            if k is not None:
                out.key.CopyFrom(key_info(k))
        return out

    def ClusterStatus(self, req: coordinator_pb2.ClusterStatusRequest, ctx: Any) -> coordinator_pb2.ClusterStatusResponse:
        return coordinator_pb2.ClusterStatusResponse(
            threshold=self.cfg.threshold,
            parties=self.cfg.parties,
            nodes=[
                coordinator_pb2.NodeStatus(index=h.index, name=h.name, endpoint=h.endpoint, healthy=bool(h.healthy), last_error=h.last_error)
                for h in self.nodes.values()
            ],
        )
