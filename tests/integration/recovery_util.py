"""Helpers for the issue 12 tests on real processes: a supervised dev cluster (``mpc-cluster``,
so nodes can be wiped and replaced), raw gRPC stubs acting as any identity of it (the tests play
officers, admins and a compromised coordinator), the recovery configuration and orders built
from :mod:`governance.recovery` and signed with the dev admins' keys."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, child_env, load_layout
from mpcnet.common.pki import CertPaths, channel_credentials
from mpcnet.common.rpc import CHANNEL_OPTIONS
from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2_grpc

OFFICERS = ("officer1", "officer2", "officer3")


def mpc_cluster(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", *args], env=child_env(), capture_output=True,
                          text=True, timeout=timeout)


def mpc(d: Path, who: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``mpc --cluster D --as WHO ARGS``; never a traceback, exit 0 unless ``ok`` is False."""
    p = subprocess.run([sys.executable, "-m", "mpcnet.client.cli", "--cluster", str(d), "--as", who, *args], env=child_env(),
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in p.stderr, p
    if ok:
        assert p.returncode == 0, p
    return p


def mpc_json(d: Path, who: str, *args: str) -> Any:
    return json.loads(mpc(d, who, *args, "--json").stdout)


def age_recipient(out: str) -> str:
    """The ``age1...`` recipient ``mpc officer keygen`` printed."""
    m = re.search(r"age1[02-9ac-hj-np-z]{58}", out)
    assert m is not None, out
    return m.group(0)


def officers_by_cli(d: Path, home: Path, quorum: int = 2, export_quorum: int = 3) -> dict[str, Path]:
    """Officers 1..3 make their keys (``mpc officer keygen``, in ``home/officerN/``); admin1
    proposes the configuration, admin2 approves. Their identity files."""
    keys = {}
    for o in OFFICERS:
        keys[o] = home / o / "recovery.key"
        keys[o].parent.mkdir(mode=0o700)
    recipients = {o: age_recipient(mpc(d, "auditor1", "officer", "keygen", "--out", str(keys[o])).stdout) for o in OFFICERS}
    p = mpc_json(d, "admin1", "recovery", "officers", "set", *[a for o in OFFICERS for a in ("--officer", f"{o}={recipients[o]}")],
                 "--quorum", str(quorum), "--export-quorum", str(export_quorum))["proposal"]
    approved = mpc_json(d, "admin2", "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"])
    assert approved["proposal"]["state"] == "applied", approved
    return keys


def approve(d: Path, proposal: dict[str, Any], admin: str = "admin2") -> dict[str, Any]:
    """``admin`` approves ``proposal`` pinned by its digest; the approval's JSON."""
    out: dict[str, Any] = mpc_json(d, admin, "lifecycle", "approve", proposal["proposal_id"], "--expect-digest", proposal["digest"])
    return out


def wait_until(what: str, fn: Callable[[], Any], timeout: float = 120.0, every: float = 0.5) -> Any:
    """``fn()`` until it returns something truthy; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


@dataclass
class RecoveryCluster:
    """A running supervised cluster and the officers' age keys (made off the cluster, as an
    officer would on her own machine)."""

    dir: Path
    home: Path
    officer_keys: dict[str, bytes] = field(default_factory=dict)  # name -> X25519 private key (32)
    officer_publics: dict[str, bytes] = field(default_factory=dict)  # name -> X25519 public key (32)
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def lay(self) -> Layout:
        return load_layout(self.dir)

    def identity_file(self, officer: str) -> Path:
        return self.home / officer / "recovery.key"

    def _channel(self, endpoint: str, cert: CertPaths) -> grpc.Channel:
        ch = grpc.secure_channel(endpoint, channel_credentials(cert, self.lay.ca.cert), options=CHANNEL_OPTIONS)
        self.channels.append(ch)
        return ch

    def coordinator(self, who: str) -> coordinator_pb2_grpc.CoordinatorStub:
        """The coordinator, called as identity ``who`` (admin1, officer2, auditor1, ...)."""
        info = json.loads(self.lay.info_path.read_text())
        return coordinator_pb2_grpc.CoordinatorStub(self._channel(info["coordinator"]["endpoint"], load_identity(self.dir, who).cert))

    def node(self, index: int) -> node_pb2_grpc.NodeStub:
        """Node ``index``, called with the coordinator's certificate (a compromised coordinator)."""
        ep = self.lay.endpoints()[f"node-{index}"]
        return node_pb2_grpc.NodeStub(self._channel(ep, self.lay.cert("coordinator")))

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        self.channels.clear()


@contextmanager
def recovery_cluster(tmp: Path, nodes: int = 5, threshold: int = 3) -> Iterator[RecoveryCluster]:
    """``mpc-cluster up`` (fast scrypt) and three officers' age keys in ``tmp/officerN/``;
    stopped at the end."""
    from mpcnet.common import agekeys

    d = tmp / "cluster"
    up = mpc_cluster("up", "--dir", str(d), "-n", str(nodes), "-t", str(threshold), "--scrypt-n", "1024", "--quiet")
    assert up.returncode == 0, up
    rc = RecoveryCluster(d, tmp)
    try:
        for o in OFFICERS:
            priv, pub = agekeys.generate()
            rc.identity_file(o).parent.mkdir(mode=0o700)
            agekeys.write_identity_file(rc.identity_file(o), priv)
            rc.officer_keys[o], rc.officer_publics[o] = priv, pub
        yield rc
    finally:
        rc.close()
        mpc_cluster("stop", "--dir", str(d))


def admin_signed(rc: RecoveryCluster, sign: Callable[[Any, str, Any], Any], what: Any, admins: tuple[str, ...]) -> tuple[Any, ...]:
    """``sign(what, name, key)`` by each admin in ``admins`` (the dev cluster's admin keys)."""
    return tuple(sign(what, a, load_identity(rc.dir, a).signing_key) for a in admins)


def propose_and_approve(rc: RecoveryCluster, rpc: str, request: Any, message: Any,
                        sign: Callable[[Any, str, Any], Any], approvers: tuple[str, ...]) -> coordinator_pb2.LifecycleProposal:
    """admin1 proposes (``rpc`` with ``request``, already carrying admin1's signature); each of
    ``approvers`` approves with a signature over ``message``. The last proposal state."""
    p = getattr(rc.coordinator("admin1"), rpc)(request, timeout=60)
    for a in approvers:
        sig = sign(message, a, load_identity(rc.dir, a).signing_key)
        p = rc.coordinator(a).ApproveLifecycleProposal(
            coordinator_pb2.ApproveLifecycleProposalRequest(proposal_id=p.proposal_id, admin=a, signature=sig.signature), timeout=120)
    return p


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    """The gRPC error ``fn()`` raises; AssertionError if it succeeds."""
    try:
        fn()
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded; it must be refused")


def new_id() -> bytes:
    return secrets.token_bytes(16)
