"""An in-memory fake of the coordinator's key lifecycle RPCs (issue 11) for SDK and CLI tests:
it keeps a signed roster history, one key, lifecycle proposals (applied at the admin quorum,
as the real coordinator does) and key operations that finish at once. ``evil`` hooks let a test
make it lie."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto_core.group import G
from crypto_core.keyshare import compute_key_id
from governance.keyop import SignedKeyOperation
from governance.policy import AdminSet, AdminSignature, require_admin_quorum
from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, sign_roster_change
from mpcnet.client.errors import MpcError
from mpcnet.client.identities import Identity
from mpcnet.client.sdk import MpcClient
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2
from tests.governance.gov_util import ADMIN_KEYS, admin_set

PUBLIC = (G * 12345).encode()
CHAIN_CODE = hashlib.sha256(b"chain").digest()
KEY_ID = compute_key_id(G * 12345, CHAIN_CODE)
S = coordinator_pb2.ProposalState


def raw_ed(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def node_keys(seed: int) -> tuple[Ed25519PrivateKey, bytes, bytes]:
    """(identity private key, X25519 public, fingerprint) of a test node."""
    ident = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"id%d" % seed).digest())
    enc = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"enc%d" % seed).digest()).public_key()
    return ident, enc.public_bytes(Encoding.Raw, PublicFormat.Raw), hashlib.sha256(b"cert%d" % seed).digest()


def entry(index: int, seed: int | None = None) -> RosterEntry:
    ident, enc, fp = node_keys(index if seed is None else seed)
    return RosterEntry(index, f"node-{index}", raw_ed(ident), enc, fp, f"localhost:{7000 + index}")


def sign_both(change: RosterChange) -> SignedRosterChange:
    return SignedRosterChange(change, tuple(sign_roster_change(change, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))


def first_history(n: int = 5) -> list[SignedRosterChange]:
    r = Roster(1, 0, tuple(entry(i) for i in range(1, n + 1)))
    return [sign_both(RosterChange(r, None, admin_set().digest()))]


class FakeCoordinator:
    """The lifecycle RPCs of mpc.v1.Coordinator, in memory (call them like a stub)."""

    def __init__(self, admins: AdminSet | None = None, n: int = 5, threshold: int = 3) -> None:
        self.admins = admins or admin_set()
        self.history = first_history(n)
        self.epoch, self.threshold, self.committee = 0, threshold, tuple(range(1, n + 1))
        self.public, self.chain_code = PUBLIC, CHAIN_CODE
        self.proposals: dict[str, coordinator_pb2.LifecycleProposal] = {}
        self.ops: dict[str, coordinator_pb2.KeyOperationStatus] = {}
        self.calls: list[str] = []
        self.evil: dict[str, Callable[[Any], Any]] = {}

    def __getattr__(self, name: str) -> Any:  # every RPC: record it, maybe lie
        impl = object.__getattribute__(self, "_" + name)

        def call(req: Any, timeout: float | None = None) -> Any:
            self.calls.append(name)
            out = impl(req)
            hook = self.evil.get(name)
            return hook(out) if hook else out

        return call

    # --- RPCs ---
    def _GetRoster(self, req: Any) -> Any:
        from mpcnet.wire.mpc.v1 import node_pb2

        return node_pb2.RosterHistory(signed_changes=[h.to_bytes() for h in self.history], governance_root=self.admins.digest())

    def _GetKey(self, req: Any) -> common_pb2.KeyInfo:
        if bytes(req.key_id) != KEY_ID:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "key_id: no such key")
        return common_pb2.KeyInfo(
            key_id=KEY_ID, public_key=self.public, chain_code=self.chain_code, threshold=self.threshold,
            parties=len(self.committee), status=common_pb2.KEY_STATUS_ACTIVE, epoch=self.epoch, committee=self.committee,
        )

    def _record(self, kind: str, signed: bytes, digest: bytes, proposer: str) -> coordinator_pb2.LifecycleProposal:
        pid = digest[:16].hex()
        p = coordinator_pb2.LifecycleProposal(
            proposal_id=pid, kind=kind, state=S.PROPOSAL_STATE_PENDING, signed=signed, proposer=proposer, admin_quorum=2,
        )
        self.proposals[pid] = p
        return self._maybe_apply(pid)

    def _ProposeRosterChange(self, req: Any) -> Any:
        s = SignedRosterChange.from_bytes(bytes(req.signed_change))
        return self._record("roster", s.to_bytes(), s.change.digest(), s.signatures[0].admin)

    def _ProposeKeyOperation(self, req: Any) -> Any:
        s = SignedKeyOperation.from_bytes(bytes(req.signed_operation))
        return self._record("key-operation", s.to_bytes(), s.operation.digest(), s.signatures[0].admin)

    def _GetLifecycleProposal(self, req: Any) -> Any:
        return self.proposals[req.proposal_id]

    def _ListLifecycleProposals(self, req: Any) -> Any:
        return coordinator_pb2.ListLifecycleProposalsResponse(proposals=list(self.proposals.values()))

    def _ApproveLifecycleProposal(self, req: Any) -> Any:
        p = self.proposals[req.proposal_id]
        sig = AdminSignature(req.admin, bytes(req.signature))
        if p.kind == "roster":
            rs = SignedRosterChange.from_bytes(bytes(p.signed))
            p.signed = SignedRosterChange(rs.change, (*rs.signatures, sig)).to_bytes()
        else:
            ks = SignedKeyOperation.from_bytes(bytes(p.signed))
            p.signed = SignedKeyOperation(ks.operation, (*ks.signatures, sig)).to_bytes()
        return self._maybe_apply(req.proposal_id)

    def _maybe_apply(self, pid: str) -> coordinator_pb2.LifecycleProposal:
        p = self.proposals[pid]
        if p.kind == "roster":
            rs = SignedRosterChange.from_bytes(bytes(p.signed))
            msg, sigs = rs.change.encode(), rs.signatures
        else:
            ks = SignedKeyOperation.from_bytes(bytes(p.signed))
            msg, sigs = ks.operation.encode(), ks.signatures
        try:
            require_admin_quorum(self.admins, msg, sigs)
        except Exception:
            return p
        p.state = S.PROPOSAL_STATE_APPLIED
        if p.kind == "roster":
            self.history.append(rs)
        else:
            op = ks.operation
            self.ops[pid] = coordinator_pb2.KeyOperationStatus(
                operation_id=pid, key_id=op.key_id, kind=op.kind.name.lower(), state="done", old_epoch=op.old_epoch,
                new_epoch=op.new_epoch, old_committee=op.old_committee, new_committee=op.new_committee,
                old_threshold=op.old_threshold, new_threshold=op.new_threshold, authorized_by="admin-quorum",
                signed_operation=ks.to_bytes(), attempts=1,
            )
            p.operations.append(pid)
            self.epoch, self.threshold, self.committee = op.new_epoch, op.new_threshold, op.new_committee
        return p

    def _GetKeyOperation(self, req: Any) -> Any:
        if req.operation_id not in self.ops:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "operation_id: no such key operation")
        return self.ops[req.operation_id]

    def _ListKeyOperations(self, req: Any) -> Any:
        ops = [o for o in self.ops.values() if not req.key_id or bytes(o.key_id) == bytes(req.key_id)]
        return coordinator_pb2.ListKeyOperationsResponse(operations=ops)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def admin_client(fake: FakeCoordinator, name: str = "ada") -> MpcClient:
    """An MpcClient talking to ``fake``, acting as admin ``name`` with the test admin set."""
    c = MpcClient.__new__(MpcClient)
    c.timeout = 5.0
    c._stub = fake  # type: ignore[assignment]
    c.identity = Identity(name, "admin", None, ADMIN_KEYS[name])  # type: ignore[arg-type]
    c.admin_set = admin_set()
    c.node_endpoints = {}
    return c


__all__ = ["FakeCoordinator", "MpcError", "admin_client", "entry", "first_history", "node_keys", "raw_ed", "sign_both"]


def _status(self: FakeCoordinator, req: Any) -> coordinator_pb2.ClusterStatusResponse:
    from governance.roster import verify_roster_history

    roster = verify_roster_history(self.admins, self.history)
    nodes = [coordinator_pb2.NodeStatus(index=e.index, name=e.name, endpoint=e.endpoint, healthy=e.active, revoked=not e.active,
                                        policies_synced=True, key_version=e.key_version) for e in roster.entries]
    running = [o for o in self.ops.values() if o.state not in ("done",)]
    return coordinator_pb2.ClusterStatusResponse(
        threshold=self.threshold, parties=len(self.committee), nodes=nodes, governance_root=self.admins.digest(),
        roster_version=roster.version, roster_epoch=roster.epoch, operations=running,
    )


FakeCoordinator._ClusterStatus = _status  # type: ignore[attr-defined]
