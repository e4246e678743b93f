"""The ``--enrolment`` file of ``mpc node add``: a node's enrolment request with ``--cert`` (issue
13, :mod:`mpcnet.client.nodeenrol`), or the roster-entry JSON of issue 11.

The certificate must chain to the CA this client trusts: ``--tls-ca`` (``MPC_TLS_CA``), else the
genesis's CA (``--genesis``), else the cluster directory's dev CA (``--cluster DIR``:
``ca/ca.pem``); ``--tls-ca`` and ``--genesis`` together must name one CA. Errors are
:class:`~mpcnet.client.cli.CliUsage` naming the option or field.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from governance.roster import RosterEntry
from governance.text import quote
from mpcnet.client import cli_render as view
from mpcnet.client.cli import CliUsage
from mpcnet.client.nodeenrol import MAX_PEM_BYTES, entry_from_request, is_enrolment_request, read_pem
from mpcnet.common.enrolment import EnrolmentError, describe, load_pem_certificate


def trusted_ca(opts: Any) -> bytes:
    """The PEM of the CA this client trusts (see the module docstring); CliUsage if none is known."""
    try:
        if opts.tls_ca:
            pem = read_pem(Path(opts.tls_ca), "--tls-ca")
            if opts.genesis:
                _same_ca(pem, _genesis_ca(Path(opts.genesis)))
            return pem
        if opts.genesis:
            return _genesis_ca(Path(opts.genesis))
        if opts.cluster:
            return read_pem(Path(opts.cluster) / "ca" / "ca.pem", "--cluster")
    except EnrolmentError as e:
        raise CliUsage(str(e)) from None
    raise CliUsage("--cert: give the CA to check it against (--tls-ca FILE or --genesis FILE)")


def _genesis_ca(path: Path) -> bytes:
    from mpcnet.common.genesis import load_genesis

    return load_genesis(path).ca_pem.encode("ascii")


def _same_ca(tls_ca: bytes, genesis_ca: bytes) -> None:
    """CliUsage naming ``--tls-ca`` unless it is the genesis's CA (the nodes trust only that
    one: a certificate checked against another CA would be proposed and never dialled)."""
    a = load_pem_certificate(tls_ca, "--tls-ca").public_bytes(serialization.Encoding.DER)
    b = load_pem_certificate(genesis_ca, "genesis.ca").public_bytes(serialization.Encoding.DER)
    if not hmac.compare_digest(a, b):
        raise CliUsage("--tls-ca: is not the genesis's CA (--genesis); the nodes trust only the genesis's CA: give one CA")


def _format_of(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
        return json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # the legacy reader names the problem


def entry_for(
    opts: Any, client: Any, enrolment: Path, cert: Path | None, index: int | None,
    legacy: Callable[[Path], RosterEntry],
) -> RosterEntry:
    """The roster entry ``mpc node add`` proposes: from an enrolment request and ``cert`` (index
    ``index`` or the next free one of the client's verified roster), or from the legacy
    roster-entry JSON (``legacy``, without ``--cert``/``--index``). Prints what it adds
    (escaped) on stderr."""
    if not is_enrolment_request(_format_of(enrolment)):
        if cert is not None or index is not None:
            raise CliUsage("--cert/--index: only with a node's enrolment request (enrolment-request.json) as --enrolment")
        return legacy(enrolment)
    if cert is None:
        raise CliUsage("--cert: an enrolment request needs the node's CA-issued certificate (PEM)")
    ca_pem = trusted_ca(opts)
    roster = client.roster().roster
    try:
        entry, request = entry_from_request(enrolment, read_pem(cert, "--cert"), ca_pem, roster, index)
    except EnrolmentError as e:
        raise CliUsage(f"--enrolment {quote(str(enrolment), 200)}: refused: {e}") from None
    view.err(describe(request))
    view.err(f"adding it as node {entry.index} (tls sha256 {entry.tls_fingerprint.hex()})")
    return entry
