"""``mpc-cluster`` knows which nodes the roster revoked (issue 11): it reads the admin-signed
roster chain the coordinator and the nodes store (and ``DIR/roster.json``), keeps the longest
that verifies against the cluster's admin set, and then neither starts a revoked node at ``up``
(it would refuse to start) nor calls it a healthy member in ``status``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change
from mpcnet.client.identities import load_identity
from mpcnet.cluster import cli as cluster_cli
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.cluster.roster_view import revoked_names, roster_in_force


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("roster-view"), 3, 2, scrypt_n=2**10)


def _revocation(lay: Layout, index: int, signers: tuple[str, ...] = ("admin1", "admin2")) -> SignedRosterChange:
    first = SignedRosterChange.from_dict(json.loads(lay.roster_path.read_text())[0])
    prev = first.change.new_roster
    change = RosterChange(revoke_node(prev, index), prev.digest(), lay.governance()[0].digest())
    ids = [load_identity(lay.dir, n) for n in signers]
    return SignedRosterChange(change, tuple(sign_roster_change(change, i.name, i.signing_key) for i in ids))


def _store(path: Path, chain: list[SignedRosterChange]) -> None:
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE roster_changes (version INTEGER PRIMARY KEY, signed_change BLOB NOT NULL, installed_ms INTEGER)")
    con.executemany("INSERT INTO roster_changes VALUES (?, ?, 0)", [(i + 1, s.to_bytes()) for i, s in enumerate(chain)])
    con.commit()
    con.close()


def _info(lay: Layout) -> dict[str, object]:
    procs = [{"name": f"node-{i}", "endpoint": f"localhost:{i}", "pid": None} for i in range(1, lay.nodes + 1)]
    return {"nodes": procs, "coordinator": {"endpoint": "localhost:9", "pid": None}, "threshold": lay.threshold,
            "ca_cert": "", "certs": {}}


def test_the_genesis_roster_revokes_nobody(lay: Layout) -> None:
    r = roster_in_force(lay)
    assert r is not None and r.version == 1 and revoked_names(lay) == set()
    assert cluster_cli.cluster_shape(lay) == "2-of-3"


def test_a_revocation_stored_by_the_coordinator_is_seen_and_shown(lay: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    genesis = SignedRosterChange.from_dict(json.loads(lay.roster_path.read_text())[0])
    db = lay.coordinator_dir / "coordinator.db"
    _store(db, [genesis, _revocation(lay, 2)])
    try:
        assert revoked_names(lay) == {"node-2"}
        assert cluster_cli.cluster_shape(lay) == "2-of-2 (revoked, not started: node-2)"  # up's "ready:" line
        doc = cluster_cli.print_status(lay, _info(lay), as_json=False, probe=False)
        out = capsys.readouterr().out
        assert doc["roster"] == {"version": 2, "active": [1, 3], "revoked": [2]}
        assert "2-of-2 (roster version 2: nodes 1,3; revoked: 2)" in out and "node-2" in out and "REVOKED: not started" in out
        # a revoked node's process counts neither as a member nor as a failure
        doc["status"] = "running"
        for p in doc["processes"]:
            p["healthy"] = not p["revoked"]
        assert cluster_cli.status_ok(doc)
        doc["processes"][0]["healthy"] = False
        assert not cluster_cli.status_ok(doc)
    finally:
        db.unlink()


def test_a_chain_that_does_not_verify_is_ignored(lay: Layout) -> None:
    genesis = SignedRosterChange.from_dict(json.loads(lay.roster_path.read_text())[0])
    db = lay.node_dir(1) / "node.db"
    _store(db, [genesis, _revocation(lay, 3, ("admin1",))])  # one admin: below the quorum
    try:
        assert revoked_names(lay) == set() and roster_in_force(lay).version == 1  # type: ignore[union-attr]
        db.write_bytes(b"not a database")
        assert revoked_names(lay) == set()
    finally:
        db.unlink()
