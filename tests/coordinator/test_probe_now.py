"""A node that background work found unreachable is probed at once (coordinator/probe_now.py), not
judged by that work: a presign session, a pool reconcile or a FROST nonce refill failing with
UNAVAILABLE (connection refused) asks for THAT node's probe; a deadline (a busy node) asks for
nothing. The probe judges as the periodic one does (CoordinatorService.probe_one).

Before, a dead node stayed ``healthy`` until the next periodic probe and the pools kept trying it."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import coordinator.pool as pool_mod
from coordinator.config import load_coordinator_config
from coordinator.probe_now import ProbeNow
from coordinator.relay import NodesUnavailable, _classify
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from tests.network.keyops_util import CallError

from .frost_util import frost_cluster
from .pool_util import Cluster, cluster

Code = grpc.StatusCode


def _err(code: grpc.StatusCode, text: str = "x") -> grpc.RpcError:
    return CallError(RpcError(code, text))


# --- ProbeNow --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_one_probe_per_node_at_a_time_and_per_interval() -> None:
    gate = threading.Event()
    probed: list[int] = []

    def probe(i: int) -> None:
        probed.append(i)
        gate.wait(10)

    clock = Clock()
    p = ProbeNow(probe, min_interval_s=0.5, clock=clock)
    assert p.request(2) and p.request(3)
    clock.t += 1
    assert not p.request(2)  # still running: many sessions failing together cost one probe
    gate.set()
    assert p.wait_idle(5)
    assert sorted(probed) == [2, 3]
    clock.t += 0.1
    assert p.request(2)  # the last one ended and started 1.1 s ago
    assert p.wait_idle(5)
    assert not p.request(2)  # started 0 s ago
    clock.t += 0.5
    p.stop()
    assert not p.request(2) and sorted(probed) == [2, 2, 3]


def test_a_probe_that_raises_is_logged_and_the_node_can_be_probed_again(caplog: pytest.LogCaptureFixture) -> None:
    def probe(i: int) -> None:
        raise RuntimeError("boom")

    clock = Clock()
    p = ProbeNow(probe, clock=clock)
    with caplog.at_level(logging.ERROR, logger="coordinator.probe_now"):
        assert p.request(1) and p.wait_idle(5)
    assert "probing node 1 failed" in caplog.text
    clock.t += 1
    assert p.request(1) and p.wait_idle(5)


# --- who asks ---------------------------------------------------------------------------------------


def test_a_session_names_the_nodes_the_transport_found_unreachable_only() -> None:
    nodes: Any = {i: type("H", (), {"label": f"node {i}", "mark_down": lambda self, r: None})() for i in (1, 2, 3)}
    e = _classify(nodes, {1: _err(Code.UNAVAILABLE, "failed to connect: Connection refused"), 2: _err(Code.DEADLINE_EXCEEDED),
                          3: _err(Code.CANCELLED)}, "start", judge=False)
    assert isinstance(e, NodesUnavailable) and sorted(e.failures) == [1, 2, 3] and e.unreachable == (1,)


def _asking(c: Cluster) -> list[int]:
    asked: list[int] = []
    object.__setattr__(c.pools, "deps", dataclasses.replace(c.pools.deps, unreachable=asked.append))
    return asked


@pytest.mark.parametrize(("err", "asked"), [
    (NodesUnavailable({2: "node 2: UNAVAILABLE"}, "start", (2,)), [2]),
    (NodesUnavailable({2: "node 2: DEADLINE_EXCEEDED"}), []),  # a busy node: nothing asked, nothing judged
])
def test_a_presign_session_failing_for_an_unreachable_node_asks_for_its_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: NodesUnavailable, asked: list[int]
) -> None:
    c = cluster(tmp_path)
    got = _asking(c)

    def fail(*a: Any, **kw: Any) -> Any:
        assert kw.get("judge") is False  # the session itself still judges nobody
        raise err

    monkeypatch.setattr(pool_mod, "run_session", fail)
    assert c.pools.run_presign(c.key, (c.key.key_id, 0, (), (1, 2)), 4) == 0
    assert got == asked and c.nodes[2].healthy is True


@pytest.mark.parametrize(("code", "asked"), [(Code.UNAVAILABLE, [2]), (Code.DEADLINE_EXCEEDED, [])])
def test_a_reconcile_that_cannot_reach_a_node_asks_for_its_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: grpc.StatusCode, asked: list[int]
) -> None:
    c = cluster(tmp_path)
    got = _asking(c)

    def unreachable(*a: Any, **kw: Any) -> Any:
        raise _err(code)

    monkeypatch.setattr(c.stubs[2], "ListPresignatures", unreachable)
    assert c.pools.reconcile(c.nodes[2]) is False  # type: ignore[arg-type]
    assert got == asked and c.nodes[2].healthy is True


@pytest.mark.parametrize(("code", "asked"), [(Code.UNAVAILABLE, [3]), (Code.DEADLINE_EXCEEDED, [])])
def test_a_nonce_refill_that_cannot_reach_a_node_asks_for_its_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: grpc.StatusCode, asked: list[int]
) -> None:
    c = frost_cluster(tmp_path)
    got: list[int] = []
    object.__setattr__(c.signing, "deps", dataclasses.replace(c.signing.deps, unreachable=got.append))

    def unreachable(*a: Any, **kw: Any) -> Any:
        raise _err(code)

    monkeypatch.setattr(c.stubs[3], "MakeNonces", unreachable)
    assert c.signing.refill() > 0  # nodes 1 and 2 still made theirs
    assert got == asked and c.handles[3].healthy is True


# --- the service: wiring and the probe of one node -------------------------------------------------


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("probe-now"), 3, 2, scrypt_n=2**10, test_mode=True)


def test_the_service_probes_a_node_nobody_listens_for_at_once(lay: Layout, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The cluster is not running: node 2's endpoint refuses connections. One probe of node 2
    alone marks it down (within the probe's 1 s deadline) and the others are not asked."""
    from coordinator.service import PROBE_S, CoordinatorService

    cfg = load_coordinator_config(lay.coordinator_config)
    svc = CoordinatorService(dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db"), Ed25519PrivateKey.generate())
    try:
        assert svc.pools.deps.unreachable == svc.probe_now.request and svc.frost.deps.unreachable == svc.probe_now.request
        for h in svc.nodes.values():
            h.mark_up()
        t0 = time.monotonic()
        with caplog.at_level(logging.INFO, logger="coordinator"):
            assert svc.probe_now.request(2) and svc.probe_now.wait_idle(10)
        assert time.monotonic() - t0 < PROBE_S + 2
        assert svc.nodes[2].healthy is False and svc.nodes[2].last_error.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED"))
        assert svc.nodes[1].healthy is True and svc.nodes[3].healthy is True  # only the node asked about
        assert "node 2: a background session found it unreachable; probing it now" in caplog.text
        assert "node 2 (node-2): the probe a background session asked for found it unavailable" in caplog.text
    finally:
        svc.stop()
    assert not svc.probe_now.request(3)  # stopped: no more probes


def test_stop_waits_for_a_running_probe_and_it_judges_nothing(lay: Layout, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """p14e review: ``stop`` did not wait for a requested probe: it went on on closed channels and
    could judge (and resync) a node after the service stopped."""
    from coordinator.service import CoordinatorService

    cfg = load_coordinator_config(lay.coordinator_config)
    svc = CoordinatorService(dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db"), Ed25519PrivateKey.generate())
    for h in svc.nodes.values():
        h.mark_up()
    with caplog.at_level(logging.INFO, logger="coordinator"):
        assert svc.probe_now.request(2)
        svc.stop()
        assert svc.probe_now.wait_idle(0)  # stop returned after the probe ended
    assert svc.nodes[2].healthy is True  # the probe that straddled the stop judged nothing
    assert "probing node 2 failed" not in caplog.text
