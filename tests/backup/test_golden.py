"""Upgrade safety and format interoperability of backup bundles.

* The golden bundle ``vectors/bundle-v1.bin`` (format version 1, made once from the fixed keys of
  bundle_util.py) must keep decoding byte for byte, verifying against the same admins, and giving
  each node's share back to a quorum of officers. Regenerate it only for a deliberate format
  change (then add a new file and keep reading the old one)::

      MPCNET_REGEN_BUNDLE_VECTOR=1 .venv/bin/python -m pytest tests/backup/test_golden.py

* The ``age`` command-line tool (Debian package ``age``) decrypts an officer's piece with an
  identity file written by ``write_identity_file``, and age files it writes are accepted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crypto_core.feldman import check_commitments, piece_matches
from crypto_core.group import Point
from governance.recovery import BackupBundle, BackupPiece, PiecePurpose
from mpcnet.common import agekeys
from mpcnet.common.backup import officer_check, officer_deliveries, open_deliveries
from mpcnet.common.bundle import read_bundle, verify_bundle

from .bundle_util import ADMINS, NODE_ENCRYPTION, OFFICER_KEYS, world

VECTOR = Path(__file__).resolve().parent / "vectors" / "bundle-v1.bin"
REGEN = os.environ.get("MPCNET_REGEN_BUNDLE_VECTOR") == "1"

# what the committed vector holds (a change here is a change of the file, i.e. of the format)
KEY_ID = "301068079d8ff4d0f6f87019a776ef0d45a0a3bcdba4150e27913c59cdc9ed71"
COMMITTEE = (1, 2, 4)


def golden() -> BackupBundle:
    if REGEN:
        VECTOR.parent.mkdir(parents=True, exist_ok=True)
        VECTOR.write_bytes(world().bundle.to_file())
    return read_bundle(VECTOR.read_bytes())


def test_the_golden_bundle_still_decodes_byte_for_byte_and_verifies() -> None:
    data = VECTOR.read_bytes() if not REGEN else golden().to_file()
    bundle = read_bundle(data)
    assert bundle.format_version == 1 and bundle.to_file() == data
    summary = verify_bundle(bundle, ADMINS)
    assert summary.key_id.hex() == KEY_ID and summary.committee == COMMITTEE
    assert (summary.threshold, summary.quorum, summary.officers) == (2, 2, ("officer1", "officer2", "officer3"))


def test_the_golden_bundle_gives_every_share_back_to_a_quorum() -> None:
    bundle = golden()
    for j in (1, 2, 3):
        assert officer_check(bundle, OFFICER_KEYS[j]).ok
    ceremony = b"\x42" * 16
    for s, node in enumerate(COMMITTEE, 1):
        target = {s: agekeys.public_key(NODE_ENCRYPTION[node])}
        files = {
            j: officer_deliveries(bundle, OFFICER_KEYS[j], ceremony_id=ceremony, purpose=PiecePurpose.DRILL, targets=target)[s]
            for j in (1, 3)
        }
        secret, outcomes = open_deliveries(bundle, s, files, NODE_ENCRYPTION[node], ceremony_id=ceremony,
                                           purpose=PiecePurpose.DRILL)
        assert secret is not None and Point.base_mul(secret).encode() == bundle.key.public_shares[s - 1]
        assert outcomes == {1: "ok", 2: "missing", 3: "ok"}


AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    AGE is None, reason="the age command-line tool is missing: apt-get update && apt-get install -y age (scripts/test does)"
)


@needs_age
def test_the_age_tool_decrypts_an_officers_piece(tmp_path: Path) -> None:
    bundle = golden()
    identity = tmp_path / "officer2.key"
    agekeys.write_identity_file(identity, OFFICER_KEYS[2])
    part = bundle.parts[1].part  # node 2, share index 2
    (tmp_path / "piece.age").write_bytes(part.pieces[1])
    assert AGE is not None
    done = subprocess.run([AGE, "--decrypt", "-i", str(identity), str(tmp_path / "piece.age")],
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    piece = BackupPiece.from_bytes(done.stdout)
    assert (piece.key_id, piece.epoch, piece.share_index, piece.officer_index, piece.config_version) == (
        bundle.key.key_id, 0, 2, 2, 1)
    commitments = check_commitments(part.commitments, 2, bundle.key.public_shares[1])
    assert piece_matches(commitments, 2, int.from_bytes(piece.value, "big"))
    # the identity file is one age itself reads, and the tool's keys are ours
    wrong = tmp_path / "officer1.key"
    agekeys.write_identity_file(wrong, OFFICER_KEYS[1])
    refused = subprocess.run([AGE, "--decrypt", "-i", str(wrong), str(tmp_path / "piece.age")],
                             capture_output=True, timeout=30, check=False)
    assert refused.returncode != 0 and refused.stdout == b""


@needs_age
def test_files_the_age_tool_writes_are_accepted(tmp_path: Path) -> None:
    private, public = agekeys.generate()
    (tmp_path / "plain").write_bytes(b"a piece delivery")
    assert AGE is not None
    subprocess.run([AGE, "--encrypt", "-r", agekeys.recipient_text(public), "-o", str(tmp_path / "x.age"), str(tmp_path / "plain")],
                   check=True, timeout=30, capture_output=True)
    data = (tmp_path / "x.age").read_bytes()
    agekeys.check_age_file(data)
    assert agekeys.decrypt(private, data) == b"a piece delivery"
    keygen = shutil.which("age-keygen")
    if keygen:
        out = tmp_path / "k.txt"
        subprocess.run([keygen, "-o", str(out)], check=True, timeout=30, capture_output=True)
        mine = agekeys.read_identity_file(out)
        pub_line = next(ln for ln in out.read_text().splitlines() if ln.startswith("# public key: "))
        assert agekeys.recipient_text(agekeys.public_key(mine)) == pub_line.removeprefix("# public key: ")
