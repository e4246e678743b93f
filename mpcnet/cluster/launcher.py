"""A local development cluster: its directory layout and a process manager.

:func:`prepare` creates, on first use, everything a cluster needs in ``DIR`` (a dev CA and all
certificates, each node's keystore and passphrase file, the stores' directories) and on every
use writes fresh configs with free localhost ports; keys, certificates and data are reused.

    DIR/ca/ca.pem, ca.key                     dev CA
    DIR/certs/<name>.pem, <name>.key          node-i (role node), coordinator, client (health checks)
    DIR/identities/<name>/                    admin1..3, requester1, approver1..3, auditor1, officer1..3:
                                              certificate + Ed25519 signing key (mpcnet.client.identities)
    DIR/governance.json                       cluster id, admin set (admins' public keys, quorum 2)
                                              and the initial default policy, signed by admin1+admin2
    DIR/nodes/node-i/{config.json, keystore.json, passphrase, node.db, audit.db}
    DIR/nodes/node-i/enrolment-request.json   its signed request: keys, request and certificate are made
                                              as `mpc-node init` + `mpc pki sign-csr` make them (devenrol)
    DIR/nodes/node-i.wiped                    node i's host is gone (mpc-cluster wipe-node): nothing
                                              of it is recreated or started (mpcnet.cluster.replace)
    DIR/coordinator/{config.json, keystore.json, passphrase, coordinator.db, audit.db}
    DIR/logs/<process>.log
    DIR/cluster.json                          endpoints, certificates, identities, audit public keys,
                                              governance root, pids (for clients)

The initial default policy: approvers approver1..3 with a quorum of 2, requesters {requester1},
requests live at most an hour, at most 100 signatures per key per hour. The launcher signs it
with admin1's and admin2's keys, which it holds only because this is a development layout; every
node verifies it against the admin set in its own config when it starts.

Processes listen on ``127.0.0.1``; everything that *dials* them (cluster.json, the
coordinator's node list) names them ``localhost:PORT``, and every server certificate carries
the DNS names ``localhost`` and its own name besides the IP ``127.0.0.1``, so TLS clients that
refuse IP-literal server names (Node's grpc-js) verify the servers too. A server certificate of
an older cluster without those names is re-issued by :func:`prepare`; configs that dial
``127.0.0.1:PORT`` keep working (the IP is still in every certificate).

:class:`LocalCluster` starts and stops the processes synchronously (tests, benchmarks); the
``mpc-cluster`` command supervises the same processes with trio.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from governance.policy import (
    DEFAULT_SCOPE,
    AdminSet,
    KeyPolicy,
    PolicyChange,
    RateLimit,
    SignedPolicyChange,
    sign_policy_change,
)
from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, verify_roster_change
from mpcnet.client.identities import DEMO_IDENTITIES, create_identity, load_identity
from mpcnet.cluster.devenrol import dev_roster_entry, make_dev_node
from mpcnet.cluster.log_format import log_format_section
from mpcnet.cluster.presign_config import presign_section
from mpcnet.common.config import write_json
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.genesis import Genesis, sign_genesis, verify_genesis
from mpcnet.common.keystore import MAX_SCRYPT_N, MIN_SCRYPT_N, create_keystore
from mpcnet.common.pki import CertPaths, cert_hosts, channel_credentials, create_ca, issue_cert
from mpcnet.common.rpc import CHANNEL_OPTIONS, wait_for_health

PARAMS_FILE = "cluster-params.json"
INFO_FILE = "cluster.json"
GOVERNANCE_FILE = "governance.json"
ADMIN_QUORUM = 2
DEFAULT_POLICY = {
    "approvers": ["approver1", "approver2", "approver3"],
    "approval_quorum": 2,
    "requesters": ["requester1"],
    "ttl_seconds": 3600,
    "rate_limit": {"max_signatures": 100, "window_seconds": 3600},
}
SOURCE_ROOT = Path(__file__).resolve().parent.parent
LISTEN_HOST = "127.0.0.1"  # where the processes bind
DIAL_HOST = "localhost"  # how clients and the coordinator name them (a DNS name in every server certificate)


def server_hosts(name: str) -> tuple[str, ...]:
    """The subjectAltNames of a local cluster server's certificate."""
    return (DIAL_HOST, name, LISTEN_HOST)


def dial_endpoint(listen: str) -> str:
    """The endpoint clients dial for a process listening on ``listen``: ``127.0.0.1:P`` becomes
    ``localhost:P``; any other address is returned unchanged."""
    host, sep, port = listen.rpartition(":")
    return f"{DIAL_HOST}:{port}" if sep and host == LISTEN_HOST else listen


class ClusterError(Exception):
    pass


def _busy_on_ipv6_loopback(port: int) -> bool:
    """True if something listens on ``[::1]:port`` (where ``localhost`` may resolve first)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", port))
    except OSError as e:
        return e.errno == errno.EADDRINUSE  # no IPv6 at all: nothing can be there
    return False


PORT_RANGE_ENV = "MPCNET_PORT_RANGE"


def port_range() -> tuple[int, int] | None:
    """$MPCNET_PORT_RANGE as (LO, HI), both inclusive, or None when it is unset or empty.

    Raises ClusterError naming the variable unless it is "LO-HI" with 1024 <= LO <= HI <= 65535.
    """
    v = os.environ.get(PORT_RANGE_ENV, "")
    if not v:
        return None
    m = re.fullmatch(r"([0-9]{4,5})-([0-9]{4,5})", v)
    if not m or not 1024 <= int(m[1]) <= int(m[2]) <= 65535:
        raise ClusterError(f"${PORT_RANGE_ENV}: must be LO-HI with 1024 <= LO <= HI <= 65535, got {v[:40]!r}")
    return int(m[1]), int(m[2])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` and, since clients dial ``localhost``, on
    ``::1`` too.

    Without $MPCNET_PORT_RANGE the kernel picks them (from its ephemeral range). With it ("LO-HI")
    they come from that range only, from a random offset on, skipping ports in use: the test suite
    gives each parallel worker its own range below the ephemeral one, so clusters in different
    workers (and outgoing connections) never take each other's ports. Raises ClusterError when the
    range has fewer than ``count`` free ports.
    """
    rng = port_range()
    socks: list[socket.socket] = []
    skipped: list[socket.socket] = []  # held until the end, so their ports are not offered again
    try:
        if rng is None:
            while len(socks) < count:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((host, 0))
                (skipped if _busy_on_ipv6_loopback(s.getsockname()[1]) else socks).append(s)
        else:
            lo, hi = rng
            span = hi - lo + 1
            start = secrets.randbelow(span)
            for k in range(span):
                if len(socks) == count:
                    break
                port = lo + (start + k) % span
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind((host, port))
                except OSError:
                    s.close()
                    continue
                (skipped if _busy_on_ipv6_loopback(port) else socks).append(s)
            if len(socks) < count:
                raise ClusterError(f"${PORT_RANGE_ENV}: fewer than {count} free ports in {lo}-{hi}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks + skipped:
            s.close()


def _port_free(port: int) -> bool:
    """True if ``port`` can be bound on :data:`LISTEN_HOST` and nothing listens on it on ``::1``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as grpc binds: connections of the last run in TIME_WAIT do not make the port busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LISTEN_HOST, port))
        except OSError:
            return False
    return not _busy_on_ipv6_loopback(port)


def _ports(lay: Layout) -> list[int]:
    """The coordinator's port, then each node's: those of the existing configs where still free
    (a restarted cluster keeps its endpoints, so waiting clients, ``--endpoint`` and
    ``MPC_ENDPOINT`` reach it again), fresh free ports for the rest."""
    configs = [lay.coordinator_config] + [lay.node_config(i) for i in range(1, lay.nodes + 1)]
    fresh = free_ports(len(configs))
    out: list[int] = []
    for path in configs:
        try:
            port = int(str(json.loads(path.read_text(encoding="utf-8"))["listen"]).rpartition(":")[2])
        except (OSError, ValueError, KeyError, TypeError):
            port = 0
        if not (0 < port < 65536 and port not in out and _port_free(port)):
            port = next(p for p in fresh if p not in out)
        out.append(port)
    return out


@dataclass(frozen=True)
class Layout:
    dir: Path
    nodes: int
    threshold: int
    host: str = "127.0.0.1"

    @property
    def ca(self) -> CertPaths:
        return CertPaths(self.dir / "ca" / "ca.pem", self.dir / "ca" / "ca.key")

    def cert(self, name: str) -> CertPaths:
        return CertPaths(self.dir / "certs" / f"{name}.pem", self.dir / "certs" / f"{name}.key")

    def node_dir(self, i: int) -> Path:
        return self.dir / "nodes" / f"node-{i}"

    def node_config(self, i: int) -> Path:
        return self.node_dir(i) / "config.json"

    @property
    def roster_path(self) -> Path:
        """The admin-signed roster chain (JSON list, version 1 first) written into every config."""
        return self.dir / "roster.json"

    @property
    def coordinator_dir(self) -> Path:
        return self.dir / "coordinator"

    @property
    def coordinator_config(self) -> Path:
        return self.coordinator_dir / "config.json"

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    @property
    def governance_path(self) -> Path:
        return self.dir / GOVERNANCE_FILE

    def governance(self) -> tuple[AdminSet, SignedPolicyChange]:
        doc = json.loads(self.governance_path.read_text())
        return AdminSet.from_dict(doc["admin_set"]), SignedPolicyChange.from_dict(doc["initial_policy"])

    @property
    def info_path(self) -> Path:
        return self.dir / INFO_FILE

    def names(self) -> list[str]:
        return [f"node-{i}" for i in range(1, self.nodes + 1)] + ["coordinator"]

    def endpoints(self) -> dict[str, str]:
        """The endpoints clients dial (``localhost:PORT``), from the current configs' listen addresses."""
        out = {}
        for i in range(1, self.nodes + 1):
            out[f"node-{i}"] = dial_endpoint(json.loads(self.node_config(i).read_text())["listen"])
        out["coordinator"] = dial_endpoint(json.loads(self.coordinator_config.read_text())["listen"])
        return out

    def read_info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.info_path.read_text())
        return info


MAX_LOCAL_NODES = 32
"""The most nodes a local development cluster runs (one process each, on this machine)."""


def check_topology(nodes: object, threshold: object) -> None:
    """Raise ClusterError naming the field unless ``2 <= threshold <= nodes <= MAX_LOCAL_NODES``
    (both ``int``, not ``bool``)."""
    for field, v in (("nodes", nodes), ("threshold", threshold)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ClusterError(f"{field}: must be an integer, got {type(v).__name__}")
    assert isinstance(nodes, int) and isinstance(threshold, int)
    if not 2 <= nodes <= MAX_LOCAL_NODES:
        raise ClusterError(f"nodes: a local cluster has 2 to {MAX_LOCAL_NODES} nodes, got {nodes}")
    if not 2 <= threshold <= nodes:
        raise ClusterError(f"threshold: need 2 <= threshold <= nodes, got {threshold}-of-{nodes}")


def read_params(directory: Path) -> dict[str, Any] | None:
    """``DIR/cluster-params.json`` (what ``prepare`` stored: nodes, threshold, scrypt_n,
    test_mode, host), or None if DIR holds none. Raises ClusterError if it cannot be read or is
    damaged (not a JSON object with a valid topology)."""
    p = Path(directory) / PARAMS_FILE
    try:
        raw = p.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ClusterError(f"{p}: cannot read it: {e.strerror or type(e).__name__}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ClusterError(f"{p}: damaged (not a JSON object)")
    try:
        check_topology(doc.get("nodes"), doc.get("threshold"))
    except ClusterError as e:
        raise ClusterError(f"{p}: damaged ({e})") from None
    return doc


def load_layout(directory: Path) -> Layout:
    """The layout of the cluster in ``directory``; ClusterError if it holds none (or a damaged one)."""
    d = read_params(directory)
    if d is None:
        raise ClusterError(f"{directory}: not a cluster directory (no {PARAMS_FILE}); run 'mpc-cluster up' first")
    host = d.get("host", LISTEN_HOST)
    return Layout(Path(directory).resolve(), d["nodes"], d["threshold"], host if isinstance(host, str) else LISTEN_HOST)


def prepare(
    directory: Path,
    nodes: int,
    threshold: int,
    *,
    scrypt_n: int = 2**15,
    test_mode: bool = False,
    session_timeout_s: float = 60.0,
    step_timeout_s: float = 20.0,
    default_policy: dict[str, Any] | None = None,
    policy_max_age_s: int = 86400,
    progress: Callable[[str], None] | None = None,
    log_format: str | None = None,
    presign: bool | None = None,
) -> Layout:
    """Create what is missing in ``directory`` and (re)write every config with free ports.

    ``default_policy`` overrides fields of :data:`DEFAULT_POLICY` for the initial default policy
    of a *new* cluster (tests use short TTLs or low rate limits); an existing cluster keeps its
    governance.json. ``policy_max_age_s`` goes into every node config (how old the newest
    policy attestation may be; 0 disables the check). ``progress`` is called with a short
    message before each slow step (the CA and certificates, the identities, the keystores).
    ``log_format`` (``text`` | ``json``; None: what the configs say, else text) goes into every
    config written (:mod:`mpcnet.cluster.log_format`). ``presign`` (None: an existing config's
    choice, else on) turns the coordinator's presignature pools on or off
    (:mod:`mpcnet.cluster.presign_config`).

    Crash safety: every file is written atomically and only when missing, and
    ``cluster-params.json`` (what makes DIR a cluster directory) is written last, so a run
    interrupted at any point (Ctrl-C) leaves nothing that blocks the next one, which completes
    what is missing. Raises ClusterError (bad topology or scrypt-n, or DIR holds another
    topology) before anything is written; OSError if DIR cannot be written.
    """
    check_topology(nodes, threshold)
    if isinstance(scrypt_n, bool) or not MIN_SCRYPT_N <= scrypt_n <= MAX_SCRYPT_N or scrypt_n & (scrypt_n - 1):
        # checked before anything is written: a directory created with it could never start
        raise ClusterError(f"scrypt-n: must be a power of two in [2**10, 2**20], got {scrypt_n}")
    directory = Path(directory).resolve()
    old = read_params(directory)
    if old is not None:
        if (old["nodes"], old["threshold"]) != (nodes, threshold):
            raise ClusterError(
                f"{directory} holds a {old['threshold']}-of-{old['nodes']} cluster; "
                f"cannot reuse it as {threshold}-of-{nodes} (use another --dir)"
            )
        scrypt_n = old.get("scrypt_n", scrypt_n)
        test_mode = old.get("test_mode", test_mode)
    directory.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    lay = Layout(directory, nodes, threshold)
    from mpcnet.cluster.replace import is_wiped  # a wiped node's host is gone: nothing of it is recreated

    gone = {f"node-{i}" for i in range(1, nodes + 1) if is_wiped(lay, i)}
    say("creating the dev CA and the certificates" if not lay.ca.cert.exists() else "checking the CA and the certificates")
    ca = create_ca(directory / "ca")
    certs_dir = directory / "certs"
    wanted = [("coordinator", "coordinator", True), ("client", "client", False)]  # nodes: make_dev_node below
    for name, role, server in wanted:
        if name in gone:
            continue
        path = lay.cert(name).cert
        # a server certificate of an older cluster may lack the DNS names: re-issue it
        if not path.exists() or (server and not set(server_hosts(name)) <= cert_hosts(path)):
            issue_cert(ca, certs_dir, name, role=role, server=server, hosts=server_hosts(name))
    say("the identities (admins, requester, approvers, auditor) and the governance")
    for name, role in DEMO_IDENTITIES:
        create_identity(ca, directory, name, role)
    if not lay.governance_path.exists():
        write_json(lay.governance_path, _new_governance(directory, default_policy))
    governance = json.loads(lay.governance_path.read_text())
    lay.governance()  # fails early on a damaged governance.json
    roster = []
    say(f"the keystores, enrolment requests and certificates of {nodes} nodes and the coordinator's keystore (scrypt)")
    ports = _ports(lay)
    mports = metrics_ports(lay, ports, say)  # issue 15: a metrics endpoint per process (mpcnet.cluster.metrics_ports)
    for i in range(1, nodes + 1):
        if f"node-{i}" in gone:
            continue
        # as `mpc-node init` + `mpc pki sign-csr` make them (mpcnet.cluster.devenrol)
        identity, encryption = make_dev_node(directory / "ca", lay.cert(f"node-{i}"), lay.node_dir(i), f"node-{i}",
                                             f"{DIAL_HOST}:{ports[i]}", server_hosts(f"node-{i}"), scrypt_n=scrypt_n)
        roster.append({"index": i, "name": f"node-{i}", "identity_public": identity.hex(), "encryption_public": encryption.hex()})
    if not lay.roster_path.exists():  # the genesis roster, once: every node stores it
        write_json(lay.roster_path, [_genesis_roster(lay, roster, ports).to_dict()])
    governance = dict(governance, roster_history=json.loads(lay.roster_path.read_text()))
    for i in range(1, nodes + 1):
        if f"node-{i}" in gone:  # its config stays as wipe-node/replace-node left it
            continue
        cert = lay.cert(f"node-{i}")
        write_json(
            lay.node_config(i),
            {
                "index": i,
                "name": f"node-{i}",
                "listen": f"{LISTEN_HOST}:{ports[i]}",
                "threshold": threshold,
                "keystore": "keystore.json",
                "store": "node.db",
                "passphrase_file": "passphrase",
                "tls": {"cert": str(cert.cert), "key": str(cert.key), "ca": str(ca.cert)},
                "session_timeout_s": session_timeout_s,
                "scrypt_n": scrypt_n,
                "log_file": str(lay.log(f"node-{i}")),
                "test_mode": test_mode,
                "audit_db": "audit.db",
                "policy_max_age_s": policy_max_age_s,
                "governance": governance,
                **metrics_section(mports[i]),
                **log_format_section(log_format, lay.node_config(i)),
            },
        )
    cc = lay.cert("coordinator")
    lay.coordinator_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(lay.coordinator_dir, 0o700)
    cpf = lay.coordinator_dir / "passphrase"
    if not cpf.exists():
        write_atomic(cpf, (secrets.token_urlsafe(32) + "\n").encode(), 0o600, overwrite=False)
    cks = lay.coordinator_dir / "keystore.json"
    if not cks.exists():
        create_keystore(cks, cpf.read_bytes().rstrip(b"\n"), scrypt_n=scrypt_n)
    write_json(
        lay.coordinator_config,
        {
            "name": "coordinator",
            "listen": f"{LISTEN_HOST}:{ports[0]}",
            "threshold": threshold,
            "db": "coordinator.db",
            "tls": {"cert": str(cc.cert), "key": str(cc.key), "ca": str(ca.cert)},
            "nodes": [{"index": i, "name": f"node-{i}", "endpoint": f"{DIAL_HOST}:{ports[i]}"} for i in range(1, nodes + 1)],
            "step_timeout_s": step_timeout_s,
            "log_file": str(lay.log("coordinator")),
            "keystore": "keystore.json",
            "passphrase_file": "passphrase",
            "audit_db": "audit.db",
            "governance": governance,
            "test_mode": test_mode,
            **metrics_section(mports[0]),
            **log_format_section(log_format, lay.coordinator_config),
            **presign_section(presign, lay.coordinator_config),  # issue 14: pools on by default
        },
    )
    (directory / "logs").mkdir(exist_ok=True)
    if old is None:  # last: DIR becomes a cluster directory only once it is complete
        write_json(directory / PARAMS_FILE,
                   {"nodes": nodes, "threshold": threshold, "scrypt_n": scrypt_n, "test_mode": test_mode, "host": LISTEN_HOST})
    from mpcnet.cluster.prometheus_setup import refresh_targets  # issue 15: a Prometheus of DIR follows the new ports

    refresh_targets(lay, say)
    return lay


def metrics_ports(lay: Layout, taken: list[int], say: Callable[[str], None] = lambda _m: None) -> list[int]:
    from mpcnet.cluster.metrics_ports import metrics_ports as ports

    return ports(lay, taken, say)


def metrics_section(port: int) -> dict[str, Any]:
    from mpcnet.cluster.metrics_ports import metrics_section as section

    return section(port)


def metrics_endpoints(lay: Layout) -> dict[str, str]:
    from mpcnet.cluster.metrics_ports import metrics_endpoints as endpoints

    return endpoints(lay)


def _genesis_roster(lay: Layout, roster: list[dict[str, Any]], ports: list[int]) -> SignedRosterChange:
    """Version 1 of the roster: every node with its identity and encryption keys, the SHA-256 of
    its TLS certificate and its dial endpoint, signed by admin1 and admin2 (development only: the
    launcher holds their keys)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    admin_set, initial_policy = lay.governance()
    entries = []
    for p in roster:
        endpoint = f"{DIAL_HOST}:{ports[p['index']]}"
        # from the node's request and certificate, checked as `mpc genesis new` checks them
        entry = dev_roster_entry(p["index"], lay.node_dir(p["index"]), lay.cert(p["name"]), lay.ca.cert, endpoint)
        if entry is None:  # a cluster directory of an older version (no enrolment requests)
            der = x509.load_pem_x509_certificate(lay.cert(p["name"]).cert.read_bytes()).public_bytes(Encoding.DER)
            entry = RosterEntry(
                p["index"], p["name"], bytes.fromhex(p["identity_public"]), bytes.fromhex(p["encryption_public"]),
                hashlib.sha256(der).digest(), endpoint,
            )
        entries.append(entry)
    change = RosterChange(Roster(1, 0, tuple(entries)), None, admin_set.digest())
    admins = sorted(name for name, role in DEMO_IDENTITIES if role == "admin")[:ADMIN_QUORUM]
    # signed as `mpc genesis sign` signs (the launcher holds the dev admins' keys)
    genesis = Genesis(lay.threshold, admin_set, initial_policy, (SignedRosterChange(change, ()),), lay.ca.cert.read_text())
    for n in admins:
        genesis = sign_genesis(genesis, n, load_identity(lay.dir, n).signing_key)
    verify_genesis(genesis)
    signed = genesis.roster_change
    verify_roster_change(None, signed, admin_set)
    return signed


def _new_governance(directory: Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A fresh cluster id, the admin set of admin1..3 (quorum 2) and the initial default policy,
    signed with admin1's and admin2's keys (development only: the launcher holds them)."""
    admins = {name: load_identity(directory, name) for name, role in DEMO_IDENTITIES if role == "admin"}
    admin_set = AdminSet({n: i.public_key for n, i in admins.items()}, ADMIN_QUORUM, secrets.token_bytes(32))
    spec = dict(DEFAULT_POLICY, **(overrides or {}))
    approvers = {n: load_identity(directory, n).public_key for n in spec["approvers"]}
    policy = KeyPolicy(
        version=1,
        approvers=approvers,
        approval_quorum=spec["approval_quorum"],
        requesters=frozenset(spec["requesters"]),
        ttl_seconds=spec["ttl_seconds"],
        rate_limit=RateLimit(spec["rate_limit"]["max_signatures"], spec["rate_limit"]["window_seconds"]),
        refresh_period_s=spec.get("refresh_period_s", 0),
    )
    change = PolicyChange(DEFAULT_SCOPE, policy, None, admin_set.digest())
    signers = sorted(admins)[:ADMIN_QUORUM]
    signed = SignedPolicyChange(change, tuple(sign_policy_change(change, n, admins[n].signing_key) for n in signers))
    signed.verify(admin_set, None)
    return {"admin_set": admin_set.to_dict(), "initial_policy": signed.to_dict()}


def initial_attestation(lay: Layout, admin: str = "admin1") -> dict[str, str]:
    """Attest the running cluster's policy heads as ``admin`` (whose key the launcher holds:
    development only) to the coordinator and every node, so that a fresh cluster signs at once.
    Returns the outcome per component (see :meth:`mpcnet.client.MpcClient.attest`)."""
    from mpcnet.client.sdk import MpcClient

    with MpcClient.from_cluster(lay.dir, identity=admin, timeout=30) as c:
        return c.attest()


def command(lay: Layout, name: str) -> list[str]:
    if name == "coordinator":
        return [sys.executable, "-m", "coordinator.main", "--config", str(lay.coordinator_config)]
    i = int(name.split("-")[1])
    return [sys.executable, "-m", "mpc_node.main", "--config", str(lay.node_config(i))]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SOURCE_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def info_doc(
    lay: Layout, pids: dict[str, int], supervisor_pid: int | None, status: str, restarts: dict[str, int] | None = None
) -> dict[str, Any]:
    eps = lay.endpoints()
    certs = {"client": {"cert": str(lay.cert("client").cert), "key": str(lay.cert("client").key)}}
    identities = {}
    for name, role in DEMO_IDENTITIES:
        ident = load_identity(lay.dir, name)
        identities[name] = {
            "role": role, "cert": str(ident.cert.cert), "key": str(ident.cert.key),
            "signing_key": str(lay.dir / "identities" / name / "signing.key"), "public_key": ident.public_key.hex(),
        }
    audit_keys = {"coordinator": json.loads((lay.coordinator_dir / "keystore.json").read_text())["identity_public"]}
    for i in range(1, lay.nodes + 1):
        with contextlib.suppress(OSError):  # a wiped node has no keystore (issue 12: mpc-cluster wipe-node)
            audit_keys[f"node-{i}"] = json.loads((lay.node_dir(i) / "keystore.json").read_text())["identity_public"]
    admin_set, _ = lay.governance()
    return {
        "status": status,
        "threshold": lay.threshold,
        "nodes": [
            {"index": i, "name": f"node-{i}", "endpoint": eps[f"node-{i}"], "pid": pids.get(f"node-{i}"), "log": str(lay.log(f"node-{i}"))}
            for i in range(1, lay.nodes + 1)
        ],
        "coordinator": {"endpoint": eps["coordinator"], "pid": pids.get("coordinator"), "log": str(lay.log("coordinator"))},
        "ca_cert": str(lay.ca.cert),
        "metrics": metrics_endpoints(lay),
        "certs": certs,
        "identities": identities,
        "admin_set": admin_set.to_dict(),
        "governance_root": admin_set.digest().hex(),
        "audit": {
            name: {
                "public_key": key,
                "db": str(lay.coordinator_dir / "audit.db" if name == "coordinator" else lay.dir / "nodes" / name / "audit.db"),
            }
            for name, key in audit_keys.items()
        },
        "supervisor_pid": supervisor_pid,
        "restarts": restarts or {},
        "updated_unix": int(time.time()),
    }


def health_channel(lay: Layout, endpoint: str) -> grpc.Channel:
    return grpc.secure_channel(endpoint, channel_credentials(lay.cert("client"), lay.ca.cert), options=CHANNEL_OPTIONS)


def check_health(lay: Layout, endpoint: str, timeout: float = 1.0) -> bool:
    ch = health_channel(lay, endpoint)
    try:
        return wait_for_health(ch, timeout=timeout)
    finally:
        ch.close()


def kill_and_reap(p: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``p`` (if it has not been reaped) and reap it, within seconds, also when a
    ``KeyboardInterrupt`` that landed inside an earlier ``poll()``/``wait()`` left the Popen's
    wait lock held: ``Popen.wait()`` would then block for ever, so the last resort reaps it with
    ``waitpid`` directly (the pid cannot have been reused: nothing reaped it)."""
    with contextlib.suppress(ProcessLookupError):
        p.kill()
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)


class LocalCluster:
    """Processes of a prepared cluster, managed synchronously (tests, benchmarks)."""

    def __init__(self, lay: Layout, env: dict[str, str] | None = None) -> None:
        self.lay = lay
        self.env = env or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.node_env: dict[int, dict[str, str]] = {}

    def start(self, name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise ClusterError(f"{name} is already running")
        env = child_env({**self.env, **(extra_env or {})})
        log = open(self.lay.log(name).with_suffix(".out"), "ab")
        p = subprocess.Popen(command(self.lay, name), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = p
        return p

    def start_all(self, timeout: float = 60.0) -> None:
        for i in range(1, self.lay.nodes + 1):
            self.start(f"node-{i}", self.node_env.get(i))
        self.wait_healthy([f"node-{i}" for i in range(1, self.lay.nodes + 1)], timeout=timeout)
        self.start("coordinator")
        self.wait_healthy(["coordinator"], timeout=timeout)
        self.write_info()
        initial_attestation(self.lay)

    def write_info(self) -> None:
        write_json(self.lay.info_path, info_doc(self.lay, {n: p.pid for n, p in self.procs.items()}, None, "running"))

    def wait_healthy(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        eps = self.lay.endpoints()
        deadline = time.monotonic() + timeout
        for name in names or self.lay.names():
            while True:
                p = self.procs.get(name)
                if p is not None and p.poll() is not None:
                    raise ClusterError(f"{name} exited with status {p.returncode}; see {self.lay.log(name)}")
                if check_health(self.lay, eps[name], timeout=1.0):
                    break
                if time.monotonic() > deadline:
                    raise ClusterError(f"{name} did not become healthy within {timeout:.0f}s")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_and_reap(p)

    def restart(self, name: str, extra_env: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        self.kill(name, signal.SIGTERM)
        self.start(name, extra_env)
        self.wait_healthy([name], timeout=timeout)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # also what a Ctrl-C (the __exit__ of a with) may leave
                kill_and_reap(p)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
