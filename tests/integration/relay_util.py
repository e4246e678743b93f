"""Relaying sessions between real nodes from a test, with the coordinator's certificate: the
test plays the coordinator (honest, malicious or compromised)."""

from __future__ import annotations

from typing import Callable

import grpc

from proto.mpc.v1 import common_pb2, node_pb2

Inboxes = dict[int, list[common_pb2.Envelope]]


def route(resps: dict[int, node_pb2.StepResponse], among: list[int]) -> Inboxes:
    return {k: [e for i, r in resps.items() if i != k for e in r.envelopes if e.receiver in (0, k)] for k in among}


def start(nodes, sid: bytes, among: list[int], **params) -> dict[int, node_pb2.StepResponse]:
    req = node_pb2.StartSessionRequest(session_id=sid, **params)
    return {i: nodes[i].stub.StartSession(req, timeout=30) for i in among}


def step(nodes, sid: bytes, rnd: int, inboxes: Inboxes) -> dict[int, node_pb2.StepResponse | grpc.RpcError]:
    futs = {k: nodes[k].stub.Step.future(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), timeout=30) for k, inbox in inboxes.items()}
    out: dict[int, node_pb2.StepResponse | grpc.RpcError] = {}
    for k, f in futs.items():
        try:
            out[k] = f.result()
        except grpc.RpcError as e:
            out[k] = e
    return out


def run(nodes, sid: bytes, among: list[int], tamper: Callable[[int, Inboxes], None] | None = None, **params):
    """Relay a whole session; ``tamper(round, inboxes)`` may change the inboxes of a round.
    Returns the final answers, or the errors of the first round that failed."""
    resps = start(nodes, sid, among, **params)
    while not all(r.finished for r in resps.values()):
        rnd = next(iter(resps.values())).round
        inboxes = route(resps, among)
        if tamper:
            tamper(rnd, inboxes)
        out = step(nodes, sid, rnd, inboxes)
        errs = {k: v for k, v in out.items() if isinstance(v, grpc.RpcError)}
        if errs:
            for k in among:  # as the coordinator does: the others drop the session too
                nodes[k].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="test"), timeout=5)
            return errs
        resps = out  # type: ignore[assignment]
    return resps


