"""``mpc node rotate-keys N`` with an external CA (issue 13): two steps instead of one.

    mpc node rotate-keys N --csr-out FILE            # the node stages new keys; FILE: its CSR (PEM)
    (the CA signs FILE, any X.509 CA)                #   and FILE.staged.json (public: keys, proof)
    mpc node rotate-keys N --cert CERT --csr FILE    # install CERT on the node, propose the roster change

Step 1 stages the rotation on the node (``PrepareKeyRotation``; staging again replaces the staged
set, so the second step never stages), checks the node's proof (its *current* identity key from
the verified roster signs the staged keys and CSR) and the CSR (self-signature, EC P-256, subject
exactly OU=node, CN=the roster name, SAN covering the endpoint host), and writes the CSR and the
staged record; it changes nothing else. Step 2 reads them back (the CSR file must be the one the
record names), checks the proof again against the roster in force, and checks the certificate:
issued by the CA the client trusts (``--tls-ca``, the genesis CA, or the cluster's dev CA), valid,
OU=node, CN=the roster name, its public key the staged CSR's, SAN covering the endpoint host;
then installs it on the node (which checks it again) and proposes the roster change. Errors are
:class:`~mpcnet.client.cli.CliUsage` naming the option or field.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from governance._checks import from_hex
from governance.errors import GovernanceError
from governance.text import quote
from mpcnet.client.cli import CliUsage
from mpcnet.client.cli_nodeadd import trusted_ca
from mpcnet.client.lifecycle import StagedRotation
from mpcnet.client.nodeenrol import read_pem
from mpcnet.common.enrolment import EnrolmentError, check_certificate, check_csr, endpoint_host, load_pem_certificate, read_json
from mpcnet.common.fsutil import write_atomic

STAGED_FORMAT = "mpcnet-staged-rotation"
STAGED_SUFFIX = ".staged.json"
_KEYS = frozenset({"format", "version", "index", "name", "identity_public", "encryption_public", "csr", "proof"})


def staged_path(csr_path: Path) -> Path:
    """Where the staged record of the CSR file ``csr_path`` lives: ``FILE.staged.json``."""
    return csr_path.with_name(csr_path.name + STAGED_SUFFIX)


def check_staged_csr(staged: StagedRotation, endpoint: str) -> None:
    """The staged CSR: self-signed, EC P-256, OU=node, CN=the roster name, SAN covering the
    endpoint host; CliUsage naming ``tls_csr_pem`` otherwise."""
    try:
        check_csr(staged.csr_pem.decode("ascii", "replace"), "node", staged.name, endpoint_host(endpoint))
    except EnrolmentError as e:
        raise CliUsage(f"tls_csr_pem: the node's staged CSR is refused: {e}") from None


def write_staged(csr_path: Path, staged: StagedRotation) -> Path:
    """Write the CSR (PEM) to ``csr_path`` and the staged record next to it (both public, 0644,
    atomic). Returns the record's path."""
    record = {
        "format": STAGED_FORMAT, "version": 1, "index": staged.index, "name": staged.name,
        "identity_public": staged.identity_public.hex(), "encryption_public": staged.encryption_public.hex(),
        "csr": staged.csr_pem.decode("ascii"), "proof": staged.proof.hex(),
    }
    try:
        write_atomic(csr_path, staged.csr_pem, 0o644)
        write_atomic(staged_path(csr_path), (json.dumps(record, indent=2) + "\n").encode("ascii"), 0o644)
    except OSError as e:
        raise CliUsage(f"--csr-out: cannot write {quote(str(csr_path), 200)} ({e.strerror or type(e).__name__})") from None
    return staged_path(csr_path)


def read_staged(csr_path: Path, index: int) -> StagedRotation:
    """The staged record written with the CSR file ``csr_path`` for node ``index``; CliUsage
    naming ``--csr`` (or the record's field) for a missing or malformed record, another node's,
    or a CSR file that is not the record's."""
    rec_path = staged_path(csr_path)
    try:
        doc = read_json(rec_path, "--csr")
        csr_file = read_pem(csr_path, "--csr")
    except EnrolmentError as e:
        raise CliUsage(f"{e} (the record '--csr-out' wrote next to the CSR)") from None
    if not isinstance(doc, dict) or set(doc) != _KEYS or doc["format"] != STAGED_FORMAT or doc["version"] != 1:
        raise CliUsage(f"--csr: {quote(str(rec_path), 200)} is not a staged rotation record")
    if doc["index"] != index or isinstance(doc["index"], bool):
        shown = doc["index"] if isinstance(doc["index"], int) else quote(doc["index"])
        raise CliUsage(f"--csr: the staged record is for node {shown}, not node {index}")
    if not isinstance(doc["csr"], str) or not isinstance(doc["name"], str) or not doc["csr"].isascii():
        raise CliUsage("--csr: the staged record's csr and name must be text")
    try:
        staged = StagedRotation(
            index, doc["name"], from_hex(doc["identity_public"], "identity_public", length=32),
            from_hex(doc["encryption_public"], "encryption_public", length=32), doc["csr"].encode("ascii"),
            from_hex(doc["proof"], "proof", length=64),
        )
    except GovernanceError as e:
        raise CliUsage(f"--csr: staged record: {e.field}: {e.reason}") from None
    if not hmac.compare_digest(csr_file, staged.csr_pem):
        raise CliUsage(f"--csr: {quote(str(csr_path), 200)} is not the CSR its staged record names")
    return staged


def check_external_certificate(opts: Any, cert_path: Path, staged: StagedRotation, endpoint: str) -> bytes:
    """The certificate at ``cert_path`` (PEM) if an external CA issued it for the staged CSR (see
    the module docstring); CliUsage naming ``--cert`` (or its field) otherwise."""
    ca_pem = trusted_ca(opts)
    try:
        pem = read_pem(cert_path, "--cert")
        cert = load_pem_certificate(pem, "cert")
        ca = load_pem_certificate(ca_pem, "ca")
        csr = x509.load_pem_x509_csr(staged.csr_pem)
        spki = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        check_certificate(cert, ca, role="node", name=staged.name, public_key_der=spki, host=endpoint_host(endpoint))
    except EnrolmentError as e:
        raise CliUsage(f"--cert: refused: {e}") from None
    except ValueError:
        raise CliUsage("--csr: the staged CSR is not PEM") from None
    return cert.public_bytes(serialization.Encoding.PEM)


def next_step(index: int, csr_path: Path) -> str:
    """What ``--csr-out`` prints after writing the CSR."""
    return (f"node {index} staged new keys; have your CA sign {quote(str(csr_path), 200)} (any X.509 CA: server and client use, "
            f"its subjectAltNames), then run 'mpc node rotate-keys {index} --cert CERT.pem --csr {quote(str(csr_path), 200)}'. "
            "Nothing else changed; staging again replaces the staged keys")
