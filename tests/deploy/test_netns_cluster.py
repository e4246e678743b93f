"""The README's "Deploying on separate hosts" section, followed literally on separate machines
(issue 13, "Done means"): every ``<!-- deploy: HOST -->`` block runs as written, with
``bash -euo pipefail``, on each host of its kind, each node and the coordinator in a Linux network
namespace of its own (own address on a private bridge, own ``/etc/hosts``, own directory), the
CA and the people in a third; nothing but ``$EXCHANGE`` is shared. The cluster it gives (2-of-3)
makes a key and signs an approved request (checked by the block with OpenSSL and here with
``cryptography``); then one signer's machine loses every process and the same blocks sign again.

Also: every ``mpc``/``mpc-node``/``mpc-coordinator`` line of the section names a command that
exists with options it takes (as ``tests/client/test_readme_recovery.py`` does for its section).

Skipped (with the reason) where namespaces cannot be made: not root, no ``ip``, or the kernel
refuses. CI (``.ci/run``: ``scripts/test``) runs it where the suite runs as root with
CAP_NET_ADMIN and CAP_SYS_ADMIN (a VM, this sandbox, a container started with ``--privileged``);
in an unprivileged container it is skipped. About 30 s on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..readme_commands import check_line
from .netns import DOMAIN, Background, Host, NetnsError, Network, unavailable

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SECTION = "## Deploying on separate hosts (issue 13)"

NODES = ("node-1", "node-2", "node-3")
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")  # the README block's path (Debian softhsm2)
SOFTHSM = SOFTHSM_MODULE.is_file() and shutil.which("softhsm2-util") is not None and Path("/etc/softhsm").is_dir()
PKCS11 = importlib.util.find_spec("mpcnet.common.pkcs11token") is not None  # the HSM piece of issue 13 is merged
HSM_NODES = ("node-3",) if SOFTHSM and PKCS11 else ()
"""Nodes with their keys in an HSM (SoftHSM2, each machine its own token directory); without
SoftHSM2 installed (scripts/test installs it) every node keeps its keys under a passphrase."""
PEOPLE = {"admin1": "admin", "admin2": "admin", "approver1": "approver", "approver2": "approver", "requester1": "requester"}
PEOPLE_MACHINE = "people"  # the CA and every person: one machine, one directory each
MACHINES = (*NODES, "coordinator", PEOPLE_MACHINE)
HOSTS_OF: dict[str, tuple[str, ...]] = {
    "ca": ("ca",),
    "person": tuple(PEOPLE),
    "admin": tuple(p for p, r in PEOPLE.items() if r == "admin"),
    "approver": tuple(p for p, r in PEOPLE.items() if r == "approver"),
    **{p: (p,) for p in PEOPLE},
    "node": NODES,
    "node-passphrase": tuple(n for n in NODES if n not in HSM_NODES),
    "node-hsm": HSM_NODES,
    "node-serve": NODES,
    "coordinator": ("coordinator",),
    "coordinator-serve": ("coordinator",),
}
"""Each marker's hosts, in the order "each ... in turn" runs them."""
PARALLEL = {"person", "node", "node-passphrase", "node-serve"}
"""Markers whose hosts work independently (run at once: faster, and it is what they would do)."""
TOOLS = ("jq", "xxd", "openssl", "sha256sum")
"""What the README's blocks use besides the project's commands (Debian: jq, xxd, openssl, coreutils)."""
SERVE_PORT = {"node-serve": 7001, "coordinator-serve": 7000}
START_TIMEOUT_S = 60.0


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def deploy_blocks() -> list[tuple[str, str]]:
    """The section's ``(HOST, script)`` pairs in order: each ```` ```sh ```` block right after a
    ``<!-- deploy: HOST -->`` line."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"<!-- deploy: ([a-z0-9-]+) -->\n```sh\n(.*?)```", _section(), flags=re.S)]


def _without_substitutions(line: str) -> str:
    """``line`` with every ``$(...)`` (nested ones too) replaced by the word ``X``."""
    out, depth, i = [], 0, 0
    while i < len(line):
        if line.startswith("$(", i):
            depth += 1
            if depth == 1:
                out.append("X")
            i += 2
            continue
        if depth and line[i] == ")":
            depth -= 1
        elif not depth:
            out.append(line[i])
        i += 1
    return "".join(out)


def command_lines() -> list[str]:
    """Every ``mpc``/``mpc-node``/``mpc-coordinator`` command of the section's sh blocks
    (continuations joined, comments, ``$(...)`` and what follows a pipe or redirection cut)."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", _section(), flags=re.S):
        for line in _without_substitutions(block.replace("\\\n", " ")).splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(("mpc ", "mpc-node ", "mpc-coordinator ")):
                lines.append(line.split(" | ", 1)[0].split(" > ", 1)[0].split(" || ", 1)[0])
    return lines


# --- the section's commands exist -------------------------------------------------------------------


def test_the_section_has_its_blocks_and_every_marker_names_known_hosts() -> None:
    blocks = deploy_blocks()
    markers = [h for h, _ in blocks]
    unknown = sorted(set(markers) - set(HOSTS_OF))
    assert not unknown, f"markers with no hosts in this test: {unknown}"
    for needed in ("ca", "person", "node", "node-passphrase", "node-hsm", "coordinator", "node-serve", "coordinator-serve", "admin",
                   "approver"):
        assert needed in markers, needed
    assert len(command_lines()) >= 15


@pytest.mark.parametrize("line", command_lines())
def test_each_readme_command_exists_with_its_options(line: str) -> None:
    check_line(line)


# --- the section, run on separate machines ------------------------------------------------------------


def _host_env(host: str) -> dict[str, str]:
    if host in PEOPLE:
        return {"ME": host, "ROLE": PEOPLE[host]}
    if host in NODES:
        return {"NODE": host, "NODE_HOST": f"{host}.{DOMAIN}"}
    return {}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    why = unavailable()
    if why:
        pytest.skip(why)
    bin_dir = Path(sys.executable).parent
    if shutil.which("mpc", path=str(bin_dir)) is None:
        pytest.fail(f"no 'mpc' next to {sys.executable}: install the project into this environment (scripts/_venv.sh)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"the README's blocks use {', '.join(TOOLS)}; missing here: {', '.join(missing)}")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    placed = {"ca": PEOPLE_MACHINE, **dict.fromkeys(PEOPLE, PEOPLE_MACHINE), **{n: n for n in NODES}, "coordinator": "coordinator"}
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "EXCHANGE": str(exchange),
        "COORDINATOR_HOST": f"coordinator.{DOMAIN}",
        "MPC_DEBUG": "1",  # a failing command's traceback in the failure message
    }
    for drop in ("MPC_CLUSTER", "MPC_AS", "MPC_ENDPOINT", "MPC_TLS_CERT", "MPC_TLS_KEY", "MPC_TLS_CA", "MPC_SIGNING_KEY", "MPC_GENESIS"):
        env[drop] = ""  # nothing of the caller's own client settings leaks in
    hosts = tmp_path / "hosts"
    # each HSM machine's own SoftHSM2 configuration: its own token directory (its /var/lib/softhsm/tokens)
    conf = "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n"
    etc = {n: {"softhsm/softhsm2.conf": conf.format(hosts / n / "softhsm-tokens")} for n in HSM_NODES}
    for n in HSM_NODES:
        (hosts / n / "softhsm-tokens").mkdir(parents=True)
    try:
        with Network(hosts, MACHINES, placed, env=env, etc=etc) as n:
            yield n
    except NetnsError as e:
        pytest.skip(f"cannot create network namespaces here: {e}")


def _wait_serving(net: Network, bg: Background, port: int) -> None:
    """Until ``bg`` accepts TCP on ``port`` inside its own machine; AssertionError with its log
    if it exits or does not listen within START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
    while True:
        if bg.proc.poll() is not None:
            raise AssertionError(f"{bg.host.name}: exited {bg.proc.returncode} while starting:\n{bg.tail()}")
        try:
            net.run(bg.host, probe, timeout=10)
            return
        except AssertionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{bg.host.name}: not listening on {port} after {START_TIMEOUT_S} s:\n{bg.tail()}")
        time.sleep(0.2)


def _run_block(net: Network, marker: str, script: str) -> None:
    hosts = [net.host(h) for h in HOSTS_OF[marker]]
    if marker in SERVE_PORT:
        started = [net.spawn(h, script, _host_env(h.name)) for h in hosts]
        for bg in started:
            _wait_serving(net, bg, SERVE_PORT[marker])
        return

    def one(h: Host) -> None:
        net.run(h, script, _host_env(h.name), timeout=180)

    if marker in PARALLEL:
        with ThreadPoolExecutor(len(hosts)) as pool:
            for f in [pool.submit(one, h) for h in hosts]:
                f.result()
    else:
        for h in hosts:
            one(h)


def _check_signature(net: Network) -> dict[str, object]:
    """The requester's signed request (``payment.signed.json``), its DER signature verified here
    too, over the payment document, under the key's public key the requester fetched."""
    home = net.host("requester1").dir
    exchange = Path(net.env["EXCHANGE"])
    signed = json.loads((home / "payment.signed.json").read_text())
    assert signed["state"] == "done", signed
    pub = serialization.load_pem_public_key((home / "treasury.pem").read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(bytes.fromhex(signed["signature"]["der"]), (exchange / "payment.txt").read_bytes(), ec.ECDSA(hashes.SHA256()))
    return signed  # type: ignore[no-any-return]


def test_the_deploying_section_gives_a_cluster_that_signs_on_separate_machines(net: Network) -> None:
    blocks = deploy_blocks()
    for marker, script in blocks:
        _run_block(net, marker, script)
    first = _check_signature(net)
    signers = [int(i) for i in first["signature"]["signers"]]  # type: ignore[index]
    assert len(signers) == 2
    for n in HSM_NODES:  # its keys are in its token: no passphrase, the config names the token
        node_dir = net.host(n).dir / "node"
        assert not (node_dir / "passphrase").exists()
        cfg = json.loads((node_dir / "config.json").read_text())
        assert cfg["pkcs11"]["token_label"] == n and cfg["pkcs11"].get("identity_key_label")

    # one signer's machine loses every process (its node; an HSM node is kept, so it signs next)
    lost = f"node-{min(i for i in signers if f'node-{i}' not in HSM_NODES)}"
    net.kill_machine(lost)
    with pytest.raises(AssertionError):  # really gone: nothing listens at its name any more
        net.run(net.host("requester1"), f"exec 3<>/dev/tcp/{lost}.{DOMAIN}/7001", timeout=10)
    signing = next(i for i, (m, _) in enumerate(blocks) if m == "requester1")
    for marker, script in blocks[signing:]:
        _run_block(net, marker, script)
    second = _check_signature(net)
    assert second["request_id"] != first["request_id"]
    again = [f"node-{i}" for i in second["signature"]["signers"]]  # type: ignore[union-attr]
    assert lost not in again and all(n in again for n in HSM_NODES), again

