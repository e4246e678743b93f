"""The node's serving TLS certificate, replaceable without a restart.

The gRPC server is built with :func:`grpc.dynamic_ssl_server_credentials`: gRPC asks
:meth:`ServingCertificate.fetch` for a configuration at each new TLS handshake; it answers
``None`` (keep the current one) until :meth:`ServingCertificate.reload` read a new certificate
and key from the configured files, then hands that one over once. Connections already open keep
the certificate they were made with; every new connection gets the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc

from mpcnet.common.pki import CertPaths, certificate_fingerprint, load_certificate, server_certificate_configuration


class ServingCertificate:
    """The certificate the server presents: ``cert`` (PEM certificate and key files) checked
    against ``ca_cert`` (:class:`mpcnet.common.pki.PkiError` naming the file if unusable)."""

    def __init__(self, cert: CertPaths, ca_cert: Path) -> None:
        self._cert = cert
        self._ca = ca_cert
        self._lock = threading.Lock()
        self._initial = server_certificate_configuration(cert, ca_cert)
        self._next: grpc.ServerCertificateConfiguration | None = None
        self._fingerprint = _file_fingerprint(cert.cert)

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 (32 bytes) of the DER certificate served to new connections."""
        with self._lock:
            return self._fingerprint

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that require a client certificate from the CA and serve the
        current certificate (re-read through :meth:`fetch`)."""
        # the stubs say the fetcher returns a configuration; gRPC documents None as "keep the current one"
        fetch = cast("Callable[[], grpc.ServerCertificateConfiguration]", self.fetch)
        return grpc.dynamic_ssl_server_credentials(self._initial, fetch, require_client_authentication=True)

    def reload(self) -> bytes:
        """Read the certificate and key files again (checked); new connections get them.
        Returns the new fingerprint; :class:`mpcnet.common.pki.PkiError` leaves the old one."""
        config = server_certificate_configuration(self._cert, self._ca)
        fingerprint = _file_fingerprint(self._cert.cert)
        with self._lock:
            self._next, self._fingerprint = config, fingerprint
        return fingerprint

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """For gRPC (each new handshake): the configuration loaded since the last call, or
        ``None`` to keep serving the current one."""
        with self._lock:
            config, self._next = self._next, None
        return config


def _file_fingerprint(path: Path) -> bytes:
    return certificate_fingerprint(load_certificate(Path(path).read_bytes(), "cert"))
