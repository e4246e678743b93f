"""Governance objects on the wire: policy states and audit pages (protobuf <-> governance)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import SupportsIndex, SupportsInt

from governance.digits import DECIMAL_RE
from governance.policy import DEFAULT_SCOPE, KeyPolicy, SignedPolicyChange
from mpcnet.common.rpc import invalid
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import governance_pb2

MAX_AUDIT_PAGE = 1000


def scope_name(scope: bytes) -> str:
    """``default`` or the key id in hex."""
    return "default" if scope == DEFAULT_SCOPE else scope.hex()


def policy_state(signed: SignedPolicyChange) -> governance_pb2.PolicyState:
    policy = signed.change.new_policy
    return governance_pb2.PolicyState(
        scope=signed.change.scope,
        version=policy.version,
        policy=policy.encode(),
        policy_digest=policy.digest(),
        signed_change=signed.to_bytes(),
    )


def policy_from_state(state: governance_pb2.PolicyState) -> KeyPolicy:
    """The policy a state carries (decoded strictly; its digest is recomputed, not trusted)."""
    return KeyPolicy.from_bytes(bytes(state.policy))


def _as_int(v: object) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**63 else -1
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("ascii", "replace")
    if isinstance(v, str):  # stored text: ASCII digits only (int() would read "\uff11" or " 1_0" as a number)
        digits = v.removeprefix("-")
        return int(v) if DECIMAL_RE.fullmatch(digits) and -(2**63) <= int(v) < 2**63 else -1
    if not isinstance(v, (SupportsInt, SupportsIndex)):
        return -1
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return -1


def _as_text(v: object) -> str:
    if isinstance(v, str):
        return v.encode("utf-8", "replace").decode("utf-8")
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return "" if v is None else str(v)


def _as_bytes(v: object) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8", "replace")
    return b"" if v is None else str(v).encode()


def audit_entries(rows: Iterable[Sequence[object]]) -> list[governance_pb2.AuditEntry]:
    """Stored audit rows (as :meth:`mpcnet.common.stores.audit.AuditLog.raw_rows` returns them) as protobuf.

    A row someone damaged is shipped as faithfully as the types allow, never repaired or
    dropped: the remote verifier must see it to name it.
    """
    out = []
    for r in rows:
        seq, ts, actor, action, rid, outcome, details, prev, ehash, sig = r
        out.append(
            governance_pb2.AuditEntry(
                seq=_as_int(seq), timestamp_ms=_as_int(ts), actor=_as_text(actor), action=_as_text(action),
                request_id=_as_text(rid), outcome=_as_text(outcome), details_json=_as_text(details),
                prev_hash=_as_bytes(prev), entry_hash=_as_bytes(ehash), signature=_as_bytes(sig),
            )
        )
    return out


def entry_rows(entries: Iterable[governance_pb2.AuditEntry]) -> list[tuple[object, ...]]:
    """The rows :func:`governance.audit.verify_entries` checks, from received entries."""
    return [
        (
            e.seq, e.timestamp_ms, e.actor, e.action, e.request_id, e.outcome, e.details_json,
            bytes(e.prev_hash), bytes(e.entry_hash), bytes(e.signature),
        )
        for e in entries
    ]


def audit_page(audit: AuditLog, after_seq: int, limit: int) -> governance_pb2.AuditPage:
    """One page of ``audit``, as stored (the node's and the coordinator's GetAuditLog)."""
    if after_seq < 0:
        raise invalid("after_seq", "must be >= 0")
    limit = MAX_AUDIT_PAGE if limit == 0 else min(limit, MAX_AUDIT_PAGE)
    head = audit.head()
    rows = audit.raw_rows(after_seq, limit)
    return governance_pb2.AuditPage(
        component=audit.component, public_key=audit.public_key, entries=audit_entries(rows),
        head_seq=0 if head is None else head[0],
    )
