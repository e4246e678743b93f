"""Issue 10 items 11-12 end to end: a real threshold signature at a derivation path, described in
every wallet format, checked by tools that are not ours (coincurve recovery, OpenSSL's CLI)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from coincurve import PublicKey

from mpcnet.client import MpcClient, SigningTeam


def test_a_derived_signature_in_wallet_formats(team: SigningTeam, client: MpcClient, key, tmp_path: Path) -> None:
    message = b"wallet formats, end to end"
    digest = hashlib.sha256(message).digest()
    sig = team.sign(key.key_id, digest, path="m/0/1")
    info = client.get_sign_request(sig.request_id)  # SignRequest.from_proto checks the signature recovers its key
    d = info.as_dict(chain_id=1)["signature"]
    desc = client.get_key(key.key_id).describe("m/0/1")
    assert desc["public_key"] == d["public_key"] == sig.public_key.hex() != key.public_key.hex()
    assert desc["chain_code"] != key.chain_code.hex() and desc["xpub"].startswith("xpub")
    eth = bytes.fromhex(d["ethereum"])
    assert len(eth) == 65 and eth[64] == d["v"] == 37 + sig.recovery_id
    recovered = PublicKey.from_signature_and_message(eth[:64] + bytes([eth[64] - 37]), digest, hasher=None)
    assert recovered.format() == sig.public_key
    openssl = shutil.which("openssl")
    assert openssl
    (tmp_path / "pub.pem").write_text(desc["public_key_pem"])
    (tmp_path / "sig.der").write_bytes(bytes.fromhex(d["der"]))
    (tmp_path / "msg").write_bytes(message)
    cmd = [openssl, "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "msg"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "Verified OK" in p.stdout, p.stderr
