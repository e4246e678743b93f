"""Relaying sessions between real nodes from a test, with the coordinator's certificate: the
test plays the coordinator (honest, malicious or compromised)."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from mpcnet.wire.mpc.v1 import common_pb2, node_pb2

Inboxes = dict[int, list[common_pb2.Envelope]]
SIGN_RELEASE_ROUND = 3  # delivering the round-3 messages of a signing session releases the shares


def route(resps: dict[int, node_pb2.StepResponse], among: list[int]) -> Inboxes:
    return {k: [e for i, r in resps.items() if i != k for e in r.envelopes if e.receiver in (0, k)] for k in among}


def start(nodes, sid: bytes, among: list[int], **params) -> dict[int, node_pb2.StepResponse]:
    req = node_pb2.StartSessionRequest(session_id=sid, **params)
    return {i: nodes[i].stub.StartSession(req, timeout=30) for i in among}


def reserve_request(sid: bytes, sign: node_pb2.SignParams, attempt: int) -> node_pb2.ReserveSigningRequest:
    return node_pb2.ReserveSigningRequest(
        key_id=sign.key_id, request_id=sign.request_id, attempt=attempt, signers=sorted(sign.signers), session_id=sid,
        approval_bundle=sign.approval_bundle, digest=sign.digest, derivation_path=sign.derivation_path,
    )


def reserve(nodes, sid: bytes, sign: node_pb2.SignParams, attempt: int = 1, among: list[int] | None = None) -> list[bytes]:
    """Receipts of ``among`` (default: every node) reserving ``attempt`` for the session."""
    req = reserve_request(sid, sign, attempt)
    return [nodes[i].stub.ReserveSigning(req, timeout=30).receipt for i in (among or sorted(nodes))]


def step(nodes, sid: bytes, rnd: int, inboxes: Inboxes, **extra) -> dict[int, node_pb2.StepResponse | grpc.RpcError]:
    """Deliver a round; ``extra`` are further StepRequest fields (attempt, reservation_receipts)."""
    futs = {
        k: nodes[k].stub.Step.future(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox, **extra), timeout=30)
        for k, inbox in inboxes.items()
    }
    out: dict[int, node_pb2.StepResponse | grpc.RpcError] = {}
    for k, f in futs.items():
        try:
            out[k] = f.result()
        except grpc.RpcError as e:
            out[k] = e
    return out


def run(
    nodes, sid: bytes, among: list[int], tamper: Callable[[int, Inboxes], None] | None = None, *, attempt: int = 1,
    receipts: list[bytes] | None = None, **params,
):
    """Relay a whole session; ``tamper(round, inboxes)`` may change the inboxes of a round.
    A signing session reserves ``attempt`` on every node before the shares are released (as the
    coordinator does), unless ``receipts`` are given (sent as they are).
    Returns the final answers, or the errors of the first round that failed."""
    resps = start(nodes, sid, among, **params)
    while not all(r.finished for r in resps.values()):
        rnd = next(iter(resps.values())).round
        inboxes = route(resps, among)
        if tamper:
            tamper(rnd, inboxes)
        extra = {}
        if "sign" in params and rnd == SIGN_RELEASE_ROUND:
            got = reserve(nodes, sid, params["sign"], attempt) if receipts is None else receipts
            extra = {"attempt": attempt, "reservation_receipts": got}
        out = step(nodes, sid, rnd, inboxes, **extra)
        errs = {k: v for k, v in out.items() if isinstance(v, grpc.RpcError)}
        if errs:
            for k in among:  # as the coordinator does: the others drop the session too
                nodes[k].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="test"), timeout=5)
            return errs
        resps = out  # type: ignore[assignment]
    return resps


