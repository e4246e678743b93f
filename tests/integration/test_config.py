"""Config files: every error names the file and the field; bad configs stop a process cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coordinator.config import load_coordinator_config
from mpc_node.config import load_node_config
from mpcnet.cluster.launcher import child_env, dial_endpoint, prepare
from mpcnet.common.config import ConfigError
from mpcnet.common.pki import cert_hosts, issue_cert

from .conftest import TEST_SCRYPT_N


@pytest.fixture(scope="module")
def lay(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("cfg"), 3, 2, scrypt_n=TEST_SCRYPT_N)


def edited(path, tmp_path, change):
    doc = json.loads(path.read_text())
    change(doc)
    out = tmp_path / "config.json"
    out.write_text(json.dumps(doc))
    return out


def test_generated_configs_load(lay) -> None:
    cfg = load_node_config(lay.node_config(2))
    assert (cfg.index, cfg.parties, cfg.threshold, cfg.name) == (2, 3, 2, "node-2")
    assert cfg.store.parent == lay.node_dir(2)  # relative paths are relative to the config file
    c = load_coordinator_config(lay.coordinator_config)
    assert sorted(c.nodes) == [1, 2, 3] and c.threshold == 2


def test_endpoints_are_hostnames_that_every_server_certificate_names(lay) -> None:
    """Processes listen on 127.0.0.1; clients and the coordinator dial localhost:PORT."""
    eps = lay.endpoints()
    assert all(ep.startswith("localhost:") for ep in eps.values())
    assert json.loads(lay.node_config(1).read_text())["listen"].startswith("127.0.0.1:")
    coord = json.loads(lay.coordinator_config.read_text())
    assert [n["endpoint"] for n in coord["nodes"]] == [eps[f"node-{i}"] for i in (1, 2, 3)]
    for name in lay.names():
        assert {"localhost", name, "127.0.0.1"} <= cert_hosts(lay.cert(name).cert)
    assert (dial_endpoint("127.0.0.1:7001"), dial_endpoint("10.0.0.5:7001")) == ("localhost:7001", "10.0.0.5:7001")


def test_older_cluster_keeps_working(tmp_path) -> None:
    """Server certificates without the DNS names are re-issued; configs dialing IPs still load."""
    old = prepare(tmp_path / "old", 2, 2, scrypt_n=TEST_SCRYPT_N)
    issue_cert(old.ca, old.dir / "certs", "node-1", role="node", server=True, hosts=("127.0.0.1",))
    issue_cert(old.ca, old.dir / "certs", "node-2", role="node", server=True)  # localhost, no node name
    coordinator_cert = old.cert("coordinator").cert.read_bytes()
    lay2 = prepare(tmp_path / "old", 2, 2, scrypt_n=TEST_SCRYPT_N)
    assert {"localhost", "node-1", "127.0.0.1"} <= cert_hosts(lay2.cert("node-1").cert)
    assert {"localhost", "node-2", "127.0.0.1"} <= cert_hosts(lay2.cert("node-2").cert)
    assert lay2.cert("coordinator").cert.read_bytes() == coordinator_cert  # already complete: kept

    def ip_endpoints(d):
        for n in d["nodes"]:
            n["endpoint"] = n["endpoint"].replace("localhost:", "127.0.0.1:")

    c = load_coordinator_config(edited(lay2.coordinator_config, tmp_path, ip_endpoints))
    assert all(ep.endpoint.startswith("127.0.0.1:") for ep in c.nodes.values())


def _legacy(d: dict) -> dict:
    """``d`` turned into a legacy node config: a fixed ``roster`` list instead of the signed
    roster history (as configs were before issue 11)."""
    history = d["governance"].pop("roster_history")
    entries = history[-1]["change"]["new_roster"]["entries"]
    d["roster"] = [
        {"index": e["index"], "name": e["name"], "identity_public": e["identity_key"], "encryption_public": e["encryption_key"]}
        for e in entries
    ]
    return d


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("tls"), "tls: missing"),
        (lambda d: d["tls"].pop("ca"), "tls.ca: missing"),
        (lambda d: d.update(threshold=5), "threshold: must be in 2..3"),
        (lambda d: d.update(listen="nowhere"), "listen: must be HOST:PORT"),
        (lambda d: _legacy(d)["roster"][1].update(index=1), "roster[1].index: duplicate party index 1"),
        (lambda d: _legacy(d)["roster"][0].update(identity_public="zz"), "roster[0].identity_public: must be hex"),
        (lambda d: _legacy(d)["roster"][0].update(encryption_public="00"), "roster[0].encryption_public: must be 32 bytes of hex, got 1"),
        (lambda d: d.update(bogus=1), "bogus: unknown field"),
        (lambda d: d.update(name="node 1\x1b[2J"), "name: must be 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit"),
        (lambda d: _legacy(d)["roster"][1].update(name="node-2\n"), "roster[1].name: must be 1-64 characters of [A-Za-z0-9._-]"),
        (lambda d: (d.pop("passphrase_file"), d.pop("passphrase_env", None)), "passphrase_file: missing"),
        (lambda d: d.update(test_mode="yes"), "test_mode: must be true or false"),
        (lambda d: d.pop("governance"), "governance: missing"),
        (lambda d: d["governance"]["admin_set"].update(quorum=0), "governance.admin_set.quorum: must be in [1, 3], got 0"),
        (lambda d: d["governance"]["admin_set"].update(cluster_id="00"), "governance.admin_set.cluster_id: must be 32 bytes"),
        (
            lambda d: d["governance"]["initial_policy"]["change"].update(scope="11" * 32),
            "governance.initial_policy.change.scope: must be 'default'",
        ),
        (lambda d: d["governance"]["initial_policy"].update(signatures="x"), "governance.initial_policy.signatures"),
        (lambda d: d["governance"].update(roster_history=[]), "governance.roster_history: must be a non-empty list"),
        (
            lambda d: d["governance"]["roster_history"][0].update(signatures=[]),
            "governance.roster_history[0].signatures: 0 distinct admin(s) signed, 2 required",
        ),
        (
            lambda d: d["governance"]["roster_history"][0]["change"]["new_roster"]["entries"][0].update(endpoint="x"),
            "governance.roster_history[0].change.new_roster.entries[0].endpoint: must be HOST:PORT",
        ),
        (lambda d: d.update(roster=[]), "roster: give either roster (a fixed roster) or governance.roster_history, not both"),
        (lambda d: d.update(index=9), "index: node 9 is not in the roster"),
    ],
)
def test_node_config_errors_name_the_field(lay, tmp_path, change, message) -> None:
    p = edited(lay.node_config(1), tmp_path, change)
    with pytest.raises(ConfigError) as e:
        load_node_config(p)
    assert str(e.value) == f"{p}: {message}" or message in str(e.value)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(nodes=[]), "nodes: must be a non-empty list"),
        (lambda d: d["nodes"][2].update(index=7), "nodes: node 7 (node-3) is not entry 7 of the roster"),
        (lambda d: d.update(client_roles=["node"]), "client_roles: nodes may not call the client API"),
        (lambda d: d.update(max_parallel_sessions=0), "max_parallel_sessions: must be in 1..10000"),
        (lambda d: d.pop("keystore"), "keystore: missing"),
        (lambda d: d.update(name="coord\u202e"), "name: must be 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit"),
        (lambda d: d["nodes"][0].update(name=""), "nodes[0].name: must be 1-64 characters of [A-Za-z0-9._-]"),
        (lambda d: d.pop("governance"), "governance: missing"),
    ],
)
def test_coordinator_config_errors_name_the_field(lay, tmp_path, change, message) -> None:
    p = edited(lay.coordinator_config, tmp_path, change)
    with pytest.raises(ConfigError) as e:
        load_coordinator_config(p)
    assert message in str(e.value)


def test_processes_refuse_bad_configs_with_a_clear_message(lay, tmp_path) -> None:
    missing = tmp_path / "nope.json"
    for module in ("mpc_node.main", "coordinator.main"):
        p = subprocess.run(
            [sys.executable, "-m", module, "--config", str(missing)], env=child_env(), capture_output=True, text=True, timeout=60
        )
        assert p.returncode == 2 and str(missing) in p.stderr and "cannot read" in p.stderr
    wrong = edited(lay.node_config(1), tmp_path, lambda d: d.update(passphrase_file=str(tmp_path / "absent")))
    p = subprocess.run(
        [sys.executable, "-m", "mpc_node.main", "--config", str(wrong)], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 1 and "passphrase file" in p.stderr and "Traceback" not in p.stderr


def test_node_refuses_to_start_with_an_initial_policy_without_admin_quorum(lay, tmp_path) -> None:
    """The initial default policy in a node's config must carry the admin quorum too: a config
    edited to hold a policy signed by one admin (or none) does not start."""
    def one_signature(d):
        d["governance"]["initial_policy"]["signatures"] = d["governance"]["initial_policy"]["signatures"][:1]
        d["store"] = str(tmp_path / "fresh-node.db")  # a node that has no policy yet
        d["audit_db"] = str(tmp_path / "fresh-audit.db")
        for k in ("keystore", "passphrase_file"):
            d[k] = str(lay.node_dir(1) / d[k])

    bad = edited(lay.node_config(1), tmp_path, one_signature)
    p = subprocess.run(
        [sys.executable, "-m", "mpc_node.main", "--config", str(bad)], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "governance.initial_policy.signatures: 1 distinct admin(s) signed, 2 required" in p.stderr


def test_free_ports_skip_ports_busy_on_ipv6_loopback(monkeypatch) -> None:
    """Clients dial localhost, which may resolve to ::1 first: a port taken there is not offered."""
    import socket

    import mpcnet.cluster.launcher as cluster

    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert cluster._busy_on_ipv6_loopback(taken)
        seen: list[int] = []

        def busy(port: int) -> bool:
            seen.append(port)
            return len(seen) <= 2  # the first two ports offered are "taken"

        monkeypatch.setattr(cluster, "_busy_on_ipv6_loopback", busy)
        ports = cluster.free_ports(3)
    assert len(set(ports)) == 3 and not set(ports) & set(seen[:2]) and len(seen) == 5


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "which,field",
    [
        ("node", "session_timeout_s"), ("node", "clock_tolerance_s"),
        ("coordinator", "step_timeout_s"), ("coordinator", "dkg_timeout_s"), ("coordinator", "health_interval_s"),
        ("coordinator", "sweep_interval_s"), ("coordinator", "max_clock_skew_s"), ("coordinator", "stream_lifetime_s"),
    ],
)
def test_a_duration_in_a_config_is_a_finite_number(lay, tmp_path, which, field, value) -> None:
    """Python's json reads NaN, Infinity and -Infinity (and 1e999 as Infinity): a duration that is
    not finite would reach time.sleep / Event.wait (ValueError, OverflowError) or never time out;
    the config is refused naming the field."""
    path = lay.node_config(1) if which == "node" else lay.coordinator_config
    load = load_node_config if which == "node" else load_coordinator_config
    p = edited(path, tmp_path, lambda d: d.update({field: value}))
    with pytest.raises(ConfigError) as e:
        load(p)
    assert f"{field}: must be" in str(e.value)
