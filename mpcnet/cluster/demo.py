"""The end-to-end demo behind ``scripts/demo``.

Starts a local 3-of-5 cluster (``mpc-cluster up``, which also creates the demo identities and
the default policy: 2 of approver1..3 must approve), creates a key as admin1 (``mpc keygen``),
asks for a signature of the SHA-256 digest of a message as requester1 (``mpc request sign``),
approves it as approver1 and approver2 (``mpc approve``; each approval is signed with the
approver's own key and every node re-checks the quorum before it signs), verifies the signature
with the ``cryptography`` package (OpenSSL), independently of this project's code, verifies every
component's audit trail as auditor1 (``mpc audit verify``), and stops the cluster.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mpcnet.cluster.launcher import child_env


def _run(args: list[str], what: str) -> str:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", *args], env=child_env(), capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"demo: {what} failed (exit status {p.returncode})")
    print(f"   ({(time.perf_counter() - t0):.2f} s)")
    return p.stdout


def _json(args: list[str], what: str) -> Any:
    return json.loads(_run(args, what))


def verify_with_openssl(public_key_hex: str, der_hex: str, digest: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(public_key_hex))
    pub.verify(bytes.fromhex(der_hex), digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # raises if invalid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="cluster directory (default: a fresh temporary one, removed afterwards)")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--threshold", type=int, default=3)
    ap.add_argument("--message", default="hello from a 3-of-5 threshold ECDSA network")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = ap.parse_args(argv)
    temp = args.dir is None
    d = Path(tempfile.mkdtemp(prefix="mpcnet-demo-")) if temp else args.dir.resolve()
    cluster = ["--dir", str(d)]
    mpc_base = ["mpcnet.client.cli", "--cluster", str(d)]
    started = False
    try:
        print(f"1. starting a local {args.threshold}-of-{args.nodes} cluster in {d}")
        print("   (dev CA, mTLS certificates, node keystores and configs are created on first use)")
        out = _run(["mpcnet.cluster.cli", "up", "--nodes", str(args.nodes), "--threshold", str(args.threshold), *cluster], "mpc-cluster up")
        started = True
        print("   " + "\n   ".join(out.strip().splitlines()))

        def mpc(who: str, *args: str) -> list[str]:
            return [*mpc_base, "--as", who, *args]

        print(f"2. admin1 creates a key: distributed key generation across all {args.nodes} nodes")
        key = _json(mpc("admin1", "keygen", "--label", "demo", "--json"), "mpc keygen")
        print(f"   key id            {key['key_id']}")
        print(f"   public key        {key['public_key']}")
        print(f"   Ethereum address  {key['ethereum_address']}")
        policy = _json(mpc("admin1", "policy", "show", "--key", key["key_id"], "--json"), "mpc policy show")
        print(f"   policy            {policy['scope']} v{policy['version']}: {policy['approval_quorum']} of "
              f"{', '.join(policy['approvers'])} must approve; requesters: {', '.join(policy['requesters'])} "
              f"(signed by admins {', '.join(policy['signed_by'])})")

        digest = hashlib.sha256(args.message.encode()).digest()
        print(f"3. requester1 asks for a signature of SHA-256({args.message!r})")
        req = _json(mpc("requester1", "request", "sign", "--key", key["key_id"], "--digest", digest.hex(),
                        "--description", "demo: sign a greeting", "--json"), "mpc request sign")
        rid = req["request_id"]
        print(f"   request {rid} is {req['state'].upper()} ({req['approval_quorum']} of {req['approvers']} approvals needed)")

        print("4. approver1 approves (signing the request with its own Ed25519 key)")
        r1 = _json(mpc("approver1", "approve", rid, "--json"), "mpc approve (approver1)")
        print(f"   request is {r1['state'].upper()}, approved by {', '.join(a['approver'] for a in r1['approvals'])}")
        print("5. approver2 approves: the quorum is met, the coordinator hands the approvals to the nodes,")
        print("   each of which re-checks them against its own policy before signing")
        sig_req = _json(mpc("approver2", "approve", rid, "--wait", "--json"), "mpc approve (approver2)")
        if sig_req["state"] != "done":
            raise SystemExit(f"demo: the request ended {sig_req['state'].upper()}: {sig_req['error']}")
        sig = sig_req["signature"]
        print(f"   request is {sig_req['state'].upper()}; signed by nodes {', '.join(map(str, sig['signers']))} "
              f"(any {args.threshold} of {args.nodes})")
        print(f"   r                 {sig['r']}")
        print(f"   s                 {sig['s']}")
        print(f"   recovery id       {sig['recovery_id']}")
        print(f"   DER               {sig['der']}")

        print("6. verifying with OpenSSL (python 'cryptography'), independently of this project's code")
        verify_with_openssl(key["public_key"], sig["der"], digest)
        print("   signature is VALID for the key's public key")
        tampered = bytes([digest[0] ^ 1]) + digest[1:]
        try:
            verify_with_openssl(key["public_key"], sig["der"], tampered)
        except Exception:
            print("   (and, as it should, invalid for a different digest)")
        else:
            raise SystemExit("demo: a signature verified for the wrong digest")

        print("7. auditor1 verifies the audit trail of the coordinator and of every node")
        print("   (hash chains and Ed25519 signatures, checked here against the keys in cluster.json)")
        out = _run(mpc("auditor1", "audit", "verify"), "mpc audit verify")
        print("   " + "\n   ".join(out.strip().splitlines()))
    finally:
        if started and not args.keep:
            print("8. stopping the cluster")
            subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", "stop", *cluster], env=child_env(), capture_output=True)
        if temp and not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    print("done: keygen, a request approved by 2 of 3 approvers, threshold signing, independent verification")
    print("      and a clean audit trail")
    if args.keep:
        print(f"cluster still running: mpc --cluster {d} --as auditor1 requests; stop it with: mpc-cluster stop --dir {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
