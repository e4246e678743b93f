"""``mpc-node init`` with the keys in a PKCS#11 token (SoftHSM2): the request is signed inside the
token, the keystore holds no identity key, re-running is safe, a wrong PIN is a clean error, and
``join`` writes a config with the ``pkcs11`` section the node's loader accepts."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from mpc_node import main as node_main
from mpc_node.config import load_node_config
from mpcnet.common.enrolment import EnrolmentRequest, load_request
from mpcnet.common.protection import close_tokens, open_operational_keys
from tests.deploy.test_enrolment import World, enrol_world, mpc, signed
from tests.hsm.conftest import SoftHsm


def _init(d: Path, hsm: SoftHsm, tag: str, pin_file: Path, name: str = "node-1", port: int = 17001) -> int:
    return node_main.main([
        "init", "--dir", str(d), "--name", name, "--endpoint", f"localhost:{port}",
        "--pkcs11-module", str(hsm.module), "--pkcs11-token", hsm.token_label, "--pkcs11-pin-file", str(pin_file),
        "--identity-in-token", "--pkcs11-storage-key-label", f"storage-{tag}", "--pkcs11-identity-key-label", f"identity-{tag}",
    ])


def test_init_in_the_token_signs_there_and_join_writes_a_pkcs11_config(
    softhsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:12]
    (tmp_path / "w").mkdir()
    w: World = enrol_world(tmp_path / "w")
    d = w.host("node-1")
    # node-1 again, this time with its keys in the token (a fresh directory)
    shutil.rmtree(d)
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("not-the-pin\n")
    close_tokens()  # this process's open sessions (other tests') would not ask for the PIN again
    capsys.readouterr()
    assert _init(d, softhsm, tag, wrong) == 1
    err = capsys.readouterr().err
    assert "pkcs11" in err and "not-the-pin" not in err and softhsm.pin not in err and "Traceback" not in err
    shutil.rmtree(d)
    assert _init(d, softhsm, tag, softhsm.pin_file) == 0
    assert sorted(p.name for p in d.iterdir()) == ["enrolment-request.json", "init.json", "keystore.json", "tls.key"]
    keystore = json.loads((d / "keystore.json").read_text())
    assert "identity_private" not in json.dumps(keystore)
    req = load_request(d / "enrolment-request.json")  # verifies the signature made in the token
    assert isinstance(req, EnrolmentRequest) and req.identity_in_token
    init = json.loads((d / "init.json").read_text())
    from mpcnet.common.hostenrol import protection_from_fields

    keys = open_operational_keys(d / "keystore.json", protection_from_fields(init["protection"], d))
    assert keys.identity_public == req.identity_key
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert _init(d, softhsm, tag, softhsm.pin_file) == 0  # re-run: nothing changes
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # through the CA and a new genesis, then join
    shutil.copy(d / "enrolment-request.json", w.request("node-1"))
    assert mpc("pki", "sign-csr", "--ca-dir", str(w.host("ca")), "--request", str(w.request("node-1")), "--out", str(w.cert("node-1"))) == 0
    (w.ex / "genesis.json").unlink()
    assert mpc(*w.genesis_args()) == 0
    signed(w)
    assert w.join(1) == 0
    cfg = load_node_config(d / "config.json")
    assert cfg.pkcs11 is not None and cfg.pkcs11.identity_key_label == f"identity-{tag}"
    assert not (d / "passphrase").exists()
