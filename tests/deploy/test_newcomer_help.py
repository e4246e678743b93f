"""The deploy commands' help and messages as a new operator meets them (issue 13, README "Deploying").

Every off-line subcommand (``mpc-node``/``mpc-coordinator`` init and join, ``mpc pki|identity|genesis``)
describes each option, and init/join answer ``-h`` like ``--help``; the servers'
``--help`` lists their off-line subcommands one per line (click would otherwise re-wrap the list
into one paragraph); a wrong admin key names the admin once, readably; ``init-ca`` prints the
CA certificate's SHA-256, which ``genesis show`` prints for the admins to compare; a command that
needs the genesis names ``--genesis``; a listen address in use names ``listen``; a client
pointed at a server that is not the coordinator names its endpoint; the compose client can attest.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import click
import grpc
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import enrol as coordinator_enrol, main as coordinator_main
from mpc_node import enrol as node_enrol, main as node_main
from mpcnet.client import cli as mpc_cli
from mpcnet.client.errors import MpcError
from mpcnet.client.sdk import MpcClient
from mpcnet.common.enrolment import EnrolmentError
from mpcnet.common.genesis import Genesis, sign_genesis
from mpcnet.common.listen import bind_listen
from mpcnet.common.pki import certificate_fingerprint, create_ca, issue_cert, load_certificate, server_credentials

MAINS: dict[str, Callable[[list[str]], int]] = {"mpc-node": node_main.main, "mpc-coordinator": coordinator_main.main}


def _help(prog: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert MAINS[prog](argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("prog", sorted(MAINS))
@pytest.mark.parametrize("sub", ["init", "join"])
def test_offline_subcommands_take_dash_h_and_describe_every_option(prog: str, sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _help(prog, [sub, "-h"], capsys) == _help(prog, [sub, "--help"], capsys)
    command: click.Command = getattr({"mpc-node": node_enrol, "mpc-coordinator": coordinator_enrol}[prog], f"{sub}_command")
    bare = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
    assert bare == [], f"{prog} {sub}: options without help"


@pytest.mark.parametrize(("prog", "subs"), [
    ("mpc-node", ("init", "join", "rekey-store", "reset-clock-floor")),
    ("mpc-coordinator", ("init", "join", "rotate-audit-key")),
])
def test_server_help_lists_each_offline_subcommand_on_its_own_line(
    prog: str, subs: tuple[str, ...], capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [line.strip() for line in _help(prog, ["--help"], capsys).splitlines()]
    for sub in subs:
        assert sum(1 for line in lines if line.startswith(f"{prog} {sub} --")) == 1, (prog, sub)


def test_a_wrong_admin_key_names_the_admin_readably() -> None:
    right = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    genesis = cast(Genesis, SimpleNamespace(admin_set=SimpleNamespace(admins={"admin1": right})))  # all sign_genesis reads first
    with pytest.raises(EnrolmentError) as e:
        sign_genesis(genesis, "admin1", Ed25519PrivateKey.generate())
    assert e.value.field == "signing_key"
    assert str(e.value).endswith("is not the key of admin 'admin1' in the admin set")


def test_init_ca_prints_the_sha256_genesis_show_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The admins compare the CA line of ``mpc genesis show`` with what the CA operator saw."""
    capsys.readouterr()
    assert mpc_cli.main(["pki", "init-ca", "--dir", str(tmp_path / "ca"), "--name", "Example MPC CA"]) == 0
    out = capsys.readouterr().out.splitlines()
    want = certificate_fingerprint(load_certificate((tmp_path / "ca" / "ca.pem").read_bytes())).hex()
    assert out[-1] == f"sha256: {want}"


def test_attest_without_the_genesis_says_to_give_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The people of a deployment have no cluster directory: the usage error names --genesis."""
    ca, me = tmp_path / "ca", tmp_path / "id"
    assert mpc_cli.main(["pki", "init-ca", "--dir", str(ca)]) == 0
    assert mpc_cli.main(["identity", "init", "--dir", str(me), "--name", "admin1", "--role", "admin"]) == 0
    pem = tmp_path / "admin1.pem"
    assert mpc_cli.main(["pki", "sign-csr", "--ca-dir", str(ca), "--request", str(me / "identity-request.json"), "--out", str(pem)]) == 0
    capsys.readouterr()
    code = mpc_cli.main([
        "--endpoint", "localhost:1", "--tls-cert", str(pem), "--tls-key", str(me / "tls.key"), "--tls-ca", str(ca / "ca.pem"),
        "--signing-key", str(me / "signing.key"), "policy", "attest",
    ])
    assert code == 2
    assert "with --endpoint give --genesis FILE (MPC_GENESIS)" in capsys.readouterr().err


def test_a_listen_address_in_use_names_the_listen_setting(tmp_path: Path) -> None:
    """Two servers of a one-machine trial given the same port: the second says which setting."""
    ca = create_ca(tmp_path / "ca")
    cert = issue_cert(ca, tmp_path / "node", "node-1", role="node", server=True, hosts=("localhost",))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    address = f"127.0.0.1:{taken.getsockname()[1]}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        with pytest.raises(OSError, match=rf"^listen: cannot bind {address} \(is the port in use"):
            bind_listen(server, address, server_credentials(cert, ca.cert))
        assert bind_listen(server, "127.0.0.1:0", server_credentials(cert, ca.cert)) > 0
    finally:
        server.stop(None)
        taken.close()


def test_a_client_pointed_at_a_server_without_the_coordinator_service_says_so(tmp_path: Path) -> None:
    """MPC_ENDPOINT naming a node (port 7001 for 7000): the error names the endpoint, not grpc's
    bare 'Method not found!'."""
    ca = create_ca(tmp_path / "ca")
    cert = issue_cert(ca, tmp_path / "node", "node-1", role="node", server=True, hosts=("localhost",))
    me = issue_cert(ca, tmp_path / "me", "auditor1", role="auditor")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = bind_listen(server, "127.0.0.1:0", server_credentials(cert, ca.cert))
    server.start()
    try:
        with MpcClient(f"localhost:{port}", me, ca.cert, timeout=10) as client, pytest.raises(MpcError) as e:
            client.list_keys()
        assert e.value.code == grpc.StatusCode.UNIMPLEMENTED
        assert e.value.message == (f"endpoint: 'localhost:{port}' does not serve this call of the Coordinator service "
                                   "(not the coordinator's address, or an older version)")
    finally:
        server.stop(None)


def test_every_option_of_the_offline_deploy_commands_is_described() -> None:
    """mpc pki / identity / genesis: what a new operator reads before the first command."""
    bare = [
        (" ".join(path), p.name)
        for path, command in mpc_cli.commands() if path[0] in ("pki", "identity", "genesis")
        for p in command.params if isinstance(p, click.Option) and not p.help
    ]
    assert bare == []


def test_the_compose_client_can_attest() -> None:
    """deploy/README's 'run --rm client policy attest' needs the genesis (else exit 2) and, for the
    direct pushes to every node, the nodes' network."""
    client = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "compose.yaml").read_text(encoding="utf-8"))["services"]["client"]
    assert client["environment"]["MPC_GENESIS"] == "/exchange/genesis.json"
    assert "exchange:/exchange:ro" in client["volumes"]
    assert set(client["networks"]) == {"clients", "nodes"}
