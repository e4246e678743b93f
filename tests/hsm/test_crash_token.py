"""A node's token going away under it (issue 13, R2): the token's storage unmounted and back, the
session closed under the node, the PIN file removed; and a node restarted without its PIN file or
its token (one line, exit 1, no PIN).

Findings: a token session or object handle once lost stayed lost (every wrap, unwrap and sign
failed until the process restarted, even with the token back), and an unwrap the token could not
run was reported as "does not unwrap this data key" (as if the file were altered). Fixed: a lost
session/handle is recovered on the next operation (objects found again by label, the session
re-opened with the PIN read again, the library re-initialized as the last resort), once per
operation; an unusable token is "the token failed" naming the field.

Each scenario runs in a child process with its own SoftHSM2 configuration (the library reads it
once per process, and the re-initialization would end the sessions of other tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import child_env, command, prepare
from tests.deploy.crashkit import ROOT
from tests.hsm.conftest import PIN, SO_PIN, SoftHsm, _module

LABEL = "crash-token"


def _own_token(d: Path) -> dict[str, str]:
    """A fresh SoftHSM2 token directory and configuration under ``d``; the child's environment."""
    util, module = shutil.which("softhsm2-util"), _module()
    if util is None or module is None:
        pytest.skip("SoftHSM2 is not installed")
    (d / "tokens").mkdir(parents=True)
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run([util, "--init-token", "--free", "--label", LABEL, "--pin", PIN, "--so-pin", SO_PIN],
                   check=True, capture_output=True, env={**os.environ, **env})  # fmt: skip
    (d / "pin").write_text(PIN + "\n")
    return env


SCENARIO = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    from mpcnet.common.protection import Pkcs11Settings, open_pkcs11, storage_key
    from mpcnet.common.pkcs11token import TokenError
    d = Path(sys.argv[1])
    s = Pkcs11Settings(Path(sys.argv[2]), "crash-token", d / "pin", None, "storage", "identity")
    token = open_pkcs11(s)
    key, ident = storage_key(s, create=True), token.identity("identity", create=True)
    wrapped = key.wrap(b"k" * 32, b"aad")
    def each(when):
        out = []
        for name, op in (("unwrap", lambda: key.unwrap(wrapped, b"aad") == b"k" * 32),
                         ("sign", lambda: len(ident.sign(b"m")) == 64), ("wrap", lambda: len(key.wrap(b"j" * 32, b"a")) == 60)):
            try:
                out.append(f"{name}=" + ("ok" if op() else "wrong"))
            except TokenError as e:
                out.append(f"{name}=ERR {e}")
        print(when + ": " + "; ".join(out), flush=True)
    each("start")
    os.rename(d / "tokens", d / "tokens.away"); each("token gone")
    os.rename(d / "tokens.away", d / "tokens"); each("token back")
    token._session.close(); each("session closed")
    token._session.close(); os.rename(d / "pin", d / "pin.away"); each("session closed, pin gone")
    os.rename(d / "pin.away", d / "pin"); each("pin back")
    try:
        key.unwrap(bytes(60), b"aad")
    except TokenError as e:
        print("altered: " + str(e))
''')


def test_a_lost_token_session_recovers_without_a_restart(tmp_path: Path) -> None:
    env = _own_token(tmp_path)
    r = subprocess.run([sys.executable, "-c", SCENARIO, str(tmp_path), str(_module())], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, **env}, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr  # lost-session finalizers are quiet
    lines = dict(line.split(": ", 1) for line in r.stdout.strip().splitlines())
    ok = "unwrap=ok; sign=ok; wrap=ok"
    assert lines["start"] == ok
    gone = lines["token gone"].split("; ")
    assert all("=ERR pkcs11." in g and "does not unwrap" not in g for g in gone), gone  # unavailable, not "altered"
    assert lines["token back"] == ok  # no restart needed
    assert lines["session closed"] == ok
    assert all("=ERR pkcs11.pin_file: cannot read" in g for g in lines["session closed, pin gone"].split("; "))
    assert lines["pin back"] == ok
    assert "does not unwrap this data key" in lines["altered"]  # a real mismatch keeps its message
    assert PIN not in r.stdout + r.stderr


def test_node_restarted_without_its_pin_file_or_its_token_says_so_in_one_line(softhsm: SoftHsm, tmp_path: Path) -> None:
    env = _own_token(tmp_path / "hsm")
    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10, test_mode=True)
    cfg_path = lay.node_config(1)
    node_dir = cfg_path.parent
    for f in ("keystore.json", "node.db"):
        (node_dir / f).unlink(missing_ok=True)
    settings = {"module": str(_module()), "token_label": LABEL, "pin_file": str(tmp_path / "hsm" / "pin"),
                "storage_key_label": "mpcnet-storage-key"}  # fmt: skip
    make = ("import sys; from pathlib import Path; from mpcnet.common.protection import *; "
            "create_operational_keys(Path(sys.argv[1]), KeyProtection(pkcs11=Pkcs11Settings(Path(sys.argv[2]), sys.argv[3], "
            "Path(sys.argv[4]))))")  # fmt: skip
    subprocess.run([sys.executable, "-c", make, str(node_dir / "keystore.json"), settings["module"], LABEL, settings["pin_file"]],
                   check=True, cwd=ROOT, env={**os.environ, **env}, capture_output=True, timeout=60)  # fmt: skip
    doc = json.loads(cfg_path.read_text())
    doc.pop("passphrase_file", None)
    doc["pkcs11"] = settings
    cfg_path.write_text(json.dumps(doc))

    def start() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command(lay, "node-1"), env=child_env(env), capture_output=True, text=True, timeout=60)

    pin = tmp_path / "hsm" / "pin"
    pin.rename(pin.with_name("pin.away"))
    r = start()
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
    assert "pkcs11.pin_file: cannot read" in r.stderr and PIN not in r.stderr
    pin.with_name("pin.away").rename(pin)
    tokens = tmp_path / "hsm" / "tokens"
    tokens.rename(tokens.with_name("tokens.away"))
    r = start()
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
    assert "pkcs11." in r.stderr and PIN not in r.stderr


def test_node_health_says_not_serving_while_its_token_is_gone_and_serving_again_after(softhsm: SoftHsm, tmp_path: Path) -> None:
    """A node whose identity signs in the token: health said SERVING while every session failed
    (UNAVAILABLE) with the token gone; now the store probe also has the token sign, so health is
    NOT_SERVING (reason "token unusable: pkcs11...") until the token is back, then SERVING with
    no restart."""
    from mpcnet.cluster.launcher import LocalCluster, check_health
    from mpcnet.common.protection import KeyProtection, close_tokens, create_operational_keys

    d = tmp_path / "cluster"
    node1 = d / "nodes" / "node-1"
    node1.mkdir(parents=True, mode=0o700)
    protection = KeyProtection(pkcs11=softhsm.settings(identity=True))
    create_operational_keys(node1 / "keystore.json", protection)
    lay = prepare(d, 2, 2, scrypt_n=2**10, test_mode=True)
    doc = json.loads(lay.node_config(1).read_text())
    doc.pop("passphrase_file", None)
    doc.update(protection.config_fields())
    lay.node_config(1).write_text(json.dumps(doc))
    close_tokens()
    tokens = softhsm.conf.parent / "tokens"
    c = LocalCluster(lay)
    try:
        c.start("node-1", softhsm.env())
        c.wait_healthy(["node-1"])
        endpoint = lay.endpoints()["node-1"]
        tokens.rename(tokens.with_name("tokens.away"))
        try:
            deadline = time.monotonic() + 20
            while check_health(lay, endpoint, timeout=1.0):
                assert time.monotonic() < deadline, "health stayed SERVING with the token gone"
                time.sleep(0.5)
        finally:
            tokens.with_name("tokens.away").rename(tokens)
        c.wait_healthy(["node-1"], timeout=20)  # recovered, same process
        assert c.procs["node-1"].poll() is None
    finally:
        c.stop()
        close_tokens()
    assert "the PKCS#11 token is unusable (pkcs11." in lay.log("node-1").read_text()  # the log names what failed
