"""When the nodes of a session answer with different rounds, the one blamed is the node that
left the protocol's sequence (every round's answer is the next round, 1 first), never the
lowest-round answer as such: a corrupted node answering a round *ahead* would otherwise get an
honest co-signer blamed and left out of the request (and could repeat it with every one)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.relay import Aborted, run_session
from mpcnet.wire.mpc.v1 import node_pb2


class _Call:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def __call__(self, req: Any, **_: Any) -> Any:
        return self.answer(req)

    def future(self, req: Any, **_: Any) -> Any:
        return SimpleNamespace(result=lambda timeout=None: None)


def _node(i: int, rounds: dict[int, int]) -> SimpleNamespace:
    """A node answering StartSession with round ``rounds[0]`` and round r's Step with ``rounds[r]``."""
    def start(req: Any) -> node_pb2.StepResponse:
        return node_pb2.StepResponse(session_id=req.session_id, round=rounds[0])

    def step(req: Any) -> node_pb2.StepResponse:
        return node_pb2.StepResponse(session_id=req.session_id, round=rounds[req.round])

    stub = SimpleNamespace(StartSession=_Call(start), Step=_Call(step), AbortSession=_Call(lambda r: None))
    return SimpleNamespace(index=i, stub=stub, inflight=0, label=f"node {i}", mark_up=lambda: None, mark_down=lambda r: None)


HONEST = {0: 1, 1: 2, 2: 3}


@pytest.mark.parametrize("corrupted", [{0: 2}, {0: 1, 1: 3}, {0: 1, 1: 1}, {0: 1, 1: 2, 2: 9}])
def test_the_node_out_of_sequence_is_blamed(corrupted: dict[int, int]) -> None:
    rounds = {**HONEST, **corrupted}
    for bad in (1, 2, 3):  # whichever index the corrupted node has
        nodes = {i: _node(i, rounds if i == bad else HONEST) for i in (1, 2, 3)}
        sid = b"\x01" * 32
        with pytest.raises(Aborted) as e:
            run_session(nodes, sid, {i: node_pb2.StartSessionRequest(session_id=sid) for i in nodes}, 1.0)  # type: ignore[arg-type]
        assert e.value.culprit == bad, (corrupted, bad, str(e.value))


FINISHED = -1


def _finishing_node(i: int, rounds: dict[int, int]) -> SimpleNamespace:
    node = _node(i, rounds)

    def step(req: Any) -> node_pb2.StepResponse:
        r = rounds[req.round]
        if r == FINISHED:
            return node_pb2.StepResponse(session_id=req.session_id, round=req.round, finished=True)
        return node_pb2.StepResponse(session_id=req.session_id, round=r)

    node.stub.Step = _Call(step)
    return node


SIGNING = {0: 1, 1: 2, 2: 3, 3: FINISHED}  # delivering round 3 (the release round) ends it


@pytest.mark.parametrize("corrupted", [{3: 4}, {2: FINISHED}])
def test_the_node_that_finishes_out_of_turn_is_blamed(corrupted: dict[int, int]) -> None:
    """At the release round every honest signer finishes; a corrupted one that answers another
    round instead (or finishes early) is the one blamed, not the honest ones that finished."""
    for bad in (1, 2):
        rounds = {**SIGNING, **corrupted}
        nodes = {i: _finishing_node(i, rounds if i == bad else SIGNING) for i in (1, 2)}
        sid = b"\x02" * 32
        with pytest.raises(Aborted) as e:
            run_session(nodes, sid, {i: node_pb2.StartSessionRequest(session_id=sid) for i in nodes}, 1.0, last_round=3)  # type: ignore[arg-type]
        assert e.value.culprit == bad, (corrupted, bad, str(e.value))
