"""A wall clock stepped back across a node restart or reboot revives no expired approval.

The node's expiry clock starts from the floor its store persisted (mpc_node/expiry_floor.py): the
later of the wall clock and the last expiry time it saw plus the steady time since. An operator
whose clock was wrongly ahead resets the floor offline with ``mpc-node reset-clock-floor``, which
refuses while the node runs. Same-process steps: tests/network/test_expiry_clock_step.py."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import ApprovalBundle
from governance.policy import DEFAULT_SCOPE, SignedPolicyChange, sign_policy_change
from mpc_node.config import load_node_config
from mpc_node.expiry_floor import behind_note, start_expiry_clock
from mpc_node.governance import NodeGovernance
from mpc_node.main import main
from mpc_node.storage import NodeStore, StoreError
from mpcnet.common.keystore import read_passphrase
from mpcnet.common.protection import open_operational_keys
from mpcnet.common.rpc import RpcError
from mpcnet.common.steadyclock import WALL_FLOOR_ROW, ExpiryClock
from mpcnet.common.stores.audit import AuditLog
from tests.steady_fake import FakeSteady

from ..governance.gov_util import ADMIN_KEYS, KEY_ID, NOW_MS, admin_set, approve, change, policy, request

DAY_MS = 86_400_000
TOLERANCE_MS = 30_000


def _gov(store: NodeStore, audit: AuditLog, expiry: ExpiryClock) -> NodeGovernance:
    c = change(policy(), None, scope=DEFAULT_SCOPE)
    initial = SignedPolicyChange(c, tuple(sign_policy_change(c, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))
    return NodeGovernance("node-1", admin_set(), initial, store, audit, max_age_s=0, clock=expiry.now_ms)


def _kind(gov: NodeGovernance, data: bytes) -> str:
    req = ApprovalBundle.from_bytes(data).request
    try:
        gov.check_sign(data, key_id=KEY_ID, digest=req.digest, path=req.derivation_path, request_id=req.request_id)
    except RpcError as e:
        return dict(e.metadata or ())["mpc-governance"]
    return "ok"


class Node:
    """A node's store, expiry clock and governance over an injected wall clock and steady clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.wall_ms = NOW_MS
        self.steady = FakeSteady(NOW_MS)
        self.key = Ed25519PrivateKey.generate()

    def start(self) -> None:
        self.store = NodeStore.open(self.tmp / "node.db", b"pw", 1, scrypt_n=2**10, steady=self.steady.source())
        self.expiry = start_expiry_clock(self.store, lambda: self.wall_ms, TOLERANCE_MS)
        self.audit = AuditLog.open(self.tmp / "audit.db", component="node-1", signing_key=self.key, clock=lambda: self.wall_ms)
        self.gov = _gov(self.store, self.audit, self.expiry)

    def stop(self, clean: bool) -> None:
        if clean:  # NodeService.stop
            self.store.mark_expiry_floor()
        self.audit.close()
        self.store.close()

    def elapse(self, ms: int) -> None:
        self.wall_ms += ms
        self.steady.ms += ms


@pytest.mark.parametrize("clean", [True, False], ids=["clean-stop", "killed-after-a-probe"])
def test_an_expired_approval_stays_expired_across_a_restart_with_the_clock_set_back(
    tmp_path: Path, clean: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    node = Node(tmp_path)
    node.start()
    req = request()  # valid until NOW_MS + 600,000
    data = ApprovalBundle(req, tuple(approve(req, "alice", "bert"))).to_bytes()
    assert _kind(node.gov, data) == "ok"
    node.elapse(600_001)
    assert _kind(node.gov, data) == "expired"
    node.store.probe_write(node.wall_ms)  # the periodic mark (all a killed node leaves)
    node.stop(clean)
    node.elapse(1_000)
    node.wall_ms = NOW_MS  # stepped back past the expiry window: by the wall clock alone valid again
    with caplog.at_level(logging.WARNING, logger="mpc_node.expiry_floor"):
        node.start()
    assert _kind(node.gov, data) == "expired"
    assert node.expiry.now_ms() >= NOW_MS + 601_001
    warnings = [r.getMessage() for r in caplog.records if r.name == "mpc_node.expiry_floor"]
    assert len(warnings) == 1 and "last seen time" in warnings[0] and "601.001 s behind" in warnings[0]
    assert "judges expiry by its last seen time" in behind_note(node.expiry, node.wall_ms, TOLERANCE_MS)
    node.stop(clean)
    # a reboot: a new boot id, the boot-time clock from near zero; the wall clock still set back
    node.steady = FakeSteady(5_000, boot="boot-2")
    node.start()
    assert _kind(node.gov, data) == "expired"
    assert node.expiry.now_ms() >= NOW_MS + 601_001
    node.stop(True)


def test_a_clock_within_tolerance_logs_nothing_and_the_floor_only_moves_forward(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    node = Node(tmp_path)
    node.start()
    node.elapse(10_000)
    node.stop(True)
    node.wall_ms -= 5_000  # a small step back, within the tolerance
    with caplog.at_level(logging.WARNING, logger="mpc_node.expiry_floor"):
        node.start()
    assert not [r for r in caplog.records if r.name == "mpc_node.expiry_floor"]
    assert node.expiry.now_ms() == NOW_MS + 10_000
    assert behind_note(node.expiry, node.wall_ms, TOLERANCE_MS) == ""
    node.stop(True)


# --- the operator's escape: mpc-node reset-clock-floor -------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_reset_clock_floor_after_a_clock_that_was_wrongly_ahead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet.cluster.launcher import prepare

    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10)
    config = lay.node_config(1)
    cfg = load_node_config(config)
    passphrase = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    key = Ed25519PrivateKey.generate()

    def start(ahead_ms: int) -> tuple[NodeStore, AuditLog, NodeGovernance]:
        store = NodeStore.open(cfg.store, passphrase, cfg.index, scrypt_n=2**10)
        expiry = start_expiry_clock(store, lambda: _now_ms() + ahead_ms, TOLERANCE_MS)
        audit = AuditLog.open(tmp_path / "gov-audit.db", component="node-1", signing_key=key)
        return store, audit, _gov(store, audit, expiry)

    store, audit, gov = start(DAY_MS)  # the wall clock wrongly a day ahead
    store.mark_expiry_floor()
    audit.close()
    store.close()
    store, audit, gov = start(0)  # corrected: the node still judges expiry a day ahead (fail-safe)
    now = _now_ms()
    req = request(created_at_ms=now - 1000, expires_at_ms=now + 600_000)
    data = ApprovalBundle(req, tuple(approve(req, "alice", "bert"))).to_bytes()
    assert _kind(gov, data) == "expired"
    audit.close()
    store.close()
    capsys.readouterr()
    assert main(["reset-clock-floor", "--config", str(config)]) == 0
    assert "expiry floor reset to the wall clock now" in capsys.readouterr().out
    store, audit, gov = start(0)
    assert _kind(gov, data) == "ok"  # a fresh approval passes again
    audit.close()
    store.close()
    keys = open_operational_keys(cfg.keystore, cfg.protection)
    with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity) as log:
        keys_audit = [e for e in log.entries() if e.action == "reset-clock-floor"]
    assert len(keys_audit) == 1 and keys_audit[0].outcome == "ok"
    assert keys_audit[0].details["previous_floor_ms"] > keys_audit[0].details["floor_ms"] + DAY_MS - 60_000  # type: ignore[operator]


def test_reset_clock_floor_refuses_while_the_node_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet.cluster.launcher import prepare

    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10)
    config = lay.node_config(1)
    cfg = load_node_config(config)
    holder = subprocess.Popen(  # what a running node holds: its data directories' locks
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from mpcnet.common.datadir import hold_data_dirs\n"
         "with hold_data_dirs([Path(sys.argv[1]), Path(sys.argv[2])], files=[Path(sys.argv[3]), Path(sys.argv[4])]):\n"
         "    print('held', flush=True)\n    time.sleep(60)\n",
         str(cfg.store.parent), str(cfg.audit_db.parent), str(cfg.store), str(cfg.audit_db)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        code = main(["reset-clock-floor", "--config", str(config)])
        err = capsys.readouterr().err
        assert code == 1, err  # a busy data directory (README "Exit codes")
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert err.startswith("mpc-node reset-clock-floor:") and "stop it first" in err
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("bad", ["'soon'", "1.5", str(-(2**60))], ids=["text", "real", "out-of-range"])
def test_a_corrupted_floor_is_refused_at_open_naming_steady_anchors(tmp_path: Path, bad: str) -> None:
    node = Node(tmp_path)
    node.start()
    node.stop(True)
    conn = sqlite3.connect(tmp_path / "node.db")
    with conn:
        conn.execute(f"UPDATE steady_anchors SET offset_ms = {bad} WHERE boot_id = ?", (WALL_FLOOR_ROW,))
    conn.close()
    with pytest.raises(StoreError, match="steady_anchors"):
        node.start()
