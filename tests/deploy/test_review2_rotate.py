"""Review 2 (issue 13): the two steps of ``mpc node rotate-keys N --csr-out FILE`` / ``--cert CERT
--csr FILE`` with the staged record edited, swapped or replayed between them. All refused before
anything is installed or proposed (no finding: these are regression tests). The node itself
refuses a certificate whose key is not its staged TLS key (a node that re-staged in between:
``mpc_node.rotation.check_staged_certificate``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from governance.roster import RosterEntry, rotation_proof_message
from mpcnet.client.cli import CliUsage
from mpcnet.client.cli_rotate import read_staged, staged_path, write_staged
from mpcnet.client.errors import MpcError
from mpcnet.client.lifecycle import StagedRotation
from mpcnet.common.enrolment import make_csr, make_tls_key

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _pub(k: Any) -> bytes:
    return bytes(k.public_key().public_bytes(*_RAW))


def _stage(tmp_path: Path, current: Ed25519PrivateKey, tag: str = "a") -> StagedRotation:
    csr = make_csr(make_tls_key(tmp_path / f"tls-{tag}.key"), "node", "node-2", ("node-2.mpc.test",))
    ident, enc = _pub(Ed25519PrivateKey.generate()), _pub(X25519PrivateKey.generate())
    proof = current.sign(rotation_proof_message(ident, enc, csr))
    return StagedRotation(2, "node-2", ident, enc, csr, proof)


def _entry(current: Ed25519PrivateKey) -> RosterEntry:
    return RosterEntry(2, "node-2", _pub(current), _pub(X25519PrivateKey.generate()), bytes(range(32)), "node-2.mpc.test:7001")


@pytest.mark.parametrize("edit", ["identity_public", "encryption_public", "csr"])
def test_an_edited_staged_record_is_refused_by_the_proof(tmp_path: Path, edit: str) -> None:
    current = Ed25519PrivateKey.generate()
    csr_path = tmp_path / "node-2.csr"
    write_staged(csr_path, _stage(tmp_path, current))
    rec = json.loads(staged_path(csr_path).read_text())
    other = _stage(tmp_path, current, "b")
    if edit == "csr":  # both the CSR file and the record's copy swapped (the CA would sign the attacker's key)
        rec["csr"] = other.csr_pem.decode()
        csr_path.write_bytes(other.csr_pem)
    else:
        rec[edit] = getattr(other, edit).hex()
    staged_path(csr_path).write_text(json.dumps(rec))
    staged = read_staged(csr_path, 2)
    with pytest.raises(MpcError) as e:
        staged.verify(_entry(current))
    assert e.value.code is grpc.StatusCode.DATA_LOSS and "proof" in e.value.message


def test_a_swapped_csr_file_another_nodes_record_and_a_hostile_record_are_refused(tmp_path: Path) -> None:
    current = Ed25519PrivateKey.generate()
    csr_path = tmp_path / "node-2.csr"
    write_staged(csr_path, _stage(tmp_path, current))
    assert read_staged(csr_path, 2).index == 2
    with pytest.raises(CliUsage, match="for node 2, not node 3"):
        read_staged(csr_path, 3)
    good = csr_path.read_bytes()
    csr_path.write_bytes(_stage(tmp_path, current, "b").csr_pem)
    with pytest.raises(CliUsage, match="is not the CSR its staged record names"):
        read_staged(csr_path, 2)
    csr_path.write_bytes(good)
    rec = json.loads(staged_path(csr_path).read_text())
    for field, value in (("index", True), ("index", "2\x1b[31m"), ("name", 7), ("proof", "zz" * 64), ("extra", 1)):
        bad = {**rec, field: value}
        staged_path(csr_path).write_text(json.dumps(bad))
        with pytest.raises(CliUsage) as e:
            read_staged(csr_path, 2 if field != "index" or value is not True else 1)
        assert "\x1b" not in str(e.value)


def test_a_proof_by_a_key_since_rotated_away_is_refused(tmp_path: Path) -> None:
    """A record staged before another rotation completed (the node's identity changed since)."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with pytest.raises(MpcError):
        _stage(tmp_path, old).verify(_entry(new))
