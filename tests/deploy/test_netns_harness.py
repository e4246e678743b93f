"""The namespace harness itself (tests/deploy/netns.py): two machines that share only a bridge,
each resolving the other by host name from its own /etc/hosts, a TLS gRPC health check across
them checked against the server certificate's DNS SAN, and a teardown that leaves nothing."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.common.pki import create_ca, issue_cert

from .netns import DOMAIN, NETNS_ETC, NetnsError, Network, unavailable

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    why = unavailable()
    if why:
        pytest.skip(why)
    try:
        with Network(tmp_path, ("server", "client"), {"srv": "server", "cli": "client"}, env={"PYTHONPATH": str(REPO)}) as n:
            yield n
    except NetnsError as e:
        pytest.skip(f"cannot create network namespaces here: {e}")


def test_tls_health_check_by_host_name_across_namespaces(net: Network, tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    server = net.host("srv")
    client = net.host("cli")
    fqdn = f"server.{DOMAIN}"
    srv = issue_cert(ca, server.dir, "probe-server", role="node", server=True, hosts=(fqdn,))
    cli = issue_cert(ca, client.dir, "probe-client", role="admin")
    py = shlex.quote(sys.executable)
    probe = "-m tests.deploy._health_probe"
    net.spawn(server, f"cd {shlex.quote(str(REPO))} && exec {py} {probe} serve {srv.cert} {srv.key} {ca.cert} 7001")
    # the other machine finds the server by name in its own /etc/hosts, not on its own loopback
    hosts = net.run(client, "cat /etc/hosts")
    assert f"{net.namespaces['server'].ip}\t{fqdn}" in hosts
    assert net.run(client, f"getent hosts {fqdn}").split()[0] == net.namespaces["server"].ip
    out = net.run(client, f"cd {shlex.quote(str(REPO))} && {py} {probe} check {cli.cert} {cli.key} {ca.cert} {fqdn}:7001", timeout=60)
    assert out.strip() == "SERVING"
    # the same server by its address is refused: the certificate names only the host name
    ip = net.namespaces["server"].ip
    with pytest.raises(AssertionError, match="Hostname Verification Check failed"):
        net.run(client, f"cd {shlex.quote(str(REPO))} && {py} {probe} try {cli.cert} {cli.key} {ca.cert} {ip}:7001", timeout=60)
    # nothing listens on the client machine's own port 7001: the namespaces do not share a stack
    with pytest.raises(AssertionError, match="failed to connect"):
        net.run(client, f"cd {shlex.quote(str(REPO))} && {py} {probe} try {cli.cert} {cli.key} {ca.cert} localhost:7001", timeout=30)


def test_teardown_removes_processes_namespaces_bridge_and_hosts_files(tmp_path: Path) -> None:
    why = unavailable()
    if why:
        pytest.skip(why)
    try:
        with Network(tmp_path, ("a",), {"h": "a"}) as n:
            n.spawn(n.host("h"), "sleep 300")
            ns, bridge = n.namespaces["a"].ns, n.bridge
            deadline = time.monotonic() + 10
            while not n.pids("a"):  # 'ip netns exec' enters the namespace a moment after it starts
                assert time.monotonic() < deadline, "the process never entered its namespace"
                time.sleep(0.02)
    except NetnsError as e:
        pytest.skip(f"cannot create network namespaces here: {e}")
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
    assert not (NETNS_ETC / ns).exists()


def test_successive_networks_in_one_process_do_not_collide(tmp_path: Path) -> None:
    """The kernel destroys a deleted namespace's interfaces asynchronously: a second network made
    at once by the same process must not reuse their names (it did, and was skipped as 'cannot
    create network namespaces')."""
    why = unavailable()
    if why:
        pytest.skip(why)
    try:
        with Network(tmp_path / "first", ("a",), {"h": "a"}) as n:
            n.run(n.host("h"), "true")
    except NetnsError as e:
        pytest.skip(f"cannot create network namespaces here: {e}")
    for i in range(3):  # now the kernel does not refuse: any error is this harness's
        with Network(tmp_path / f"again{i}", ("a",), {"h": "a"}) as n:
            n.run(n.host("h"), "true")
