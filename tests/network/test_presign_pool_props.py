"""Presignature pools on the node as a state machine (issue 14): fill, use, replay, reuse, crash
(the store reopened), crash after the consume commit, refresh (a real epoch commit) and ban, over
three in-process :class:`NodeService` instances and crypto_core.

Invariants after every step: each node's fresh presignatures of the key are exactly those the
model expects (none survives its epoch, a restart, a ban of a peer in its signer set, or its
use), and none is of an older epoch. Every signature combines under the coordinator's own
derived key and verifies under OpenSSL; no two signatures share r (no presignature signs twice).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.conftest import scaled

from .presign_util import Code, close, combine_verified, kind, presign, restart, run_session, service, share_of, sign_request

N, T = 3, 2
SETS = ((1, 2), (1, 3), (2, 3))


@dataclass
class _Cluster:
    lay: Layout
    svcs: dict[int, NodeService] = field(default_factory=dict)


_CLUSTER: list[_Cluster] = []


def _cluster() -> _Cluster:
    """One 2-of-3 cluster for every example (each example makes its own key)."""
    if not _CLUSTER:
        d = tempfile.mkdtemp(prefix="pool-props-")
        lay = prepare(Path(d), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
        c = _Cluster(lay, {i: service(lay, i) for i in range(1, N + 1)})
        _CLUSTER.append(c)

        def done() -> None:
            for s in c.svcs.values():
                with contextlib.suppress(Exception):
                    close(s)
            shutil.rmtree(d, ignore_errors=True)

        atexit.register(done)
    return _CLUSTER[0]


class _Crash(Exception):
    pass


class _CrashAfterConsume:
    path = None

    def at(self, point: str) -> None:
        if point == "presign-consumed":
            raise _Crash(point)

    def check(self, protocol: str, round: int) -> None:
        return None


class Pools(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.c = _cluster()
        self.info: dict[bytes, node_pb2.PresignatureInfo] = {}  # every presignature made
        self.held: dict[int, set[bytes]] = {i: set() for i in range(1, N + 1)}  # fresh on each node
        self.used: dict[bytes, tuple[node_pb2.SignPresignedRequest, dict[int, bytes]]] = {}
        self.rs: set[int] = set()
        self.epoch = 0
        self.bans: set[tuple[int, int]] = set()  # (the node that banned, the peer)

    @property
    def svcs(self) -> dict[int, NodeService]:
        return self.c.svcs

    @initialize()
    def make_key(self) -> None:
        res = run_session(self.svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"pools"))
        self.key = res[1].dkg_result
        for s in self.svcs.values():
            s.CommitKey(node_pb2.CommitKeyRequest(key_id=self.key.key_id, public_key=self.key.public_key), None)

    def _blocked(self, signers: tuple[int, ...]) -> bool:
        return any(i in signers and j in signers for i, j in self.bans)

    @rule(signers=st.sampled_from(SETS), count=st.integers(1, 3), path=st.sampled_from([(), (0,), (1, 2)]))
    def fill(self, signers: tuple[int, int], count: int, path: tuple[int, ...]) -> None:
        if self._blocked(signers):
            req = node_pb2.StartSessionRequest(session_id=os.urandom(32), presign=node_pb2.PresignParams(
                key_id=self.key.key_id, signers=list(signers), derivation_path=list(path), epoch=self.epoch, count=count))
            refused = 0
            for i in signers:
                try:
                    self.svcs[i].StartSession(req, None)
                except RpcError as e:
                    assert e.code == Code.PERMISSION_DENIED
                    refused += 1
            assert refused >= 1
            for i in signers:  # the started side's session is left to time out: abort it here
                self.svcs[i].AbortSession(node_pb2.AbortSessionRequest(session_id=req.session_id, reason="test"), None)
            return
        for p in presign(self.svcs, self.key, signers, path=path, count=count, epoch=self.epoch):
            assert p.presig_id not in self.info
            self.info[p.presig_id] = p
            for i in signers:
                self.held[i].add(p.presig_id)

    @property
    def usable(self) -> list[bytes]:
        """Presignatures fresh on every one of their signers."""
        return sorted(k for k, p in self.info.items() if all(k in self.held[i] for i in p.signers))

    def _sign(
        self, p: node_pb2.PresignatureInfo, req: node_pb2.SignPresignedRequest, answers: dict[int, node_pb2.SignPresignedResponse]
    ) -> None:
        shares = {i: share_of(self.svcs[i], r, p.presig_id) for i, r in answers.items()}
        sig = combine_verified(self.key, req, shares)
        assert sig.r not in self.rs, "a presignature signed twice (r reused)"
        self.rs.add(sig.r)
        for i in p.signers:
            self.held[i].discard(p.presig_id)
        self.used[p.presig_id] = (req, {i: r.share.SerializeToString() for i, r in answers.items()})

    @precondition(lambda self: bool(self.usable))
    @rule(data=st.data())
    def use(self, data: st.DataObject) -> None:
        p = self.info[data.draw(st.sampled_from(self.usable))]
        req = sign_request(self.c.lay, self.key, p)
        self._sign(p, req, {i: self.svcs[i].SignPresigned(req, None) for i in p.signers})

    @precondition(lambda self: bool(self.usable))
    @rule(data=st.data())
    def crash_after_consume(self, data: st.DataObject) -> None:
        p = self.info[data.draw(st.sampled_from(self.usable))]
        victim = data.draw(st.sampled_from(list(p.signers)))
        req = sign_request(self.c.lay, self.key, p)
        self.svcs[victim].faults = _CrashAfterConsume()  # type: ignore[assignment]
        try:
            self.svcs[victim].SignPresigned(req, None)
            raise AssertionError("the fault did not fire")
        except _Crash:
            pass
        self._restarted(victim)
        answers = {i: self.svcs[i].SignPresigned(req, None) for i in p.signers}
        assert answers[victim].replayed and not any(r.replayed for i, r in answers.items() if i != victim)
        self._sign(p, req, answers)

    @precondition(lambda self: bool(self.used))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        req, shares = self.used[data.draw(st.sampled_from(sorted(self.used)))]
        for i, share in shares.items():
            again = self.svcs[i].SignPresigned(req, None)
            assert again.replayed and again.share.SerializeToString() == share

    @precondition(lambda self: bool(self.used))
    @rule(data=st.data(), attempt=st.integers(1, 3))
    def reuse(self, data: st.DataObject, attempt: int) -> None:
        pid = data.draw(st.sampled_from(sorted(self.used)))
        req, shares = self.used[pid]
        other = sign_request(self.c.lay, self.key, node_pb2.PresignatureInfo(
            presig_id=pid, epoch=req.epoch, derivation_path=req.derivation_path, signers=req.signers), attempt=attempt)
        for i in shares:
            with pytest.raises(RpcError) as e:
                self.svcs[i].SignPresigned(other, None)
            assert kind(e.value) == "presig-used"

    def _restarted(self, i: int) -> None:
        restart(self.c.lay, self.svcs, i)
        self.held[i].clear()

    @rule(i=st.integers(1, N))
    def crash(self, i: int) -> None:
        self._restarted(i)

    @rule()
    def refresh(self) -> None:
        from .test_presign_pool_node import _refresh

        _refresh(self.c.lay, self.svcs, self.key, self.epoch)
        self.epoch += 1
        for held in self.held.values():
            held.clear()

    @rule(i=st.integers(1, N), j=st.integers(1, N))
    def ban(self, i: int, j: int) -> None:
        if i == j or (i, j) in self.bans:
            return
        self.svcs[i].bans.record(self.key.key_id, j, "test: property ban")
        self.bans.add((i, j))
        self.held[i] = {k for k in self.held[i] if j not in self.info[k].signers}

    @invariant()
    def stores_hold_exactly_the_model(self) -> None:
        if not hasattr(self, "key"):
            return
        for i, s in self.svcs.items():
            held = s.store.fresh_presignatures(self.key.key_id)
            assert {p.presig_id for p in held} == self.held[i], i
            assert all(p.epoch == self.epoch for p in held)


Pools.TestCase.settings = settings(
    max_examples=scaled(4), stateful_step_count=10, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
TestPools = Pools.TestCase
