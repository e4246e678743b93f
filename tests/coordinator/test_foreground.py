"""Foreground holds (coordinator.foreground) and the second health check before a foreground
operation fails for nodes judged down (coordinator.liveness); a background session never judges
a node's health (coordinator.relay.run_session ``judge=False``)."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest
from hypothesis import given, settings, strategies as st

from coordinator.foreground import Foreground
from coordinator.liveness import recheck
from coordinator.relay import NodesUnavailable, run_session
from mpcnet.wire.mpc.v1 import node_pb2
from tests.test_suite_settings import scaled

Code = grpc.StatusCode


class Err(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return ()


class Stub:
    """Health answers from a script: each call takes the next item (a response or an error)."""

    def __init__(self, *answers: node_pb2.NodeHealthResponse | Err) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def Health(self, req: node_pb2.NodeHealthRequest, **kw: Any) -> node_pb2.NodeHealthResponse:
        self.calls.append(kw)
        a = self.answers.pop(0)
        if isinstance(a, Err):
            raise a
        return a

    def StartSession(self, req: Any, **kw: Any) -> Any:
        raise Err(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")

    class AbortSession:  # abort_session calls .future(...).result(): nothing to do here
        @staticmethod
        def future(req: Any, **kw: Any) -> Any:
            return _Done()


class _Done:
    def result(self, timeout: float | None = None) -> None:
        return None


class Node:
    """What recheck and run_session read of a NodeHandle."""

    def __init__(self, index: int, stub: Stub, healthy: bool | None = True) -> None:
        self.index, self.stub, self.healthy = index, stub, healthy
        self.last_error = "" if healthy else "DEADLINE_EXCEEDED: Deadline Exceeded"
        self.inflight = 0

    @property
    def label(self) -> str:
        return f"node {self.index} (node-{self.index})"

    def mark_down(self, reason: str) -> None:
        self.healthy, self.last_error = False, reason

    def mark_up(self) -> None:
        self.healthy, self.last_error = True, ""


SERVING = node_pb2.NodeHealthResponse(serving=True)


# --- Foreground ------------------------------------------------------------------------------
def test_a_hold_covers_its_keys_and_nodes_until_it_ends_and_then_wakes_listeners() -> None:
    fg = Foreground()
    woken: list[int] = []
    fg.listen(lambda: woken.append(1))
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    with fg.hold("key operation a", keys=(k1,), nodes=(1, 2)):
        assert fg.key_held(k1) and not fg.key_held(k2)
        assert fg.nodes_held() == {1, 2} and fg.keys_held() == {k1}
        with fg.hold("keygen request r", nodes=(2, 3)):
            assert fg.nodes_held() == {1, 2, 3}
            assert [h.what for h in fg.holds()] == ["key operation a", "keygen request r"]
        assert fg.nodes_held() == {1, 2} and woken == [1]  # node 2 stays held by the first
    assert not fg.key_held(k1) and fg.nodes_held() == frozenset() and woken == [1, 1]


def test_a_hold_is_released_when_its_operation_raises_and_a_failing_listener_does_not_fail_it() -> None:
    fg = Foreground()
    fg.listen(lambda: (_ for _ in ()).throw(RuntimeError("listener bug")))
    with pytest.raises(ValueError), fg.hold("ceremony c", nodes=(3,)):
        raise ValueError("the operation failed")
    assert fg.holds() == []


def test_holds_from_many_threads_at_once_leave_nothing_held() -> None:
    fg = Foreground()
    ends: list[int] = []
    lock = threading.Lock()

    def ended() -> None:
        with lock:
            ends.append(1)

    fg.listen(ended)
    seen_inside: list[bool] = []
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(200):
            with fg.hold(f"op {i}", keys=(bytes([i]) * 32,), nodes=(i % 3 + 1,)):
                seen_inside.append(fg.key_held(bytes([i]) * 32) and (i % 3 + 1) in fg.nodes_held())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(seen_inside) and len(seen_inside) == 1600
    assert fg.holds() == [] and fg.nodes_held() == frozenset() and len(ends) == 1600


@settings(max_examples=scaled(50), deadline=None)
@given(st.lists(st.tuples(st.frozensets(st.integers(1, 5), max_size=3), st.booleans()), max_size=8))
def test_what_is_held_is_the_union_of_the_holds_in_progress(ops: list[tuple[frozenset[int], bool]]) -> None:
    """Holds entered in order and left in any order (each ``True`` leaves the newest at once):
    nodes_held is always the union of the holds still open."""
    fg = Foreground()
    open_: list[tuple[Any, frozenset[int]]] = []
    for nodes, leave in ops:
        cm = fg.hold("op", nodes=nodes)
        cm.__enter__()
        open_.append((cm, nodes))
        if leave:
            cm, _ = open_.pop()
            cm.__exit__(None, None, None)
        assert fg.nodes_held() == frozenset().union(*(n for _, n in open_))
    for cm, _ in reversed(open_):
        cm.__exit__(None, None, None)
    assert fg.nodes_held() == frozenset()


# --- liveness.recheck ------------------------------------------------------------------------
def test_a_node_that_answered_late_once_is_found_serving_and_marked_up() -> None:
    back: list[int] = []
    nodes = {1: Node(1, Stub()), 2: Node(2, Stub(SERVING), healthy=False)}
    assert recheck(nodes, [2], 4.0, back.append) == {}  # type: ignore[arg-type]
    assert nodes[2].healthy is True and nodes[2].last_error == "" and back == [2]
    assert nodes[2].stub.calls == [{"timeout": 4.0, "wait_for_ready": True}]  # the longer deadline, one call
    assert nodes[1].stub.calls == []  # only the nodes asked about


def test_a_node_down_or_not_serving_stays_down_with_the_reason() -> None:
    nodes = {
        1: Node(1, Stub(Err(Code.UNAVAILABLE, "connection refused")), healthy=False),
        2: Node(2, Stub(node_pb2.NodeHealthResponse(serving=False, reason="store cannot be written: disk\x1b[2J full")), healthy=False),
        3: Node(3, Stub(Err(Code.DEADLINE_EXCEEDED, "")), healthy=False),
    }
    back: list[int] = []
    still = recheck(nodes, [1, 2, 3, 9], 2.0, back.append)  # type: ignore[arg-type]
    assert still == {
        1: "UNAVAILABLE: connection refused",
        2: "NOT_SERVING: store cannot be written: disk\\x1b[2J full",  # a node's text, escaped
        3: "DEADLINE_EXCEEDED",
    }
    assert all(n.healthy is False for n in nodes.values()) and back == []
    assert nodes[2].last_error == still[2]


def test_a_node_judged_up_that_answers_not_serving_is_never_treated_as_up() -> None:
    nodes = {1: Node(1, Stub(node_pb2.NodeHealthResponse(serving=False)), healthy=True)}
    assert recheck(nodes, [1], 1.0) == {1: "NOT_SERVING: no reason given"}  # type: ignore[arg-type]
    assert nodes[1].healthy is False


# --- relay: background sessions never judge a node --------------------------------------------
@pytest.mark.parametrize("judge", [True, False])
def test_a_background_session_failure_leaves_the_judgement_to_the_probe(judge: bool) -> None:
    nodes = {1: Node(1, Stub()), 2: Node(2, Stub())}
    start = {i: node_pb2.StartSessionRequest(session_id=b"s" * 32) for i in nodes}
    with pytest.raises(NodesUnavailable) as ei:
        run_session(nodes, b"s" * 32, start, 1.0, judge=judge)  # type: ignore[arg-type]
    assert sorted(ei.value.failures) == [1, 2]  # the session fails the same way ...
    assert all(n.healthy is (not judge) for n in nodes.values())  # ... but only a foreground one marks them down
