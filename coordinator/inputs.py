"""Every field of every Coordinator request checked before any work starts.

:data:`RULES` maps each request message (by full protobuf name) to a rule for each of its
string, bytes, repeated and enum fields; :func:`check_request` applies them and raises
INVALID_ARGUMENT naming the field, quoting at most a short escaped prefix of the value
(:func:`governance.text.quote`). A 4 MB label, a 100000-entry path, a NUL in a description
or a newline after a request id are refused here, so no DKG starts, nothing is stored and no
audit entry or log line holds the caller's raw text. Scalar integer fields need no rule (their
ranges are checked where they are used). ``tests/coordinator/test_inputs.py`` checks that every
field of every Coordinator RPC's request has a rule, so a field added to the .proto without one
fails the tests.

:func:`validated` wraps a servicer class's RPC methods so each one runs :func:`check_request`
first, whichever transport calls it.

Identifier alphabets and text rules are :mod:`governance.text`'s (one definition everywhere).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from coordinator.decide_wait import MAX_DECIDE_WAIT_MS
from crypto_core.params import MAX_LABEL
from governance.approval import MAX_DESCRIPTION, MAX_MESSAGE, MAX_PATH_DEPTH, SCHEMES
from governance.encoding import MAX_ENCODED
from governance.errors import GovernanceError
from governance.text import check_name, check_request_id, check_text, quote
from mpcnet.common.rpc import RpcError, invalid
from mpcnet.wire.mpc.v1 import coordinator_pb2

Rule = Callable[[Any, str], None]
"""``rule(value, field)``: returns if ``value`` is acceptable, else raises RpcError naming ``field``."""

PROPOSAL_ID_RE = re.compile(r"[0-9a-f]{32}")
"""A policy proposal id: hex of the first 16 bytes of SHA-256 of the change (lowercase)."""
KEY_ID_LEN = 32
DIGEST_LEN = 32
SIGNATURE_LEN = 64  # Ed25519
MAX_CERT_PEM = 64 * 1024  # one PEM certificate
CEREMONY_ID_LEN = 16
MAX_PIECE_CIPHERTEXT = 4096  # one officer's age file to one target (a 32-byte scalar inside)
MAX_CEREMONY_TARGETS = 255  # share indices of one ceremony


def _gov(check: Callable[[], object]) -> None:
    try:
        check()
    except GovernanceError as e:
        raise invalid(e.field, e.reason) from None


def text(max_chars: int, max_utf8: int | None = None) -> Rule:
    """Caller text (:func:`governance.text.check_text`) of at most ``max_chars`` characters
    (and ``max_utf8`` bytes of UTF-8); may be empty."""

    def rule(value: Any, field: str) -> None:
        if max_utf8 is not None and isinstance(value, str):
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > max_utf8:
                raise invalid(field, f"at most {max_utf8} bytes, got {size}")
        _gov(lambda: check_text(value, field, max_chars))

    return rule


def request_id(*, optional: bool) -> Rule:
    """A request id (:data:`governance.text.REQUEST_ID_RE`); ``""`` too when ``optional``."""

    def rule(value: Any, field: str) -> None:
        _gov(lambda: check_request_id(value, field, allow_empty=optional))

    return rule


def name(value: Any, field: str) -> None:
    """A name (:data:`governance.text.NAME_RE`)."""
    _gov(lambda: check_name(value, field))


def proposal_id(value: Any, field: str) -> None:
    """A proposal id (:data:`PROPOSAL_ID_RE`, full match)."""
    if not (isinstance(value, str) and PROPOSAL_ID_RE.fullmatch(value)):
        raise invalid(field, f"must be 32 lowercase hex characters (a proposal id), got {quote(value)}")


def exact_bytes(length: int, *, optional: bool = False) -> Rule:
    """Exactly ``length`` bytes (or empty when ``optional``)."""

    def rule(value: Any, field: str) -> None:
        if optional and len(value) == 0:
            return
        if len(value) != length:
            raise invalid(field, f"must be {length} bytes{' (or empty)' if optional else ''}, got {len(value)}")

    return rule


def max_bytes(limit: int) -> Rule:
    """1 to ``limit`` bytes."""

    def rule(value: Any, field: str) -> None:
        if not 1 <= len(value) <= limit:
            raise invalid(field, f"must be 1 to {limit} bytes, got {len(value)}")

    return rule


def bytes_up_to(limit: int) -> Rule:
    """0 to ``limit`` bytes."""

    def rule(value: Any, field: str) -> None:
        if len(value) > limit:
            raise invalid(field, f"must be at most {limit} bytes, got {len(value)}")

    return rule


def scheme(value: Any, field: str) -> None:
    """A key's signature scheme (issue 16): empty (``ecdsa-secp256k1``) or one of
    :data:`governance.approval.SCHEMES`."""
    if not isinstance(value, str) or (value and value not in SCHEMES):
        raise invalid(field, f"must be one of {', '.join(SCHEMES)} (or empty: {SCHEMES[0]}), got {quote(str(value)[:64])}")


def max_items(limit: int) -> Rule:
    """A repeated field of at most ``limit`` entries."""

    def rule(value: Any, field: str) -> None:
        if len(value) > limit:
            raise invalid(field, f"at most {limit} entries, got {len(value)}")

    return rule


def target_pieces(value: Any, field: str) -> None:
    """1 to :data:`MAX_CEREMONY_TARGETS` pieces, each a share index 1..255 and a ciphertext of
    1 to :data:`MAX_PIECE_CIPHERTEXT` bytes (which share indices a ceremony wants is checked
    against the ceremony itself)."""
    if not 1 <= len(value) <= MAX_CEREMONY_TARGETS:
        raise invalid(field, f"must hold 1 to {MAX_CEREMONY_TARGETS} pieces, got {len(value)}")
    for i, p in enumerate(value):
        if not 1 <= p.share_index <= MAX_CEREMONY_TARGETS:
            raise invalid(f"{field}[{i}].share_index", f"must be 1 to {MAX_CEREMONY_TARGETS}, got {p.share_index}")
        if not 1 <= len(p.ciphertext) <= MAX_PIECE_CIPHERTEXT:
            raise invalid(f"{field}[{i}].ciphertext", f"must be 1 to {MAX_PIECE_CIPHERTEXT} bytes, got {len(p.ciphertext)}")


def at_most(limit: int) -> Rule:
    """An unsigned integer of at most ``limit``."""

    def rule(value: Any, field: str) -> None:
        if value > limit:
            raise invalid(field, f"must be at most {limit}, got {value}")

    return rule


def enum(value: Any, field: str) -> None:
    """Placeholder for an enum field: :func:`check_request` checks the value is a defined one."""


RULES: Mapping[str, Mapping[str, Rule]] = {
    "mpc.v1.CreateKeyRequest": {
        "label": text(MAX_LABEL, MAX_LABEL), "request_id": request_id(optional=True), "scheme": scheme,
    },
    "mpc.v1.GetKeyRequest": {"key_id": exact_bytes(KEY_ID_LEN)},
    "mpc.v1.ListKeysRequest": {},
    "mpc.v1.GetRequestRequest": {"request_id": request_id(optional=False)},
    "mpc.v1.ClusterStatusRequest": {},
    "mpc.v1.SubmitSignRequestRequest": {
        # issue 16: digest may be empty (an ed25519 request: SHA-256(message)); the per-scheme rules
        # need the key and are applied by coordinator.schnorr_requests.check_submission
        "key_id": exact_bytes(KEY_ID_LEN), "digest": exact_bytes(DIGEST_LEN, optional=True),
        "derivation_path": max_items(MAX_PATH_DEPTH), "description": text(MAX_DESCRIPTION),
        "request_id": request_id(optional=True), "message": bytes_up_to(MAX_MESSAGE),
        "taproot_merkle_root": exact_bytes(DIGEST_LEN, optional=True),
    },
    "mpc.v1.DecideSignRequestRequest": {
        "request_id": request_id(optional=False), "approver": name, "decision": enum,
        "signature": exact_bytes(SIGNATURE_LEN), "wait_done_ms": at_most(MAX_DECIDE_WAIT_MS),
    },
    "mpc.v1.GetSignRequestRequest": {"request_id": request_id(optional=False)},
    "mpc.v1.ListSignRequestsRequest": {"state": enum, "key_id": exact_bytes(KEY_ID_LEN, optional=True)},
    "mpc.v1.GetPolicyRequest": {"key_id": exact_bytes(KEY_ID_LEN, optional=True)},
    "mpc.v1.ProposePolicyChangeRequest": {"signed_change": max_bytes(MAX_ENCODED)},
    "mpc.v1.ApprovePolicyChangeRequest": {"proposal_id": proposal_id, "admin": name, "signature": exact_bytes(SIGNATURE_LEN)},
    "mpc.v1.GetPolicyProposalRequest": {"proposal_id": proposal_id},
    "mpc.v1.ListPolicyProposalsRequest": {"state": enum},
    "mpc.v1.ListPoliciesRequest": {},
    "mpc.v1.GetPolicyHistoryRequest": {"key_id": exact_bytes(KEY_ID_LEN, optional=True)},
    "mpc.v1.SubmitPolicyAttestationRequest": {"attestation": max_bytes(MAX_ENCODED)},
    "mpc.v1.GetAuditLogRequest": {"component": name},
    # key lifecycle and roster (issue 11)
    "mpc.v1.ProposeRosterChangeRequest": {"signed_change": max_bytes(MAX_ENCODED)},
    "mpc.v1.ProposeKeyOperationRequest": {"signed_operation": max_bytes(MAX_ENCODED)},
    "mpc.v1.ApproveLifecycleProposalRequest": {"proposal_id": proposal_id, "admin": name, "signature": exact_bytes(SIGNATURE_LEN)},
    "mpc.v1.GetLifecycleProposalRequest": {"proposal_id": proposal_id},
    "mpc.v1.ListLifecycleProposalsRequest": {"state": enum},
    "mpc.v1.GetClusterRosterRequest": {},
    "mpc.v1.GetKeyOperationRequest": {"operation_id": proposal_id},
    "mpc.v1.ListKeyOperationsRequest": {"key_id": exact_bytes(KEY_ID_LEN, optional=True)},
    "mpc.v1.PrepareNodeKeyRotationRequest": {},
    "mpc.v1.InstallNodeCertificateRequest": {"certificate_pem": max_bytes(MAX_CERT_PEM)},
    # backup and recovery (issue 12)
    "mpc.v1.ProposeRecoveryConfigRequest": {"signed_change": max_bytes(MAX_ENCODED)},
    "mpc.v1.ProposeRecoveryOrderRequest": {"signed_order": max_bytes(MAX_ENCODED)},
    "mpc.v1.GetRecoveryConfigRequest": {},
    "mpc.v1.ExportBackupRequest": {"key_id": exact_bytes(KEY_ID_LEN), "bundle_digest": exact_bytes(DIGEST_LEN, optional=True)},
    "mpc.v1.ListBackupsRequest": {"key_id": exact_bytes(KEY_ID_LEN, optional=True)},
    "mpc.v1.StartDrillRequest": {"key_id": exact_bytes(KEY_ID_LEN)},
    "mpc.v1.SubmitRecoveryPiecesRequest": {
        "ceremony_id": exact_bytes(CEREMONY_ID_LEN), "officer": name, "pieces": target_pieces,
    },
    "mpc.v1.GetCeremonyRequest": {"ceremony_id": exact_bytes(CEREMONY_ID_LEN)},
    "mpc.v1.ListCeremoniesRequest": {"key_id": exact_bytes(KEY_ID_LEN, optional=True)},
}
"""The rule of every string, bytes, repeated and enum field of every Coordinator request."""


def needs_rule(fd: Any) -> bool:
    """True for the fields (a protobuf FieldDescriptor) that carry caller-sized or caller-chosen
    values: strings, bytes, messages, enums and every repeated field."""
    return bool(fd.is_repeated) or fd.type in (
        FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE,
        FieldDescriptor.TYPE_ENUM,
    )


def check_request(msg: Message) -> None:
    """Apply :data:`RULES` to ``msg``; RpcError INVALID_ARGUMENT naming the first bad field.
    A request type without rules, or a field without one, is refused (never passed unchecked)."""
    desc = msg.DESCRIPTOR
    rules = RULES.get(desc.full_name)
    if rules is None:
        raise invalid("request", f"no input rules for {desc.full_name}")
    for fd in desc.fields:
        if not needs_rule(fd) and fd.name not in rules:  # a number with a rule (a bound) is checked too
            continue
        rule = rules.get(fd.name)
        if rule is None:
            raise invalid(fd.name, "field has no input rule")
        value = getattr(msg, fd.name)
        if fd.type == FieldDescriptor.TYPE_ENUM and not fd.is_repeated and fd.enum_type is not None:
            if fd.enum_type.values_by_number.get(value) is None:
                raise invalid(fd.name, f"unknown value {value}")
        rule(value, fd.name)


_Servicer = TypeVar("_Servicer", bound=type)


def validated(cls: _Servicer) -> _Servicer:
    """Class decorator: every Coordinator RPC method of ``cls`` runs :func:`check_request` on its
    request before its body (a streaming one, before its first response)."""
    for method in coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].methods:
        fn = getattr(cls, method.name, None)
        if fn is None:
            continue
        setattr(cls, method.name, _checked(fn))
    return cls


def _checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: Any, req: Message, ctx: Any) -> Any:
        check_request(req)
        return fn(self, req, ctx)

    return method


__all__ = ["RULES", "RpcError", "check_request", "needs_rule", "validated"]
