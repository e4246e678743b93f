"""``mpc node rotate-keys N`` with an external CA (issue 13): ``--csr-out FILE`` stages the rotation
on the node and writes its CSR (after checking the node's proof) and changes nothing else;
``--cert CERT --csr FILE`` continues with the certificate an external CA issued for that CSR
(checked: its key is the staged CSR's, CN/OU/SAN, chain to the CA the client trusts), installs it
and proposes the roster change; once approved the node switches and the cluster still signs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mpcnet.common.enrolment import issue_for_csr
from mpcnet.common.pki import create_ca
from tests.deploy.test_enrolment import World, mpc
from tests.deploy.test_enrolment_e2e import as_person, run_json
from tests.deploy.test_node_add_e2e import Hosts, cluster

__all__ = ["cluster"]


def _rotate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = mpc("node", "rotate-keys", *args)
    got = capsys.readouterr()
    return rc, got.out, got.err


def test_rotate_keys_with_an_external_ca(
    cluster: tuple[World, list[int], Hosts], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    w, ports, _hosts = cluster
    as_person(monkeypatch, w, "admin1", ports)
    run_json(capsys, "policy", "attest")
    key = run_json(capsys, "keygen", "--label", "treasury")
    before = run_json(capsys, "roster", "show")
    csr = tmp_path / "node-2.csr"
    # step 1: staged on the node, the CSR written; the roster and the node's live keys unchanged
    rc, _, err = _rotate(capsys, "2", "--csr-out", str(csr))
    assert rc == 0, err
    assert "mpc node rotate-keys 2 --cert" in err and csr.read_text().startswith("-----BEGIN CERTIFICATE REQUEST")
    staged = json.loads((tmp_path / "node-2.csr.staged.json").read_text())
    assert staged["index"] == 2 and staged["name"] == "node-2" and len(staged["proof"]) == 128
    assert run_json(capsys, "roster", "show") == before
    # the external CA (here: mpc pki sign-csr --csr, any X.509 CA would do) issues the certificate
    ca_dir = w.host("ca")
    from mpcnet.common.pki import CertPaths

    cert = tmp_path / "node-2.pem"
    cert.write_bytes(issue_for_csr(CertPaths(ca_dir / "ca.pem", ca_dir / "ca.key"), csr.read_text(), "node-2", "node"))
    # refused: a certificate of another CA, a certificate for another key, a CSR file that is not the record's
    other = create_ca(tmp_path / "other-ca")
    (tmp_path / "other.pem").write_bytes(issue_for_csr(other, csr.read_text(), "node-2", "node"))
    rc, _, err = _rotate(capsys, "2", "--cert", str(tmp_path / "other.pem"), "--csr", str(csr))
    assert rc == 2 and "--cert: refused: cert: is not issued by the given CA" in err, err
    rc, _, err = _rotate(capsys, "2", "--cert", str(w.cert("node-2")), "--csr", str(csr))
    assert rc == 2 and "cert.key" in err, err
    wrong = tmp_path / "wrong.csr"
    wrong.write_text(csr.read_text().replace("A", "B", 1))
    (tmp_path / "wrong.csr.staged.json").write_text((tmp_path / "node-2.csr.staged.json").read_text())
    rc, _, err = _rotate(capsys, "2", "--cert", str(cert), "--csr", str(wrong))
    assert rc == 2 and "is not the CSR its staged record names" in err, err
    rc, _, err = _rotate(capsys, "3", "--cert", str(cert), "--csr", str(csr))
    assert rc == 2 and "is for node 2, not node 3" in err, err
    rc, _, err = _rotate(capsys, "2", "--csr-out", str(csr), "--ca-cert", str(ca_dir / "ca.pem"), "--ca-key", str(ca_dir / "ca.key"))
    assert rc == 2, err
    assert run_json(capsys, "roster", "show") == before
    # step 2: installed, proposed; admin2 approves; the node switches to key version 2
    p = run_json(capsys, "node", "rotate-keys", "2", "--cert", str(cert), "--csr", str(csr), "--no-wait")["proposal"]
    assert isinstance(p, dict) and p["state"] == "pending"
    as_person(monkeypatch, w, "admin2", ports)
    assert run_json(capsys, "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"], "--no-wait")[
        "proposal"]["state"] == "applied"  # type: ignore[index]
    after = run_json(capsys, "roster", "show")
    entries = after["entries"]
    assert isinstance(entries, list)
    entry = next(e for e in entries if e["index"] == 2)
    assert entry["key_version"] == 2 and entry["identity_key"] == staged["identity_public"]
    # the cluster still signs
    digest = hashlib.sha256(b"after the rotation").hexdigest()
    as_person(monkeypatch, w, "requester1", ports)
    req = run_json(capsys, "request", "sign", "--key", str(key["key_id"]), "--digest", digest, "--request-id", "rot-1")
    as_person(monkeypatch, w, "approver1", ports)
    run_json(capsys, "approve", str(req["request_id"]), "--expect-digest", digest)
    as_person(monkeypatch, w, "approver2", ports)
    done = run_json(capsys, "--timeout", "120", "approve", str(req["request_id"]), "--expect-digest", digest, "--wait")
    assert done["state"] == "done", done
