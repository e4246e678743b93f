"""``mpc policy attest`` where people cannot reach the nodes (issue 13): production network
policies let only the coordinator reach the nodes. A node this host cannot reach, while the
coordinator stored the attestation (and relays it), is ``unreachable (relayed by the
coordinator)`` and not a failure; a node that refuses the attestation, or an unreachable node
while the coordinator did not store it, is still an error (exit 1). With ``--genesis`` the client
pushes to the active nodes of the roster in force, verified against the genesis's admin set.
The end-to-end check (a stopped node, a node added after the genesis) is in test_node_add_e2e.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from mpcnet.client.errors import MpcError
from mpcnet.client.rosternodes import follow_verified_roster
from mpcnet.client.sdk import RELAYED, MpcClient


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _client(coordinator: bool | grpc.StatusCode, nodes: dict[str, grpc.StatusCode | None]) -> MpcClient:
    c = MpcClient.__new__(MpcClient)

    def submit(req: Any, timeout: float | None = None) -> Any:
        if isinstance(coordinator, grpc.StatusCode):
            raise _RpcError(coordinator, "down")
        return SimpleNamespace(stored=coordinator)

    def install(name: str) -> Any:
        def call(req: Any, timeout: float | None = None) -> Any:
            code = nodes[name]
            if code is not None:
                raise _RpcError(code, "policy_attestation: refused" if code is grpc.StatusCode.FAILED_PRECONDITION else "no route")
            return SimpleNamespace(stored=True, status="confirmed", held_issued_at_ms=0)
        return call

    c.timeout = 5.0
    c._stub = SimpleNamespace(SubmitPolicyAttestation=submit)  # type: ignore[assignment]
    c.node_endpoints = {n: f"{n}:7001" for n in nodes}
    c._node_stub = lambda name: SimpleNamespace(InstallPolicyAttestation=install(name))  # type: ignore[method-assign, return-value, assignment]
    return c


SIGNED: Any = SimpleNamespace(to_bytes=lambda: b"att", issued_at_ms=1)
U, D, R = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.FAILED_PRECONDITION


def _exit(outcomes: dict[str, str]) -> int:
    """What 'mpc policy attest' exits with (mpcnet.client.cli._report)."""
    return 1 if any(v.startswith("error") for v in outcomes.values()) else 0


@pytest.mark.parametrize(("coordinator", "nodes", "want", "code"), [
    (True, {"node-1": None, "node-2": U, "node-3": D}, {"node-1": "confirmed", "node-2": RELAYED, "node-3": RELAYED}, 0),
    (True, {"node-1": None, "node-2": R}, {"node-2": "error: FAILED_PRECONDITION: policy_attestation: refused"}, 1),
    (U, {"node-1": U}, {"coordinator": "error: UNAVAILABLE: down", "node-1": "error: UNAVAILABLE: no route"}, 1),
    (False, {"node-1": U}, {"coordinator": "holds a newer one", "node-1": "error: UNAVAILABLE: no route"}, 1),
])
def test_an_unreachable_node_is_relayed_a_refusing_one_fails(
    coordinator: bool | grpc.StatusCode, nodes: dict[str, grpc.StatusCode | None], want: dict[str, str], code: int,
) -> None:
    out = _client(coordinator, nodes).send_attestation(SIGNED)
    assert {k: out[k] for k in want} == want, out
    assert _exit(out) == code


def _entry(i: int, active: bool = True) -> Any:
    return SimpleNamespace(index=i, name=f"node-{i}", endpoint=f"node-{i}.mpc.test:7001", active=active)


def test_genesis_clients_push_to_the_active_nodes_of_the_verified_roster(capsys: pytest.CaptureFixture[str]) -> None:
    roster = SimpleNamespace(entries=(_entry(1), _entry(2, active=False), _entry(3), _entry(4)))
    c: Any = SimpleNamespace(node_endpoints={"node-1": "x", "node-2": "y", "node-3": "z"},
                             roster=lambda: SimpleNamespace(roster=roster))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mpcnet.client.rosternodes.active_entries", lambda r: [e for e in r.entries if e.active])
        follow_verified_roster(c)
    assert c.node_endpoints == {"node-1": "node-1.mpc.test:7001", "node-3": "node-3.mpc.test:7001", "node-4": "node-4.mpc.test:7001"}
    # an unreachable coordinator keeps the genesis's nodes (said on stderr); a roster that does not verify is an error
    def down() -> Any:
        raise MpcError(grpc.StatusCode.UNAVAILABLE, "down")

    c2: Any = SimpleNamespace(node_endpoints={"node-1": "x"}, roster=down)
    follow_verified_roster(c2)
    assert c2.node_endpoints == {"node-1": "x"} and "roster version 1" in capsys.readouterr().err

    def forged() -> Any:
        raise MpcError(grpc.StatusCode.DATA_LOSS, "roster: does not verify")

    with pytest.raises(MpcError):
        follow_verified_roster(SimpleNamespace(node_endpoints={}, roster=forged))
