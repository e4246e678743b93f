"""Dev PKI: issuance, identity round trip, and a real mTLS gRPC server that refuses strangers."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, strategies as st

from mpcnet.common.pki import (
    ROLES,
    CertIdentity,
    CertPaths,
    PkiError,
    cert_hosts,
    channel_credentials,
    create_ca,
    identity_from_cert,
    issue_cert,
    peer_identity,
    server_credentials,
)

METHOD = "/mpcnet.test.Echo/WhoAmI"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    base = tmp_path_factory.mktemp("pki")
    ca = create_ca(base / "ca")
    other_ca = create_ca(base / "other-ca", name="someone else")
    return {
        "ca": ca,
        "server": issue_cert(ca, base / "certs", "node-1", role="node", server=True),
        "client": issue_cert(ca, base / "certs", "alice", role="approver"),
        "stranger": issue_cert(other_ca, base / "stranger", "mallory", role="admin"),
    }


def _who_am_i(request: bytes, context: grpc.ServicerContext) -> bytes:
    ident = peer_identity(context)
    return b"anonymous" if ident is None else f"{ident.name}|{ident.role}".encode()


def _start_server(creds: grpc.ServerCredentials | None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "mpcnet.test.Echo", {"WhoAmI": grpc.unary_unary_rpc_method_handler(_who_am_i)}
    )
    server.add_generic_rpc_handlers((handler,))
    if creds is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


@pytest.fixture(scope="module")
def mtls_server(pki: dict[str, CertPaths]) -> Iterator[int]:
    server, port = _start_server(server_credentials(pki["server"], pki["ca"].cert))
    yield port
    server.stop(None)


def _call(port: int, creds: grpc.ChannelCredentials, host: str = "127.0.0.1") -> bytes:
    with grpc.secure_channel(f"{host}:{port}", creds) as ch:
        result: bytes = ch.unary_unary(METHOD)(b"", timeout=10)
        return result


def test_ca_files_and_idempotence(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    assert stat.S_IMODE(ca.key.stat().st_mode) == 0o600
    first = ca.cert.read_bytes(), ca.key.read_bytes()
    again = create_ca(tmp_path)
    assert again == ca
    assert (again.cert.read_bytes(), again.key.read_bytes()) == first
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ca_with_missing_key_is_refused(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    ca.key.unlink()
    with pytest.raises(PkiError, match="ca.key"):
        create_ca(tmp_path)


def test_ca_key_without_cert_is_completed(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    key = ca.key.read_bytes()
    ca.cert.unlink()  # as if killed between the two writes
    again = create_ca(tmp_path)
    assert again.key.read_bytes() == key
    issue_cert(again, tmp_path / "c", "n1", role="node")


def test_issued_cert_contents(pki: dict[str, CertPaths]) -> None:
    ca_cert = x509.load_pem_x509_certificate(pki["ca"].cert.read_bytes())
    srv = x509.load_pem_x509_certificate(pki["server"].cert.read_bytes())
    cli = x509.load_pem_x509_certificate(pki["client"].cert.read_bytes())
    for c in (srv, cli):
        c.verify_directly_issued_by(ca_cert)
        assert (c.not_valid_after_utc - c.not_valid_before_utc).days in (365, 366)
        assert not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE(pki["server"].key.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(pki["server"].key.read_bytes(), None)
    assert key.public_key() == srv.public_key()
    srv_eku = srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(srv_eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    cli_eku = cli.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(cli_eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cli.extensions.get_extension_for_class(x509.SubjectAlternativeName)


@given(name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), role=st.sampled_from(ROLES))
def test_identity_round_trip(pki: dict[str, CertPaths], tmp_path_factory: pytest.TempPathFactory, name: str, role: str) -> None:
    out = tmp_path_factory.mktemp("rt")
    paths = issue_cert(pki["ca"], out, name, role=role)
    pem = paths.cert.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert identity_from_cert(pem) == CertIdentity(name, role)
    assert identity_from_cert(der) == CertIdentity(name, role)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "", "role": "node"}, "name"),
        ({"name": "../evil", "role": "node"}, "name"),
        ({"name": "a/b", "role": "node"}, "name"),
        ({"name": "ok", "role": "root"}, "role"),
        ({"name": "ok", "role": "node", "server": True, "hosts": ()}, "hosts"),
        ({"name": "ok", "role": "node", "server": True, "hosts": ("bad host",)}, r"hosts\[0\]"),
    ],
)
def test_issue_cert_rejects_bad_input(pki: dict[str, CertPaths], tmp_path: Path, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(PkiError, match=f"^{field}"):
        issue_cert(pki["ca"], tmp_path, **kwargs)  # type: ignore[arg-type]


def test_issue_cert_refuses_to_overwrite_ca(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    with pytest.raises(PkiError, match="CA"):
        issue_cert(ca, tmp_path, "ca", role="node")


def test_identity_from_cert_names_what_is_missing(pki: dict[str, CertPaths]) -> None:
    # the CA certificate has a CN but no OU
    with pytest.raises(PkiError, match="OU"):
        identity_from_cert(pki["ca"].cert.read_bytes())
    with pytest.raises(PkiError, match="^certificate: not a valid"):
        identity_from_cert(b"not a certificate")
    with pytest.raises(PkiError, match="^certificate: not a valid"):
        identity_from_cert(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_mtls_accepts_client_from_ca_and_reports_identity(pki: dict[str, CertPaths], mtls_server: int) -> None:
    creds = channel_credentials(pki["client"], pki["ca"].cert)
    assert _call(mtls_server, creds) == b"alice|approver"
    # a node's server certificate is also a valid client certificate
    assert _call(mtls_server, channel_credentials(pki["server"], pki["ca"].cert)) == b"node-1|node"


def test_mtls_refuses_client_without_cert(pki: dict[str, CertPaths], mtls_server: int) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].cert.read_bytes())
    with pytest.raises(grpc.RpcError) as ei:
        _call(mtls_server, creds)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_client_from_other_ca(pki: dict[str, CertPaths], mtls_server: int) -> None:
    # the stranger trusts our CA (so it would accept the server) but its own cert is foreign
    creds = channel_credentials(pki["stranger"], pki["ca"].cert)
    with pytest.raises(grpc.RpcError) as ei:
        _call(mtls_server, creds)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_refuses_server_from_other_ca(pki: dict[str, CertPaths], mtls_server: int) -> None:
    stranger_ca = pki["stranger"].cert.parent.parent / "other-ca" / "ca.pem"
    creds = channel_credentials(pki["client"], stranger_ca)
    with pytest.raises(grpc.RpcError) as ei:
        _call(mtls_server, creds)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE


def test_peer_identity_is_none_without_tls() -> None:
    server, port = _start_server(None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert ch.unary_unary(METHOD)(b"", timeout=10) == b"anonymous"
    finally:
        server.stop(None)


def test_credentials_report_unreadable_files(tmp_path: Path) -> None:
    missing = CertPaths(cert=tmp_path / "nope.pem", key=tmp_path / "nope.key")
    with pytest.raises(PkiError, match="^key: cannot read"):
        server_credentials(missing, tmp_path / "ca.pem")
    with pytest.raises(PkiError, match="^ca_cert: cannot read"):
        channel_credentials(missing, tmp_path / "ca.pem")


def test_credentials_refuse_a_file_that_is_not_what_it_should_be(pki: dict[str, CertPaths]) -> None:
    """A certificate given as the key (or a key as a certificate, or another certificate's key) was
    handed to grpc, whose C core logged "Invalid private key" and failed every call UNAVAILABLE."""
    client, server, ca = pki["client"], pki["server"], pki["ca"].cert
    cases = [
        (CertPaths(cert=client.cert, key=client.cert), ca, r"^key: .* is not an unencrypted PEM private key$"),
        (CertPaths(cert=client.key, key=client.key), ca, r"^cert: .* is not a PEM certificate$"),
        (client, client.key, r"^ca_cert: .* is not a PEM certificate$"),
        (CertPaths(cert=client.cert, key=server.key), ca, r"^key: .* is not the private key of the certificate "),
    ]
    for paths, ca_path, message in cases:
        for make in (channel_credentials, server_credentials):
            with pytest.raises(PkiError, match=message):
                make(paths, ca_path)
    channel_credentials(client, ca), server_credentials(server, ca)  # the right files still work


def test_cert_hosts_lists_dns_names_and_ips(pki: dict[str, CertPaths], tmp_path: Path) -> None:
    assert cert_hosts(pki["server"].cert) == {"localhost", "127.0.0.1"}
    assert cert_hosts(pki["client"].cert) == frozenset()
    named = issue_cert(pki["ca"], tmp_path, "node-7", role="node", server=True, hosts=("localhost", "node-7", "127.0.0.1"))
    assert cert_hosts(named.cert) == {"localhost", "node-7", "127.0.0.1"}


def test_server_is_verified_by_dns_name(pki: dict[str, CertPaths], mtls_server: int) -> None:
    """TLS clients that refuse IP-literal server names dial ``localhost``: the DNS SAN verifies."""
    assert _call(mtls_server, channel_credentials(pki["client"], pki["ca"].cert), host="localhost") == b"alice|approver"


def test_server_name_not_in_certificate_is_refused(pki: dict[str, CertPaths], tmp_path: Path) -> None:
    ip_only = issue_cert(pki["ca"], tmp_path, "old-node", role="node", server=True, hosts=("127.0.0.1",))
    server, port = _start_server(server_credentials(ip_only, pki["ca"].cert))
    try:
        creds = channel_credentials(pki["client"], pki["ca"].cert)
        assert _call(port, creds) == b"alice|approver"  # by IP: the IP SAN matches
        with pytest.raises(grpc.RpcError) as ei:
            _call(port, creds, host="localhost")
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_mpc_with_a_certificate_as_its_tls_key_is_a_usage_error(pki: dict[str, CertPaths], capsys: pytest.CaptureFixture[str]) -> None:
    """README: a wrong or malformed key file is exit 2 (it was exit 3, UNAVAILABLE, after grpc's log lines)."""
    from mpcnet.client import cli

    client = pki["client"]
    code = cli.main(["--endpoint", "127.0.0.1:1", "--tls-cert", str(client.cert), "--tls-key", str(client.cert),
                     "--tls-ca", str(pki["ca"].cert), "keys"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "is not an unencrypted PEM private key" in err, err


def test_credentials_refuse_a_key_of_another_certificate_and_files_that_are_not_pem(pki: dict[str, CertPaths], tmp_path: Path) -> None:
    """grpc only logs a C-core error for these and fails every call as UNAVAILABLE (an unreachable
    server, exit 3 in the CLI); they are refused before, naming the file."""
    client, server, ca = pki["client"], pki["server"], pki["ca"].cert
    wrong_key = CertPaths(cert=client.cert, key=server.key)
    for make in (channel_credentials, server_credentials):
        with pytest.raises(PkiError, match="^key: .* is not the private key of the certificate"):
            make(wrong_key, ca)
        with pytest.raises(PkiError, match="^cert: .* is not a PEM certificate"):
            make(CertPaths(cert=client.key, key=client.key), ca)
        with pytest.raises(PkiError, match="^key: .* is not an unencrypted PEM private key"):
            make(CertPaths(cert=client.cert, key=client.cert), ca)
        with pytest.raises(PkiError, match="^ca_cert: .* is not a PEM certificate"):
            make(client, client.key)
    channel_credentials(client, ca)
    server_credentials(server, ca)
