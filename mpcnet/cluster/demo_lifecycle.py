"""The key lifecycle demo behind ``scripts/demo-lifecycle`` (issue 11, "Done means").

Against a fresh local 3-of-5 cluster, all from the CLI: create a key and sign; remove node 3
(the key is reshared to 3-of-4) and sign; add a node back (``mpc-cluster add-node``, 3-of-5)
and sign; refresh the key and sign; rotate every node's operational keys and sign; stop and
start the cluster again (the revoked node stays out, the added one comes back) and sign. Every
signature is verified with OpenSSL (python ``cryptography``) under the public key the key had
at the start, and the key's public key is printed after each step (it never changes). Each
proposal is made by admin1 and approved by admin2 (the dev cluster's admin quorum of 2), with
``--expect-digest`` so admin2 signs exactly what admin1 proposed.

Exit codes: 0 success, 1 a step failed (its output is shown), 130 interrupted. The cluster is
stopped at the end and its temporary directory deleted unless ``--keep``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from governance.text import escape
from mpcnet.cluster.demo import _json, _run, sign_and_check
from mpcnet.cluster.launcher import child_env
from mpcnet.common import cliutil
from mpcnet.common.cliutil import UInt
from mpcnet.common.keystore import MAX_SCRYPT_N, MIN_SCRYPT_N

PROG = "scripts/demo-lifecycle"


class Demo:
    def __init__(self, d: Path) -> None:
        self.d = d
        self.public_key = ""
        self.key_id = ""
        self.signatures = 0

    def mpc(self, who: str, *args: str) -> list[str]:
        return ["mpcnet.client.cli", "--cluster", str(self.d), "--as", who, *args]

    def sign(self, step: str) -> None:
        """Sign a fresh digest and verify it with OpenSSL under the key's original public key
        (:func:`mpcnet.cluster.demo.sign_and_check`)."""
        self.signatures += 1
        sign_and_check(self.mpc, self.key_id, self.public_key, self.signatures, "lifecycle", step)

    def approve(self, proposal: dict[str, Any], what: str) -> None:
        """admin2 approves admin1's proposal (pinned by its digest) and waits for its key operations."""
        out = _json(self.mpc("admin2", "lifecycle", "approve", proposal["proposal_id"], "--expect-digest", proposal["digest"],
                             "--json"), f"mpc lifecycle approve ({what})")
        if out["proposal"]["state"] != "applied":
            raise SystemExit(f"demo: {what} is {out['proposal']['state']}, not applied")
        for op in out.get("operations", []):
            print(f"   key operation {op['operation_id']} ({op['kind']}): {op['state'].upper()}, epoch {op['new_epoch']}, "
                  f"{op['new_threshold']}-of-{','.join(map(str, op['new_committee']))}")
            if op["state"] != "done":
                raise SystemExit(f"demo: key operation {op['operation_id']} {op['state']}: {escape(op['error'])}")

    def propose(self, what: str, *args: str) -> None:
        p = _json(self.mpc("admin1", *args, "--no-wait", "--json"), f"mpc {' '.join(args[:2])}")["proposal"]
        print(f"   admin1 proposed {p['proposal_id']} (digest {p['digest'][:16]}...); admin2 approves")
        self.approve(p, what)


@click.command(name=PROG, context_settings={"help_option_names": ["-h", "--help"]},
               epilog="\b\nExit codes: 0 success, 1 a step failed, 2 usage error, 130 interrupted (Ctrl-C).")
@click.option("--keep", is_flag=True, help="leave the cluster running and its directory in place")
@click.option("--scrypt-n", type=UInt(MIN_SCRYPT_N, MAX_SCRYPT_N, show_range=True), default=2**15, show_default=True,
              help="scrypt cost of the cluster's keystores and stores, a power of two (tests use 1024)")
def demo_lifecycle(keep: bool, scrypt_n: int) -> int:
    """Sign, remove a node, sign, add a node, sign, refresh, sign, rotate every node's keys, sign;
    stop and start the cluster again, sign: one public key throughout."""
    if scrypt_n & (scrypt_n - 1):
        raise click.UsageError(f"scrypt-n: must be a power of two in [2**10, 2**20], got {scrypt_n}")
    d = Path(tempfile.mkdtemp(prefix="mpcnet-lifecycle-"))
    demo = Demo(d)
    started = False
    try:
        print(f"1. starting a local 3-of-5 cluster in {escape(str(d))}")
        _run(["mpcnet.cluster.cli", "up", "--dir", str(d), "--nodes", "5", "--threshold", "3", "--quiet",
              "--scrypt-n", str(scrypt_n)], "mpc-cluster up")
        started = True
        print("2. admin1 creates a key (DKG on nodes 1..5); requester1 signs")
        key = _json(demo.mpc("admin1", "keygen", "--json"), "mpc keygen")
        demo.key_id, demo.public_key = key["key_id"], key["public_key"]
        print(f"   key {demo.key_id}, public key {demo.public_key}")
        demo.sign("keygen")
        print("3. remove node 3: the roster revokes it and the key is reshared to 3-of-4 (nodes 1,2,4,5)")
        demo.propose("removing node 3", "node", "remove", "3")
        demo.sign("removing node 3")
        print("4. add a node (mpc-cluster add-node: node 6, signed by the dev admins), the key reshared to 3-of-5")
        _run(["mpcnet.cluster.cli", "add-node", "--dir", str(d), "--quiet"], "mpc-cluster add-node")
        demo.sign("adding node 6")
        print("5. refresh the key: new shares, same public key")
        demo.propose("the refresh", "key", "refresh", demo.key_id, "--reason", "demo")
        demo.sign("the refresh")
        roster = _json(demo.mpc("auditor1", "roster", "show", "--json"), "mpc roster show")
        print(f"6. rotate the operational keys (identity, encryption, TLS) of nodes {', '.join(map(str, roster['active']))}")
        for n in roster["active"]:
            demo.propose(f"rotating node {n}'s keys", "node", "rotate-keys", str(n))
        roster = _json(demo.mpc("auditor1", "roster", "show", "--json"), "mpc roster show")
        versions = {e["index"]: e["key_version"] for e in roster["entries"] if e["status"] == "active"}
        print(f"   roster version {roster['version']}; key versions {versions}")
        demo.sign("rotating every node's keys")
        print("7. stop the cluster and start it again: node 6 comes back, the revoked node 3 is not started")
        _run(["mpcnet.cluster.cli", "stop", "--dir", str(d)], "mpc-cluster stop")
        _run(["mpcnet.cluster.cli", "up", "--dir", str(d), "--quiet"], "mpc-cluster up")
        status = _json(["mpcnet.cluster.cli", "status", "--dir", str(d), "--json"], "mpc-cluster status")
        revoked = [p["name"] for p in status["processes"] if p.get("revoked")]
        roster = status["roster"]
        print(f"   roster version {roster['version']}: nodes {roster['active']} running; revoked, not started: {revoked}")
        demo.sign("restarting the cluster")
    finally:
        if started and not keep:
            print("8. stopping the cluster")
            subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", "stop", "--dir", str(d)], env=child_env(), capture_output=True)
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    print(f"done: {demo.signatures} signatures, every one valid under {demo.public_key}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``scripts/demo-lifecycle``: the exit code; never a traceback."""
    return cliutil.run(demo_lifecycle, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
