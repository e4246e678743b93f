"""A real cluster (2-of-3, node processes) whose node 1 keeps its storage key and identity key in
SoftHSM2: keygen and approved signing with it, its files useless without the token, a wrong PIN
a one-line start-up error, and node 2 moved from its passphrase into the token by
``mpc-node rekey-store`` and signing afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mpc_node.main import main as node_main
from mpc_node.storage import NodeStore, StoreError
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster, child_env, command, prepare
from mpcnet.common.keystore import KeystoreError, load_keystore
from mpcnet.common.protection import KeyProtection, close_tokens, create_operational_keys, storage_key
from tests.integration.test_cluster_api import verify_independently

from .conftest import SoftHsm

TEST_SCRYPT_N = 2**10
RAW = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _switch_to_token(config: Path, protection: KeyProtection) -> None:
    doc = json.loads(config.read_text())
    doc.pop("passphrase_file", None)
    doc.update(protection.config_fields())
    config.write_text(json.dumps(doc, indent=2))


def _sign(team: SigningTeam, key_id: bytes, public_key: bytes, text: bytes) -> tuple[int, ...]:
    digest = hashlib.sha256(text).digest()
    sig = team.sign(key_id, digest)
    verify_independently(public_key, sig.der, digest)
    return sig.signers


def _timed(step: Callable[[], bool]) -> float:
    start = time.perf_counter()
    assert step()
    return time.perf_counter() - start


def test_node_with_its_keys_in_softhsm_signs(softhsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "cluster"
    node1 = d / "nodes" / "node-1"
    node1.mkdir(parents=True, mode=0o700)
    settings = softhsm.settings(identity=True)
    protection = KeyProtection(pkcs11=settings)
    keys1 = create_operational_keys(node1 / "keystore.json", protection)  # born in the token, before the roster
    lay = prepare(d, 3, 2, scrypt_n=TEST_SCRYPT_N, test_mode=True)
    roster = json.loads(lay.node_config(2).read_text())["governance"]["roster_history"]
    assert keys1.identity_public.hex() in json.dumps(roster)
    _switch_to_token(lay.node_config(1), protection)
    close_tokens()  # the node process opens its own session
    c = LocalCluster(lay)
    c.node_env[1] = softhsm.env()
    c.node_env[2] = softhsm.env()
    try:
        c.start_all()
        with MpcClient.from_cluster(lay.dir, identity="admin1", timeout=120) as admin:
            key = admin.create_key("hsm-key")
        with SigningTeam.from_cluster(lay.dir, timeout=120) as team:
            _sign(team, key.key_id, key.public_key, b"first")
            c.kill("node-1", 15)  # the software pair, timed
            soft = _timed(lambda: _sign(team, key.key_id, key.public_key, b"software only") == (2, 3))
            c.start("node-1", softhsm.env())
            c.wait_healthy(["node-1"])
            c.kill("node-3")  # now node 1 (token) must sign
            token = _timed(lambda: _sign(team, key.key_id, key.public_key, b"with the token") == (1, 2))
            with capsys.disabled():
                print(f"\n2-of-3 approved signing, end to end: nodes 2+3 (software identities) {soft * 1000:.0f} ms,"
                      f" nodes 1+2 (node 1's identity and store key in SoftHSM2) {token * 1000:.0f} ms")

            # node 2: passphrase -> token, by the command, the node stopped
            c.kill("node-2", 15)
            args = ["rekey-store", "--config", str(lay.node_config(2)), "--pkcs11-module", str(softhsm.module),
                    "--pkcs11-token", softhsm.token_label, "--pkcs11-pin-file", str(softhsm.pin_file),
                    "--storage-key-label", f"storage-node2-{os.urandom(3).hex()}"]  # fmt: skip
            assert node_main(args) == 0
            close_tokens()
            c.start("node-2", softhsm.env())
            c.wait_healthy(["node-2"])
            assert _sign(team, key.key_id, key.public_key, b"after rekey-store") == (1, 2)

        # node 1 stopped: a wrong PIN is a one-line start-up error without the PIN
        c.kill("node-1", 15)
        cfg1 = lay.node_config(1)
        good = cfg1.read_text()
        wrong = tmp_path / "wrong-pin"
        wrong.write_text("not-the-pin-9876\n")
        doc = json.loads(good)
        doc["pkcs11"]["pin_file"] = str(wrong)
        cfg1.write_text(json.dumps(doc))
        r = subprocess.run(command(lay, "node-1"), env=child_env(softhsm.env()), capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 1, out
        assert len(r.stderr.decode().strip().splitlines()) == 1, out
        assert "pkcs11.pin_file: the token refused the PIN" in out and "Traceback" not in out
        assert "not-the-pin-9876" not in out and softhsm.pin not in out
        assert "not-the-pin-9876" not in lay.log("node-1").read_text()
        cfg1.write_text(good)
    finally:
        c.stop()

    # node 1's files: the passphrase path (with its would-be passphrase) opens neither; no raw key in them
    pf = node1 / "passphrase"
    passphrase = pf.read_bytes().rstrip(b"\n")
    with pytest.raises(KeystoreError, match="protected by a PKCS#11 token"):
        load_keystore(node1 / "keystore.json", passphrase)
    with pytest.raises(StoreError, match="protected by a PKCS#11 token"):
        NodeStore.open(node1 / "node.db", passphrase, 1)
    with NodeStore.open(node1 / "node.db", storage_key(settings), 1) as st:
        share = st.get_key_share(key.key_id)
    assert share
    raw = b"".join(p.read_bytes() for p in node1.iterdir() if p.is_file())
    for secret in (share, keys1.encryption.private_bytes(*RAW)):
        assert secret not in raw and secret.hex().encode() not in raw
    close_tokens()
