"""README's "Schnorr keys with FROST" section (issue 16), read as a newcomer does: its ``mpc``
commands exist with their options, its bench line uses options the script has, and its Python
snippet for checking signatures independently runs as printed against real FROST signatures
(made in process here: a FROST DKG and signing among 2-of-3 parties)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_core.frost.local import run_frost_dkg
from crypto_core.frost.signing import SigningPackage, aggregate, commit, sign_share, signing_key
from mpcnet.common.addresses import p2tr_address, solana_address

from ..readme_commands import check_line, command_lines, section

TITLE = "## Schnorr keys with FROST"
TEXT = section(TITLE)
LINES = command_lines(TITLE)
ROOT = Path(__file__).resolve().parents[2]


def test_the_section_shows_each_scheme_and_command() -> None:
    joined = "\n".join(LINES)
    for needed in ("--scheme ed25519", "--scheme schnorr-secp256k1-bip340", " pubkey ", "--message-file", "--taproot-root",
                   "--expect-message-file", " request show "):
        assert needed in joined, needed
    for word in ("BIP86", "BIP341", "RFC 9591", "SHA-256", "nonce", "Solana", "bech32m"):
        assert word in TEXT, word


@pytest.mark.parametrize("line", LINES)
def test_each_readme_command_exists_with_its_options(line: str) -> None:
    check_line(line)


def test_the_bench_line_uses_options_the_script_has() -> None:
    [line] = re.findall(r"`(scripts/bench_protocol\.py --scheme [^`]*)`", TEXT)
    helptext = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_protocol.py"), "--help"], capture_output=True,
                              text=True, timeout=60, check=True).stdout
    for opt in re.findall(r"(--[a-z][a-z-]*)", line):
        assert opt in helptext, (line, opt)


def _signed(scheme: str, message: bytes) -> tuple[bytes, bytes]:
    """(group public key, signature) of ``message`` by a fresh 2-of-3 FROST key."""
    shares = run_frost_dkg(scheme, 2, 3)
    signers = shares[:2]
    made = [commit(scheme, ks.secret_share, identifier=ks.index) for ks in signers]
    package = SigningPackage(scheme, message, tuple(c for _, c in made))
    z = {ks.index: sign_share(ks, nonces, package) for ks, (nonces, _) in zip(signers, made, strict=True)}
    return shares[0].public_key, aggregate(shares[0].public(), package, z)


def test_the_independent_check_snippet_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", TEXT, flags=re.S) if "PublicKeyXOnly" in b]
    message = b"a Solana transaction message"
    (tmp_path / "tx.bin").write_bytes(message)
    ed_pk, ed_sig = _signed("ed25519", message)
    digest = bytes(range(32))
    bip_pk, bip_sig = _signed("schnorr-secp256k1-bip340", digest)
    output_key = signing_key("schnorr-secp256k1-bip340", bip_pk)
    # the snippet checks the two signatures one after the other: give it the names it uses
    ed_part, bip_part = snippet.split("# BIP340", 1)
    monkeypatch.chdir(tmp_path)
    exec(ed_part, {"PUBLIC_KEY": ed_pk.hex(), "SIG": ed_sig.hex()})  # noqa: S102 (the README's own code)
    exec("# BIP340" + bip_part, {  # noqa: S102
        "OUTPUT_KEY": output_key.hex(), "SIG": bip_sig.hex(), "DIGEST": digest.hex(), "PUBLIC_KEY": ed_pk.hex(),
        "SOLANA_ADDRESS": solana_address(ed_pk), "TAPROOT_ADDRESS": p2tr_address(output_key, "mainnet"),
    })
