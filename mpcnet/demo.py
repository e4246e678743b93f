"""The end-to-end demo behind ``scripts/demo``.

Starts a local 3-of-5 cluster (``mpc-cluster up``), creates a key (``mpc keygen``), signs the
SHA-256 digest of a message (``mpc sign``), verifies the signature with the ``cryptography``
package (OpenSSL), independently of this project's code, and stops the cluster.
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

from mpcnet.cluster import child_env


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
    mpc = ["mpcnet.cli", "--cluster", str(d)]
    started = False
    try:
        print(f"1. starting a local {args.threshold}-of-{args.nodes} cluster in {d}")
        print("   (dev CA, mTLS certificates, node keystores and configs are created on first use)")
        out = _run(["mpcnet.cluster_cli", "up", "--nodes", str(args.nodes), "--threshold", str(args.threshold), *cluster], "mpc-cluster up")
        started = True
        print("   " + "\n   ".join(out.strip().splitlines()))

        print(f"2. creating a key: distributed key generation across all {args.nodes} nodes")
        key = _json([*mpc, "keygen", "--label", "demo", "--json"], "mpc keygen")
        print(f"   key id            {key['key_id']}")
        print(f"   public key        {key['public_key']}")
        print(f"   Ethereum address  {key['ethereum_address']}")

        digest = hashlib.sha256(args.message.encode()).digest()
        print(f"3. signing SHA-256({args.message!r}) = {digest.hex()}")
        sig = _json([*mpc, "sign", "--key", key["key_id"], "--digest", digest.hex(), "--json"], "mpc sign")
        print(f"   signed by nodes   {', '.join(map(str, sig['signers']))} (any {args.threshold} of {args.nodes})")
        print(f"   r                 {sig['r']}")
        print(f"   s                 {sig['s']}")
        print(f"   recovery id       {sig['recovery_id']}")
        print(f"   DER               {sig['der']}")

        print("4. verifying with OpenSSL (python 'cryptography'), independently of this project's code")
        verify_with_openssl(key["public_key"], sig["der"], digest)
        print("   signature is VALID for the key's public key")
        tampered = bytes([digest[0] ^ 1]) + digest[1:]
        try:
            verify_with_openssl(key["public_key"], sig["der"], tampered)
        except Exception:
            print("   (and, as it should, invalid for a different digest)")
        else:
            raise SystemExit("demo: a signature verified for the wrong digest")
    finally:
        if started and not args.keep:
            print("5. stopping the cluster")
            subprocess.run([sys.executable, "-m", "mpcnet.cluster_cli", "stop", *cluster], env=child_env(), capture_output=True)
        if temp and not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    print("done: keygen, threshold signing and independent verification succeeded")
    if args.keep:
        print(f"cluster still running: mpc --cluster {d} keys; stop it with: mpc-cluster stop --dir {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
