"""The Schnorr (FROST) part of ``scripts/demo`` (issue 16): on the demo's running cluster, admin1
creates an ``ed25519`` key and a ``schnorr-secp256k1-bip340`` key; requester1 asks for a signature
of a message (ed25519, PureEdDSA: the approvers see and sign its SHA-256) and of a 32-byte digest
(BIP340, standing in for a Taproot sighash, key path with the BIP86 tweak); approver1 and
approver2 approve each; the signatures are checked with libraries independent of this project's
code (``cryptography``/OpenSSL and PyNaCl/libsodium for Ed25519, coincurve/libsecp256k1 x-only for
BIP340) under the key's Solana address and Taproot output key; a tampered message must fail.

:func:`schnorr_keys` is the whole step; ``scripts/demo --no-schnorr`` leaves it out."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from governance.text import escape

Mpc = Callable[..., list[str]]  # (who, *args) -> the argv of an 'mpc' call
RunJson = Callable[[list[str], str], Any]  # (argv, what) -> its JSON document (exit on failure)


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None:
    """RFC 8032 verification by OpenSSL (``cryptography``) and libsodium (PyNaCl); raises if
    either refuses."""
    import nacl.bindings
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    if nacl.bindings.crypto_sign_open(signature + message, public_key) != message:
        raise ValueError("PyNaCl: the signature does not verify")


def verify_bip340(output_key: bytes, digest: bytes, signature: bytes) -> None:
    """BIP340 verification by libsecp256k1 (coincurve ``PublicKeyXOnly``); raises if it refuses."""
    from coincurve import PublicKeyXOnly

    if not PublicKeyXOnly(output_key).verify(signature, digest):
        raise ValueError("coincurve: the signature does not verify")


def _approved(mpc: Mpc, run_json: RunJson, rid: str, what: str) -> dict[str, Any]:
    run_json(mpc("approver1", "approve", rid, "--json"), f"mpc approve (approver1, {what})")
    done: dict[str, Any] = run_json(mpc("approver2", "approve", rid, "--wait", "--json"), f"mpc approve (approver2, {what})")
    if done["state"] != "done":
        raise SystemExit(f"demo: the {what} request ended {done['state'].upper()}: {escape(str(done.get('error')))}")
    return done


def _refused(check: Callable[[], None]) -> bool:
    try:
        check()
    except Exception:  # any refusal by the independent library is the expected outcome
        return True
    return False


def schnorr_keys(mpc: Mpc, run_json: RunJson, workdir: Path, message: str, step: int) -> None:
    """The demo's Schnorr step ``step`` (see the module docstring). ``workdir``: where the message
    file is written (the cluster directory). Raises SystemExit naming what failed."""
    data = message.encode("utf-8")

    print(f"{step}. Schnorr keys (FROST, RFC 9591): admin1 creates an Ed25519 key (e.g. Solana)")
    ed = run_json(mpc("admin1", "keygen", "--label", "demo-ed25519", "--scheme", "ed25519", "--json"), "mpc keygen --scheme ed25519")
    print(f"   key id            {ed['key_id']}")
    print(f"   public key        {ed['public_key']}")
    print(f"   Solana address    {ed['solana_address']}")
    msg_file = workdir / "demo-message.txt"
    msg_file.write_bytes(data)
    req = run_json(mpc("requester1", "request", "sign", "--key", ed["key_id"], "--message-file", str(msg_file),
                       "--description", "demo: an Ed25519 message", "--json"), "mpc request sign --message-file")
    print(f"   requester1 asks to sign the message ({req['message_size']} bytes); approvers see its SHA-256")
    print(f"   {req['message_sha256']} and sign that")
    done = _approved(mpc, run_json, req["request_id"], "ed25519")
    sig = bytes.fromhex(done["signature"]["signature"])
    print(f"   approved by approver1 and approver2; signed by nodes {', '.join(map(str, done['signature']['signers']))}")
    print(f"   signature         {sig.hex()}")
    if _refused(lambda: verify_ed25519(bytes.fromhex(ed["public_key"]), data, sig)):
        raise SystemExit("demo: the Ed25519 signature does not verify under the key (OpenSSL / libsodium)")
    if not _refused(lambda: verify_ed25519(bytes.fromhex(ed["public_key"]), data + b"!", sig)):
        raise SystemExit("demo: an Ed25519 signature verified for another message")
    print("   VALID under the key (OpenSSL via 'cryptography', and libsodium via PyNaCl); invalid for another message")

    print(f"{step + 1}. admin1 creates a BIP340 Schnorr key (Bitcoin Taproot, key path, BIP86 tweak)")
    tr = run_json(mpc("admin1", "keygen", "--label", "demo-taproot", "--scheme", "schnorr-secp256k1-bip340", "--json"),
                  "mpc keygen --scheme schnorr-secp256k1-bip340")
    test = run_json(mpc("auditor1", "pubkey", "--key", tr["key_id"], "--network", "testnet", "--json"), "mpc pubkey --network testnet")
    print(f"   key id            {tr['key_id']}")
    print(f"   internal key      {tr['internal_key']} (x-only)")
    print(f"   output key        {tr['output_key']} (internal key + hash_TapTweak(internal key)·G)")
    print(f"   Taproot address   {tr['address']} (mainnet)")
    print(f"                     {test['address']} (testnet)")
    digest = hashlib.sha256(b"demo taproot sighash: " + data).digest()
    req = run_json(mpc("requester1", "request", "sign", "--key", tr["key_id"], "--digest", digest.hex(),
                       "--description", "demo: a Taproot key-path spend", "--json"), "mpc request sign (bip340)")
    print(f"   requester1 asks to sign the 32-byte message {digest.hex()} (a stand-in for a Taproot sighash)")
    done = _approved(mpc, run_json, req["request_id"], "bip340")
    sig = bytes.fromhex(done["signature"]["signature"])
    out_key = bytes.fromhex(done["signature"]["public_key"])
    if out_key.hex() != tr["output_key"]:
        raise SystemExit(f"demo: the signature's key {out_key.hex()} is not the key's Taproot output key")
    print(f"   approved; signed by nodes {', '.join(map(str, done['signature']['signers']))}")
    print(f"   signature         {sig.hex()}")
    if _refused(lambda: verify_bip340(out_key, digest, sig)):
        raise SystemExit("demo: the BIP340 signature does not verify under the Taproot output key (libsecp256k1)")
    if not _refused(lambda: verify_bip340(out_key, bytes([digest[0] ^ 1]) + digest[1:], sig)):
        raise SystemExit("demo: a BIP340 signature verified for another message")
    print("   VALID under the output key of the address (libsecp256k1 via coincurve, x-only BIP340); invalid for another message")
