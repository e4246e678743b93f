"""The stream budget (mpcnet.common.streams) and the per-request change feed (coordinator.watch),
in process: a full budget answers RESOURCE_EXHAUSTED at once while unary calls keep their
threads, a stream open past its lifetime is cancelled, and a change wakes only its own watchers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from coordinator.watch import ChangeFeed
from mpcnet.common.rpc import RpcError, add_standard_services
from mpcnet.common.streams import StreamBudget

WORKERS = 1
LIMIT = 2


@pytest.fixture
def served() -> Iterator[tuple[int, StreamBudget]]:
    budget = StreamBudget(LIMIT, 1.0, grace_s=0.5)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS + LIMIT))
    add_standard_services(server, ["test.Service"], budget)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, budget
    server.stop(None)
    budget.close()


def _held(stop: threading.Event) -> Iterator[reflection_pb2.ServerReflectionRequest]:
    """One request, then the client keeps its side of the stream open until ``stop``."""
    yield reflection_pb2.ServerReflectionRequest(list_services="")
    stop.wait(30)


def test_a_full_budget_refuses_streams_at_once_and_unary_calls_keep_their_threads(served: tuple[int, StreamBudget]) -> None:
    port, budget = served
    stop = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        calls = [stub.ServerReflectionInfo(_held(stop), timeout=20) for _ in range(LIMIT)]
        try:
            for c in calls:
                assert next(c).HasField("list_services_response")  # open, each holding a server thread
            assert budget.open_count == LIMIT
            t = time.monotonic()
            with pytest.raises(grpc.RpcError) as e:
                list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many open streams (2); retry later" in (e.value.details() or "")
            health = health_pb2_grpc.HealthStub(ch)
            for _ in range(3):  # the one worker still serves unary calls
                resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)  # type: ignore[attr-defined]
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
            assert time.monotonic() - t < 3
            # past lifetime + grace the reaper cancels them, and their slots come back
            for c in calls:
                with pytest.raises(grpc.RpcError) as gone:
                    next(c)
                assert gone.value.code() == grpc.StatusCode.CANCELLED
            deadline = time.monotonic() + 3
            while budget.open_count and time.monotonic() < deadline:
                time.sleep(0.05)
            assert budget.open_count == 0
        finally:
            stop.set()
            for c in calls:
                c.cancel()


def test_slots_are_released_once() -> None:
    budget = StreamBudget(1, 5.0)

    class Ctx:
        def cancel(self) -> None:
            raise AssertionError("not past its lifetime")

    slot = budget.open(Ctx(), "m")  # type: ignore[arg-type]
    with pytest.raises(RpcError) as e:
        budget.open(Ctx(), "m")  # type: ignore[arg-type]
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.message == "m: too many open streams (1); retry later"
    slot.release()
    slot.release()
    assert budget.open_count == 0
    budget.open(Ctx(), "m").release()  # type: ignore[arg-type]
    budget.close()
    with pytest.raises(ValueError):
        StreamBudget(0)
    with pytest.raises(ValueError):
        StreamBudget(1, float("inf"))


def test_a_change_wakes_only_the_watchers_of_that_request() -> None:
    feed = ChangeFeed()
    with feed.subscribe("a") as a1, feed.subscribe("a") as a2, feed.subscribe("b") as b:
        for s in (a1, a2, b):
            s.clear()
        feed.publish("a")
        assert a1.wait(0) and a2.wait(0) and not b.wait(0)
        feed.publish("nobody-watches-this")
        a1.clear()
        feed.publish_all()
        assert a1.wait(0) and b.wait(0)
        assert feed.watching("a") == 2
    assert feed.watching("a") == 0 and feed.watching("b") == 0


def test_health_watches_take_slots_too(served: tuple[int, StreamBudget]) -> None:
    """Health Watch holds no thread, but each is an open RPC: unbounded, idle watches would fill
    the server's maximum_concurrent_rpcs and every other call would be refused."""
    port, budget = served
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        health = health_pb2_grpc.HealthStub(ch)
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20) for _ in range(LIMIT)]  # type: ignore[attr-defined]
        try:
            for w in watches:
                assert next(w).status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as e:
                next(health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5))  # type: ignore[attr-defined]
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status  # type: ignore[attr-defined]
            watches.pop().cancel()  # the slot comes back when the client leaves
            deadline = time.monotonic() + 3
            while budget.open_count == LIMIT and time.monotonic() < deadline:
                time.sleep(0.02)
            assert budget.open_count == LIMIT - 1
            watches.append(health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20))  # type: ignore[attr-defined]
            assert next(watches[-1]).status == health_pb2.HealthCheckResponse.SERVING
        finally:
            for w in watches:
                w.cancel()


class _Peer:
    """A servicer context as far as the budget looks at it: no certificate, a peer address."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer_identity_key(self) -> None:
        return None

    def peer(self) -> str:
        return self._peer

    def cancel(self) -> None:
        pass


def test_one_caller_holds_at_most_its_share_of_the_budget() -> None:
    budget = StreamBudget(4, 10.0, per_caller=2)
    try:
        a, b = _Peer("ipv4:127.0.0.1:1"), _Peer("ipv4:127.0.0.1:2")
        held = [budget.open(a, "W"), budget.open(a, "W")]  # type: ignore[arg-type]
        with pytest.raises(RpcError) as e:
            budget.open(a, "W")  # type: ignore[arg-type]
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "for ipv4:127.0.0.1:1 (2)" in e.value.message
        held += [budget.open(b, "W"), budget.open(b, "W")]  # type: ignore[arg-type]  # others still get theirs
        held.pop(0).release()
        held.append(budget.open(a, "W"))  # type: ignore[arg-type]  # a released slot is the caller's again
        assert budget.open_count == 4
        with pytest.raises(ValueError):
            StreamBudget(4, per_caller=5)
    finally:
        budget.close()


def test_health_watches_cancelled_while_the_status_changes_never_deadlock_the_server() -> None:
    """grpc_health's non-blocking Watch sent responses while holding its lock, and a cancelled
    watch's close callback, run by grpc's serving thread, waited for that lock while a send waited
    for the serving thread: server.stop() then hung for ever (a 15-minute hang of the suite).
    Watches are opened and cancelled while the status flips; the server stops promptly."""
    budget = StreamBudget(8, 5.0, grace_s=0.5)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS + 8))
    hs = add_standard_services(server, ["test.Service"], budget)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()

    def flip() -> None:
        serving = True
        while not stop.is_set():
            serving = not serving
            hs.set("", health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                watches = [health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5) for _ in range(6)]  # type: ignore[attr-defined]
                for w in watches:
                    with contextlib.suppress(grpc.RpcError, StopIteration):
                        next(w)
                for w in watches:
                    w.cancel()
            assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status  # type: ignore[attr-defined]
    finally:
        stop.set()
        flipper.join(5)
        stopped = threading.Event()
        threading.Thread(target=lambda: (server.stop(None).wait(), stopped.set()), daemon=True).start()
        assert stopped.wait(10), "server.stop() hung: a health watch deadlocked the server"
        budget.close()
