"""``mpc-cluster wipe-node N`` and ``mpc-cluster replace-node N``: lose a node's host, then
enrol a fresh host in its place (issue 12, disaster-recovery rehearsals).

A node of a local dev cluster is in one of four states (:func:`node_state`):

- ``live``: its data directory is whole; the supervisor runs it.
- ``wiped``: ``mpc-cluster wipe-node N`` wrote the marker ``DIR/nodes/node-N.wiped`` first (so
  the supervisor does not restart it), killed its process (SIGKILL: the host is gone, nothing
  is flushed), then deleted everything in ``DIR/nodes/node-N/`` but ``config.json`` (the
  launcher's record of where the host listened: the roster names that endpoint), and its TLS
  certificate and key. Keystore, passphrase, store (shares, roster, policies), audit log: gone.
  ``mpc-cluster up`` neither recreates nor starts it.
- ``replaced``: ``mpc-cluster replace-node N`` made a fresh host: a new TLS certificate (dev
  CA), passphrase, keystore (new identity and encryption keys) and an empty store, a config
  listening on the endpoint the roster names, and an enrolment file (``index``, ``name``,
  ``identity_key``, ``encryption_key``, ``tls_fingerprint``, ``endpoint``; public data) for
  ``mpc node replace N --enrolment FILE``, which proposes the roster rotation of entry N to those
  keys. The node is not started yet: the roster in force still names the lost host's keys.
- ``ready``: the roster in force (:func:`mpcnet.cluster.roster_view.history_in_force`, verified
  against the cluster's admin set) names the replacement's identity and encryption keys at N.
  The supervisor then activates it (:func:`activate`: its config's
  ``governance.roster_history`` becomes that verified chain, the marker is removed) and starts
  it; ``mpc-cluster up`` on a running cluster asks the supervisor (SIGUSR1) to do so.

Every file is written atomically; each step is safe to repeat (an interrupted wipe is completed
by the next one; a repeated replace reuses the replacement's keys, so its enrolment is the same).
Errors: :class:`~mpcnet.cluster.launcher.ClusterError` naming the field or the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from governance.roster import RosterEntry
from mpcnet.cluster.devenrol import make_dev_node
from mpcnet.cluster.launcher import (
    DIAL_HOST,
    LISTEN_HOST,
    ClusterError,
    Layout,
    read_params,
    server_hosts,
)
from mpcnet.cluster.metrics_ports import own_metrics_section
from mpcnet.common.config import write_json
from mpcnet.common.datadir import lock_holder
from mpcnet.common.fsutil import write_atomic

NodeState = Literal["live", "wiped", "replaced", "ready"]
KEEP_ON_WIPE = frozenset({"config.json"})
"""What a wipe leaves in the node's directory: the launcher's record of the host's endpoint."""
KILL_WAIT_S = 10.0


def wiped_marker(lay: Layout, index: int) -> Path:
    """``DIR/nodes/node-<index>.wiped``: present from the start of a wipe until the replacement
    is activated."""
    return lay.dir / "nodes" / f"node-{index}.wiped"


def is_wiped(lay: Layout, index: int) -> bool:
    """Whether node ``index`` was wiped and its replacement not yet activated."""
    return wiped_marker(lay, index).exists()


def enrolment_path(lay: Layout, index: int) -> Path:
    """Where ``replace-node`` writes the enrolment file by default: ``DIR/enrolment-node-<index>.json``."""
    return lay.dir / f"enrolment-node-{index}.json"


def _check_index(lay: Layout, index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= lay.nodes:
        raise ClusterError(f"node: {lay.dir} has nodes 1..{lay.nodes}, got {index!r}")


def _keystore_keys(lay: Layout, index: int) -> tuple[bytes, bytes] | None:
    """(identity public, encryption public) of node ``index``'s keystore; None if it has none."""
    try:
        doc = json.loads((lay.node_dir(index) / "keystore.json").read_text(encoding="utf-8"))
        return bytes.fromhex(doc["identity_public"]), bytes.fromhex(doc["encryption_public"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _entry_in_force(lay: Layout, index: int) -> RosterEntry | None:
    from mpcnet.cluster.roster_view import roster_in_force

    roster = roster_in_force(lay)
    return None if roster is None else roster.entry(index)


def node_state(lay: Layout, index: int) -> NodeState:
    """The state of node ``index`` (module docstring)."""
    if not is_wiped(lay, index):
        return "live"
    keys = _keystore_keys(lay, index)
    if keys is None:
        return "wiped"
    e = _entry_in_force(lay, index)
    if e is not None and e.active and (e.identity_key, e.encryption_key) == keys:
        return "ready"
    return "replaced"


def held_back(lay: Layout) -> dict[str, NodeState]:
    """The nodes the supervisor must not start: ``node-N`` -> ``wiped`` or ``replaced``."""
    out: dict[str, NodeState] = {}
    for i in range(1, lay.nodes + 1):
        state = node_state(lay, i)
        if state in ("wiped", "replaced"):
            out[f"node-{i}"] = state
    return out


def ready_nodes(lay: Layout) -> list[int]:
    """The replaced nodes the roster in force now names (to activate and start)."""
    return [i for i in range(1, lay.nodes + 1) if node_state(lay, i) == "ready"]


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":  # exited; its parent reaps it
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def wipe_node(lay: Layout, index: int, *, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Wipe node ``index`` (module docstring): marker, SIGKILL of the process holding its data
    directory (found through its lock, so it is this cluster's), deletion of its data, keys and
    certificate. Returns ``{"index", "name", "killed_pid", "deleted"}`` (deleted file names).
    Raises ClusterError if ``index`` is not a node of DIR or its process survives SIGKILL."""
    _check_index(lay, index)
    name = f"node-{index}"
    nd = lay.node_dir(index)
    marker = wiped_marker(lay, index)
    marker.parent.mkdir(parents=True, exist_ok=True)
    if not marker.exists():  # first: from here on the supervisor neither restarts nor recreates it
        write_atomic(marker, f"wiped at {int(time.time())}\n".encode(), 0o600, overwrite=True)
    pid = lock_holder(nd) if nd.is_dir() else None
    if pid:
        progress(f"killing {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_dead(pid, KILL_WAIT_S):
            raise ClusterError(f"{name}: pid {pid} still runs after SIGKILL")
    progress(f"deleting {name}'s data, keys and certificate")
    deleted: list[str] = []
    if nd.is_dir():
        for p in sorted(nd.iterdir()):
            if p.name in KEEP_ON_WIPE:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            deleted.append(p.name)
    cert = lay.cert(name)
    for p in (cert.cert, cert.key):
        if p.exists():
            p.unlink()
            deleted.append(str(p.relative_to(lay.dir)))
    return {"index": index, "name": name, "killed_pid": pid or None, "deleted": deleted}


def enrolment_doc(entry: RosterEntry) -> dict[str, Any]:
    """The enrolment file's JSON (``mpc node add/replace --enrolment``): public keys and
    fingerprint in hex."""
    return {
        "index": entry.index, "name": entry.name, "identity_key": entry.identity_key.hex(),
        "encryption_key": entry.encryption_key.hex(), "tls_fingerprint": entry.tls_fingerprint.hex(),
        "endpoint": entry.endpoint,
    }


def replace_node(lay: Layout, index: int, *, out: Path | None = None,
                 progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Make the replacement host of wiped node ``index`` (module docstring) and write its
    enrolment file to ``out`` (default :func:`enrolment_path`). Returns ``{"index", "name",
    "endpoint", "enrolment", "identity_key", "encryption_key", "tls_fingerprint"}``.

    Raises ClusterError: ``index`` not a node of DIR, not wiped (``wipe-node`` first: a live
    host is never overwritten), no verified roster or entry ``index`` not active in it, or the
    replacement already activated.
    """
    from mpcnet.cluster.addnode import _template, cert_fingerprint
    from mpcnet.cluster.roster_view import history_in_force

    _check_index(lay, index)
    name = f"node-{index}"
    if not is_wiped(lay, index):
        raise ClusterError(f"node: {name} is not wiped; 'mpc-cluster wipe-node --dir {lay.dir} {index}' first (the host must be gone)")
    history = history_in_force(lay)
    if not history:
        raise ClusterError(f"{lay.dir}: no roster chain that verifies against the cluster's admin set")
    entry = history[-1].change.new_roster.entry(index)
    if entry is None or not entry.active:
        raise ClusterError(f"node: {name} is not an active node of roster version {history[-1].change.new_roster.version}")
    params = read_params(lay.dir) or {}
    scrypt_n = int(params.get("scrypt_n", 2**15))
    nd = lay.node_dir(index)
    nd.mkdir(parents=True, exist_ok=True)
    os.chmod(nd, 0o700)
    cert = lay.cert(name)
    ks = nd / "keystore.json"
    if not ks.exists() or not cert.cert.exists():
        progress(f"making {name}'s new identity, encryption and TLS keys and its certificate")
    # as `mpc-node init` and `mpc pki sign-csr` make them (mpcnet.cluster.devenrol)
    make_dev_node(lay.dir / "ca", cert, nd, name, entry.endpoint, server_hosts(name), scrypt_n=scrypt_n)
    keys = _keystore_keys(lay, index)
    if keys is None:
        raise ClusterError(f"{ks}: damaged (no identity_public/encryption_public)")
    if (entry.identity_key, entry.encryption_key) == keys:
        raise ClusterError(f"node: the roster already names {name}'s replacement keys; 'mpc-cluster up --dir {lay.dir}' starts it")
    port = entry.endpoint.rpartition(":")[2]
    doc = _template(lay) if not lay.node_config(index).exists() else json.loads(lay.node_config(index).read_text(encoding="utf-8"))
    doc.update({
        "index": index, "name": name, "listen": f"{LISTEN_HOST}:{port}",
        "tls": {**doc["tls"], "cert": str(cert.cert), "key": str(cert.key)}, "log_file": str(lay.log(name)),
    })
    doc.update(own_metrics_section(lay, index, int(port)))  # not the template node's metrics port (issue 15)
    doc.pop("roster", None)
    doc["governance"] = {**doc.get("governance", {}), "roster_history": [s.to_dict() for s in history]}
    write_json(lay.node_config(index), doc)
    new = RosterEntry(index, name, keys[0], keys[1], cert_fingerprint(cert.cert), f"{DIAL_HOST}:{port}")
    target = Path(out) if out is not None else enrolment_path(lay, index)
    write_json(target, enrolment_doc(new))
    return {"index": index, "name": name, "endpoint": new.endpoint, "enrolment": str(target),
            "identity_key": new.identity_key.hex(), "encryption_key": new.encryption_key.hex(),
            "tls_fingerprint": new.tls_fingerprint.hex()}


def activate(lay: Layout, index: int) -> bool:
    """If node ``index`` is ``ready``: write the verified roster chain (which names its new keys)
    into its config's ``governance.roster_history`` and remove the wipe marker, so it starts as
    a member. Returns whether it did; a node in any other state is left alone."""
    from mpcnet.cluster.roster_view import history_in_force

    if node_state(lay, index) != "ready":
        return False
    history = history_in_force(lay)
    doc = json.loads(lay.node_config(index).read_text(encoding="utf-8"))
    doc["governance"] = {**doc.get("governance", {}), "roster_history": [s.to_dict() for s in history]}
    write_json(lay.node_config(index), doc)
    wiped_marker(lay, index).unlink(missing_ok=True)
    return True
