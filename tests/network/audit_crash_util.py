"""Crash tests of the node's audit outbox on real processes (issue 14 red team: a state change and
its audit entry are ONE transaction).

A child process (``python -m tests.network.audit_crash_util SCENARIO LAYOUT_DIR ARGS...``) opens
the layout's nodes in process (:func:`tests.network.keyops_util.services`, test mode, with
``MPC_TEST_FAULT_FILE`` set), prepares what the scenario needs, arms the test-mode crash point
``audit-queued`` for one entry action (:func:`arm`) and makes the state change: the process dies
with exit code 137 (like ``kill -9``) right after the store committed the change with its queued
entry, before the entry reached the audit log. The parent then restarts the node
(:func:`restart_entries`: a NodeService flushes its outbox at start) and checks that the entry is
in the log exactly once and the chain verifies (:func:`mpcnet.common.stores.audit.verify_audit`
with the node's identity key, what ``mpc audit verify`` does).

The child prints one JSON object per line (facts the parent needs, e.g. a key id) before it dies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from governance.audit import AuditEntry
from mpc_node import faults as node_faults
from mpc_node.config import load_node_config
from mpcnet.cluster.launcher import Layout, load_layout, prepare
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.stores.audit import verify_audit

REPO = Path(__file__).resolve().parents[2]
N, T = 3, 2
CRASHED = 137  # mpc_node.faults: os._exit(137) at a crash point


def make_layout(tmp: Path) -> Layout:
    """A 2-of-3 dev layout in test mode (fault injection honoured)."""
    return prepare(tmp, N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


def fault_file(lay: Layout) -> Path:
    return lay.dir / "faults" / "node.json"


def arm(lay: Layout, tag: str, point: str = "audit-queued") -> None:
    """Crash (once) at ``point`` for the entry of action ``tag``."""
    path = fault_file(lay)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"action": "crash", "point": point, "tag": tag}))


def say(**facts: Any) -> None:
    """Child side: tell the parent ``facts`` (one JSON line, flushed before any crash)."""
    print(json.dumps(facts), flush=True)


def crash(lay: Layout, scenario: str, *args: str, timeout: float = 600) -> list[dict[str, Any]]:
    """Run ``scenario`` in a child process that must die at the armed crash point (exit code 137,
    the fault file consumed); returns what it said (:func:`say`)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **{node_faults.ENV: str(fault_file(lay))})
    proc = subprocess.run(
        [sys.executable, "-m", "tests.network.audit_crash_util", scenario, str(lay.dir), *args],
        capture_output=True, env=env, cwd=REPO, timeout=timeout, check=False,
    )  # fmt: skip
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == CRASHED, f"exit {proc.returncode}\n{out}\n{proc.stderr.decode(errors='replace')[-4000:]}"
    assert not fault_file(lay).exists()  # the crash point fired (once)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def restart_entries(lay: Layout, i: int) -> list[AuditEntry]:
    """Start node ``i`` again (in process: its NodeService flushes the outbox at start), close it,
    check that its audit chain verifies and its outbox is empty; return every entry of its log."""
    from .keyops_util import close, services

    svcs = services(lay, only=i)
    try:
        assert svcs[i].store.pending_audit() == []
        entries = svcs[i].audit.entries()
    finally:
        close(svcs)
    cfg = load_node_config(lay.node_config(i))
    keys = load_keystore(cfg.keystore, read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env))
    report = verify_audit(cfg.audit_db, keys.identity_public)
    assert report.ok, report
    return entries


def matching(entries: Sequence[AuditEntry], action: str, outcome: str | None = None, **details: Any) -> list[AuditEntry]:
    """The entries of ``action`` (and ``outcome``) whose details hold ``details``."""
    return [
        e for e in entries
        if e.action == action and (outcome is None or e.outcome == outcome) and all(e.details.get(k) == v for k, v in details.items())
    ]  # fmt: skip


# --- the child's scenarios -------------------------------------------------------------------

SCENARIOS: dict[str, Callable[..., None]] = {}


def scenario(fn: Callable[..., None]) -> Callable[..., None]:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


def main(argv: Sequence[str]) -> int:
    name, directory, *args = argv
    lay = load_layout(Path(directory))
    SCENARIOS[name](lay, *args)
    return 0  # not reached when the crash point fires (the parent sees exit code 0: a failure)


def _dkg(svcs: dict[int, Any], label: bytes = b"crash") -> Any:
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import run

    res = run(svcs, os.urandom(32), sorted(svcs), dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=label))
    return res[1].dkg_result


@scenario
def keygen(lay: Layout) -> None:
    """Crash as the first node stores its pending share with its ``keygen`` entry."""
    from .keyops_util import services

    svcs = services(lay)
    arm(lay, "keygen")
    _dkg(svcs)


@scenario
def commit_key(lay: Layout) -> None:
    """Crash as node 1 activates a key (``key-activate``)."""
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import services

    svcs = services(lay)
    k = _dkg(svcs)
    say(key_id=k.key_id.hex())
    arm(lay, "key-activate")
    svcs[1].CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)


@scenario
def discard_key(lay: Layout) -> None:
    """Crash as node 1 discards a pending key (``key-discard``)."""
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import services

    svcs = services(lay)
    k = _dkg(svcs)
    say(key_id=k.key_id.hex())
    arm(lay, "key-discard")
    svcs[1].DiscardKey(node_pb2.DiscardKeyRequest(key_id=k.key_id), None)


START_DISCARDS = {"presign": "presign-discard", "nonces": "frost-nonces-discard"}


def leave_fresh(lay: Layout, what: str, count: int) -> bytes:
    """Put a key and ``count`` fresh presignatures (``what`` ``presign``) or FROST nonces
    (``nonces``) in node 1's store (as a node stopped with them left them); returns the key id."""
    from mpc_node.nonce_store import FreshNonce, NonceInfo
    from mpc_node.storage import NodeStore

    cfg = load_node_config(lay.node_config(1))
    pp = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    key_id = os.urandom(32)
    with NodeStore.open(cfg.store, pp, cfg.index, scrypt_n=cfg.scrypt_n) as store:
        if what == "presign":
            store.put_key_share(key_id, b"not a share", label="leftovers", public_key=b"\x02" * 33, threshold=2, parties=3)
            store.activate_key(key_id)
            for _ in range(count):
                store.put_presignature(os.urandom(32), key_id, b"fresh presignature")
        else:
            store.put_key_share(key_id, b"not a share", label="leftovers", public_key=b"\x11" * 32, threshold=2, parties=3,
                                scheme="ed25519")  # fmt: skip
            store.activate_key(key_id)
            batch = [
                FreshNonce(NonceInfo(os.urandom(32), key_id, 0, 1, os.urandom(32), os.urandom(32), 1000), b"secret-" + os.urandom(16))
                for _ in range(count)
            ]  # fmt: skip
            store.put_nonces(key_id, 0, batch, cap=count)
    return key_id


@scenario
def start_discard(lay: Layout, what: str, count: str) -> None:
    """Leave ``count`` fresh presignatures or nonces (:func:`leave_fresh`) in node 1's store, then
    crash as its start deletes them (the ``presign-discard`` / ``frost-nonces-discard`` entry,
    reason ``node-start``, committed with the deletion)."""
    from .keyops_util import services

    say(key_id=leave_fresh(lay, what, int(count)).hex())
    arm(lay, START_DISCARDS[what])
    services(lay, only=1)


def committed_key(lay: Layout, svcs: dict[int, Any]) -> Any:
    """A fresh active 2-of-3 key of ``svcs`` (DKG and CommitKey on every node)."""
    from mpcnet.wire.mpc.v1 import node_pb2

    k = _dkg(svcs)
    for svc in svcs.values():
        svc.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def reshare(lay: Layout, svcs: dict[int, Any], key: Any, new: tuple[int, ...], dealers: list[int]) -> tuple[bytes, dict[int, Any]]:
    """A key operation of ``key`` from epoch 0 (committee 1..3, threshold 2) to committee ``new``
    (threshold 2; a refresh when it is unchanged) dealt by ``dealers``, run among the dealers and
    the new committee; returns (session id, the answers)."""
    from governance.keyop import KeyOpKind
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import operation, run

    kind = KeyOpKind.REFRESH if new == (1, 2, 3) else KeyOpKind.RESHARE
    op = operation(lay, svcs[1].gov.governance_root, key, kind=kind, old=(1, 2, 3), new=new, old_t=2, new_t=2)
    sid = os.urandom(32)
    among = sorted(set(dealers) | set(new))
    return sid, run(svcs, sid, among, reshare=node_pb2.ReshareParams(operation=op.to_bytes(), dealers=dealers, key_label=b"crash"))


def commit_request(key_id: bytes, sid: bytes, res: dict[int, Any]) -> Any:
    from mpcnet.wire.mpc.v1 import node_pb2

    receipts = [r.reshare_result.receipt for r in res.values() if r.reshare_result.receipt]
    return node_pb2.CommitEpochRequest(key_id=key_id, session_id=sid, receipts=receipts)


@scenario
def reshare_stored(lay: Layout) -> None:
    """Crash as the first node stores its refresh outcome with its ``key-reshare`` entry."""
    from .keyops_util import services

    svcs = services(lay)
    k = committed_key(lay, svcs)
    say(key_id=k.key_id.hex())
    arm(lay, "key-reshare/stored-pending")
    reshare(lay, svcs, k, (1, 2, 3), [1, 2, 3])


@scenario
def commit_epoch(lay: Layout) -> None:
    """Crash as node 1 commits a refresh (``key-epoch`` ``committed``)."""
    from .keyops_util import services

    svcs = services(lay)
    k = committed_key(lay, svcs)
    sid, res = reshare(lay, svcs, k, (1, 2, 3), [1, 2, 3])
    say(key_id=k.key_id.hex(), session=sid.hex())
    arm(lay, "key-epoch/committed")
    svcs[1].CommitEpoch(commit_request(k.key_id, sid, res), None)


@scenario
def leave_key(lay: Layout) -> None:
    """Node 3 took no part in a reshare to committee (1, 2): crash as its CommitEpoch erases its
    share (``key-epoch`` ``left``)."""
    from .keyops_util import services

    svcs = services(lay)
    k = committed_key(lay, svcs)
    sid, res = reshare(lay, svcs, k, (1, 2), [1, 2])
    req = commit_request(k.key_id, sid, res)
    for i in (1, 2):
        svcs[i].CommitEpoch(req, None)
    say(key_id=k.key_id.hex(), session=sid.hex())
    arm(lay, "key-epoch/left")
    svcs[3].CommitEpoch(req, None)


@scenario
def discard_epoch(lay: Layout) -> None:
    """Crash as node 1 abandons a session of a key (``key-epoch`` ``abandoned``)."""
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import services

    svcs = services(lay)
    k = committed_key(lay, svcs)
    sid = os.urandom(32)
    say(key_id=k.key_id.hex(), session=sid.hex())
    arm(lay, "key-epoch/abandoned")
    svcs[1].DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=k.key_id, session_id=sid), None)


def recovery_config(lay: Layout, svcs: dict[int, Any]) -> Any:
    """The layout's recovery configuration 1 (three fresh officers, quorum 2, export quorum 3),
    made once and kept in the layout directory (a later child installs the very same one)."""
    from governance.recovery import (
        Officer,
        RecoveryConfig,
        RecoveryConfigChange,
        SignedRecoveryConfigChange,
        sign_recovery_config_change,
    )
    from mpcnet.client.identities import load_identity
    from mpcnet.common import agekeys

    path = lay.dir / "crash-recovery-config.bin"
    if path.exists():
        return SignedRecoveryConfigChange.from_bytes(path.read_bytes())
    officers = [agekeys.generate() for _ in range(3)]
    (lay.dir / "crash-officers.json").write_text(json.dumps([[a.hex(), b.hex()] for a, b in officers]))  # test only
    cfg = RecoveryConfig(1, tuple(Officer(f"officer{k}", pub) for k, (_, pub) in enumerate(officers, 1)), 2, 3, 0)
    change = RecoveryConfigChange(svcs[1].gov.governance_root, None, cfg)
    sigs = tuple(sign_recovery_config_change(change, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedRecoveryConfigChange(change, sigs)
    path.write_bytes(signed.to_bytes())
    return signed


def install_config(svcs: dict[int, Any], signed: Any, among: Sequence[int]) -> None:
    from mpcnet.wire.mpc.v1 import node_pb2

    for i in among:
        svcs[i].InstallRecoveryConfig(node_pb2.InstallRecoveryConfigRequest(history=[signed.to_bytes()]), None)


@scenario
def confirmation_released(lay: Layout) -> None:
    """Nodes 1 and 2 confirmed a refresh session node 3 never stored (it then abandoned it):
    crash as node 1, starting the next session with node 3's abandonment, erases its confirmed
    outcome (``key-epoch`` ``confirmation-released``)."""
    from governance.keyop import KeyOpKind
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import operation, services

    svcs = services(lay)
    k = committed_key(lay, svcs)
    sid, _ = reshare(lay, svcs, k, (1, 2, 3), [1, 2, 3])
    with svcs[3].store._write() as c:  # node 3 "crashed" before storing (test only): it never confirmed sid
        c.execute("DELETE FROM pending_epochs WHERE key_id = ? AND session_id = ?", (k.key_id, sid))
    proof = svcs[3].DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=k.key_id, session_id=sid), None).abandonment
    op = operation(lay, svcs[1].gov.governance_root, k, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    params = node_pb2.ReshareParams(operation=op.to_bytes(), dealers=[1, 2, 3], key_label=b"crash", abandoned=[proof])
    say(key_id=k.key_id.hex(), session=sid.hex())
    arm(lay, "key-epoch/confirmation-released")
    svcs[1].StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), reshare=params), None)


@scenario
def install_recovery_config(lay: Layout) -> None:
    """Crash as node 1 installs recovery configuration 1 (``recovery-config`` ``installed``)."""
    from .keyops_util import services

    svcs = services(lay)
    signed = recovery_config(lay, svcs)
    arm(lay, "recovery-config/installed")
    install_config(svcs, signed, [1])


@scenario
def backup_part(lay: Layout) -> None:
    """Crash as node 1 stores the backup part of a key (``backup-part`` ``made``)."""
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import services

    svcs = services(lay)
    install_config(svcs, recovery_config(lay, svcs), [1, 2, 3])
    k = committed_key(lay, svcs)
    say(key_id=k.key_id.hex())
    arm(lay, "backup-part/made")
    svcs[1].GetBackupPart(node_pb2.GetBackupPartRequest(key_id=k.key_id, epoch=0), None)


@scenario
def recovery_order(lay: Layout) -> None:
    """Crash as node 1 installs a restore order of a key (``recovery-order`` ``installed``)."""
    from governance.keyop import KeyOperation, KeyOpKind
    from governance.recovery import (
        RecoveryOrder,
        RecoveryOrderKind,
        RecoveryTarget,
        SignedBackupPart,
        SignedRecoveryOrder,
        sign_recovery_order,
    )
    from governance.roster import SignedRosterChange
    from mpcnet.client.identities import load_identity
    from mpcnet.common.backup import key_record
    from mpcnet.common.bundle import assemble_bundle
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import services, share

    svcs = services(lay)
    config = recovery_config(lay, svcs)
    install_config(svcs, config, [1, 2, 3])
    k = committed_key(lay, svcs)
    parts = [
        SignedBackupPart.from_bytes(s.GetBackupPart(node_pb2.GetBackupPartRequest(key_id=k.key_id, epoch=0), None).signed_part)
        for s in svcs.values()
    ]  # fmt: skip
    ks = share(svcs[1], k.key_id)
    assert ks is not None
    history = tuple(SignedRosterChange.from_bytes(b) for b in svcs[1].roster_state.history())
    bundle = assemble_bundle(key_record(ks, (1, 2, 3)), config, history, parts, 1)
    root = svcs[1].gov.governance_root
    follow = KeyOperation(
        root, os.urandom(16), KeyOpKind.REFRESH, k.key_id, k.public_key, k.chain_code, 0, T, (1, 2, 3), T, (1, 2, 3), 1, "follow-up",
    )
    order = RecoveryOrder(
        root, os.urandom(16), RecoveryOrderKind.RESTORE, k.key_id, k.public_key, k.chain_code, 0, bundle.digest(), 1, 1,
        (RecoveryTarget(3, 3),), b"", follow, "node 3 lost its disk", 4_102_444_800_000,
    )
    sigs = tuple(sign_recovery_order(order, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    say(key_id=k.key_id.hex(), order_id=order.order_id.hex())
    arm(lay, "recovery-order/installed")
    svcs[1].InstallRecoveryOrder(node_pb2.InstallRecoveryOrderRequest(signed_order=SignedRecoveryOrder(order, sigs).to_bytes()), None)


@scenario
def restore_share(lay: Layout) -> None:
    """Node 3 lost its store: crash as it stores the share restored from two officers' pieces
    under an admin-signed order (``share-restored`` ``restored``)."""
    from governance.keyop import KeyOperation, KeyOpKind
    from governance.recovery import (
        PiecePurpose,
        RecoveryOrder,
        RecoveryOrderKind,
        RecoveryTarget,
        SignedBackupPart,
        SignedRecoveryOrder,
        sign_recovery_order,
    )
    from governance.roster import SignedRosterChange
    from mpcnet.client.identities import load_identity
    from mpcnet.common.backup import key_record, officer_deliveries
    from mpcnet.common.bundle import assemble_bundle
    from mpcnet.wire.mpc.v1 import node_pb2

    from .keyops_util import services, share

    svcs = services(lay)
    config = recovery_config(lay, svcs)
    officers = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in json.loads((lay.dir / "crash-officers.json").read_text())]
    install_config(svcs, config, [1, 2, 3])
    k = committed_key(lay, svcs)
    parts = [
        SignedBackupPart.from_bytes(s.GetBackupPart(node_pb2.GetBackupPartRequest(key_id=k.key_id, epoch=0), None).signed_part)
        for s in svcs.values()
    ]  # fmt: skip
    ks = share(svcs[1], k.key_id)
    assert ks is not None
    history = tuple(SignedRosterChange.from_bytes(b) for b in svcs[1].roster_state.history())
    bundle = assemble_bundle(key_record(ks, (1, 2, 3)), config, history, parts, 1)
    svcs[3].store.close()  # node 3 loses its disk (its keystore and audit log stay)
    svcs[3].audit.close()
    store = Path(svcs[3].cfg.store)
    for f in store.parent.glob(store.name + "*"):
        f.unlink()
    svcs[3] = services(lay, only=3)[3]
    install_config(svcs, config, [3])
    root = svcs[1].gov.governance_root
    follow = KeyOperation(
        root, os.urandom(16), KeyOpKind.REFRESH, k.key_id, k.public_key, k.chain_code, 0, T, (1, 2, 3), T, (1, 2, 3), 1, "follow-up",
    )
    order = RecoveryOrder(
        root, os.urandom(16), RecoveryOrderKind.RESTORE, k.key_id, k.public_key, k.chain_code, 0, bundle.digest(), 1, 1,
        (RecoveryTarget(3, 3),), b"", follow, "node 3 lost its disk", 4_102_444_800_000,
    )
    sigs = tuple(sign_recovery_order(order, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedRecoveryOrder(order, sigs)
    target = svcs[3].keys.encryption_public
    pieces = [
        officer_deliveries(bundle, officers[j][0], ceremony_id=order.order_id, purpose=PiecePurpose.RESTORE, targets={3: target})[3]
        for j in (1, 2)
    ]  # fmt: skip
    say(key_id=k.key_id.hex(), order_id=order.order_id.hex())
    arm(lay, "share-restored/restored")
    svcs[3].RestoreShare(node_pb2.RestoreShareRequest(signed_order=signed.to_bytes(), bundle=bundle.to_file(), pieces=pieces), None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
