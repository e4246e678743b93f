"""Issue 14 (lean path): ``DecideSignRequestRequest.wait_done_ms``. The deciding approval's
answer carries the end of the signing when it ends within the bound (no watch needed), SIGNING
once the bound passes, and the decision itself is verified, recorded and audited as without it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpc import StatusCode as Code

from coordinator.decide_wait import MAX_DECIDE_WAIT_MS, wait_until_ended
from coordinator.inputs import check_request
from coordinator.watch import ChangeFeed
from governance.approval import Decision, sign_approval
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2
from tests.coordinator.signreq_util import Harness
from tests.governance.gov_util import APPROVER_KEYS

S = coordinator_pb2


class Threaded(Harness):
    """The signer runs in its own thread (as in the coordinator), after ``release`` is set."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.release = threading.Event()
        self.release.set()
        self.threads: list[threading.Thread] = []
        self.sr._spawn = self._threaded  # type: ignore[method-assign]

    def _threaded(self, rid: str) -> None:
        def run() -> None:
            self.release.wait(10)
            self.sr._signing_thread(rid)

        t = threading.Thread(target=run, daemon=True)
        self.threads.append(t)
        t.start()

    def decide_waiting(self, rid: str, approver: str, wait_ms: int, ctx: Any = None) -> S.SignRequestInfo:
        sreq = self._requests[rid]
        a = sign_approval(sreq, approver, APPROVER_KEYS[approver], Decision.APPROVE)
        return self.sr.decide(
            S.DecideSignRequestRequest(
                request_id=rid, approver=approver, decision=S.DECISION_APPROVE, signature=a.signature, wait_done_ms=wait_ms,
            ),
            approver,
            ctx=ctx,
        )

    def submit(self, rid: str) -> Any:
        sreq = super().submit(rid)
        self._requests = getattr(self, "_requests", {})
        self._requests[rid] = sreq
        return sreq

    def close(self) -> None:
        self.release.set()
        for t in self.threads:
            t.join(5)
        super().close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Threaded]:
    harness = Threaded(tmp_path)
    yield harness
    harness.close()


def test_the_deciding_answer_carries_done_and_its_signature(h: Threaded) -> None:
    h.submit("w-1")
    first = h.decide_waiting("w-1", "alice", 2000)
    assert first.state == S.SIGN_REQUEST_STATE_PENDING_APPROVAL  # not the deciding one: answered at once
    done = h.decide_waiting("w-1", "bert", 2000)
    assert done.state == S.SIGN_REQUEST_STATE_DONE
    assert done.signature.r == b"\x01" * 32 and list(done.signers) == [1, 2]
    h.sr.flush_audit()
    log = [e.action for e in h.audit.entries() if e.request_id == "w-1"]
    assert log == ["sign-request", "sign-decision", "sign-decision", "sign-approved", "sign-done"]  # audited as without the wait


def test_without_wait_the_answer_is_signing_as_before(h: Threaded) -> None:
    h.release.clear()
    h.submit("w-2")
    h.decide_waiting("w-2", "alice", 0)
    assert h.decide_waiting("w-2", "bert", 0).state == S.SIGN_REQUEST_STATE_SIGNING
    h.release.set()


def test_a_signing_that_outlasts_the_bound_is_answered_signing_at_the_bound(h: Threaded) -> None:
    h.release.clear()  # the signer is held
    h.submit("w-3")
    h.decide_waiting("w-3", "alice", 150)
    t0 = time.monotonic()
    info = h.decide_waiting("w-3", "bert", 150)
    took = time.monotonic() - t0
    assert info.state == S.SIGN_REQUEST_STATE_SIGNING
    assert 0.14 <= took < 2.0, took
    h.release.set()
    h.threads[-1].join(5)
    assert h.db.get_sign_request("w-3").state == "done"  # type: ignore[union-attr]


def test_the_waiting_answer_is_built_once_however_often_the_request_changes(h: Threaded) -> None:
    """Wake-ups while SIGNING read the state only (issue 14, coordinator CPU): the view (record,
    approvals, protobuf) is built once, for the answer, and carries the end."""
    h.release.clear()  # the signer is held: the waiting decision sees SIGNING first
    h.submit("w-6")
    h.decide_waiting("w-6", "alice", 2000)
    built: list[str] = []
    real = h.sr.info

    def counted(rec: Any) -> S.SignRequestInfo:
        built.append(rec.state)
        return real(rec)

    h.sr.info = counted  # type: ignore[method-assign]

    def poke() -> None:  # changes that are not the end: each wakes the wait once
        for _ in range(5):
            time.sleep(0.02)
            h.sr._notify("w-6")
        h.release.set()

    threading.Thread(target=poke, daemon=True).start()
    done = h.decide_waiting("w-6", "bert", 3000)
    assert done.state == S.SIGN_REQUEST_STATE_DONE and done.signature.r == b"\x01" * 32
    assert built == ["done"]
    assert h.db.sign_request_state("w-6") == "done" and h.db.sign_request_state("nope") is None


def test_a_retried_decision_is_answered_at_once_with_the_state_then(h: Threaded) -> None:
    h.submit("w-4")
    h.decide_waiting("w-4", "alice", 2000)
    h.decide_waiting("w-4", "bert", 2000)
    t0 = time.monotonic()
    again = h.decide_waiting("w-4", "bert", 2000)  # a retry: the stored decision, no wait
    assert again.state == S.SIGN_REQUEST_STATE_DONE and time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("value", [MAX_DECIDE_WAIT_MS + 1, 2**32 - 1])
def test_a_wait_above_the_bound_is_invalid_argument_naming_the_field(value: int) -> None:
    msg = S.DecideSignRequestRequest(
        request_id="w-5", approver="alice", decision=S.DECISION_APPROVE, signature=b"\x00" * 64, wait_done_ms=value,
    )
    with pytest.raises(RpcError) as e:
        check_request(msg)
    assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("wait_done_ms:"), e.value.message
    check_request(S.DecideSignRequestRequest(
        request_id="w-5", approver="alice", decision=S.DECISION_APPROVE, signature=b"\x00" * 64, wait_done_ms=MAX_DECIDE_WAIT_MS,
    ))


def test_wait_until_ended_wakes_on_a_publish_and_stops_on_stop() -> None:
    feed, stop = ChangeFeed(), threading.Event()
    state = ["signing"]
    def finish() -> None:
        state[0] = "done"
        feed.publish("r")

    threading.Timer(0.05, finish).start()
    t0 = time.monotonic()
    assert wait_until_ended(feed, "r", lambda: state[0], lambda s: s == "done", 3000, stop) == "done"
    assert time.monotonic() - t0 < 2.0
    assert feed.watching("r") == 0  # the subscription is gone
    stop.set()
    t0 = time.monotonic()
    assert wait_until_ended(feed, "r", lambda: "signing", lambda s: s == "done", 3000, stop) == "signing"
    assert time.monotonic() - t0 < 1.0


def test_no_wait_when_every_slot_is_taken() -> None:
    feed, stop, slots = ChangeFeed(), threading.Event(), threading.BoundedSemaphore(1)
    assert slots.acquire(blocking=False)  # another decision waits
    t0 = time.monotonic()
    assert wait_until_ended(feed, "r", lambda: "signing", lambda s: s == "done", 3000, stop, slots=slots) == "signing"
    assert time.monotonic() - t0 < 1.0
    slots.release()
    assert wait_until_ended(feed, "r", lambda: "done", lambda s: s == "done", 3000, stop, slots=slots) == "done"
    assert slots.acquire(blocking=False)  # the wait gave its slot back


class _Call:
    """A stand-in for the RPC's context: active until :meth:`leave` (which runs the callbacks
    gRPC runs when a call ends)."""

    def __init__(self) -> None:
        self.active = True
        self.callbacks: list[Any] = []

    def is_active(self) -> bool:
        return self.active

    def add_callback(self, cb: Any) -> bool:
        self.callbacks.append(cb)
        return True

    def leave(self) -> None:
        self.active = False
        for cb in self.callbacks:
            cb()


def test_a_client_that_leaves_ends_the_wait_at_once() -> None:
    feed, stop, call = ChangeFeed(), threading.Event(), _Call()
    threading.Timer(0.05, call.leave).start()
    t0 = time.monotonic()
    assert wait_until_ended(feed, "r", lambda: "signing", lambda s: s == "done", 5000, stop, call) == "signing"
    assert time.monotonic() - t0 < 2.0  # not the 5 s bound
    assert feed.watching("r") == 0


def test_the_deciding_call_passes_its_context_to_the_wait(h: Threaded) -> None:
    h.release.clear()  # the signer is held: only the client leaving ends the wait before 5 s
    h.submit("w-ctx")
    h.decide_waiting("w-ctx", "alice", 5000)
    call = _Call()
    threading.Timer(0.1, call.leave).start()
    t0 = time.monotonic()
    info = h.decide_waiting("w-ctx", "bert", 5000, ctx=call)
    assert info.state == S.SIGN_REQUEST_STATE_SIGNING
    assert time.monotonic() - t0 < 2.5
    assert call.callbacks  # the wait registered its wake-up
    h.release.set()
    h.threads[-1].join(5)
    assert h.db.get_sign_request("w-ctx").state == "done"  # type: ignore[union-attr]
