"""``mpc-node rekey-store`` SIGKILLed (a real process) at random moments, then a node started on
the half-moved directory (a one-line error naming what to do, exit 1), then the command re-run:
the node starts with the same keys and the same shares. And rekey-store while the node runs is
refused, changing nothing (issue 13, R2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mpc_node.config import load_node_config
from mpc_node.storage import NodeStore
from mpc_node.store_rekey import store_kind
from mpcnet.cluster.launcher import Layout, LocalCluster, child_env, command, prepare
from mpcnet.common.keystore import load_keystore
from mpcnet.common.protection import close_tokens, open_operational_keys, storage_key
from tests.deploy.crashkit import run, run_killed
from tests.hsm.conftest import SoftHsm
from tests.hsm.test_protection import SHARE, _populate
from tests.test_suite_settings import scaled

NODE = "mpc_node.main:main"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes, bytes]:
    """A 2-node layout, node 1's passphrase store holding a share, a presignature and a tombstone;
    node 1's (identity, encryption) public keys."""
    root = tmp_path_factory.mktemp("crash-rekey")
    lay = prepare(root / "c", 2, 2, scrypt_n=2**10, test_mode=True)
    kid, _, _ = _populate(lay.node_config(1))
    cfg = load_node_config(lay.node_config(1))
    assert cfg.passphrase_file is not None
    keys = load_keystore(cfg.keystore, cfg.passphrase_file.read_bytes().rstrip(b"\n"))
    return lay.dir, kid, keys.identity_public, keys.encryption_public


def _copy(prepared: tuple[Path, bytes, bytes, bytes], dest: Path) -> Layout:
    shutil.copytree(prepared[0], dest, symlinks=True)
    return Layout(dest, 2, 2)


def _args(lay: Layout, hsm: SoftHsm, label: str) -> list[str]:
    return ["rekey-store", "--config", str(lay.node_config(1)), "--pkcs11-module", str(hsm.module),
            "--pkcs11-token", hsm.token_label, "--pkcs11-pin-file", str(hsm.pin_file), "--storage-key-label", label]  # fmt: skip


def _half_moved(lay: Layout) -> bool:
    """The store or the keystore already under the token while the config still names the passphrase."""
    cfg = load_node_config(lay.node_config(1))
    return cfg.pkcs11 is None and (store_kind(cfg.store) == "pkcs11" or "kdf" not in json.loads(cfg.keystore.read_text()))


def _start_refused(lay: Layout, hsm: SoftHsm) -> str:
    """Start node 1 (half-moved) as its supervisor would: exit 1 with one clean line."""
    r = subprocess.run(command(lay, "node-1"), env=child_env(hsm.env()), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _check_moved(lay: Layout, prepared: tuple[Path, bytes, bytes, bytes], label: str) -> None:
    _, kid, identity_public, encryption_public = prepared
    cfg = load_node_config(lay.node_config(1))
    assert cfg.pkcs11 is not None and cfg.pkcs11.storage_key_label == label and cfg.passphrase_file is None
    keys = open_operational_keys(cfg.keystore, cfg.protection)
    assert (keys.identity_public, keys.encryption_public) == (identity_public, encryption_public)
    with NodeStore.open(cfg.store, storage_key(cfg.pkcs11), cfg.index) as st:
        assert st.get_key_share(kid) == SHARE
    assert not cfg.keystore.with_name(cfg.keystore.name + ".pkcs11").exists()
    close_tokens()


@pytest.mark.parametrize("target,lo,hi", [
    # anywhere in the six steps once logged in (a kill inside SoftHSM2's login can truncate its
    # token.object and destroy the token: a SoftHSM2 property, finding R2)
    ("mpcnet.common.pkcs11token:Token.storage_key", 0.0, 0.25),
    ("mpc_node.store_rekey:reseal_store", 0.0, 0.02),     # inside the store's transaction
])  # fmt: skip
def test_rekey_store_killed_at_random_then_re_run(
    softhsm: SoftHsm, tmp_path: Path, prepared: tuple[Path, bytes, bytes, bytes], target: str, lo: float, hi: float,
) -> None:
    for i in range(scaled(3)):
        lay = _copy(prepared, tmp_path / f"c{i}")
        label = f"storage-crash-{os.urandom(4).hex()}"
        killed = run_killed(NODE, target, lo, hi, _args(lay, softhsm, label), env=softhsm.env())
        assert killed.returncode in (-9, 0), killed.stderr
        if killed.returncode == -9 and _half_moved(lay):
            err = _start_refused(lay, softhsm)
            assert "rekey-store" in err, err  # names the command that finishes the move
        done = run(NODE, _args(lay, softhsm, label), env=softhsm.env())
        assert done.returncode == 0, done.stderr
        _check_moved(lay, prepared, label)


def test_rekey_store_while_the_node_runs_is_refused_and_changes_nothing(
    softhsm: SoftHsm, tmp_path: Path, prepared: tuple[Path, bytes, bytes, bytes],
) -> None:
    lay = _copy(prepared, tmp_path / "c")
    node_dir = lay.node_config(1).parent
    before = {p.name: p.read_bytes() for p in node_dir.iterdir() if p.is_file() and p.suffix in (".json", ".db")}
    c = LocalCluster(lay)
    try:
        c.start("node-1")
        c.wait_healthy(["node-1"])
        r = run(NODE, _args(lay, softhsm, f"storage-busy-{os.urandom(4).hex()}"), env=softhsm.env())
        assert r.returncode == 1 and "in use by pid" in r.stderr and "Traceback" not in r.stderr, r.stderr
    finally:
        c.stop()
    after = {p.name: p.read_bytes() for p in node_dir.iterdir() if p.is_file() and p.suffix == ".json"}
    assert after == {k: v for k, v in before.items() if k.endswith(".json")}
    assert not (node_dir / "keystore.json.pkcs11").exists()
