"""Issue 12's break-glass export on real processes, through the CLI: the export order needs the
export quorum (3 admins, more than the admin quorum of 2: two signatures leave it pending), two
officers re-encrypt their pieces to the off-line machine's age recipient, ``mpc recovery
export-key`` on that machine rebuilds the whole private key (0600), whose public key is the key's;
every node and the coordinator audit the export loudly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .recovery_util import OFFICERS, age_recipient, approve, mpc, mpc_cluster, mpc_json, officers_by_cli, wait_until

pytest.importorskip("mpcnet.client.cli_backup", reason="the backup CLI (issue 12) is not merged yet")


def test_break_glass_export_needs_the_export_quorum_and_rebuilds_the_key_offline(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    up = mpc_cluster("up", "--dir", str(d), "-n", "3", "-t", "2", "--scrypt-n", "1024", "--quiet")
    assert up.returncode == 0, up
    try:
        keys = officers_by_cli(d, tmp_path)
        key = mpc_json(d, "admin1", "keygen")
        wait_until("the first bundle", timeout=120,
                   fn=lambda: any(not b["superseded"] for b in mpc_json(d, "auditor1", "backup", "list", "--key", key["key_id"])))

        offline = tmp_path / "offline" / "identity.key"
        offline.parent.mkdir(mode=0o700)
        target = age_recipient(mpc(d, "auditor1", "officer", "keygen", "--out", str(offline)).stdout)
        p = mpc_json(d, "admin1", "recovery", "export-order", "--key", key["key_id"], "--recipient", target,
                  "--reason", "migration to another custody system")["proposal"]
        assert p["state"] == "pending"
        p2 = approve(d, p)["proposal"]
        assert p2["state"] == "pending", p2  # the admin quorum is not the export quorum
        assert not [c for c in mpc_json(d, "officer1", "recovery", "status") if c["kind"] == "export"]
        p3 = approve(d, p, "admin3")["proposal"]
        assert p3["state"] == "applied", p3
        ceremony = wait_until("the export ceremony", lambda: next(
            (c for c in mpc_json(d, "officer1", "recovery", "status") if c["kind"] == "export"), None))
        cid = ceremony["ceremony_id"]
        for o in OFFICERS[:2]:
            mpc(d, o, "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(keys[o]))
        done = wait_until("the export pieces", lambda: (lambda c: c if c["state"] in ("done", "failed") else None)(
            mpc_json(d, "officer1", "recovery", "status", cid)["ceremony"]))
        assert done["state"] == "done", done

        pem = tmp_path / "offline" / "private-key.pem"
        mpc(d, "officer1", "recovery", "export-key", "--ceremony", cid, "--identity", str(offline), "--out", str(pem))
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        priv = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        assert isinstance(priv, ec.EllipticCurvePrivateKey) and isinstance(priv.curve, ec.SECP256K1)
        public = priv.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        assert public.hex() == key["public_key"]
        again = mpc(d, "officer1", "recovery", "export-key", "--ceremony", cid, "--identity", str(offline), "--out", str(pem), ok=False)
        assert again.returncode != 0  # never overwritten

        # loud: every node and the coordinator audit the break-glass export
        for audit in [d / "coordinator" / "audit.db", *sorted(d.glob("nodes/node-*/audit.db"))]:
            data = b"".join(f.read_bytes() for f in audit.parent.glob("audit.db*"))
            assert b"break-glass" in data, audit
    finally:
        mpc_cluster("stop", "--dir", str(d))
