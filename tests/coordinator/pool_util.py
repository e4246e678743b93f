"""Fake share-holder nodes for the coordinator's presignature pools (issue 14): each holds a real
key share (a cached deterministic DKG) and real presignatures (crypto_core PresignBatch), and
answers SignPresigned, ListPresignatures and DiscardPresignatures as the contract says (replay of
the same (request, attempt, presig_id), presig-used, presig-unknown), with injectable failures."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc

from coordinator.db import CoordinatorDb, KeyRecord
from coordinator.pool import PoolDeps, PresignPools
from coordinator.pool_config import PresignConfig
from coordinator.pool_store import PresigRow
from coordinator.presigned import PresignedDeps, PresignedSigning
from coordinator.relay import NodeHandle
from crypto_core.bip32 import derive
from crypto_core.keyshare import KeyShare
from crypto_core.local import run
from crypto_core.rng import DeterministicRng
from crypto_core.sign import BatchConfig, Presignature, PresignBatch
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2

from ..crypto.dkg_util import keygen


class NodeError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, md: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(details)
        self._code, self._details, self._md = code, details, md

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._md


def refusal(kind: str, field_name: str = "presig_id") -> NodeError:
    return NodeError(grpc.StatusCode.FAILED_PRECONDITION, f"{field_name}: {kind}", (("mpc-governance", kind),))


@dataclass
class FakeNodeStub:
    """One node's pool RPCs. ``fail``: transient UNAVAILABLE answers still to give (before any
    work); ``lose_replies``: answers lost after the consume committed; ``refuse``: a governance
    kind to refuse every SignPresigned with."""

    index: int
    key: KeyShare
    fresh: dict[bytes, Presignature] = field(default_factory=dict)
    used: dict[bytes, tuple[str, int, bytes]] = field(default_factory=dict)
    fail: int = 0
    lose_replies: int = 0
    refuse: str = ""
    calls: list[tuple[bytes, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def SignPresigned(self, req: node_pb2.SignPresignedRequest, **_: Any) -> node_pb2.SignPresignedResponse:
        with self.lock:
            self.calls.append((bytes(req.presig_id), req.request_id, req.attempt))
            if self.fail:
                self.fail -= 1
                raise NodeError(grpc.StatusCode.UNAVAILABLE, "connection refused")
            if self.refuse:
                raise refusal(self.refuse)
            pid = bytes(req.presig_id)
            if pid in self.used:
                rid, attempt, share = self.used[pid]
                if (rid, attempt) != (req.request_id, req.attempt):
                    raise refusal("presig-used")
                return self._answer(pid, share, replayed=True)
            pre = self.fresh.pop(pid, None)
            if pre is None:
                raise refusal("presig-unknown")
            pre.mark_used()
            share = pre.signature_share(
                bytes(req.digest), key_id=bytes(req.key_id), epoch=req.epoch, derivation_path=tuple(req.derivation_path),
                rerandomize=True,
            ).to_bytes(pid)
            self.used[pid] = (req.request_id, req.attempt, share)
            if self.lose_replies:
                self.lose_replies -= 1
                raise NodeError(grpc.StatusCode.UNAVAILABLE, "reply lost")
            return self._answer(pid, share, replayed=False)

    def _answer(self, pid: bytes, share: bytes, replayed: bool) -> node_pb2.SignPresignedResponse:
        env = common_pb2.Envelope(session_id=pid, round=4, sender=self.index, receiver=0, payload=share)
        return node_pb2.SignPresignedResponse(share=env, signer=self.index, replayed=replayed)

    def ListPresignatures(self, req: node_pb2.ListPresignaturesRequest, **_: Any) -> node_pb2.ListPresignaturesResponse:
        with self.lock:
            return node_pb2.ListPresignaturesResponse(
                presignatures=[
                    node_pb2.PresignatureInfo(
                        presig_id=p, key_id=pre.key_id, epoch=pre.epoch or 0, derivation_path=pre.derivation_path,
                        signers=pre.signers, big_r=pre.R.encode(), public_key=pre.public_key.encode(),
                    )
                    for p, pre in self.fresh.items()
                ],
                cap_per_key=64,
            )

    def DiscardPresignatures(self, req: node_pb2.DiscardPresignaturesRequest, **_: Any) -> node_pb2.DiscardPresignaturesResponse:
        with self.lock:
            n = 0
            for p in req.presig_ids:
                n += self.fresh.pop(bytes(p), None) is not None
            return node_pb2.DiscardPresignaturesResponse(discarded=n)


class FakeHandle:
    """What the pools read of a :class:`coordinator.relay.NodeHandle`."""

    def __init__(self, index: int, stub: Any) -> None:
        self.index = index
        self.name = f"node-{index}"
        self.stub = stub
        self.healthy: bool | None = True
        self.clock_suspect = ""
        self.inflight = 0
        self.last_error = ""

    @property
    def label(self) -> str:
        return f"node {self.index} ({self.name})"

    def mark_down(self, reason: str) -> None:
        self.healthy, self.last_error = False, reason

    def mark_up(self) -> None:
        self.healthy, self.last_error = True, ""


@dataclass
class Cluster:
    db: CoordinatorDb
    key: KeyRecord
    keys: dict[int, KeyShare]
    stubs: dict[int, FakeNodeStub]
    nodes: dict[int, FakeHandle]
    pools: PresignPools
    signing: PresignedSigning
    epoch: list[int]
    busy: list[bool]

    def presign(self, signers: tuple[int, ...], count: int, path: tuple[int, ...] = (), seed: bytes = b"pool") -> list[PresigRow]:
        """``count`` real presignatures on ``signers`` (fresh on each fake node), stored ready."""
        rows = make_presigs(self.keys, self.stubs, signers, count, path, seed)
        self.db.add_ready_presigs(rows, 1)
        return rows


def make_presigs(
    keys: dict[int, KeyShare], stubs: dict[int, FakeNodeStub], signers: tuple[int, ...], count: int, path: tuple[int, ...] = (),
    seed: bytes = b"pool",
) -> list[PresigRow]:
    session = (seed * 32)[:32]
    cfg = BatchConfig(session, signers, count, path)
    ps = {i: PresignBatch(keys[i], cfg, DeterministicRng(seed + bytes([i]))) for i in signers}
    run(ps)
    rows = []
    for k in range(count):
        first = ps[signers[0]].results[k]  # type: ignore[index]
        for i in signers:
            pre = ps[i].results[k]  # type: ignore[index]
            stubs[i].fresh[pre.sigid] = pre
        rows.append(PresigRow(
            first.sigid, first.key_id, first.epoch or 0, path, signers, first.R.encode(), first.public_key.encode(),
        ))
    return rows


def cluster(tmp_path: Path, *, t: int = 2, n: int = 3, enabled: bool = True, cfg: PresignConfig | None = None) -> Cluster:
    keys = keygen(t, n)
    k0 = keys[1]
    key = KeyRecord(k0.key_id, "k", k0.public_key.encode(), k0.chain_code, t, n, "active", 0, "r")
    db = CoordinatorDb(tmp_path / "coordinator.db")
    db.add_key(key)
    stubs = {i: FakeNodeStub(i, keys[i]) for i in range(1, n + 1)}
    nodes = {i: FakeHandle(i, stubs[i]) for i in stubs}
    epoch = [0]
    busy = [False]
    pools = PresignPools(
        cfg or PresignConfig(enabled=enabled),
        PoolDeps(db, lambda: cast("dict[int, NodeHandle]", nodes), lambda k: (epoch[0], tuple(range(1, n + 1)), set()),
                 lambda: busy[0], threading.BoundedSemaphore(4), 2.0),
    )
    stop = threading.Event()
    signing = PresignedSigning(PresignedDeps(pools, lambda *a: [], lambda: b"", 2.0, stop))
    return Cluster(db, key, keys, stubs, nodes, pools, signing, epoch, busy)


def derived(c: Cluster, path: tuple[int, ...] = ()) -> bytes:
    return derive(c.keys[1].public_key, c.keys[1].chain_code, path).public_key.encode()
