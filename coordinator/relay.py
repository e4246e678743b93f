"""Relaying a protocol session between nodes: parallel fan-out per round, routing, failures.

The coordinator only moves envelopes: broadcasts go to every other participant, direct
envelopes only to their receiver. It checks the *shape* of what nodes return (sender, round,
receivers) so that a node misbehaving towards the relay is named, but it cannot read direct
payloads (encrypted end to end) and cannot forge or alter anything (signed end to end).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from coordinator.config import NodeEndpoint
from governance.text import escape
from mpcnet.common.clockskew import SkewSample
from mpcnet.common.rpc import CHANNEL_OPTIONS, status_of, trailing
from mpcnet.wire.mpc.v1 import node_pb2, node_pb2_grpc

log = logging.getLogger("coordinator.relay")

# a node that answers with one of these is down or lost the session: try other nodes
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class NodeHandle:
    """One long-lived channel and stub per node, plus what the coordinator knows of its health."""

    def __init__(self, ep: NodeEndpoint, creds: grpc.ChannelCredentials) -> None:
        self.index = ep.index
        self.name = ep.name
        self.endpoint = ep.endpoint
        self.channel = grpc.secure_channel(ep.endpoint, creds, options=CHANNEL_OPTIONS)
        self.stub = node_pb2_grpc.NodeStub(self.channel)
        self.healthy: bool | None = None  # None = not yet probed
        self.last_error = ""
        self.inflight = 0
        self.info: node_pb2.NodeInfo | None = None
        self.clock: SkewSample | None = None  # the last measurement of its clock (None = not yet)
        self.clock_suspect = ""  # why its clock is not trusted ("" = it is): signing leaves it out if it can

    @property
    def label(self) -> str:
        return f"node {self.index} ({self.name})"

    def mark_down(self, reason: str) -> None:
        if self.healthy is not False:
            log.warning("%s marked unavailable: %s", self.label, reason)
        self.healthy = False
        self.last_error = reason

    def mark_up(self) -> None:
        if self.healthy is False:
            log.info("%s is available again", self.label)
        self.healthy = True
        self.last_error = ""

    def close(self) -> None:
        self.channel.close()


@dataclass
class NodesUnavailable(Exception):
    """Nodes that are down or lost the session (the attempt may be retried without them)."""

    failures: dict[int, str]  # index -> "node i (name): what happened"
    phase: str = "step"  # "start" when the nodes failed to start the session
    # those the transport found unreachable (UNAVAILABLE: connection refused, no route), not merely
    # slow: background work asks for them to be probed now (coordinator/probe_now.py)
    unreachable: tuple[int, ...] = ()

    def __str__(self) -> str:
        return "; ".join(r for _, r in sorted(self.failures.items()))


@dataclass
class Aborted(Exception):
    """The protocol was aborted; ``culprit`` is the party at fault when known."""

    message: str
    culprit: int | None = None
    ban: bool = False
    reporter: int | None = None  # the node that aborted (None: the coordinator's own check)

    def __str__(self) -> str:
        return self.message


@dataclass
class Refused(Exception):
    """A node refused the request itself (bad argument, unknown or pending key, banned peer)."""

    code: grpc.StatusCode
    message: str
    banned: tuple[int, ...] = ()  # peers a node refuses for this key
    node: int | None = None  # the node that refused
    governance: str = ""  # a node's governance refusal kind (mpc-governance): served, stale-policy, ...

    def __str__(self) -> str:
        return self.message


@dataclass
class SessionStats:
    rounds: int = 0
    bytes_relayed: int = 0
    per_round_ms: list[float] = field(default_factory=list)


def fanout(
    calls: Mapping[int, tuple[Callable[..., Any], Any]], timeout: float, *, wait_for_ready: bool = False
) -> tuple[dict[int, Any], dict[int, grpc.RpcError]]:
    """Issue every call at once, then collect them all.

    The calls are blocking unary calls on the shared channels, run by a persistent thread pool:
    grpc's ``.future()`` starts a channel "spin" thread per call, which cost more than the call.
    ``wait_for_ready`` lets a call wait (up to ``timeout``) for a channel that is reconnecting,
    e.g. to a node that was just restarted; without it a call to a down node fails at once.
    The last call runs on the calling thread, after the others are handed to the pool (it
    would only wait for them: one thread hand-off fewer on the signing path).
    """

    def call(method: Callable[..., Any], req: Any) -> Any:
        return method(req, timeout=timeout, wait_for_ready=wait_for_ready)

    items = list(calls.items())
    futs = {i: _POOL.submit(call, method, req) for i, (method, req) in items[:-1]}
    ok: dict[int, Any] = {}
    errs: dict[int, grpc.RpcError] = {}
    raised: Exception | None = None  # the inline call's non-gRPC error: raised once the others ended
    if items:
        last, (method, req) = items[-1]
        try:
            ok[last] = call(method, req)
        except grpc.RpcError as e:
            errs[last] = e
        except Exception as e:
            raised = e
    for i, f in futs.items():
        try:
            ok[i] = f.result()
        except grpc.RpcError as e:
            errs[i] = e
    if raised is not None:
        raise raised
    order = [i for i, _ in items]  # the answers in the order of ``calls``, as before
    return {i: ok[i] for i in order if i in ok}, {i: errs[i] for i in order if i in errs}


_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="fanout")


def _index(text: str) -> bool:
    """Whether a node's metadata text is a party index: 1-5 ASCII digits (``str.isdigit`` alone
    also accepts '²', which ``int`` refuses, and other scripts' digits)."""
    return 1 <= len(text) <= 5 and text.isascii() and text.isdigit()


def _classify(nodes: Mapping[int, NodeHandle], errs: dict[int, grpc.RpcError], phase: str, judge: bool = True) -> Exception:
    down: dict[int, str] = {}
    unreachable: list[int] = []
    aborts: list[Aborted] = []
    refused: list[Refused] = []
    for i, e in sorted(errs.items()):
        code, details = status_of(e)
        h = nodes[i]
        if code == grpc.StatusCode.ABORTED:
            c = trailing(e, "mpc-culprit")
            culprit = int(c) if c and _index(c) and int(c) in nodes and int(c) != i else None
            aborts.append(Aborted(details, culprit, trailing(e, "mpc-ban") == "1", reporter=i))
        elif code in _RETRYABLE or (code == grpc.StatusCode.NOT_FOUND and phase == "step"):
            reason = f"{code.name}: {details}" if details else code.name
            if judge:
                h.mark_down(reason)
            down[i] = f"{h.label}: {reason}"
            if code == grpc.StatusCode.UNAVAILABLE:
                unreachable.append(i)
        else:
            b = trailing(e, "mpc-banned") or ""
            # a node's claim: only its co-signers in this session count (never an unknown index)
            claimed = {int(x) for x in b.split(",") if _index(x)}
            refused.append(
                Refused(code, details, tuple(sorted(j for j in claimed if j in nodes and j != i)), i, trailing(e, "mpc-governance") or "")
            )
    if aborts:
        return aborts[0]
    if refused:
        return refused[0]
    return NodesUnavailable(down, phase, tuple(unreachable))


def _check_output(sid: bytes, i: int, resp: node_pb2.StepResponse, participants: tuple[int, ...]) -> None:
    if resp.session_id != sid:
        raise Aborted(f"node {i} answered for another session", i)
    if resp.finished and not resp.envelopes:
        return
    seen_b = False
    seen_d: set[int] = set()
    for e in resp.envelopes:
        if e.sender != i:
            raise Aborted(f"node {i} returned an envelope claiming sender {e.sender}", i)
        if e.round != resp.round or e.session_id != sid:
            raise Aborted(f"node {i} returned an envelope for round {e.round} in its round-{resp.round} answer", i)
        if e.receiver == 0:
            if seen_b:
                raise Aborted(f"node {i} returned two round-{resp.round} broadcasts (equivocation)", i)
            seen_b = True
        else:
            if e.receiver == i or e.receiver not in participants or e.receiver in seen_d:
                raise Aborted(f"node {i} returned a round-{resp.round} direct message to party {e.receiver}", i)
            seen_d.add(e.receiver)


def wait_ready(nodes: list[NodeHandle], timeout: float) -> list[NodeHandle]:
    """The nodes whose channel becomes ready within ``timeout`` seconds (waited for in parallel)."""
    futs = {h.index: (h, grpc.channel_ready_future(h.channel)) for h in nodes}
    deadline = time.monotonic() + timeout
    ready = []
    for h, f in futs.values():
        try:
            f.result(timeout=max(0.0, deadline - time.monotonic()))
            ready.append(h)
        except grpc.FutureTimeoutError:
            f.cancel()
    return ready


def abort_session(nodes: Mapping[int, NodeHandle], sid: bytes, reason: str) -> None:
    """Best effort: tell every participant to drop the session (they would time out anyway)."""
    req = node_pb2.AbortSessionRequest(session_id=sid, reason=escape(reason)[:500])  # the node refuses control characters
    futs = [h.stub.AbortSession.future(req, timeout=2.0) for h in nodes.values()]
    deadline = time.monotonic() + 2.0
    for f in futs:
        with contextlib.suppress(Exception):
            f.result(timeout=max(0.0, deadline - time.monotonic()))


def run_session(
    nodes: Mapping[int, NodeHandle],
    sid: bytes,
    start: dict[int, node_pb2.StartSessionRequest],
    timeout: float,
    stats: SessionStats | None = None,
    wait_for_ready: bool = False,
    before_step: Callable[[int], dict[str, Any]] | None = None,
    last_round: int | None = None,
    judge: bool = True,
) -> dict[int, node_pb2.StepResponse]:
    """Run one protocol session among ``nodes`` to the end; returns every node's final answer.

    Raises :class:`NodesUnavailable`, :class:`Aborted` or :class:`Refused`; on any failure
    the other participants are told to drop the session. With ``wait_for_ready`` the start calls
    wait (up to ``timeout``) for nodes that are reconnecting instead of failing at once.
    ``before_step(round)`` is called before the messages of ``round`` are delivered and returns
    extra ``StepRequest`` fields for every participant (e.g. reservation receipts); it may raise
    the exceptions above to end the session. ``last_round`` (the round whose delivery ends the
    protocol, if the caller knows it) decides who is blamed when only some nodes finish.
    ``judge`` (default): a node that fails retryably is marked down, all are marked up at the end;
    background work (presign sessions) passes False and leaves the judgement to the health probe.
    """
    participants = tuple(sorted(nodes))
    for h in nodes.values():
        h.inflight += 1
    try:
        t0 = time.perf_counter()
        resps, errs = fanout(
            {i: (h.stub.StartSession, start[i]) for i, h in nodes.items()}, timeout, wait_for_ready=wait_for_ready
        )
        phase = "start"
        expected = 1  # the round of the messages the nodes' next answers must hold
        while True:
            if errs:
                raise _classify(nodes, errs, phase, judge)
            for i, r in resps.items():
                _check_output(sid, i, r, participants)
            if stats is not None:
                stats.rounds += 1
                stats.per_round_ms.append((time.perf_counter() - t0) * 1e3)
            finished = [i for i, r in resps.items() if r.finished]
            if len(finished) == len(resps):
                if judge:
                    for h in nodes.values():
                        h.mark_up()
                return resps
            if finished:
                # after the protocol's last round every node finishes; before it none does
                unfinished = [i for i in resps if i not in finished]
                odd = unfinished[0] if last_round is not None and expected - 1 == last_round else finished[0]
                raise Aborted(f"nodes {finished} finished while others did not (protocol desynchronised)", odd)
            rounds = {r.round for r in resps.values()}
            if len(rounds) != 1 or rounds != {expected}:
                # every answer is the next round (1 first): blame a node out of that sequence,
                # not the lowest answer (a node answering ahead would get an honest one blamed)
                odd = min((i for i, r in resps.items() if r.round != expected), default=min(resps))
                raise Aborted(f"nodes answered with rounds {sorted(rounds)}, expected round {expected}", odd)
            rnd = rounds.pop()
            expected = rnd + 1
            extra = before_step(rnd) if before_step is not None else {}
            calls = {}
            for k, h in nodes.items():
                inbox = [e for i, r in resps.items() if i != k for e in r.envelopes if e.receiver == 0 or e.receiver == k]
                if stats is not None:
                    stats.bytes_relayed += sum(len(e.payload) for e in inbox)
                calls[k] = (h.stub.Step, node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox, **extra))
            t0 = time.perf_counter()
            resps, errs = fanout(calls, timeout)
            phase = "step"
    except (Aborted, NodesUnavailable, Refused) as e:
        threading.Thread(target=abort_session, args=(nodes, sid, str(e)), daemon=True).start()
        raise
    finally:
        for h in nodes.values():
            h.inflight -= 1
