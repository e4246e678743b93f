"""``mpc-cluster add-node``: enrol one more local node in a running dev cluster (issue 11).

Steps, each safe to repeat (an interrupted run is completed by the next one):

1. As admin1, fetch the roster history from the coordinator and verify it against the cluster's
   admin set (:meth:`mpcnet.client.MpcClient.roster`); the new node's index is the largest
   index ever enrolled + 1 (indices are never reused, so it is also ``DIR/nodes/node-<index>``).
2. Make what the node needs, each only if missing: its TLS certificate (dev CA), data
   directory, passphrase file and keystore; read its identity and encryption public keys.
3. Build the roster change adding it (:func:`governance.roster.add_node`) and sign it with the
   dev admins admin1 and admin2 (the launcher holds their keys: development only). Ed25519
   signatures are deterministic, so a repeated run makes the same change.
4. Write the node's config (a copy of the lowest node's with its own index, name, port,
   certificate and log; ``governance.roster_history`` = the verified history plus the change,
   so it knows the roster that adds it before anyone else does) and ``DIR/roster.json`` (the
   history ``mpc-cluster up`` writes into every config, so a restarted cluster keeps the node);
   then ``cluster-params.json`` with one node more (atomic writes, in that order: a node config
   first, the topology last).
5. Ask the running supervisor (SIGUSR1) to start the processes it does not run yet; wait until
   the node is healthy.
6. Propose the change as admin1 and approve it as admin2 (through the coordinator, which pushes
   it to every node and starts the roster-implied reshares); wait until those key operations
   end.

Errors: :class:`~mpcnet.cluster.launcher.ClusterError` (usage) or
:class:`mpcnet.common.cliutil.Failed`; the SDK's :class:`~mpcnet.client.MpcError` propagates.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from governance.errors import GovernanceError
from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, add_node, sign_roster_change
from mpcnet.client.identities import load_identity
from mpcnet.cluster.devenrol import dev_roster_entry, make_dev_node
from mpcnet.cluster.launcher import (
    DIAL_HOST,
    LISTEN_HOST,
    MAX_LOCAL_NODES,
    PARAMS_FILE,
    ClusterError,
    Layout,
    check_health,
    free_ports,
    read_params,
    server_hosts,
)
from mpcnet.cluster.metrics_ports import own_metrics_section
from mpcnet.common.config import write_json
from mpcnet.common.pki import create_ca

DEV_ADMINS = ("admin1", "admin2")


@dataclass(frozen=True)
class Enrolment:
    """What add-node made for the new node: its roster ``entry``, the signed ``change`` adding it
    and the full ``history`` ending with that change."""

    entry: RosterEntry
    change: SignedRosterChange
    history: tuple[SignedRosterChange, ...]


def next_index(roster: Roster) -> int:
    """The largest index ever enrolled (revoked ones included) + 1; ClusterError beyond
    :data:`MAX_LOCAL_NODES`."""
    index = max(e.index for e in roster.entries) + 1
    if index > MAX_LOCAL_NODES:
        raise ClusterError(f"nodes: a local cluster has at most {MAX_LOCAL_NODES} nodes (the next index would be {index})")
    return index


def cert_fingerprint(path: Path) -> bytes:
    """SHA-256 of the DER encoding of the PEM certificate at ``path`` (what the roster names)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def _template(lay: Layout) -> dict[str, Any]:
    """The config of the lowest-numbered node (what a new node's config is copied from)."""
    for i in range(1, lay.nodes + 1):
        p = lay.node_config(i)
        if p.exists():
            doc: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
            return doc
    raise ClusterError(f"{lay.dir}: no node config to copy")


def _port(lay: Layout, index: int) -> int:
    """The port of ``node-<index>``'s existing config (a repeated run), else a free one."""
    try:
        return int(str(json.loads(lay.node_config(index).read_text(encoding="utf-8"))["listen"]).rpartition(":")[2])
    except (OSError, ValueError, KeyError, TypeError):
        return free_ports(1)[0]


def _began_here(lay: Layout, index: int, current: Roster) -> bool:
    """Whether an earlier add-node made ``node-<index>`` from ``current`` (a repeated run): its
    config's last roster change extends ``current`` and adds ``index``."""
    try:
        doc = json.loads(lay.node_config(index).read_text(encoding="utf-8"))
        last = SignedRosterChange.from_dict(doc["governance"]["roster_history"][-1]).change
    except (OSError, ValueError, KeyError, TypeError, IndexError, GovernanceError):
        return False
    return last.previous_digest == current.digest() and current.entry(index) is None and last.new_roster.entry(index) is not None


def make_node(lay: Layout, history: tuple[SignedRosterChange, ...], current: Roster) -> Enrolment:
    """Steps 2-4 of the module docstring for node ``next_index(current)`` (files written only
    when missing, configs atomically). ``history`` must be the verified history ending in
    ``current``. Returns the enrolment; writes nothing outside ``DIR``."""
    index = next_index(current)
    name = f"node-{index}"
    params = read_params(lay.dir) or {}
    scrypt_n = int(params.get("scrypt_n", 2**15))
    if index != lay.nodes + 1 and not (index == lay.nodes and _began_here(lay, index, current)):
        raise ClusterError(
            f"{lay.dir} runs nodes 1..{lay.nodes}, but the roster's next index is {index}: the directory and the roster disagree"
        )
    create_ca(lay.dir / "ca")
    cert = lay.cert(name)
    port = _port(lay, index)
    # keys, request and certificate as `mpc-node init` and `mpc pki sign-csr` make them
    make_dev_node(lay.dir / "ca", cert, lay.node_dir(index), name, f"{DIAL_HOST}:{port}", server_hosts(name), scrypt_n=scrypt_n)
    entry = dev_roster_entry(index, lay.node_dir(index), cert, lay.ca.cert, f"{DIAL_HOST}:{port}")
    assert entry is not None  # make_dev_node wrote the request
    admin_set, _ = lay.governance()
    change = RosterChange(add_node(current, entry), current.digest(), admin_set.digest())
    admins = [load_identity(lay.dir, n) for n in DEV_ADMINS]
    signed = SignedRosterChange(change, tuple(sign_roster_change(change, a.name, a.signing_key) for a in admins))
    full = (*history, signed)
    doc = _template(lay)
    doc.update({
        "index": index, "name": name, "listen": f"{LISTEN_HOST}:{port}",
        "tls": {**doc["tls"], "cert": str(cert.cert), "key": str(cert.key)}, "log_file": str(lay.log(name)),
    })
    doc.update(own_metrics_section(lay, index, port))  # not the template node's metrics port (issue 15)
    doc.pop("roster", None)  # the legacy fixed roster: the signed history replaces it
    governance = dict(doc.get("governance", {}))
    governance["roster_history"] = [s.to_dict() for s in full]
    doc["governance"] = governance
    write_json(lay.node_config(index), doc)
    write_json(lay.roster_path, [s.to_dict() for s in full])  # what `mpc-cluster up` writes into every config
    if lay.nodes < index:  # last: the supervisor (and the next `up`) starts the node from here on
        write_json(lay.dir / PARAMS_FILE, {**params, "nodes": index})
    return Enrolment(entry, signed, full)


def wait_healthy(lay: Layout, endpoint: str, timeout: float, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Whether the process at ``endpoint`` answers SERVING within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check_health(lay, endpoint, 1.0):
        if time.monotonic() > deadline:
            return False
        sleep(0.2)
    return True


def wait_reshared(client: Any, active: tuple[int, ...], timeout: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll ``ListKeys`` until every active key's committee is ``active``; Failed after
    ``timeout`` seconds naming the keys still held elsewhere."""
    from mpcnet.common.cliutil import Failed

    deadline = time.monotonic() + timeout
    while True:
        behind = [k for k in client.list_keys() if k.status == "active" and tuple(k.committee) != active]
        if not behind:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{k.key_id.hex()[:16]} (nodes {','.join(map(str, k.committee))})" for k in behind[:8])
            raise Failed(f"after {timeout:g} s these keys are not yet reshared to nodes {','.join(map(str, active))}: {names}")
        sleep(0.5)


def _retrying(op_id: str, progress: Callable[[str], None]) -> Callable[[str], None]:
    """What the wait for ``op_id`` says when the coordinator stops answering (it is restarting)."""
    return lambda why: progress(f"key operation {op_id}: the coordinator is not answering ({why[:200]}); retrying")


def signal_supervisor(pid: int) -> Callable[[str], None]:
    """What starts an added node under ``mpc-cluster``: SIGUSR1 to the supervisor ``pid``, which
    re-reads the topology and starts the nodes it does not run yet."""
    return lambda _name: os.kill(pid, signal.SIGUSR1)


def add_node_to_cluster(
    lay: Layout, start: Callable[[str], None], *, timeout: float, progress: Callable[[str], None],
) -> dict[str, Any]:
    """The whole add-node (module docstring) on the running cluster ``lay``; ``start(name)``
    starts the new node's process (:func:`signal_supervisor`; tests start it themselves).
    Returns a summary: ``index``, ``name``, ``endpoint``, ``proposal_id``,
    ``roster_version`` and ``operations`` (each ``KeyOperationView.as_dict()``).
    Raises ClusterError, :class:`mpcnet.common.cliutil.Failed` or MpcError."""
    from mpcnet.client.sdk import MpcClient
    from mpcnet.cluster.launcher import load_layout
    from mpcnet.common.cliutil import Failed

    with MpcClient.from_cluster(lay.dir, identity=DEV_ADMINS[0], timeout=60) as admin1, \
            MpcClient.from_cluster(lay.dir, identity=DEV_ADMINS[1], timeout=60) as admin2:
        progress("fetching and verifying the roster (as admin1)")
        view = admin1.roster()
        progress(f"making node-{next_index(view.roster)}: certificate, keystore, config")
        enrol = make_node(lay, view.history, view.roster)
        e = enrol.entry
        progress(f"starting {e.name}")
        start(e.name)
        new_lay = load_layout(lay.dir)
        if not wait_healthy(new_lay, e.endpoint, min(timeout, 120.0)):
            raise Failed(f"{e.name} did not become healthy; see {new_lay.log(e.name)}")
        progress(f"{e.name} healthy; proposing the roster change (admin1) and approving it (admin2)")
        p = admin1.propose_roster_change(enrol.change.change.new_roster)
        if p.state == "pending":
            p = admin2.approve_lifecycle(p.proposal_id, expect_digest=enrol.change.change.digest())
        if p.state != "applied":
            raise Failed(f"roster change {p.proposal_id} is {p.state}, not applied{': ' + p.error if p.error else ''}")
        ops = []
        for op_id in p.operations:
            progress(f"waiting for key operation {op_id}")
            v = admin1.wait_key_operation(op_id, timeout, on_retry=_retrying(op_id, progress))
            if v.state != "done":
                o = v.operation
                raise Failed(
                    f"{e.name} is enrolled (roster version {p.signed.change.new_roster.version}), but key operation {op_id} "  # type: ignore[union-attr]
                    f"{v.state}: {v.error}; once the cause is fixed, reshare the key to it: 'mpc --cluster {lay.dir} --as admin1 "
                    f"key reshare {o.key_id.hex()} --threshold {o.new_threshold} --nodes {','.join(map(str, o.new_committee))}'"
                )
            ops.append(v.as_dict())
        active = tuple(x.index for x in enrol.change.change.new_roster.entries if x.active)
        progress(f"waiting until every key is held by nodes {','.join(map(str, active))}")
        wait_reshared(admin1, active, timeout)
    return {
        "index": e.index, "name": e.name, "endpoint": e.endpoint, "proposal_id": p.proposal_id,
        "roster_version": enrol.change.change.new_roster.version, "operations": ops,
    }
