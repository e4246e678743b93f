"""Review 2 (issue 13): ``mpc policy attest --genesis`` against a coordinator that does not
answer ``GetRoster`` but stores the attestation.

Finding (fixed, medium): the client fell back to the genesis's nodes (roster version 1) and
exited 0: a node added after the genesis was never sent the attestation nor listed, and the
genesis nodes it could not reach were reported "relayed by the coordinator". A coordinator that
chooses to fail only ``GetRoster`` thus made the client skip nodes it could reach and report
success. Now the fallback still pushes to the genesis's nodes but adds a ``roster`` row that is
an error (exit 1): the nodes of the roster in force are unknown.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from mpcnet.client.errors import MpcError
from mpcnet.client.rosternodes import follow_verified_roster
from mpcnet.client.sdk import RELAYED, MpcClient


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "no route"


def _hostile_coordinator_client() -> MpcClient:
    """A client with the genesis's nodes node-1, node-2 (unreachable from here) whose
    coordinator fails GetRoster (UNAVAILABLE) but stores every attestation."""
    c = MpcClient.__new__(MpcClient)

    def roster() -> Any:
        raise MpcError(grpc.StatusCode.UNAVAILABLE, "GetRoster: down (on purpose)")

    def install(name: str) -> Any:
        def call(req: Any, timeout: float | None = None) -> Any:
            if name == "node-2":
                raise _RpcError(grpc.StatusCode.UNAVAILABLE)
            return SimpleNamespace(stored=True, status="confirmed", held_issued_at_ms=1)
        return call

    c.timeout = 5.0
    c._stub = SimpleNamespace(SubmitPolicyAttestation=lambda req, timeout=None: SimpleNamespace(stored=True))  # type: ignore[assignment]
    c.node_endpoints = {"node-1": "node-1:7001", "node-2": "node-2:7001"}
    c._node_stub = lambda name: SimpleNamespace(InstallPolicyAttestation=install(name))  # type: ignore[method-assign, return-value, assignment]
    c.roster = roster  # type: ignore[method-assign]
    return c


def test_a_coordinator_hiding_the_roster_does_not_make_attest_succeed(capsys: pytest.CaptureFixture[str]) -> None:
    c = _hostile_coordinator_client()
    extra = follow_verified_roster(c)
    out = {**c.send_attestation(SimpleNamespace(to_bytes=lambda: b"att", issued_at_ms=1)), **extra}  # type: ignore[arg-type]
    assert out["node-1"] == "confirmed" and out["node-2"] == RELAYED
    assert out["roster"].startswith("error: UNAVAILABLE"), out
    assert "added since the genesis" in out["roster"]
    assert "roster version 1" in capsys.readouterr().err


def test_the_verified_roster_adds_no_row() -> None:
    entry = SimpleNamespace(index=1, name="node-1", endpoint="h:1", active=True)
    c: Any = SimpleNamespace(node_endpoints={}, roster=lambda: SimpleNamespace(roster=SimpleNamespace(entries=(entry,))))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mpcnet.client.rosternodes.active_entries", lambda r: list(r.entries))
        assert follow_verified_roster(c) == {}
    assert c.node_endpoints == {"node-1": "h:1"}


def test_the_cli_exits_1_when_the_roster_was_not_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpcnet.client import cli

    c = _hostile_coordinator_client()
    signed: Any = SimpleNamespace(to_bytes=lambda: b"a", issued_at_ms=1)
    monkeypatch.setattr(c, "attest", lambda: c.send_attestation(signed), raising=False)
    ctx: Any = SimpleNamespace(obj=None)
    monkeypatch.setattr(cli, "_opts", lambda ctx: SimpleNamespace(genesis="genesis.json", cluster=None, json=False))
    extra = cli._follow_roster(ctx, c)
    outcomes = {**c.attest(), **extra}
    assert any(v.startswith("error") for v in outcomes.values())
