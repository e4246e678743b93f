"""Presignature pools as the coordinator reports them (issue 14; README "Presignature pools").

A pool is one (key, epoch, derivation path, signer set): the DKLs23 presignatures the t nodes of
the signer set made together for that key at that epoch and path, kept on every one of them. The
coordinator refills it between ``refill_at`` and ``target`` while the nodes are idle and never
holds more than ``cap`` (ready + assigned + filling). Everything here is the coordinator's word
(untrusted): it tells how fast a request will be signed, never what may be signed (every node
re-checks the approvals of every request). The views are checked when built (exact lengths,
signer sets distinct and increasing, counts within their bounds), so a malformed answer is a
:class:`~mpcnet.client.errors.MpcError` DATA_LOSS naming the field, not a wrong terminal view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from mpcnet.client.errors import MpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2

KEY_ID_LEN = 32
MAX_POOLS_SHOWN = 256
"""The most pools a view keeps (a coordinator listing more is malformed: a pool per key, path
and signer set of a dev cluster is a few dozen)."""
_U32 = 2**32 - 1


def _bad(field: str, why: str) -> MpcError:
    return MpcError(grpc.StatusCode.DATA_LOSS, f"{field}: {why} (the coordinator sent a malformed pool status)")


@dataclass(frozen=True)
class PoolView:
    """One presignature pool. ``key_id`` 32 bytes; ``derivation_path`` BIP32 non-hardened indices
    (empty: the master key); ``signers`` roster indices, distinct and increasing; ``ready`` on
    every signer and free, ``assigned`` given to a request not yet done, ``filling`` in presign
    sessions now (all presignatures); ``target``/``refill_at``/``cap`` the coordinator's pool
    policy; ``used_total``/``discarded_total`` since the coordinator started."""

    key_id: bytes
    epoch: int
    derivation_path: tuple[int, ...]
    signers: tuple[int, ...]
    ready: int
    assigned: int
    filling: int
    target: int
    refill_at: int
    cap: int
    used_total: int = 0
    discarded_total: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_LEN:
            raise _bad("pools.key_id", f"must be {KEY_ID_LEN} bytes")
        if any(not 0 <= i < 2**31 for i in self.derivation_path):
            raise _bad("pools.derivation_path", "indices must be non-hardened (below 2**31)")
        if not self.signers or any(b <= a for a, b in zip(self.signers, self.signers[1:], strict=False)) or self.signers[0] < 1:
            raise _bad("pools.signers", "must be roster indices (>= 1), distinct and increasing")
        for name in ("epoch", "ready", "assigned", "filling", "target", "refill_at", "cap"):
            if not 0 <= getattr(self, name) <= _U32:
                raise _bad(f"pools.{name}", "must be a 32-bit count")

    @staticmethod
    def from_proto(p: coordinator_pb2.PoolStatus) -> PoolView:
        """The view of a ``PoolStatus``; DATA_LOSS naming the field when it is malformed."""
        return PoolView(
            bytes(p.key_id), p.epoch, tuple(p.derivation_path), tuple(p.signers), p.ready, p.assigned, p.filling,
            p.target, p.refill_at, p.cap, p.used_total, p.discarded_total,
        )

    @property
    def path_text(self) -> str:
        """``m`` or ``m/0/1``."""
        return "/".join(["m", *map(str, self.derivation_path)])

    @property
    def full(self) -> bool:
        """Whether the pool holds its target depth of ready presignatures."""
        return self.ready >= self.target

    def as_dict(self) -> dict[str, Any]:
        """Keys (stable): ``key_id`` (hex), ``epoch``, ``path`` (``m/0``), ``signers`` (roster
        indices), ``ready``, ``assigned``, ``filling``, ``target``, ``refill_at``, ``cap``,
        ``used_total``, ``discarded_total``."""
        return {
            "key_id": self.key_id.hex(), "epoch": self.epoch, "path": self.path_text, "signers": list(self.signers),
            "ready": self.ready, "assigned": self.assigned, "filling": self.filling, "target": self.target,
            "refill_at": self.refill_at, "cap": self.cap, "used_total": self.used_total,
            "discarded_total": self.discarded_total,
        }


@dataclass(frozen=True)
class PresignStatus:
    """Whether the coordinator keeps presignature pools (its config ``presign.enabled``) and the
    pools it keeps, in its order. A coordinator older than issue 14 reports neither: disabled,
    no pools."""

    enabled: bool
    pools: tuple[PoolView, ...] = ()

    @staticmethod
    def from_proto(st: coordinator_pb2.ClusterStatusResponse) -> PresignStatus:
        """From a ``ClusterStatusResponse``; DATA_LOSS for a malformed pool or more than
        :data:`MAX_POOLS_SHOWN` pools."""
        if len(st.pools) > MAX_POOLS_SHOWN:
            raise _bad("pools", f"more than {MAX_POOLS_SHOWN} pools listed")
        return PresignStatus(bool(st.presign_enabled), tuple(PoolView.from_proto(p) for p in st.pools))

    def of_key(self, key_id: bytes) -> tuple[PoolView, ...]:
        """The pools of one key."""
        return tuple(p for p in self.pools if p.key_id == key_id)

    def ready(self, key_id: bytes | None = None) -> int:
        """Ready presignatures, of one key or all."""
        return sum(p.ready for p in self.pools if key_id is None or p.key_id == key_id)

    def as_dict(self) -> dict[str, Any]:
        """``{"presign_enabled": bool, "pools": [PoolView.as_dict(), ...]}``."""
        return {"presign_enabled": self.enabled, "pools": [p.as_dict() for p in self.pools]}
