"""``mpc-node init`` with the identity key in SoftHSM2, killed (SIGKILL, a real process) at random
moments and re-run: it completes with ONE identity key pair in the token, the keystore's and the
published request's identity is that key pair's, never a second key pair under the label.

Finding (R2): SoftHSM2 stores a generated key pair as two objects, the public half first; a kill
between the two left a public key without its private half, and every re-run failed ("no Ed25519
key pair labelled ..."): the host could never finish its init without a PKCS#11 tool. And two
inits of one directory at once could both generate a key pair under the label (seen 1 in 8):
the node could then never open its identity ("more than one object labelled"). Fixed: a half
pair is replaced (:meth:`Token.identity` with ``create``), init holds a lock on its directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from pkcs11 import Attribute, ObjectClass

from mpcnet.common.enrolment import EnrolmentRequest, load_request
from mpcnet.common.hostenrol import protection_from_fields
from mpcnet.common.protection import Pkcs11Settings, open_operational_keys, open_pkcs11
from tests.deploy.crashkit import ROOT, run, run_killed
from tests.hsm.conftest import SoftHsm
from tests.test_suite_settings import scaled

NODE = "mpc_node.main:main"


def _args(d: Path, hsm: SoftHsm, tag: str) -> list[str]:
    return [
        "init", "--dir", str(d), "--name", "node-1", "--endpoint", "localhost:17001",
        "--pkcs11-module", str(hsm.module), "--pkcs11-token", hsm.token_label, "--pkcs11-pin-file", str(hsm.pin_file),
        "--identity-in-token", "--pkcs11-storage-key-label", f"storage-{tag}", "--pkcs11-identity-key-label", f"identity-{tag}",
    ]  # fmt: skip


def _settings(hsm: SoftHsm, tag: str) -> Pkcs11Settings:
    return Pkcs11Settings(hsm.module, hsm.token_label, hsm.pin_file, None, f"storage-{tag}", f"identity-{tag}")


def _objects(hsm: SoftHsm, label: str) -> dict[str, int]:
    session = open_pkcs11(_settings(hsm, "x"))._session
    return {
        cls.name: len(list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label})))
        for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.SECRET_KEY)
    }


def _check_one_identity(d: Path, hsm: SoftHsm, tag: str, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert _objects(hsm, f"identity-{tag}") == {"PRIVATE_KEY": 1, "PUBLIC_KEY": 1, "SECRET_KEY": 0}
    assert _objects(hsm, f"storage-{tag}") == {"PRIVATE_KEY": 0, "PUBLIC_KEY": 0, "SECRET_KEY": 1}
    req = load_request(d / "enrolment-request.json")  # verifies the identity signature
    assert isinstance(req, EnrolmentRequest)
    init = json.loads((d / "init.json").read_text())
    keys = open_operational_keys(d / "keystore.json", protection_from_fields(init["protection"], d))
    assert keys.identity_public == req.identity_key and keys.encryption_public == req.encryption_key
    assert keys.identity.sign(b"probe") and keys.identity_public == req.identity_key


def test_a_public_key_left_without_its_private_half_is_replaced_on_the_re_run(softhsm: SoftHsm, tmp_path: Path) -> None:
    """The state a kill inside the token's key pair generation leaves (public object stored, the
    private one not): the re-run completes with one key pair."""
    tag = uuid.uuid4().hex[:12]
    token = open_pkcs11(_settings(softhsm, tag))
    token.identity(f"identity-{tag}", create=True)
    for priv in token._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: f"identity-{tag}"}):
        priv.destroy()
    d = tmp_path / "node"
    _check_one_identity(d, softhsm, tag, run(NODE, _args(d, softhsm, tag), env=softhsm.env()))


def test_init_killed_in_the_token_then_re_run_has_one_identity(softhsm: SoftHsm, tmp_path: Path) -> None:
    """SIGKILL within 0..30 ms of entering the token's key lookup/generation, then a re-run."""
    for _ in range(scaled(6)):
        tag = uuid.uuid4().hex[:12]
        d = tmp_path / tag
        killed = run_killed(NODE, "mpcnet.common.pkcs11token:Token.identity", 0.0, 0.03, _args(d, softhsm, tag), env=softhsm.env())
        assert killed.returncode in (-9, 0), killed.stderr
        _check_one_identity(d, softhsm, tag, run(NODE, _args(d, softhsm, tag), env=softhsm.env()))


def test_init_killed_anywhere_then_re_run_has_one_identity(softhsm: SoftHsm, tmp_path: Path) -> None:
    """SIGKILL at a random moment of the command once it is logged in to the token (key
    generation, keystore, TLS key, request), then a re-run. Not during the login itself:
    SoftHSM2 rewrites its token.object in place at login, and a kill there can truncate it and
    destroy the whole token (finding R2, a SoftHSM2 property: see the README)."""
    for _ in range(scaled(4)):
        tag = uuid.uuid4().hex[:12]
        d = tmp_path / tag
        run_killed(NODE, "mpcnet.common.pkcs11token:Token.storage_key", 0.0, 0.3, _args(d, softhsm, tag), env=softhsm.env())
        _check_one_identity(d, softhsm, tag, run(NODE, _args(d, softhsm, tag), env=softhsm.env()))


def test_two_inits_at_once_in_one_directory_leave_one_identity(softhsm: SoftHsm, tmp_path: Path) -> None:
    """Two operators (or a supervisor's retry) running init together: one key pair, not two
    under the same label (which no later open could choose between)."""
    for _ in range(scaled(3)):
        tag = uuid.uuid4().hex[:12]
        d = tmp_path / tag
        code = "import sys; from mpc_node.main import main; sys.exit(main(sys.argv[1:]))"
        procs = [subprocess.Popen([sys.executable, "-c", code, *_args(d, softhsm, tag)], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **softhsm.env()})
                 for _ in range(2)]  # fmt: skip
        outs = [p.communicate(timeout=60) for p in procs]
        assert all("Traceback" not in err for _, err in outs), outs
        _check_one_identity(d, softhsm, tag, run(NODE, _args(d, softhsm, tag), env=softhsm.env()))
