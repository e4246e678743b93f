"""An in-process coordinator request lifecycle over real SQLite files, with crashes injected at
the write layer: :class:`World` builds :class:`coordinator.requests.SignRequests` with a real
:class:`coordinator.db.CoordinatorDb` and :class:`mpcnet.common.stores.audit.AuditLog` in a directory, a
fake clock and a fake signer that behaves like the nodes (a request is served at most once);
:meth:`World.restart` builds new objects over the same files and runs the recovery, as a
restarted ``mpc-coordinator`` does."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import coordinator.db as cdb
import coordinator.requests as creq
from coordinator.db import CoordinatorDb, KeyRecord
from coordinator.policies import PolicyBook
from coordinator.requests import SignRequests
from governance.approval import Decision, SigningRequest, sign_approval
from governance.audit import AuditEntry
from governance.policy import DEFAULT_SCOPE, KeyPolicy, PolicyChange, RateLimit, SignedPolicyChange, sign_policy_change
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2
from tests.governance.gov_util import ADMIN_KEYS, APPROVER_KEYS, KEY_ID, admin_set, raw

T0_MS = 1_800_000_000_000
TTL_S = 60
APPROVERS = ("alice", "bert", "carol")
IDENTITY = Ed25519PrivateKey.generate()


class Crash(BaseException):
    """The process dies here (a BaseException, so no ``except Exception`` handler survives it)."""


class Faults:
    """Counts write transactions; the ``countdown``-th next one crashes, before it commits or
    (``after``) just after; once crashed, every write crashes."""

    def __init__(self) -> None:
        self.countdown: int | None = None
        self.after = False
        self.crashed = False

    def arm(self, k: int, after: bool) -> None:
        self.countdown, self.after = k, after

    @contextlib.contextmanager
    def write(self, inner: Callable[[], Any]) -> Iterator[Any]:
        if self.crashed:
            raise Crash("already dead")
        fire = False
        if self.countdown is not None:
            self.countdown -= 1
            fire = self.countdown == 0
        if fire and not self.after:
            self.crashed = True
            raise Crash("before commit")
        with inner() as c:
            yield c
        if fire:
            self.crashed = True
            raise Crash("after commit")


class Clock:
    def __init__(self) -> None:
        self.ms = T0_MS

    def __call__(self) -> int:
        return self.ms


class FaultyDb(CoordinatorDb):
    def __init__(self, path: Path, faults: Faults) -> None:
        self.faults = faults
        super().__init__(path)
        self._conn.execute("PRAGMA synchronous = OFF")  # in-process crashes: no fsync needed, and fast

    def _tx(self) -> Any:
        return self.faults.write(super()._tx)


class InlineRequests(SignRequests):
    """Signing runs when the test says so (``World.sign_next``), not in a thread."""

    queue: list[str]

    def _spawn(self, rid: str) -> None:
        self.queue.append(rid)


def default_policy() -> KeyPolicy:
    return KeyPolicy(
        version=1, approvers={n: raw(APPROVER_KEYS[n]) for n in APPROVERS}, approval_quorum=2,
        requesters=frozenset({"req-1"}), ttl_seconds=TTL_S, rate_limit=RateLimit(max_signatures=50, window_seconds=3600),
    )


def initial_change() -> SignedPolicyChange:
    change = PolicyChange(DEFAULT_SCOPE, default_policy(), None, admin_set().digest())
    return SignedPolicyChange(change, tuple(sign_policy_change(change, n, ADMIN_KEYS[n]) for n in ("ada", "bob")))


class FakeNodes:
    """The signer: like the nodes, it serves a request once (a retry is refused as a replay)
    and only with the quorum of approvals the coordinator stored."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.served: dict[str, common_pb2.Signature] = {}
        self.calls: dict[str, int] = {}

    def __call__(
        self, rid: str, key: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes
    ) -> tuple[common_pb2.Signature, tuple[int, ...], int]:
        rec = self.world.db.get_sign_request(rid)
        assert rec is not None and rec.state == "signing", f"signer called for {rid} in state {rec and rec.state}"
        approvals = [a for a in self.world.db.approvals(rid) if a.decision == "approve"]
        assert len(approvals) >= 2, f"signer called for {rid} without a quorum"
        self.calls[rid] = self.calls.get(rid, 0) + 1
        if rid in self.served:
            err = RpcError(grpc.StatusCode.FAILED_PRECONDITION, f"request {rid} already served (replay)")
            err.governance = "served"  # type: ignore[attr-defined]
            raise err
        h = hashlib.sha256(rid.encode()).digest()
        sig = common_pb2.Signature(r=h, s=hashlib.sha256(h).digest())
        self.served[rid] = sig
        return sig, (1, 2), 1


class World:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.clock = Clock()
        self.nodes = FakeNodes(self)
        self._saved = (cdb.now_ms, creq.now_ms)
        cdb.now_ms = self.clock  # type: ignore[assignment]
        creq.now_ms = self.clock  # type: ignore[assignment]
        self.faults = Faults()
        self.db: FaultyDb
        self.audit: AuditLog
        self.requests: InlineRequests
        self._open()
        self.db.add_key(KeyRecord(KEY_ID, "k", b"\x02" * 33, b"\x00" * 32, 2, 3, "active", T0_MS, "keygen-1"))
        self.requests.recover()
        self.requests.resume()

    def _open(self) -> None:
        self.db = FaultyDb(self.dir / "coordinator.db", self.faults)
        self.audit = AuditLog.open(self.dir / "audit.db", component="coordinator", signing_key=IDENTITY, clock=self.clock)
        assert self.audit._conn is not None
        self.audit._conn.execute("PRAGMA synchronous = OFF")
        write = self.audit._write
        self.audit._write = lambda: self.faults.write(write)  # type: ignore[method-assign]
        policies = PolicyBook(admin_set(), initial_change(), self.db, self.audit, {})
        self.requests = InlineRequests(self.db, self.audit, policies, self.nodes, ("admin",))
        self.requests.queue = []
        self.policies = policies

    def close(self) -> None:
        self.requests.stop()
        self.db.close()
        self.audit.close()
        cdb.now_ms, creq.now_ms = self._saved  # type: ignore[assignment]

    def restart(self) -> None:
        """Drop every object (as a killed process would) and start over the same files."""
        self.requests.stop()
        self.db.close()
        self.audit.close()
        self.faults = Faults()
        self._open()
        self.requests.recover()
        self.requests.resume()

    # --- actions -----------------------------------------------------------------------------
    def submit(self, rid: str) -> coordinator_pb2.SignRequestInfo:
        req = coordinator_pb2.SubmitSignRequestRequest(
            key_id=KEY_ID, digest=hashlib.sha256(rid.encode()).digest(), description=f"pay {rid}", request_id=rid,
        )
        return self.requests.submit(req, "req-1", self.db.get_key)

    def decide(self, rid: str, approver: str, decision: Decision) -> coordinator_pb2.SignRequestInfo:
        rec = self.db.get_sign_request(rid)
        assert rec is not None
        a = sign_approval(SigningRequest.from_bytes(rec.request), approver, APPROVER_KEYS[approver], decision)
        pb = coordinator_pb2.DECISION_APPROVE if decision is Decision.APPROVE else coordinator_pb2.DECISION_REJECT
        req = coordinator_pb2.DecideSignRequestRequest(request_id=rid, approver=approver, decision=pb, signature=a.signature)
        return self.requests.decide(req, approver)

    def sign_next(self) -> str | None:
        if not self.requests.queue:
            return None
        rid = self.requests.queue.pop(0)
        with self.requests._lock:
            self.requests._signing.add(rid)
        self.requests._signing_thread(rid)
        return rid

    def entries(self, rid: str) -> list[AuditEntry]:
        return [e for e in self.audit.entries() if e.request_id == rid]
