"""``mpc-cluster add-node``'s preparation (mpcnet/cluster/addnode.py) on a real prepared cluster
directory, without processes: the next index, the node's keys, certificate and config with the
full verified roster history plus the change adding it, the topology bumped last, a repeated run
making the same change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, sign_roster_change, verify_roster_history
from mpcnet.client.identities import load_identity
from mpcnet.cluster.addnode import cert_fingerprint, make_node, next_index
from mpcnet.cluster.launcher import ClusterError, Layout, load_layout, prepare


def first_history(lay: Layout) -> list[SignedRosterChange]:
    """The genesis roster as mpc-cluster up writes it (DIR/roster.json), rebuilt independently."""
    entries = []
    for i in range(1, lay.nodes + 1):
        ks = json.loads((lay.node_dir(i) / "keystore.json").read_text())
        listen = json.loads(lay.node_config(i).read_text())["listen"]
        entries.append(RosterEntry(i, f"node-{i}", bytes.fromhex(ks["identity_public"]), bytes.fromhex(ks["encryption_public"]),
                                   cert_fingerprint(lay.cert(f"node-{i}").cert), "localhost:" + listen.rpartition(":")[2]))
    admin_set, _ = lay.governance()
    change = RosterChange(Roster(1, 0, tuple(entries)), None, admin_set.digest())
    admins = [load_identity(lay.dir, n) for n in ("admin1", "admin2")]
    return [SignedRosterChange(change, tuple(sign_roster_change(change, a.name, a.signing_key) for a in admins))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("c")
    prepare(d, 2, 2, scrypt_n=1024)
    return d


def test_make_node_enrols_the_next_index_with_the_full_history(cluster: Path) -> None:
    lay = load_layout(cluster)
    history = first_history(lay)
    admin_set, _ = lay.governance()
    current = verify_roster_history(admin_set, history)
    assert next_index(current) == 3
    enrol = make_node(lay, tuple(history), current)
    assert enrol.entry.index == 3 and enrol.entry.name == "node-3"
    cfg = json.loads(lay.node_config(3).read_text())
    assert cfg["index"] == 3 and cfg["name"] == "node-3" and cfg["tls"]["cert"].endswith("node-3.pem")
    assert cfg["listen"].rpartition(":")[2] == enrol.entry.endpoint.rpartition(":")[2]
    got = [SignedRosterChange.from_dict(d) for d in cfg["governance"]["roster_history"]]
    new = verify_roster_history(admin_set, got)
    assert new.version == 2 and new.entry(3) == enrol.entry and [e.index for e in new.entries] == [1, 2, 3]
    assert enrol.entry.tls_fingerprint == cert_fingerprint(lay.cert("node-3").cert)
    ks = json.loads((lay.node_dir(3) / "keystore.json").read_text())
    assert enrol.entry.identity_key.hex() == ks["identity_public"]
    assert load_layout(cluster).nodes == 3
    assert json.loads(lay.roster_path.read_text()) == cfg["governance"]["roster_history"]
    # a repeated run (e.g. after a crash before the change was applied) makes the same change
    again = make_node(load_layout(cluster), tuple(history), current)
    assert again.change.to_bytes() == enrol.change.to_bytes()
    # prepare() on the grown directory keeps working (mpc-cluster up on an existing DIR) and
    # writes the grown history into every config
    lay3 = prepare(cluster, 3, 2, scrypt_n=1024)
    assert lay3.nodes == 3 and lay3.node_config(3).exists()
    for i in (1, 2, 3):
        assert json.loads(lay3.node_config(i).read_text())["governance"]["roster_history"] == cfg["governance"]["roster_history"]
    assert history[0].to_dict() == json.loads(lay.roster_path.read_text())[0]  # the genesis prepare() made


def test_make_node_refuses_when_the_directory_and_the_roster_disagree(tmp_path: Path) -> None:
    prepare(tmp_path, 3, 2, scrypt_n=1024)
    lay = load_layout(tmp_path)
    history = first_history(lay)
    admin_set, _ = lay.governance()
    current = verify_roster_history(admin_set, history)
    two = Roster(1, 0, current.entries[:2])  # a roster that never enrolled node 3, while DIR runs 3 nodes
    with pytest.raises(ClusterError, match="disagree"):
        make_node(lay, (), two)
