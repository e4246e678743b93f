"""``mpc node add --enrolment REQUEST --cert CERT [--index N]``: the roster entry of a node added
after the genesis, built from its own enrolment request and its CA-issued certificate (issue 13).

The request (``enrolment-request.json`` as ``mpc-node init`` wrote it) is verified like ``mpc
pki sign-csr`` does (exact fields, CSR self-signature and subject, SAN covering the endpoint host,
the identity key's signature); the certificate like ``mpc genesis new`` does (issued by the CA
the client trusts, validity, OU=node and CN = the request's name, its public key = the CSR's, SAN
covering the endpoint host). The entry's index is ``index`` or, by default, the largest index the
verified roster ever enrolled (revoked ones included) + 1: indices are never reused. Errors:
:class:`~mpcnet.common.enrolment.EnrolmentError` naming the field.
"""

from __future__ import annotations

from pathlib import Path

from governance.roster import MAX_INDEX, Roster, RosterEntry
from mpcnet.common.enrolment import (
    ENROLMENT_FORMAT,
    EnrolmentError,
    EnrolmentRequest,
    load_pem_certificate,
    load_request,
)
from mpcnet.common.genesis import node_entry

MAX_PEM_BYTES = 64 * 1024


def is_enrolment_request(doc: object) -> bool:
    """Whether a parsed JSON document claims to be an enrolment request (its ``format``)."""
    return isinstance(doc, dict) and doc.get("format") == ENROLMENT_FORMAT


def next_free_index(roster: Roster) -> int:
    """The largest index ``roster`` ever enrolled (revoked entries stay in it) + 1; EnrolmentError
    naming ``index`` beyond :data:`governance.roster.MAX_INDEX`."""
    index = max((e.index for e in roster.entries), default=0) + 1
    if index > MAX_INDEX:
        raise EnrolmentError("index", f"the roster has used every index up to {MAX_INDEX}")
    return index


def read_pem(path: Path, field: str) -> bytes:
    """The bytes of a PEM file (at most 64 KiB); EnrolmentError naming ``field``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as e:
        raise EnrolmentError(field, f"cannot read {path!s:.200} ({e.strerror or type(e).__name__})") from None
    if len(data) > MAX_PEM_BYTES:
        raise EnrolmentError(field, f"more than {MAX_PEM_BYTES} bytes")
    return data


def entry_from_request(
    request_path: Path, cert_pem: bytes, ca_pem: bytes, roster: Roster, index: int | None = None,
) -> tuple[RosterEntry, EnrolmentRequest]:
    """The roster entry (``key_version`` 1, active) for the node whose verified enrolment request
    is at ``request_path`` and whose certificate is ``cert_pem``, issued by the CA ``ca_pem``;
    index ``index`` or :func:`next_free_index`. EnrolmentError naming the field: a request that
    does not verify or is not a node's (``role``), a certificate that does not match it, an
    ``index`` already used or below the largest one used; a name, key or endpoint the roster
    already holds is refused later by :func:`governance.roster.add_node`."""
    request = load_request(request_path)
    if not isinstance(request, EnrolmentRequest) or request.role != "node":
        raise EnrolmentError("role", "the enrolment request is not a node's (node add takes a node's enrolment-request.json)")
    load_pem_certificate(ca_pem, "ca")
    if index is None:
        index = next_free_index(roster)
    elif roster.entry(index) is not None:
        raise EnrolmentError("index", f"{index} is already used by the roster (indices are never reused)")
    elif index < next_free_index(roster):
        raise EnrolmentError("index", f"{index} is below index {next_free_index(roster) - 1} the roster enrolled "
                                      "(entries stay in increasing index order: give a larger one, or none)")
    return node_entry(index, request, cert_pem, ca_pem), request
