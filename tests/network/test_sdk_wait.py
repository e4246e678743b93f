"""MpcClient.watch_sign_request / wait_sign_request against a scripted stub (no server): which
errors a watch resumes after, no state twice across resumes, and the user's timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from governance.approval import SigningRequest
from mpcnet.client.sdk import MpcClient, MpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2

S = coordinator_pb2
PENDING, SIGNING, DONE = S.SIGN_REQUEST_STATE_PENDING_APPROVAL, S.SIGN_REQUEST_STATE_SIGNING, S.SIGN_REQUEST_STATE_DONE
REQ = SigningRequest("r-1", b"\x01" * 32, b"\x02" * 32, (), "requester1", "", 1, 2**62, 1, bytes(32)).encode()


def info(state: int, updated: int) -> coordinator_pb2.SignRequestInfo:
    return coordinator_pb2.SignRequestInfo(request_id="r-1", state=state, request=REQ, updated_unix_ms=updated)


class Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Stream:
    """One scripted stream: messages, then an error or a normal end; ``hang`` blocks until the deadline."""

    def __init__(self, items: list[Any], timeout: float | None, hang: bool = False) -> None:
        self.items, self.timeout, self.hang = items, timeout, hang

    def __iter__(self) -> Iterator[coordinator_pb2.SignRequestInfo]:
        for x in self.items:
            if isinstance(x, Exception):
                raise x
            yield x
        if self.hang:
            assert self.timeout is not None
            time.sleep(self.timeout)
            raise Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def cancel(self) -> None:
        pass


class Stub:
    def __init__(self, script: list[tuple[list[Any], bool]]) -> None:
        self.script = list(script)
        self.timeouts: list[float | None] = []

    def WatchSignRequest(self, req: Any, timeout: float | None = None) -> Stream:
        self.timeouts.append(timeout)
        items, hang = self.script.pop(0)
        return Stream(items, timeout, hang)


def client(script: list[tuple[list[Any], bool]]) -> tuple[MpcClient, Stub]:
    c = MpcClient.__new__(MpcClient)
    c.timeout = 7.0  # the per-call deadline: must not bound a wait
    stub = Stub(script)
    c._stub = stub  # type: ignore[assignment]
    return c, stub


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mpcnet.client.sdk._WATCH_BACKOFF_S", (0.01, 0.02))


def test_a_watch_resumes_after_ended_streams_and_transport_errors_without_repeating_a_state() -> None:
    c, stub = client([
        ([info(PENDING, 1)], False),  # the server ended the stream (its lifetime)
        ([info(PENDING, 1), Failure(grpc.StatusCode.UNAVAILABLE, "Socket closed")], False),  # a restart
        ([Failure(grpc.StatusCode.UNAVAILABLE, "Connection refused")], False),
        ([Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many open streams (256); retry later")], False),
        ([info(PENDING, 1), info(SIGNING, 2), Failure(grpc.StatusCode.INTERNAL, "Received RST_STREAM")], False),
        ([info(SIGNING, 2), Failure(grpc.StatusCode.CANCELLED, "")], False),
        ([info(SIGNING, 2), info(DONE, 3)], False),
    ])
    seen = [(r.state, r.updated_unix_ms) for r in c.watch_sign_request("r-1")]
    assert seen == [("pending_approval", 1), ("signing", 2), ("done", 3)]
    assert stub.timeouts == [7.0] * 7 and not stub.script  # each stream: the per-call timeout; the wait: none


def test_wait_returns_the_final_state() -> None:
    c, _ = client([([info(PENDING, 1)], False), ([info(DONE, 2)], False)])
    assert c.wait_sign_request("r-1").state == "done"


def test_errors_before_the_first_answer_and_refusals_are_raised() -> None:
    c, _ = client([([Failure(grpc.StatusCode.UNAVAILABLE, "Connection refused")], False)])
    with pytest.raises(MpcError) as e:
        c.wait_sign_request("r-1")
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    c, _ = client([([info(PENDING, 1), Failure(grpc.StatusCode.PERMISSION_DENIED, "no")], False)])
    with pytest.raises(MpcError) as e:
        c.wait_sign_request("r-1")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    odd = Failure(grpc.StatusCode.INTERNAL, "Received RST_STREAM")
    c, _ = client([([info(PENDING, 1), odd], False)] + [([info(PENDING, 1), odd], False)] * 3)
    with pytest.raises(MpcError) as e:  # a fourth INTERNAL without a change in between is the server's answer
        c.wait_sign_request("r-1")
    assert e.value.code == grpc.StatusCode.INTERNAL


def test_the_users_timeout_ends_a_wait_with_the_state_it_is_still_in() -> None:
    c, stub = client([([info(PENDING, 1)], True)])
    t = time.monotonic()
    with pytest.raises(MpcError) as e:
        c.wait_sign_request("r-1", timeout=0.3)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert e.value.message == "request r-1 still pending_approval after 0.3 s"
    assert 0.25 < time.monotonic() - t < 2 and stub.timeouts[0] is not None and stub.timeouts[0] <= 0.3
    with pytest.raises(ValueError):
        next(c.watch_sign_request("r-1", timeout=0))


def test_a_watch_tells_on_retry_once_per_run_of_errors() -> None:
    # regression: a watch retried a coordinator that stays down forever without any sign of it
    c, _ = client([
        ([info(PENDING, 1), Failure(grpc.StatusCode.UNAVAILABLE, "Socket closed")], False),
        ([Failure(grpc.StatusCode.UNAVAILABLE, "Connection refused")], False),
        ([Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many open streams")], False),
        ([info(PENDING, 1), info(SIGNING, 2), Failure(grpc.StatusCode.UNAVAILABLE, "Socket closed")], False),
        ([info(DONE, 3)], False),
    ])
    told: list[str] = []
    assert c.wait_sign_request("r-1", on_retry=told.append).state == "done"
    assert told == ["UNAVAILABLE: Socket closed", "UNAVAILABLE: Socket closed"]  # once per outage, again after an answer
    c, _ = client([([Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many open streams")], False), ([info(DONE, 1)], False)])
    told.clear()
    assert c.wait_sign_request("r-1", on_retry=told.append).state == "done"
    assert told == ["RESOURCE_EXHAUSTED: too many open streams"]  # a full stream budget is said too


def test_a_coordinator_that_hangs_mid_wait_is_noticed_and_the_wait_resumes() -> None:
    # regression: a stream had no deadline without a user timeout, so a coordinator that stopped
    # answering without closing the connection (hung, SIGSTOPped, a paused VM) kept --wait silent
    # forever; each stream is one call now, bounded by the per-call timeout, and the wait resumes
    c, stub = client([
        ([info(PENDING, 1)], True),  # answered, then quiet until the per-call timeout: healthy, resumed silently
        ([info(PENDING, 1)], True),  # the same
        ([], True),  # no answer at all: the coordinator hangs (said once)
        ([], True),
        ([info(PENDING, 1), info(DONE, 2)], False),
    ])
    c.timeout = 0.2
    told: list[str] = []
    assert c.wait_sign_request("r-1", on_retry=told.append).state == "done"
    assert stub.timeouts == [0.2] * 5 and told == ["DEADLINE_EXCEEDED: Deadline Exceeded"]
    c, _ = client([([], True)])  # hung before its first answer: no answer in time
    c.timeout = 0.2
    with pytest.raises(MpcError) as e:
        c.wait_sign_request("r-1")
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
