"""Issue 12's break-glass export on real processes, through the CLI: the export order needs the
export quorum (3 admins, more than the admin quorum of 2: two signatures leave it pending), two
officers re-encrypt their pieces to the off-line machine's age recipient, ``mpc recovery
export-key`` on that machine rebuilds the whole private key (0600), whose public key is the key's;
every node and the coordinator audit the export loudly."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpcnet.cluster.launcher import child_env

from .recovery_util import OFFICERS, mpc_cluster, wait_until

pytest.importorskip("mpcnet.client.cli_backup", reason="the backup CLI (issue 12) is not merged yet")


def _mpc(d: Path, who: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "mpcnet.client.cli", "--cluster", str(d), "--as", who, *args], env=child_env(),
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in p.stderr, p
    if ok:
        assert p.returncode == 0, p
    return p


def _json(d: Path, who: str, *args: str) -> Any:
    return json.loads(_mpc(d, who, *args, "--json").stdout)


def _recipient(out: str) -> str:
    m = re.search(r"age1[02-9ac-hj-np-z]{58}", out)
    assert m is not None, out
    return m.group(0)


def test_break_glass_export_needs_the_export_quorum_and_rebuilds_the_key_offline(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    up = mpc_cluster("up", "--dir", str(d), "-n", "3", "-t", "2", "--scrypt-n", "1024", "--quiet")
    assert up.returncode == 0, up
    try:
        keys = {}
        for o in OFFICERS:
            keys[o] = tmp_path / o / "recovery.key"
            keys[o].parent.mkdir(mode=0o700)
        recipients = {o: _recipient(_mpc(d, "auditor1", "officer", "keygen", "--out", str(keys[o])).stdout) for o in OFFICERS}
        p = _json(d, "admin1", "recovery", "officers", "set", *[a for o in OFFICERS for a in ("--officer", f"{o}={recipients[o]}")],
                  "--quorum", "2", "--export-quorum", "3")["proposal"]
        approved = _json(d, "admin2", "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"])
        assert approved["proposal"]["state"] == "applied"
        key = _json(d, "admin1", "keygen")
        wait_until("the first bundle", timeout=120,
                   fn=lambda: any(not b["superseded"] for b in _json(d, "auditor1", "backup", "list", "--key", key["key_id"])))

        offline = tmp_path / "offline" / "identity.key"
        offline.parent.mkdir(mode=0o700)
        target = _recipient(_mpc(d, "auditor1", "officer", "keygen", "--out", str(offline)).stdout)
        p = _json(d, "admin1", "recovery", "export-order", "--key", key["key_id"], "--recipient", target,
                  "--reason", "migration to another custody system")["proposal"]
        assert p["state"] == "pending"
        p2 = _json(d, "admin2", "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"])["proposal"]
        assert p2["state"] == "pending", p2  # the admin quorum is not the export quorum
        assert not [c for c in _json(d, "officer1", "recovery", "status") if c["kind"] == "export"]
        p3 = _json(d, "admin3", "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"])["proposal"]
        assert p3["state"] == "applied", p3
        ceremony = wait_until("the export ceremony", lambda: next(
            (c for c in _json(d, "officer1", "recovery", "status") if c["kind"] == "export"), None))
        cid = ceremony["ceremony_id"]
        for o in OFFICERS[:2]:
            _mpc(d, o, "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(keys[o]))
        done = wait_until("the export pieces", lambda: (lambda c: c if c["state"] in ("done", "failed") else None)(
            _json(d, "officer1", "recovery", "status", cid)["ceremony"]))
        assert done["state"] == "done", done

        pem = tmp_path / "offline" / "private-key.pem"
        _mpc(d, "officer1", "recovery", "export-key", "--ceremony", cid, "--identity", str(offline), "--out", str(pem))
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        priv = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        assert isinstance(priv, ec.EllipticCurvePrivateKey) and isinstance(priv.curve, ec.SECP256K1)
        public = priv.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        assert public.hex() == key["public_key"]
        again = _mpc(d, "officer1", "recovery", "export-key", "--ceremony", cid, "--identity", str(offline), "--out", str(pem), ok=False)
        assert again.returncode != 0  # never overwritten

        # loud: every node and the coordinator audit the break-glass export
        for audit in [d / "coordinator" / "audit.db", *sorted(d.glob("nodes/node-*/audit.db"))]:
            data = b"".join(f.read_bytes() for f in audit.parent.glob("audit.db*"))
            assert b"break-glass" in data, audit
    finally:
        mpc_cluster("stop", "--dir", str(d))
