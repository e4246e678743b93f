"""A key operation is not failed by a busy node's late health answer (coordinator.liveness), and
holds its key and nodes while its session runs so background refills stand aside
(coordinator.foreground). In-process nodes of a 2-of-3 cluster (tests.network.keyops_util).

* a node the background probe judged down (a late answer) is asked again with the longer
  deadline before a refresh fails: it answers serving, is marked up (and resynced), and the
  refresh is done;
* a node really down, or answering NOT_SERVING, still fails it, with the same message as
  before the second look;
* a reshare with enough dealers up asks nobody again (no wait for a dead node it can do without);
* while the session runs its key and nodes are held; after the operation nothing is, and a
  recorded operation not yet resumed after a restart marks its key busy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import DEFAULT_RECHECK_S, load_coordinator_config
from coordinator.keyops import KeyOperations
from governance.keyop import KeyOpKind
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.config import ConfigError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.network.keyops_util import Handle, close, dkg, operation, services

from .test_keyops_orchestration import Coordinator, Crash

N, T = 3, 2
FULL = (1, 2, 3)


class LiveHandle(Handle):
    """A handle whose health follows mark_down / mark_up, as a NodeHandle's does."""

    def mark_down(self, reason: str) -> None:
        self.healthy, self.last_error = False, reason

    def mark_up(self) -> None:
        self.healthy, self.last_error = True, ""


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("keyops-busy"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


@pytest.fixture
def coord(tmp_path: Path, lay: Layout, svcs: dict[int, NodeService]) -> Iterator[Coordinator]:
    c = Coordinator(tmp_path, lay, svcs, {i: LiveHandle(s) for i, s in svcs.items()})
    c.ops.recheck_s = 2.0
    yield c
    c.close()


def _key(coord: Coordinator) -> Any:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    return k


def _refresh(coord: Coordinator, k: Any, old_epoch: int = 0) -> str:
    signed = operation(coord.lay, coord.lay.governance()[0].digest(), k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T,
                       old_epoch=old_epoch, roster_version=coord.svcs[1].roster_state.version)
    return coord.ops.start(signed, "admin-quorum", "admin1", wait=True)


def _count_health(monkeypatch: pytest.MonkeyPatch, svc: NodeService, answer: node_pb2.NodeHealthResponse | None = None) -> list[int]:
    calls: list[int] = []
    real = svc.Health

    def health(req: node_pb2.NodeHealthRequest, ctx: Any) -> node_pb2.NodeHealthResponse:
        calls.append(1)
        return answer if answer is not None else real(req, ctx)

    monkeypatch.setattr(svc, "Health", health)
    return calls


def test_a_refresh_with_a_node_that_answered_its_probe_late_is_done(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    k = _key(coord)
    back: list[int] = []
    coord.ops.on_back = back.append
    calls = _count_health(monkeypatch, coord.svcs[2])
    coord.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")  # what the 1 s probe did while node 2 was busy
    op_id = _refresh(coord, k)
    st = coord.ops.get(op_id)
    assert st.state == "done", st.error
    assert calls == [1] and back == [2]  # asked once more; it was down, so it is resynced
    assert coord.handles[2].healthy is True and coord.db.key_epoch(k.key_id, N) == (1, FULL)


def test_a_refresh_with_a_node_really_down_fails_with_the_same_message(coord: Coordinator, caplog: pytest.LogCaptureFixture) -> None:
    k = _key(coord)
    coord.handles[2].mark_down("UNAVAILABLE: connection refused")
    coord.handles[2].down = True
    try:
        with caplog.at_level(logging.INFO, logger="coordinator.keyops"):
            op_id = _refresh(coord, k)
    finally:
        coord.handles[2].down = False
    st = coord.ops.get(op_id)
    assert st.state == "failed" and st.error == "a refresh needs the whole committee; unavailable: node(s) [2]"
    assert coord.handles[2].healthy is False and coord.handles[2].last_error == "UNAVAILABLE: node is down (test)"
    text = caplog.text
    assert "node(s) [2] were judged unavailable; asking them again" in text
    assert "node 2 (node-2) is still unavailable after a second health check: UNAVAILABLE: node is down (test)" in text
    assert coord.db.key_epoch(k.key_id, N) == (0, FULL)
    actions = [(e.action, e.outcome) for e in coord.audit.entries() if e.details.get("operation") == op_id]
    assert actions == [("key-operation", "started"), ("key-operation", "failed")]  # audited as before


def test_a_node_answering_not_serving_is_never_treated_as_up(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    k = _key(coord)
    _count_health(monkeypatch, coord.svcs[3], node_pb2.NodeHealthResponse(serving=False, reason="store cannot be written: full"))
    coord.handles[3].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    st = coord.ops.get(_refresh(coord, k))
    assert st.state == "failed" and st.error == "a refresh needs the whole committee; unavailable: node(s) [3]"
    assert coord.handles[3].last_error == "NOT_SERVING: store cannot be written: full"


def test_a_reshare_that_can_do_without_a_down_node_asks_nobody_again(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    k = _key(coord)
    calls = _count_health(monkeypatch, coord.svcs[3])
    coord.handles[3].mark_down("UNAVAILABLE: connection refused")
    signed = operation(coord.lay, coord.lay.governance()[0].digest(), k, kind=KeyOpKind.RESHARE, old=FULL, new=(1, 2), old_t=T,
                       new_t=T, roster_version=coord.svcs[1].roster_state.version)
    st = coord.ops.get(coord.ops.start(signed, "admin-quorum", "admin1", wait=True))
    assert st.state == "done", st.error
    assert calls == [] and coord.handles[3].healthy is False  # two dealers suffice: no wait on node 3


def test_the_session_holds_its_key_and_nodes_and_releases_them(coord: Coordinator) -> None:
    k = _key(coord)
    seen: list[tuple[frozenset[bytes], frozenset[int]]] = []
    ended: list[int] = []
    coord.ops.foreground.listen(lambda: ended.append(1))

    def at(point: str) -> None:
        if point in ("recorded", "round-1"):
            seen.append((coord.ops.busy_keys(), coord.ops.foreground.nodes_held()))

    coord.ops.fault = at
    assert coord.ops.get(_refresh(coord, k)).state == "done"
    assert seen == [(frozenset({k.key_id}), frozenset(FULL))] * 2
    assert coord.ops.busy_keys() == frozenset() and coord.ops.foreground.nodes_held() == frozenset() and ended == [1]


def _crash_when_recorded(point: str) -> None:
    """A fault hook: the coordinator dies right after recording the operation's session."""
    if point == "recorded":
        raise Crash(point)


def test_a_recorded_operation_marks_its_key_busy_until_it_ends(coord: Coordinator) -> None:
    """After a restart, before resume: the running row alone keeps the refiller off the key."""
    k = _key(coord)

    coord.ops.fault = _crash_when_recorded
    with pytest.raises(Crash):
        _refresh(coord, k)
    assert coord.ops.foreground.holds() == []  # the crash released the hold ...
    coord.restart()
    assert coord.ops.busy_keys() == frozenset({k.key_id})  # ... the durable row still marks the key busy
    coord.ops.resume(wait=True)
    assert coord.ops.busy_keys() == frozenset()  # resumed: it failed (no receipts) or finished; either way it ended


def _with(lay: Layout, tmp_path: Path, **keys: Any) -> Path:
    doc = json.loads(lay.coordinator_config.read_text()) | keys
    p = lay.coordinator_dir / f"config-{tmp_path.name}.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("value", [0, -1, 60.5, "5", True, float("inf")])
def test_a_bad_liveness_recheck_s_names_the_field(lay: Layout, tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match="liveness_recheck_s"):
        load_coordinator_config(_with(lay, tmp_path, liveness_recheck_s=value))


def test_the_service_wires_the_recheck_and_what_background_work_stands_aside_for(lay: Layout, tmp_path: Path) -> None:
    from coordinator.service import CoordinatorService

    assert load_coordinator_config(lay.coordinator_config).liveness_recheck_s == DEFAULT_RECHECK_S == 5.0
    cfg = load_coordinator_config(_with(lay, tmp_path, liveness_recheck_s=12.5))
    svc = CoordinatorService(dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db"), Ed25519PrivateKey.generate())
    try:
        assert isinstance(svc.keyops, KeyOperations) and svc.keyops.recheck_s == 12.5
        assert svc.keyops.on_back == svc._node_back and svc.foreground is svc.keyops.foreground
        nothing = (frozenset(), frozenset())
        assert svc.pools.deps.stand_aside() == nothing and svc.frost.deps.stand_aside() == nothing
        key = b"\x07" * 32
        with svc.foreground.hold("key operation x", keys=(key,), nodes=(2,)):
            held = (frozenset({key}), frozenset({2}))
            assert svc.pools.deps.stand_aside() == held and svc.frost.deps.stand_aside() == held
            svc.pools._wake.clear()
        assert svc.pools._wake.is_set()  # the refiller is woken when it ends
    finally:
        svc.stop()


def test_an_operation_whose_run_died_unexpectedly_does_not_keep_its_key_busy(coord: Coordinator, caplog: pytest.LogCaptureFixture) -> None:
    """A run that ended by an unexpected error leaves its row running until the next start
    resumes it; meanwhile nothing works on the key, and the refiller must not stand aside for it
    for the rest of the process (its pools would stay empty, every signature on the full protocol)."""
    k = _key(coord)

    def bug(point: str) -> None:
        if point == "recorded":
            raise RuntimeError("a bug")

    coord.ops.fault = bug
    signed = operation(coord.lay, coord.lay.governance()[0].digest(), k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T,
                       roster_version=coord.svcs[1].roster_state.version)
    with caplog.at_level(logging.ERROR, logger="coordinator.keyops"):
        op_id = coord.ops.start(signed, "admin-quorum", "admin1")  # in the background, as an approval does
        deadline = time.monotonic() + 30
        while "unexpected error" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "unexpected error" in caplog.text
    rec = coord.db.get_key_operation(op_id)
    assert rec is not None and rec.state == "running"  # resumed at the next start, as before
    assert coord.ops.foreground.holds() == [] and coord.ops.busy_keys() == frozenset()
    coord.ops.fault = None
    coord.restart()
    assert coord.ops.busy_keys() == frozenset({k.key_id})  # not yet resumed after the restart: busy again


def test_the_second_health_checks_verdict_stands_against_a_probe_landing_just_after(coord: Coordinator,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The health probe runs beside the operation: its 1 s call to the busy node, sent before the
    second check answered, times out just after and marks the node down again. The operation
    goes by the second check's answer (the reason it was asked), not by whichever verdict landed last."""
    import coordinator.keyops as keyops_mod

    k = _key(coord)
    real = keyops_mod.recheck

    def recheck(*a: Any, **kw: Any) -> dict[int, str]:
        still = real(*a, **kw)
        coord.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")  # the probe's late verdict
        return still

    monkeypatch.setattr(keyops_mod, "recheck", recheck)
    coord.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    st = coord.ops.get(_refresh(coord, k))
    assert st.state == "done", st.error


def test_busy_keys_reads_the_operations_table_again_only_after_a_row_changed_state(coord: Coordinator,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The refiller asks on every pass; key_operations only grows (a row per refresh, reshare and
    retry), so it is not scanned each time: only after an operation was recorded or ran."""
    k = _key(coord)
    reads: list[int] = []
    real = coord.db.list_key_operations

    def counted(*a: Any, **kw: Any) -> Any:
        if kw.get("states") == ("running",):
            reads.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(coord.db, "list_key_operations", counted)
    for _ in range(5):
        assert coord.ops.busy_keys() == frozenset()
    assert len(reads) == 1
    seen: list[frozenset[bytes]] = []
    coord.ops.fault = lambda point: seen.append(coord.ops.busy_keys()) if point == "recorded" else None
    assert coord.ops.get(_refresh(coord, k)).state == "done"
    assert seen == [frozenset({k.key_id})]
    n = len(reads)
    for _ in range(5):
        assert coord.ops.busy_keys() == frozenset()  # it ended: read once more, then kept
    assert len(reads) == n + 1


def test_an_operation_recorded_but_not_yet_running_marks_its_key_busy_after_a_cached_read(coord: Coordinator,
                                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    k = _key(coord)
    assert coord.ops.busy_keys() == frozenset()  # read and kept
    monkeypatch.setattr(coord.ops, "_spawn", lambda op_id, resuming=False: None)  # its thread not yet running
    signed = operation(coord.lay, coord.lay.governance()[0].digest(), k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T,
                       roster_version=coord.svcs[1].roster_state.version)
    coord.ops.start(signed, "admin-quorum", "admin1")
    assert coord.ops.busy_keys() == frozenset({k.key_id})


class FlushFailed(Exception):
    pass


def test_an_operation_whose_audit_flush_fails_at_start_still_runs(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded running means it must run: a failed flush of the queued audit entries (retried by
    the next flush) must not leave the operation idle with its key out of the refills."""
    k = _key(coord)

    def fail() -> None:
        raise FlushFailed("audit log unavailable")

    monkeypatch.setattr(coord.ops, "flush", fail)
    with pytest.raises(FlushFailed):
        _refresh(coord, k)
    monkeypatch.undo()
    ops = coord.db.list_key_operations()
    # its session ran (committing: the push's own flushes failed too; the sweep finishes it)
    assert len(ops) == 1 and ops[0].state in ("committing", "done", "failed"), ops[0].state
    assert coord.ops.busy_keys() == frozenset()


def test_resume_goes_on_past_an_operation_whose_proposal_cannot_be_settled(coord: Coordinator, monkeypatch: pytest.MonkeyPatch,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    k = _key(coord)

    coord.ops.fault = _crash_when_recorded
    with pytest.raises(Crash):
        _refresh(coord, k)
    coord.restart()
    resumed: list[str] = []
    monkeypatch.setattr(coord.ops, "_settle_proposal", lambda rec: (_ for _ in ()).throw(RuntimeError("store error")))
    monkeypatch.setattr(coord.ops, "run", lambda op_id, resuming=False: resumed.append(op_id) or "running")
    with caplog.at_level(logging.ERROR, logger="coordinator.keyops"):
        coord.ops.resume(wait=True)
    assert len(resumed) == 1  # still driven, although its proposal bookkeeping failed
    assert "could not be marked applied" in caplog.text


def test_a_refresh_that_fails_anyway_asks_nobody_again(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node 3 has no connection here, so the refresh cannot run whatever node 2 answers: no second
    check (no wait of up to liveness_recheck_s while the key and nodes are held)."""
    k = _key(coord)
    calls = _count_health(monkeypatch, coord.svcs[2])
    coord.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    h3 = coord.handles.pop(3)
    try:
        st = coord.ops.get(_refresh(coord, k))
    finally:
        coord.handles[3] = h3
    assert st.state == "failed" and st.error == "a refresh needs the whole committee; unavailable: node(s) [2, 3]"
    assert calls == []
