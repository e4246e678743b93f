"""Issue 16 item 5 on real processes through the CLI: the disaster recovery of an ed25519 key. A
2-of-3 cluster backs the key up; node 3's disk is wiped and the node gets a new host; admins order
the restore of share 3 (a RecoveryOrder v2 naming the scheme, with its follow-up refresh); two
officers contribute; node 3 rebuilds its FROST share, deals in the follow-up refresh, and the key
then signs through approvals under its original public key (verified with OpenSSL)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mpcnet.client import SigningTeam

from .recovery_util import approve, mpc, mpc_cluster, mpc_json, officers_by_cli, wait_until
from .test_recovery_disaster_reshare import _follow_up_failure


def test_an_ed25519_share_is_restored_on_a_new_host_and_the_key_signs_again(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    up = mpc_cluster("up", "--dir", str(d), "-n", "3", "-t", "2", "--scrypt-n", "1024", "--quiet")
    assert up.returncode == 0, up
    try:
        keys = officers_by_cli(d, tmp_path)
        key = mpc_json(d, "admin1", "keygen", "--scheme", "ed25519")
        kid, pk = key["key_id"], key["public_key"]
        wait_until("the first bundle", timeout=120,
                   fn=lambda: any(not b["superseded"] for b in mpc_json(d, "auditor1", "backup", "list", "--key", kid)))
        assert mpc_cluster("wipe-node", "--dir", str(d), "3", "--quiet").returncode == 0
        enrol = tmp_path / "enrolment-3.json"
        assert mpc_cluster("replace-node", "--dir", str(d), "3", "--out", str(enrol), "--quiet").returncode == 0
        p = mpc_json(d, "admin1", "node", "replace", "3", "--enrolment", str(enrol))["proposal"]
        assert approve(d, p)["proposal"]["state"] == "applied"
        up = mpc_cluster("up", "--dir", str(d), "--quiet")
        assert up.returncode == 0, up
        wait_until("the coordinator reaching node 3", lambda: 3 in {
            n["index"] for n in mpc_json(d, "auditor1", "status")["nodes"] if n["healthy"]})

        p = mpc_json(d, "admin1", "recovery", "restore", "--key", kid, "--nodes", "3", "--reason", "node 3 lost its disk")["proposal"]
        assert approve(d, p)["proposal"]["state"] == "applied"
        ceremony = wait_until("the restore ceremony", lambda: next(
            (c for c in mpc_json(d, "officer1", "recovery", "status") if c["kind"] == "restore"), None))
        for o in ("officer2", "officer3"):
            mpc(d, o, "recovery", "contribute", "--ceremony", ceremony["ceremony_id"], "--recovery-key", str(keys[o]))
        done = wait_until("the restore and its refresh", timeout=180, fn=lambda: _follow_up_failure(d, kid, ceremony["ceremony_id"]))
        assert done["state"] == "done", done
        info = next(k for k in mpc_json(d, "auditor1", "keys") if k["key_id"] == kid)
        assert info["epoch"] == 1 and info["public_key"] == pk, info
        msg = b"after the disaster " + os.urandom(8)
        with SigningTeam.from_cluster(d, timeout=120) as team:
            sig = team.sign_schnorr(bytes.fromhex(kid), message=msg)
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(pk)).verify(sig.signature, msg)  # raises if invalid
    finally:
        mpc_cluster("stop", "--dir", str(d))
