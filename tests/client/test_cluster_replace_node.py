"""``mpc-cluster wipe-node`` / ``replace-node`` (mpcnet/cluster/replace.py) on a real prepared
cluster directory, without the cluster's processes: the wipe kills the holder of the node's data
directory and deletes its data, keys and certificate; ``up`` (prepare) recreates nothing of it;
the replacement gets fresh keys on the endpoint the roster names and an enrolment file; it is held
back until the roster names its keys, then activated with the verified chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from governance.roster import RosterChange, SignedRosterChange, rotate_keys, sign_roster_change, verify_roster_history
from mpcnet.client.identities import DEMO_IDENTITIES, load_identity
from mpcnet.cluster.addnode import cert_fingerprint
from mpcnet.cluster.cli import main as cluster_main
from mpcnet.cluster.launcher import ClusterError, Layout, child_env, info_doc, load_layout, prepare
from mpcnet.cluster.replace import activate, held_back, is_wiped, node_state, replace_node, wipe_node
from mpcnet.cluster.roster_view import history_in_force, roster_in_force
from mpcnet.common.datadir import lock_holder


def _holder(d: Path) -> subprocess.Popen[bytes]:
    """A process holding ``d``'s data-directory lock, as a running node does."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom mpcnet.common.datadir import hold_data_dirs\n"
            "with hold_data_dirs([Path(sys.argv[1])]):\n    print('held', flush=True)\n    time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(d)], env=child_env(), stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"held\n"
    return p


def _approve_rotation(lay: Layout, index: int, enrolment: Path) -> None:
    """What 'mpc node replace N --enrolment FILE' + approval leave in the cluster's roster chain,
    signed by the dev admins and appended to DIR/roster.json (one of the chain's sources)."""
    doc = json.loads(enrolment.read_text())
    history = list(history_in_force(lay))
    current = history[-1].change.new_roster
    new = rotate_keys(current, index, identity_key=bytes.fromhex(doc["identity_key"]),
                      encryption_key=bytes.fromhex(doc["encryption_key"]), tls_fingerprint=bytes.fromhex(doc["tls_fingerprint"]))
    admin_set, _ = lay.governance()
    change = RosterChange(new, current.digest(), admin_set.digest())
    admins = [load_identity(lay.dir, n) for n in ("admin1", "admin2")]
    history.append(SignedRosterChange(change, tuple(sign_roster_change(change, a.name, a.signing_key) for a in admins)))
    lay.roster_path.write_text(json.dumps([s.to_dict() for s in history]))


def test_officer_identities_are_made_with_the_officer_role(tmp_path: Path) -> None:
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024)
    officers = [n for n, role in DEMO_IDENTITIES if role == "officer"]
    assert officers == ["officer1", "officer2", "officer3"]
    for name in officers:
        ident = load_identity(lay.dir, name)
        assert (ident.name, ident.role) == (name, "officer")
    info = info_doc(lay, {}, None, "stopped")
    assert info["identities"]["officer2"]["role"] == "officer"


def test_wipe_then_replace_then_activate(tmp_path: Path) -> None:
    lay = prepare(tmp_path, 3, 2, scrypt_n=1024)
    old_entry = roster_in_force(lay).entry(3)  # type: ignore[union-attr]
    assert old_entry is not None
    port = json.loads(lay.node_config(3).read_text())["listen"].rpartition(":")[2]
    with pytest.raises(ClusterError, match="not wiped"):  # a live host is never overwritten
        replace_node(lay, 3)
    holder = _holder(lay.node_dir(3))
    try:
        doc = wipe_node(lay, 3)
        assert holder.wait(timeout=10) == -9  # SIGKILL: the host is gone, nothing flushed
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert doc["killed_pid"] == holder.pid and lock_holder(lay.node_dir(3)) is None
    assert {"keystore.json", "passphrase"} <= set(doc["deleted"])
    assert sorted(p.name for p in lay.node_dir(3).iterdir()) == ["config.json"]
    assert not lay.cert("node-3").cert.exists() and not lay.cert("node-3").key.exists()
    assert node_state(lay, 3) == "wiped" and held_back(lay) == {"node-3": "wiped"}
    # mpc-cluster up (prepare) recreates nothing of a wiped node, and cluster.json still renders
    prepare(tmp_path, 3, 2, scrypt_n=1024)
    assert sorted(p.name for p in lay.node_dir(3).iterdir()) == ["config.json"] and not lay.cert("node-3").cert.exists()
    assert "node-3" not in info_doc(lay, {}, None, "running")["audit"]
    assert wipe_node(lay, 3)["deleted"] == []  # a repeated wipe: nothing left to delete

    out = tmp_path / "enrol.json"
    r = replace_node(lay, 3, out=out)
    enrol = json.loads(out.read_text())
    assert enrol == {k: r[k] for k in ("index", "name", "identity_key", "encryption_key", "tls_fingerprint", "endpoint")}
    assert enrol["endpoint"] == old_entry.endpoint and enrol["endpoint"].endswith(":" + port)
    assert bytes.fromhex(enrol["identity_key"]) != old_entry.identity_key
    assert bytes.fromhex(enrol["encryption_key"]) != old_entry.encryption_key
    assert bytes.fromhex(enrol["tls_fingerprint"]) == cert_fingerprint(lay.cert("node-3").cert) != old_entry.tls_fingerprint
    cfg = json.loads(lay.node_config(3).read_text())
    assert cfg["listen"] == f"127.0.0.1:{port}" and cfg["index"] == 3
    assert node_state(lay, 3) == "replaced" and held_back(lay) == {"node-3": "replaced"}
    assert not activate(lay, 3)  # the roster does not name its keys yet
    assert replace_node(lay, 3, out=out)["identity_key"] == enrol["identity_key"]  # repeated: same keys

    _approve_rotation(lay, 3, out)
    assert node_state(lay, 3) == "ready" and held_back(lay) == {}
    with pytest.raises(ClusterError, match="already names"):
        replace_node(lay, 3, out=out)
    assert activate(lay, 3) and not is_wiped(lay, 3) and node_state(lay, 3) == "live"
    admin_set, _ = lay.governance()
    got = [SignedRosterChange.from_dict(d) for d in json.loads(lay.node_config(3).read_text())["governance"]["roster_history"]]
    e = verify_roster_history(admin_set, got).entry(3)
    assert e is not None and e.identity_key.hex() == enrol["identity_key"] and e.key_version == 2


def test_cli_wipe_and_replace_refuse_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(tmp_path, 2, 2, scrypt_n=1024)
    assert cluster_main(["wipe-node", "--dir", str(tmp_path), "3"]) == 2
    assert "nodes 1..2" in capsys.readouterr().err
    assert cluster_main(["replace-node", "--dir", str(tmp_path), "1"]) == 2
    assert "not wiped" in capsys.readouterr().err
    assert cluster_main(["wipe-node", "--dir", str(tmp_path), "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "node-2"
    t0 = time.monotonic()
    assert cluster_main(["replace-node", "--dir", str(tmp_path), "2", "--quiet"]) == 0
    assert time.monotonic() - t0 < 60
    out = capsys.readouterr().out
    assert "node-2 replaced" in out and "enrolment-node-2.json" in out
    assert (tmp_path / "enrolment-node-2.json").is_file()
    assert load_layout(tmp_path).nodes == 2
