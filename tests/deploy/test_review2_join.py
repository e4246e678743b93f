"""Review 2 (issue 13): ``mpc-node join --roster FILE`` with a truncated roster chain.

Finding (not fixable off-line, low; mitigated): node 4 was added (roster v2) then revoked (v3).
Given the chain truncated to v2 (an earlier roster in which it was still active) join verifies
it (every change is admin-signed and the chain starts at the genesis) and writes the config: a
roster file carries no freshness. The running cluster refuses the node (the coordinator and the
other nodes hold v3), so it gains nothing. Join now prints the roster version and digest it
configured, to compare with the admins' ``mpc roster show``; the whole chain is refused
(revoked in the newest roster).
"""

from __future__ import annotations

import pytest

from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change
from mpcnet.client.cli_deploy import load_signing_key
from mpcnet.common.genesis import load_genesis
from tests.deploy.test_enrolment import World, built, node
from tests.deploy.test_node_add import history_adding_node_4, world, write_history

__all__ = ["built", "world"]


def _join(w: World, path: str) -> int:
    return node("join", "--dir", str(w.host("node-4")), "--genesis", str(w.ex / "genesis.json"),
                "--cert", str(w.cert("node-4")), "--ca", str(w.ex / "ca.pem"), "--roster", path)


def test_a_truncated_chain_is_reported_by_version_and_digest(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    history = history_adding_node_4(world)
    v2 = history[-1].change.new_roster
    change = RosterChange(revoke_node(v2, 4), v2.digest(), load_genesis(world.ex / "genesis.json").admin_set.digest())
    sigs = tuple(sign_roster_change(change, a, load_signing_key(world.host(a) / "signing.key")) for a in ("admin1", "admin2"))
    whole = [*history, SignedRosterChange(change, sigs)]
    capsys.readouterr()
    assert _join(world, str(write_history(world.ex / "whole.json", whole))) == 1
    assert "roster" in capsys.readouterr().err and not (world.host("node-4") / "config.json").exists()
    assert _join(world, str(write_history(world.ex / "truncated.json", history))) == 0
    out = capsys.readouterr().out
    assert f"roster version 2 (digest {v2.digest().hex()})" in out and "mpc roster show" in out
