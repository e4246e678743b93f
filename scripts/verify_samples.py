#!/usr/bin/env python3
"""Verify the signature samples of a bench_protocol.py JSON file with OpenSSL (`cryptography`),
independently of crypto_core: DER signature over the 32-byte digest (Prehashed SHA-256), low-s,
and the recovery id recovers the public key (libsecp256k1 via coincurve). ``refresh_samples``
(made with refreshed shares) must also be under the public key of ``samples``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from coincurve import PublicKey
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

HALF_Q = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def check(sample: dict[str, Any]) -> str | None:
    """Why the sample (parsed JSON: public_key, signature_der, digest in hex; recovery_id) fails, or None."""
    pub = bytes.fromhex(sample["public_key"])
    der = bytes.fromhex(sample["signature_der"])
    digest = bytes.fromhex(sample["digest"])
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pub)
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return "OpenSSL rejects the signature"
    r, s = decode_dss_signature(der)
    if s > HALF_Q:
        return "high s"
    rec = PublicKey.from_signature_and_message(
        r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([sample["recovery_id"]]), digest, hasher=None
    )
    if rec.format() != pub:
        return "recovery id does not recover the public key"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("json", type=Path, nargs="+")
    args = ap.parse_args()
    bad = total = 0
    for path in args.json:
        data = json.loads(path.read_text())
        keys = {x["public_key"] for x in data.get("samples", [])}
        for kind in ("samples", "refresh_samples"):  # refresh_samples: signed with refreshed shares
            for i, sample in enumerate(data.get(kind, [])):
                total += 1
                err = check(sample)
                if err is None and kind == "refresh_samples" and keys and sample["public_key"] not in keys:
                    err = "signed under another public key than before the refresh"
                if err:
                    bad += 1
                    print(f"{path}: {kind} {i}: {err}")
    print(f"{total - bad} of {total} signatures verified by OpenSSL, low-s, recovery id correct")
    return 1 if bad or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
