"""The dev cluster's node enrolment through the production code (issue 13).

``mpc-cluster up`` (:func:`mpcnet.cluster.launcher.prepare`), ``add-node`` and ``replace-node``
make a node's keys as ``mpc-node init`` does (:func:`mpcnet.common.protection.create_operational_keys`,
:func:`mpcnet.common.enrolment.make_tls_key`, :func:`mpcnet.common.enrolment.build_enrolment_request`),
have the dev CA sign the request as ``mpc pki sign-csr`` does
(:func:`mpcnet.common.enrolment.issue_for_request`), and build the genesis roster as ``mpc genesis
new|sign`` does (:func:`mpcnet.common.genesis.node_entry`, :func:`mpcnet.common.genesis.sign_genesis`).
The layout stays the dev one::

    DIR/certs/node-i.pem, node-i.key          certificate (dev CA) and TLS key
    DIR/nodes/node-i/passphrase, keystore.json
    DIR/nodes/node-i/enrolment-request.json   the signed request (SAN: localhost, node-i, 127.0.0.1)

Every file is made only when missing (a cluster directory of an older version, without requests,
keeps its keys and certificates).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from governance.roster import RosterEntry
from mpcnet.common.enrolment import (
    ENROLMENT_REQUEST_FILE,
    EnrolmentError,
    EnrolmentRequest,
    build_enrolment_request,
    issue_for_request,
    load_request,
    make_tls_key,
    write_request,
)
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.pki import CertPaths, cert_hosts, create_ca, issue_cert
from mpcnet.common.protection import create_operational_keys, new_passphrase_file


def request_path(node_dir: Path) -> Path:
    """Where a dev node's enrolment request lives."""
    return node_dir / ENROLMENT_REQUEST_FILE


def make_dev_node(
    ca_dir: Path, cert: CertPaths, node_dir: Path, name: str, endpoint: str, hosts: tuple[str, ...], *, scrypt_n: int,
) -> tuple[bytes, bytes]:
    """Node ``name``'s keys, request and certificate, each only if missing (module docstring):
    the passphrase file and keystore in ``node_dir``, the TLS key ``cert.key``, the request
    (endpoint ``endpoint``, SAN ``hosts``; re-signed when the endpoint or key changed) and the
    certificate ``cert.cert`` issued from it by the dev CA in ``ca_dir`` (re-issued when it lacks
    one of ``hosts``). Returns the (identity, encryption) public keys. EnrolmentError naming the field."""
    node_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(node_dir, 0o700)
    protection = new_passphrase_file(node_dir / "passphrase")  # as the launcher always made it
    ks = node_dir / "keystore.json"
    published = _public_keys(ks)
    cert.key.parent.mkdir(parents=True, exist_ok=True)
    if published is not None and not published[2]:
        # keys this launcher cannot open (a token-protected keystore a test put there): the
        # certificate as before, without a request (the node's own `mpc-node init` makes one)
        if not cert.cert.exists() or not cert.key.exists() or not set(hosts) <= cert_hosts(cert.cert):
            issue_cert(create_ca(ca_dir), cert.cert.parent, name, role="node", server=True, hosts=hosts)
        return published[0], published[1]
    tls_key = make_tls_key(cert.key)
    rp = request_path(node_dir)
    req: EnrolmentRequest | None = None
    if rp.exists() and published is not None:
        old = load_request(rp)
        same_keys = isinstance(old, EnrolmentRequest) and (old.identity_key, old.encryption_key) == published[:2]
        if same_keys and old.endpoint == endpoint and old.csr_public_key_der() == _spki(tls_key):  # type: ignore[union-attr]
            req = old  # type: ignore[assignment]  # this node's current request: its keys need not be opened again
    if req is None:
        keys = create_operational_keys(ks, protection, scrypt_n=scrypt_n)
        req = build_enrolment_request(
            "node", name, endpoint, keys.identity, keys.identity_public, keys.encryption_public, tls_key, extra_hosts=hosts,
        )
        write_request(rp, req)
    stale = not cert.cert.exists() or not set(hosts) <= cert_hosts(cert.cert) or _cert_key_der(cert.cert) != req.csr_public_key_der()
    if stale:
        write_atomic(cert.cert, issue_for_request(create_ca(ca_dir), req), 0o644)
    return req.identity_key, req.encryption_key


def _public_keys(keystore: Path) -> tuple[bytes, bytes, bool] | None:
    """(identity, encryption public keys, passphrase-protected?) of an existing keystore, None
    if there is none (or it cannot be read: the keystore code then reports it)."""
    try:
        doc = json.loads(keystore.read_bytes())
        return bytes.fromhex(doc["identity_public"]), bytes.fromhex(doc["encryption_public"]), "kdf" in doc
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _cert_key_der(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (OSError, ValueError):
        return b""


def dev_roster_entry(index: int, node_dir: Path, cert: CertPaths, ca_cert: Path, endpoint: str) -> RosterEntry | None:
    """The roster entry of a dev node from its request and certificate, checked as ``mpc genesis
    new`` checks them (:func:`mpcnet.common.genesis.node_entry`), with the roster's ``endpoint``;
    None if the node has no request (a cluster directory of an older version)."""
    from mpcnet.common.genesis import node_entry

    rp = request_path(node_dir)
    if not rp.exists():
        return None
    req = load_request(rp)
    if not isinstance(req, EnrolmentRequest):
        raise EnrolmentError("request", f"{rp} is not a node's enrolment request")
    entry = node_entry(index, req, cert.cert.read_bytes(), ca_cert.read_bytes())
    return RosterEntry(entry.index, entry.name, entry.identity_key, entry.encryption_key, entry.tls_fingerprint, endpoint)
