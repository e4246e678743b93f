"""The signed messages of the two enrolment requests (issue 13), pure rules.

A host that joins a cluster makes its keys itself and sends a *request* (a public file) to the
CA operator and the admins; the request is signed by the key it enrols, so nobody can enrol a
key they do not hold, and nobody can swap the CSR or the endpoint of someone else's request.

* An **enrolment request** (a node or the coordinator) is signed by the host's Ed25519
  identity key over :func:`enrolment_request_message`: tag
  ``MPCNET/v1/gov/enrolment-request``, then ``uint`` version, ``text`` role, ``text`` name,
  ``text`` endpoint, ``raw`` identity key (32), ``raw`` encryption key (32), ``raw`` the CSR's
  DER encoding.
* An **identity request** (a person: admin, approver, requester, auditor, officer) is signed by
  the person's Ed25519 signing key over :func:`identity_request_message`: tag
  ``MPCNET/v1/gov/identity-request``, then ``uint`` version, ``text`` role, ``text`` name,
  ``raw`` signing key (32), ``raw`` the CSR's DER.

Errors: :class:`governance.errors.GovernanceError` naming the field.
"""

from __future__ import annotations

from ._checks import PUBLIC_KEY_LEN, SIGNATURE_LEN, check_bytes, check_int, check_name, check_public_key, ed25519_verify
from .encoding import Encoder, domain_tag
from .errors import GovernanceError
from .roster import check_endpoint, check_x25519_public_key
from .text import quote

ENROLMENT_REQUEST_TAG = domain_tag("enrolment-request")
IDENTITY_REQUEST_TAG = domain_tag("identity-request")
REQUEST_VERSION = 1
SERVICE_ROLES = ("node", "coordinator")
"""Roles an enrolment request may ask for (hosts with identity and encryption keys)."""
PEOPLE_ROLES = ("admin", "approver", "requester", "auditor", "officer")
"""Roles an identity request may ask for (people with a signing key)."""
MAX_CSR_DER = 8192


def check_role(value: object, field: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``; else GovernanceError naming ``field``."""
    if not isinstance(value, str) or value not in allowed:
        raise GovernanceError(field, f"must be one of {', '.join(allowed)}, got {quote(value)}")
    return value


def _check_csr_der(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or not 0 < len(value) <= MAX_CSR_DER:
        raise GovernanceError("csr", f"must be 1..{MAX_CSR_DER} bytes of DER")
    return bytes(value)


def enrolment_request_message(
    version: int, role: str, name: str, endpoint: str, identity_key: bytes, encryption_key: bytes, csr_der: bytes
) -> bytes:
    """The bytes a node's or the coordinator's identity key signs (module docstring).
    GovernanceError naming the field for a value outside its rule."""
    check_int(version, "version", REQUEST_VERSION, REQUEST_VERSION)
    return (
        Encoder(ENROLMENT_REQUEST_TAG)
        .uint(version)
        .text(check_role(role, "role", SERVICE_ROLES))
        .text(check_name(name, "name"))
        .text(check_endpoint(endpoint))
        .raw(check_public_key(identity_key, "identity_key"))
        .raw(check_x25519_public_key(encryption_key, "encryption_key"))
        .raw(_check_csr_der(csr_der))
        .finish()
    )


def identity_request_message(version: int, role: str, name: str, signing_key: bytes, csr_der: bytes) -> bytes:
    """The bytes a person's signing key signs (module docstring)."""
    check_int(version, "version", REQUEST_VERSION, REQUEST_VERSION)
    return (
        Encoder(IDENTITY_REQUEST_TAG)
        .uint(version)
        .text(check_role(role, "role", PEOPLE_ROLES))
        .text(check_name(name, "name"))
        .raw(check_public_key(signing_key, "signing_key"))
        .raw(_check_csr_der(csr_der))
        .finish()
    )


def verify_request_signature(public_key: bytes, signature: object, message: bytes, key_field: str) -> None:
    """The request's ``signature`` (64 bytes) must verify under ``public_key`` (its own
    ``key_field``) over ``message``; else GovernanceError naming ``signature``."""
    sig = check_bytes(signature, "signature", length=SIGNATURE_LEN)
    if len(public_key) != PUBLIC_KEY_LEN or not ed25519_verify(public_key, sig, message):
        raise GovernanceError("signature", f"does not verify under the request's {key_field}")


GENESIS_TAG = domain_tag("genesis")
DIGEST_LEN = 32


def genesis_message(
    threshold: int, governance_root: bytes, policy_change_digest: bytes, roster_change_digest: bytes, ca_der: bytes,
) -> bytes:
    """What each admin signs besides the two changes of a genesis document, so that its threshold
    and CA are admin-signed too: tag ``MPCNET/v1/gov/genesis``, then ``uint`` threshold, ``raw``
    the admin set digest (32), ``raw`` the initial policy change digest (32), ``raw`` the roster
    version-1 change digest (32), ``raw`` the CA certificate's DER."""
    check_int(threshold, "threshold", 2, 255)
    enc = Encoder(GENESIS_TAG).uint(threshold)
    for value, field in ((governance_root, "governance_root"), (policy_change_digest, "initial_policy"), (roster_change_digest, "roster")):
        enc.raw(check_bytes(value, field, length=DIGEST_LEN))
    if not isinstance(ca_der, bytes) or not 0 < len(ca_der) <= MAX_CSR_DER:
        raise GovernanceError("ca", f"must be 1..{MAX_CSR_DER} bytes of DER")
    return enc.raw(ca_der).finish()
