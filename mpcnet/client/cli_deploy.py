"""'mpc' commands of a production deployment (issue 13), all off-line (no coordinator, no --cluster).

\b
    mpc pki init-ca --dir DIR --name NAME                       DIR/ca.pem, DIR/ca.key (0600); never overwrites
    mpc pki sign-csr (--ca-dir DIR | --ca-cert F --ca-key F) --request FILE --out FILE
    mpc identity init --dir DIR --name NAME --role ROLE         tls.key, signing.key (0600), signing.pub, identity-request.json
    mpc genesis new --out FILE --threshold T --ca FILE --admin REQ ... --admin-quorum N
                    --approver REQ ... --approval-quorum N --requester REQ ... --node REQ CERT ...
    mpc genesis show FILE
    mpc genesis sign FILE --name NAME --signing-key FILE [--expect-digest HEX]
    mpc genesis verify FILE

Added to the ``mpc`` group by :func:`register` (called by :mod:`mpcnet.client.cli`).
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.policy import MAX_SIGNATURES_PER_WINDOW, MAX_TTL_SECONDS, MAX_WINDOW_SECONDS, AdminSet
from governance.roster import active_entries
from governance.text import escape, quote
from mpcnet.common.cliutil import Failed, PathArg, UInt
from mpcnet.common.dirlock import exclusive_directory
from mpcnet.common.enrolment import (
    IDENTITY_REQUEST_FILE,
    EnrolmentError,
    EnrolmentRequest,
    IdentityRequest,
    Request,
    build_identity_request,
    check_people_role,
    describe,
    issue_for_csr,
    issue_for_request,
    load_request,
    make_tls_key,
    write_request,
)
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.genesis import PolicySpec, build_genesis, load_genesis, show_lines, sign_genesis, verify_genesis, write_genesis
from mpcnet.common.pki import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CertPaths,
    PkiError,
    certificate_fingerprint,
    create_ca,
    load_certificate,
)
from mpcnet.common.privatedir import check_private_dir

SIGNING_KEY_FILE = "signing.key"
SIGNING_PUB_FILE = "signing.pub"
TLS_KEY_FILE = "tls.key"

FILE = PathArg("FILE")
DIR = PathArg("DIR")

pki_group = click.Group("pki", help="the CA (off-line): init-ca, sign-csr")
identity_group = click.Group("identity", help="a person's keys and identity request (off-line): init")
genesis_group = click.Group("genesis", help="the cluster's admin-signed genesis (off-line): new, show, sign, verify")


def register(root: click.Group) -> None:
    """Add the ``pki``, ``identity`` and ``genesis`` groups to ``root`` (the ``mpc`` group)."""
    for g in (pki_group, identity_group, genesis_group):
        root.add_command(g)


def _fail(e: Exception) -> Failed:
    return Failed(str(e))


@pki_group.command("init-ca", help="create a CA (ca.pem, ca.key 0600) in DIR; never overwrites one")
@click.option("--dir", "directory", type=DIR, required=True, help="the CA's private directory (made 0700)")
@click.option("--name", default="mpcnet CA", show_default=True, help="the CA certificate's CN")
def cmd_init_ca(directory: Path, name: str) -> None:
    if (directory / CA_KEY_FILE).exists() and (directory / CA_CERT_FILE).exists():  # a key alone: a killed run, completed
        raise Failed(f"--dir: {quote(str(directory), 200)} already holds a CA key (never overwritten)")
    try:
        check_private_dir(directory, (CA_CERT_FILE,), ())  # not a symlink (chmod below), our own (R1)
    except EnrolmentError as e:
        raise _fail(e) from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with exclusive_directory(directory):  # a second init-ca of DIR at once: refused below, its key never overwritten
            if (directory / CA_KEY_FILE).exists() and (directory / CA_CERT_FILE).exists():
                raise Failed(f"--dir: {quote(str(directory), 200)} already holds a CA key (never overwritten)")
            paths = create_ca(directory, name)
            fingerprint = certificate_fingerprint(load_certificate(paths.cert.read_bytes(), "ca.pem")).hex()
    except PkiError as e:
        raise _fail(e) from None
    os.chmod(directory, 0o700)
    click.echo(f"CA certificate: {escape(str(paths.cert))}")
    # what `mpc genesis show` prints as the CA's sha256: tell it to the admins by another channel
    click.echo(f"sha256: {fingerprint}")


def _read_text(path: Path, option: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Failed(f"{option}: cannot read {quote(str(path), 200)} ({e.strerror or type(e).__name__})") from None
    if len(data) > 64 * 1024 or not data.isascii():
        raise Failed(f"{option}: {quote(str(path), 200)} is not a PEM file")
    return data.decode("ascii")


def _load(path: Path) -> Request:
    try:
        return load_request(path)
    except EnrolmentError as e:
        raise Failed(f"{quote(str(path), 200)}: refused: {e}") from None


@pki_group.command("sign-csr", help="verify an enrolment or identity request and issue its 1-year certificate")
@click.option("--ca-dir", type=DIR, default=None, help="the CA directory (ca.pem, ca.key)")
@click.option("--ca-cert", type=FILE, default=None, help="instead of --ca-dir: the CA certificate (PEM)")
@click.option("--ca-key", type=FILE, default=None, help="instead of --ca-dir: the CA private key (PEM)")
@click.option("--request", "request_path", type=FILE, default=None, help="an enrolment or identity request (verified)")
@click.option("--csr", "csr_path", type=FILE, default=None,
              help="instead of --request: a bare PEM CSR (external tooling) with --name and --role, which its subject must match")
@click.option("--name", default=None, help="with --csr: the CN the CSR must carry")
@click.option("--role", default=None, help="with --csr: the OU the CSR must carry (node and coordinator get server certificates)")
@click.option("--out", type=FILE, required=True, help="the certificate to write (PEM)")
def cmd_sign_csr(
    ca_dir: Path | None, ca_cert: Path | None, ca_key: Path | None, request_path: Path | None, csr_path: Path | None,
    name: str | None, role: str | None, out: Path,
) -> None:
    if (ca_dir is None) == (ca_cert is None and ca_key is None) or (ca_dir is None and (ca_cert is None or ca_key is None)):
        raise click.UsageError("give --ca-dir, or both --ca-cert and --ca-key")
    if (request_path is None) == (csr_path is None):
        raise click.UsageError("give exactly one of --request, --csr")
    if csr_path is not None and (name is None or role is None):
        raise click.UsageError("--csr needs --name and --role")
    if csr_path is None and (name is not None or role is not None):
        raise click.UsageError("--name/--role: only with --csr (a request names its own subject)")
    ca = CertPaths(ca_dir / CA_CERT_FILE, ca_dir / CA_KEY_FILE) if ca_dir is not None else CertPaths(ca_cert, ca_key)  # type: ignore[arg-type]
    try:
        if csr_path is not None:
            assert name is not None and role is not None
            pem = issue_for_csr(ca, _read_text(csr_path, "--csr"), name, role)
            click.echo(f"bare CSR: name {quote(name)}, role {quote(role)} (no request signature: verify its origin yourself)")
        else:
            req = _load(request_path)  # type: ignore[arg-type]
            click.echo(describe(req))
            pem = issue_for_request(ca, req)
    except EnrolmentError as e:
        raise _fail(e) from None
    _refuse_out_over(out, (ca.cert, ca.key, request_path, csr_path))
    try:
        write_atomic(out, pem, 0o644)
    except OSError as e:
        raise Failed(f"--out: cannot write {quote(str(out), 200)} ({e.strerror or type(e).__name__})") from None
    click.echo(f"certificate: {escape(str(out))}")


def _refuse_out_over(out: Path, inputs: tuple[Path | None, ...]) -> None:
    """Failed naming ``--out`` if it is (through any symlink or relative path) the CA's
    certificate or key or the request/CSR being signed: a typo must not destroy the CA."""
    target = out.resolve()
    for path in inputs:
        if path is not None and (path.resolve() == target or (out.exists() and path.exists() and os.path.samefile(out, path))):
            raise Failed(f"--out: {quote(str(out), 200)} is {quote(str(path), 200)}, an input of this command (never overwritten)")


@identity_group.command("init", help="make a person's TLS key, signing key and identity request (never overwrites keys)")
@click.option("--dir", "directory", type=DIR, required=True, help="your private directory (made 0700)")
@click.option("--name", required=True, help="your name (the certificate CN; the name in policies)")
@click.option("--role", required=True, help="admin, approver, requester, auditor or officer")
def cmd_identity_init(directory: Path, name: str, role: str) -> None:
    try:
        check_people_role(role)
        from governance.text import check_name

        try:
            check_name(name, "name")
        except Exception as e:
            raise EnrolmentError("name", getattr(e, "reason", str(e))) from None
        # keys found in DIR are reused: refuse a DIR or key someone else planted (R1)
        check_private_dir(directory, (IDENTITY_REQUEST_FILE, SIGNING_PUB_FILE), (TLS_KEY_FILE, SIGNING_KEY_FILE))
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        with exclusive_directory(directory):  # a second init of DIR at once waits, then keeps these keys
            tls_key = make_tls_key(directory / TLS_KEY_FILE)
            sk_path = directory / SIGNING_KEY_FILE
            if not sk_path.exists():
                new = Ed25519PrivateKey.generate()
                pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                write_atomic(sk_path, pem, 0o600, overwrite=False)
            key = load_signing_key(sk_path)
            public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            write_atomic(directory / SIGNING_PUB_FILE, (public.hex() + "\n").encode(), 0o644)
            req = _kept_request(directory / IDENTITY_REQUEST_FILE, role, name, public, tls_key)
            if req is None:
                req = build_identity_request(role, name, key, public, tls_key)
                write_request(directory / IDENTITY_REQUEST_FILE, req)
    except EnrolmentError as e:
        raise _fail(e) from None
    click.echo(f"identity request: {escape(str(directory / IDENTITY_REQUEST_FILE))}")
    click.echo(f"fingerprint: {req.fingerprint}")


def _kept_request(path: Path, role: str, name: str, public: bytes, tls_key: ec.EllipticCurvePrivateKey) -> IdentityRequest | None:
    """The identity request already in ``path`` if it is this person's (role, name, signing key,
    TLS key): a re-run keeps it (and its fingerprint); else None."""
    if not path.exists():
        return None
    try:
        req = load_request(path)
    except EnrolmentError:
        return None
    spki = tls_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    same = isinstance(req, IdentityRequest) and (req.role, req.name, req.signing_key) == (role, name, public)
    if same and req.csr_public_key_der() == spki:
        return req  # type: ignore[return-value]
    return None


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key (PKCS#8 PEM) at ``path``; EnrolmentError naming ``signing_key``."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as e:
        raise EnrolmentError("signing_key", f"cannot read {quote(str(path), 200)} ({e.strerror or type(e).__name__})") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise EnrolmentError("signing_key", f"{quote(str(path), 200)} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EnrolmentError("signing_key", f"{quote(str(path), 200)} is not an Ed25519 key")
    return key


def _identity(path: Path, option: str) -> IdentityRequest:
    req = _load(path)
    if not isinstance(req, IdentityRequest):
        raise Failed(f"{option}: {quote(str(path), 200)} is a {req.role} enrolment request, not a person's identity request")
    return req


@genesis_group.command("new", help="build the unsigned genesis: admin set, default policy, roster v1, threshold")
@click.option("--out", type=FILE, required=True, help="the genesis to write (JSON)")
@click.option("--threshold", type=UInt(2, 255), required=True, help="how many nodes sign (2 <= T <= the nodes)")
@click.option("--ca", type=FILE, required=True, help="the CA certificate (PEM)")
@click.option("--admin", "admins", type=FILE, multiple=True, required=True, help="an admin's identity request (repeat)")
@click.option("--admin-quorum", type=UInt(1, 255), required=True, help="how many admins must sign a change")
@click.option("--approver", "approvers", type=FILE, multiple=True, help="an approver's identity request (repeat)")
@click.option("--approval-quorum", type=UInt(1, 255), required=True, help="how many approvers must approve a signature")
@click.option("--requester", "requesters", type=FILE, multiple=True, help="a requester's identity request (repeat)")
@click.option("--node", "nodes", type=(FILE, FILE), multiple=True, required=True,
              help="a node's enrolment request and certificate (repeat; indices 1.. in order)")
@click.option("--ttl-seconds", type=UInt(1, MAX_TTL_SECONDS), default=3600, show_default=True, help="how long a signing request lives")
@click.option("--max-signatures", type=UInt(1, MAX_SIGNATURES_PER_WINDOW),
              default=100, show_default=True, help="signatures per window (rate limit)")
@click.option("--window-seconds", type=UInt(1, MAX_WINDOW_SECONDS), default=3600, show_default=True, help="the rate limit's window")
def cmd_genesis_new(
    out: Path, threshold: int, ca: Path, admins: tuple[Path, ...], admin_quorum: int, approvers: tuple[Path, ...],
    approval_quorum: int, requesters: tuple[Path, ...], nodes: tuple[tuple[Path, Path], ...], ttl_seconds: int,
    max_signatures: int, window_seconds: int,
) -> None:
    if out.exists():
        raise Failed(f"--out: {quote(str(out), 200)} exists (never overwritten)")
    node_items: list[tuple[EnrolmentRequest, bytes]] = []
    for req_path, cert_path in nodes:
        req = _load(req_path)
        if not isinstance(req, EnrolmentRequest) or req.role != "node":
            raise Failed(f"--node: {quote(str(req_path), 200)} is not a node's enrolment request (role {req.role})")
        try:
            node_items.append((req, cert_path.read_bytes()))
        except OSError as e:
            raise Failed(f"--node: cannot read {quote(str(cert_path), 200)} ({e.strerror})") from None
    try:
        genesis = build_genesis(
            threshold=threshold, ca_pem=ca.read_bytes(), admins=[_identity(p, "--admin") for p in admins], admin_quorum=admin_quorum,
            approvers=[_identity(p, "--approver") for p in approvers], requesters=[_identity(p, "--requester") for p in requesters],
            policy=PolicySpec(approval_quorum, ttl_seconds, max_signatures, window_seconds), nodes=node_items,
        )
    except OSError as e:
        raise Failed(f"--ca: cannot read {quote(str(ca), 200)} ({e.strerror})") from None
    except EnrolmentError as e:
        raise _fail(e) from None
    try:
        write_genesis(out, genesis)
    except OSError as e:
        raise Failed(f"--out: cannot write {quote(str(out), 200)} ({e.strerror or type(e).__name__})") from None
    click.echo(f"genesis digest: {genesis.digest().hex()}")


def _genesis(path: Path):  # type: ignore[no-untyped-def]
    try:
        return load_genesis(path)
    except EnrolmentError as e:
        raise Failed(f"{quote(str(path), 200)}: {e}") from None


@genesis_group.command("show", help="print what an admin signs (every entry, escaped) and who signed")
@click.argument("path", type=FILE)
def cmd_genesis_show(path: Path) -> None:
    try:
        for line in show_lines(_genesis(path)):
            click.echo(line)
    except EnrolmentError as e:
        raise _fail(e) from None


@genesis_group.command("sign", help="add your admin signature (policy, roster, genesis); repeating is a no-op")
@click.argument("path", type=FILE)
@click.option("--name", required=True, help="your admin name")
@click.option("--signing-key", type=FILE, required=True, help="your Ed25519 signing key (id/signing.key)")
@click.option("--expect-digest", default=None, help="refuse unless the genesis digest is this (64 hex digits)")
def cmd_genesis_sign(path: Path, name: str, signing_key: Path, expect_digest: str | None) -> None:
    from mpcnet.common.hostenrol import digest_option

    with exclusive_directory(path.parent):  # another admin signing this file at once: read after their write
        genesis = _genesis(path)
        try:
            signed = sign_genesis(genesis, name, load_signing_key(signing_key), expect_digest=digest_option(expect_digest))
        except EnrolmentError as e:
            raise _fail(e) from None
        for line in show_lines(genesis):
            click.echo(line)
        write_genesis(path, signed)
    click.echo(f"signed by {escape(name)}")


@genesis_group.command("verify", help="exit 0 only if an admin quorum signed the policy, the roster and the genesis")
@click.argument("path", type=FILE)
def cmd_genesis_verify(path: Path) -> None:
    genesis = _genesis(path)
    try:
        roster = verify_genesis(genesis)
    except EnrolmentError as e:
        raise _fail(e) from None
    click.echo(f"governance root: {genesis.admin_set.digest().hex()}")
    click.echo(f"genesis digest: {genesis.digest().hex()}")
    click.echo(f"roster version {roster.version}: {len(roster.entries)} nodes, threshold {genesis.threshold}")


def genesis_for_client(path: Path) -> tuple[AdminSet, dict[str, str]]:
    """``mpc --endpoint ... --genesis FILE``: the verified genesis's admin set and the endpoints
    of its roster's active nodes (name -> host:port), for commands that push to nodes directly
    (policy attest). click.UsageError naming ``--genesis`` if it does not verify."""
    try:
        genesis = load_genesis(path)
        roster = verify_genesis(genesis)
    except EnrolmentError as e:
        raise click.UsageError(f"--genesis: {e}") from None
    return genesis.admin_set, {e.name: e.endpoint for e in active_entries(roster)}
