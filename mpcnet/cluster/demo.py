"""The end-to-end demo behind ``scripts/demo``.

Starts a local 3-of-5 cluster (``mpc-cluster up``, which also creates the demo identities and
the default policy: 2 of approver1..3 must approve), creates a key as admin1 (``mpc keygen``),
asks for a signature of the SHA-256 digest of a message as requester1 (``mpc request sign``),
approves it as approver1 and approver2 (``mpc approve``; each approval is signed with the
approver's own key and every node re-checks the quorum before it signs), verifies the signature
with the ``cryptography`` package (OpenSSL), independently of this project's code, verifies every
component's audit trail as auditor1 (``mpc audit verify``), and stops the cluster.

Without ``--dir`` the cluster lives in a fresh temporary directory, deleted at the end unless
``--keep`` is given; with ``--dir DIR`` it is stopped and DIR stays (``--keep``: left running).
Arguments are checked before anything starts: a usage error is one line on stderr and exit 2;
a failed step exits 1, Ctrl-C 130 (the cluster is stopped either way).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from governance.text import escape, quote
from mpcnet.cluster.demo_schnorr import schnorr_keys
from mpcnet.cluster.launcher import MAX_LOCAL_NODES, ClusterError, check_topology, child_env, read_params
from mpcnet.common import cliutil
from mpcnet.common.cliutil import PathArg, UInt

PROG = "scripts/demo"
MAX_MESSAGE = 1000


def _run(args: list[str], what: str) -> str:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", *args], env=child_env(), capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"demo: {what} failed (exit status {p.returncode})")
    print(f"   ({escape(what)}: {(time.perf_counter() - t0):.2f} s)")
    return p.stdout


def _json(args: list[str], what: str) -> Any:
    return json.loads(_run(args, what))


def verify_with_openssl(public_key_hex: str, der_hex: str, digest: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(public_key_hex))
    pub.verify(bytes.fromhex(der_hex), digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # raises if invalid


def sign_and_check(mpc: Callable[..., list[str]], key_id: str, public_key: str, number: int, demo: str, step: str) -> None:
    """The lifecycle and recovery demos' signing step: sign a fresh digest (requester1, approved
    by approver1 and approver2, every call through ``mpc(who, *args)``), verify the signature
    with OpenSSL under ``public_key`` and check the key still has that public key. Prints the
    signers; raises SystemExit naming ``step`` when anything differs."""
    digest = hashlib.sha256(f"{demo} demo {number}: {step}".encode()).digest()
    req = _json(mpc("requester1", "request", "sign", "--key", key_id, "--digest", digest.hex(),
                    "--description", f"demo {number}", "--json"), "mpc request sign")
    _json(mpc("approver1", "approve", req["request_id"], "--json"), "mpc approve (approver1)")
    done = _json(mpc("approver2", "approve", req["request_id"], "--wait", "--json"), "mpc approve (approver2)")
    if done["state"] != "done":
        raise SystemExit(f"demo: signing after {step} ended {done['state'].upper()}: {escape(str(done.get('error')))}")
    verify_with_openssl(public_key, done["signature"]["der"], digest)
    key = _json(mpc("auditor1", "pubkey", "--key", key_id, "--json"), "mpc pubkey")
    if key["public_key"] != public_key:
        raise SystemExit(f"demo: the public key changed after {step}: {key['public_key']}")
    signers = ", ".join(map(str, done["signature"]["signers"]))
    print(f"   signed by nodes {signers}; VALID under {public_key} (OpenSSL)")


@click.command(name=PROG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog="\b\nExit codes: 0 success, 1 a step failed, 2 usage error, 130 interrupted (Ctrl-C).")
@click.option("--dir", "directory", type=PathArg("DIR", resolve=True), default=None,
              help="cluster directory (default: a fresh temporary one, deleted at the end unless --keep is given)")
@click.option("--nodes", type=UInt(2, MAX_LOCAL_NODES, show_range=True), default=None,
              help="nodes of a new cluster [default: 5; an existing --dir: its own]")
@click.option("--threshold", type=UInt(2, MAX_LOCAL_NODES, show_range=True), default=None,
              help="signers needed [default: min(3, nodes); an existing --dir: its own]")
@click.option("--message", default="hello from a 3-of-5 threshold ECDSA network", show_default=True,
              help=f"the text whose SHA-256 digest is signed (at most {MAX_MESSAGE} characters)")
@click.option("--keep", is_flag=True,
              help="leave the cluster running and its directory in place, to explore it with 'mpc --cluster DIR ...' "
                   "(without it the cluster is stopped and a temporary directory deleted)")
@click.option("--schnorr/--no-schnorr", default=True, show_default=True,
              help="also create an Ed25519 and a BIP340 (Taproot) key and sign with each through approvals (FROST)")
def demo(directory: Path | None, nodes: int | None, threshold: int | None, message: str, keep: bool, schnorr: bool) -> int:
    """The end-to-end demo: a local threshold cluster, a key, a signature approved by 2 of 3
    approvers, independent verification with OpenSSL, and the audit trail verified."""
    if len(message) > MAX_MESSAGE:
        raise click.BadParameter(f"at most {MAX_MESSAGE} characters, got {len(message)}", param_hint="'--message'")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv (surrogate escapes)
        raise click.BadParameter(f"must be valid UTF-8, got {quote(message)}", param_hint="'--message'") from None
    if directory is not None:
        d = directory
        if d.exists() and not d.is_dir():
            raise click.BadParameter(f"{d} exists and is not a directory", param_hint="'--dir'")
        try:  # here, not in 'mpc-cluster up', so that a bad --dir is one line, exit 2
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise click.BadParameter(f"cannot create {d}: {e.strerror or type(e).__name__}", param_hint="'--dir'") from None
        try:
            params = read_params(d)
        except ClusterError as e:
            raise click.BadParameter(str(e), param_hint="'--dir'") from None
        if params is not None:
            held = (params["nodes"], params["threshold"])
            if (nodes is not None and nodes != held[0]) or (threshold is not None and threshold != held[1]):
                raise click.BadParameter(
                    f"{d} holds a {held[1]}-of-{held[0]} cluster; run without --nodes/--threshold, or use a new --dir",
                    param_hint="'--dir'")
            nodes, threshold = held
    nodes = 5 if nodes is None else nodes
    threshold = min(3, nodes) if threshold is None else threshold
    try:
        check_topology(nodes, threshold)
    except ClusterError as e:
        raise click.UsageError(str(e), click.get_current_context()) from None
    return _demo(directory, nodes, threshold, message, keep, schnorr)


def _demo(directory: Path | None, nodes: int, threshold: int, message: str, keep: bool, schnorr: bool = False) -> int:
    temp = directory is None
    d = Path(tempfile.mkdtemp(prefix="mpcnet-demo-")) if directory is None else directory
    cluster = ["--dir", str(d)]
    shown = escape(str(d))
    mpc_base = ["mpcnet.client.cli", "--cluster", str(d)]
    started = False
    step = 7  # the audit step's number (9 after the two Schnorr steps)
    try:
        print(f"1. starting a local {threshold}-of-{nodes} cluster in {shown}")
        print("   (dev CA, mTLS certificates, node keystores and configs are created on first use)")
        out = _run(["mpcnet.cluster.cli", "up", "--nodes", str(nodes), "--threshold", str(threshold), *cluster], "mpc-cluster up")
        started = True
        # not up's "client: mpc --cluster DIR ..." hint: DIR may be gone at the end (see below)
        print("   " + "\n   ".join(escape(line) for line in out.strip().splitlines() if not line.startswith("client:")))

        def mpc(who: str, *args: str) -> list[str]:
            return [*mpc_base, "--as", who, *args]

        print(f"2. admin1 creates a key: distributed key generation across all {nodes} nodes")
        key = _json(mpc("admin1", "keygen", "--label", "demo", "--json"), "mpc keygen")
        print(f"   key id            {key['key_id']}")
        print(f"   public key        {key['public_key']}")
        print(f"   Ethereum address  {key['ethereum_address']}")
        policy = _json(mpc("admin1", "policy", "show", "--key", key["key_id"], "--json"), "mpc policy show")
        print(f"   policy            {policy['scope']} v{policy['version']}: {policy['approval_quorum']} of "
              f"{', '.join(policy['approvers'])} must approve; requesters: {', '.join(policy['requesters'])} "
              f"(signed by admins {', '.join(policy['signed_by'])})")

        digest = hashlib.sha256(message.encode()).digest()
        print(f"3. requester1 asks for a signature of SHA-256({escape(repr(message))})")
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
              f"(any {threshold} of {nodes})")
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

        if schnorr:  # issue 16: an Ed25519 and a Taproot key (steps 7 and 8)
            schnorr_keys(mpc, _json, d, message, step)
            step += 2
        print(f"{step}. auditor1 verifies the audit trail of the coordinator and of every node")
        print("   (hash chains and Ed25519 signatures, checked here against the keys in cluster.json)")
        out = _run(mpc("auditor1", "audit", "verify"), "mpc audit verify")
        print("   " + "\n   ".join(out.strip().splitlines()))
    finally:
        if started and not keep:
            print(f"{step + 1}. stopping the cluster")
            subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", "stop", *cluster], env=child_env(), capture_output=True)
        if temp and not keep:
            shutil.rmtree(d, ignore_errors=True)
    print("done: keygen, a request approved by 2 of 3 approvers, threshold signing, independent verification")
    if schnorr:  # issue 16
        print("      (ECDSA, and Ed25519 and Taproot keys with FROST) and a clean audit trail")
    else:
        print("      and a clean audit trail")
    if keep:
        mpc_cmd, cluster_cmd = installed("mpc"), installed("mpc-cluster")
        print(f"the cluster is still running in {shown}: explore it with '{mpc_cmd} --cluster {shown} --as auditor1 requests';")
        print(f"stop it with '{cluster_cmd} stop --dir {shown}'")
    elif temp:
        print(f"the cluster was stopped and {shown} deleted; run 'scripts/demo --keep' to leave the cluster running")
        print(f"and explore it with '{installed('mpc')} --cluster DIR ...'")
    else:
        print(f"the cluster was stopped; its keys and data stay in {shown} ('{installed('mpc-cluster')} up --dir {shown}' starts it again)")
    return 0


def installed(program: str) -> str:
    """How to run ``program`` (``mpc``, ``mpc-cluster``) from a shell: its name when the shell finds
    this installation's copy, else its path in this virtualenv (scripts/demo runs without the
    virtualenv on PATH, so a plain 'mpc' hint is 'command not found' on a fresh machine)."""
    here = Path(sys.executable).parent / program
    found = shutil.which(program)
    if found is not None and Path(found).resolve() == here.resolve():
        return program
    return escape(str(here.absolute()))


def main(argv: list[str] | None = None) -> int:
    """``scripts/demo``: returns the exit code; never raises, never prints a traceback."""
    return cliutil.run(demo, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
