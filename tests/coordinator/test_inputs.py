"""Issue 10 items 1, 3, 5: every field of every Coordinator RPC's request is checked before any
work starts (``coordinator/inputs.py``), with one identifier alphabet (``governance.text``) and
error messages that quote at most a short escaped prefix of the caller's value.

In process and fast: :func:`coordinator.inputs.check_request` directly, and the decorated
:class:`coordinator.service.CoordinatorService` methods (the check runs before the body, so a
servicer with no state at all is enough to prove that no work starts)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from coordinator.inputs import RULES, check_request, needs_rule
from coordinator.service import CoordinatorService
from governance.audit import MAX_DETAIL_TEXT, check_details, check_request_id, detail_text
from governance.errors import GovernanceError
from mpcnet.common.rpc import RpcError, check_label
from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

Code = grpc.StatusCode
SERVICE = cpb.DESCRIPTOR.services_by_name["Coordinator"]
HOSTILE_TEXT = ["a\x00b", "x\n", "ops\x1b[8m", "x\u202egnp.exe", "a\u200bb", "\u2028", "\ud800", "\U000e0001"]
SHORT_ERROR = 300  # characters: an error message never echoes a caller's value in full


def refused(msg: Any, field: str) -> RpcError:
    with pytest.raises(RpcError) as e:
        check_request(msg)
    assert e.value.code == Code.INVALID_ARGUMENT, e.value.message
    assert e.value.message.startswith(f"{field}:"), e.value.message
    assert len(e.value.message) < SHORT_ERROR, len(e.value.message)
    return e.value


# --- the rule table covers every field -------------------------------------------------------


def test_every_field_of_every_coordinator_request_has_a_rule() -> None:
    missing, extra = [], []
    for method in SERVICE.methods:
        msg = method.input_type
        rules = RULES.get(msg.full_name)
        assert rules is not None, f"{method.name}: no rules for {msg.full_name}"
        needed = {fd.name for fd in msg.fields if needs_rule(fd)}
        missing += [f"{msg.full_name}.{f}" for f in sorted(needed - set(rules))]
        extra += [f"{msg.full_name}.{f}" for f in sorted(set(rules) - {fd.name for fd in msg.fields})]
    assert not missing, f"fields without an input rule: {missing}"
    assert not extra, f"rules for fields that do not exist: {extra}"


def test_every_rpc_method_of_the_servicer_checks_its_request_first() -> None:
    svc = object.__new__(CoordinatorService)  # no state: any body that ran would raise AttributeError
    for method in SERVICE.methods:
        req_cls = getattr(cpb, method.input_type.name)
        bad = req_cls()
        for fd in method.input_type.fields:
            if fd.type == fd.TYPE_STRING and not fd.is_repeated:
                setattr(bad, fd.name, "x\x00")
                break
            if fd.type == fd.TYPE_BYTES and not fd.is_repeated:
                setattr(bad, fd.name, b"\x00" * ((1 << 20) + 1))  # too long for every bytes rule
                break
        else:
            continue  # nothing to make invalid
        with pytest.raises(RpcError) as e:
            result = getattr(svc, method.name)(bad, None)
            if method.server_streaming:
                next(iter(result))
        assert e.value.code == Code.INVALID_ARGUMENT, (method.name, e.value.message)


# --- the given inputs (regressions) ----------------------------------------------------------


def test_create_key_with_a_nul_in_the_label_is_invalid_argument_naming_label_and_starts_nothing() -> None:
    svc = object.__new__(CoordinatorService)  # CreateKey's body would need a database and nodes
    with pytest.raises(RpcError) as e:
        svc.CreateKey(cpb.CreateKeyRequest(label="a\x00b", request_id="kid-nul"), None)
    assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("label:")
    assert "U+0000" in e.value.message and "\x00" not in e.value.message


@pytest.mark.parametrize("rid", ["kid-X\n", "kid-X\r", "\nkid-X", "kid X", "kid-X\x00", "\uff4bid", "x" * 65])
def test_request_ids_with_anything_outside_the_alphabet_are_refused(rid: str) -> None:
    refused(cpb.CreateKeyRequest(label="ok", request_id=rid), "request_id")
    refused(cpb.SubmitSignRequestRequest(key_id=b"k" * 32, digest=b"d" * 32, request_id=rid), "request_id")
    for cls in (cpb.GetRequestRequest, cpb.GetSignRequestRequest):
        refused(cls(request_id=rid), "request_id")
    with pytest.raises(GovernanceError):
        check_request_id(rid)  # the audit store refuses it too: same rule


@pytest.mark.parametrize("rid", ["kid-X", "batch.7", "a", "A-b_c.9", "x" * 64])
def test_documented_request_ids_are_accepted_everywhere(rid: str) -> None:
    check_request(cpb.CreateKeyRequest(label="ok", request_id=rid))
    check_request(cpb.SubmitSignRequestRequest(key_id=b"k" * 32, digest=b"d" * 32, request_id=rid))
    check_request(cpb.GetRequestRequest(request_id=rid))
    assert check_request_id(rid) == rid  # and the audit entry keeps it


def test_a_huge_proposal_id_gets_a_short_invalid_argument() -> None:
    err = refused(cpb.GetPolicyProposalRequest(proposal_id="a" * 100_000), "proposal_id")
    assert "100000 characters" in err.message
    refused(cpb.ApprovePolicyChangeRequest(proposal_id="A" * 32, admin="admin1", signature=b"s" * 64), "proposal_id")
    check_request(cpb.GetPolicyProposalRequest(proposal_id="0123456789abcdef" * 2))


# --- the class: every string field, sizes, repeated fields, enums ----------------------------


VALID: dict[str, dict[str, Any]] = {  # a valid instance of each request with a string field
    "ApprovePolicyChangeRequest": {"proposal_id": "0" * 32, "admin": "admin1", "signature": b"s" * 64},
    "DecideSignRequestRequest": {"request_id": "r", "approver": "approver1", "decision": 1, "signature": b"s" * 64},
    "SubmitSignRequestRequest": {"key_id": b"k" * 32, "digest": b"d" * 32},
    "GetPolicyProposalRequest": {"proposal_id": "0" * 32},
    "GetRequestRequest": {"request_id": "r"},
    "GetSignRequestRequest": {"request_id": "r"},
    "GetAuditLogRequest": {"component": "coordinator"},
    "ApproveLifecycleProposalRequest": {"proposal_id": "0" * 32, "admin": "admin1", "signature": b"s" * 64},
    "GetLifecycleProposalRequest": {"proposal_id": "0" * 32},
    "GetKeyOperationRequest": {"operation_id": "0" * 32},
    "SubmitRecoveryPiecesRequest": {
        "ceremony_id": b"c" * 16, "officer": "officer1", "pieces": [cpb.TargetPiece(share_index=1, ciphertext=b"x")],
    },
}


def _string_fields() -> list[tuple[str, str]]:
    return [
        (m.input_type.name, fd.name)
        for m in SERVICE.methods for fd in m.input_type.fields
        if fd.type == fd.TYPE_STRING and not fd.is_repeated
    ]


@pytest.mark.parametrize(("message", "field"), sorted(set(_string_fields())))
@pytest.mark.parametrize("value", HOSTILE_TEXT + ["x" * 4_000_000])
def test_hostile_text_in_any_string_field_is_refused_naming_it(message: str, field: str, value: str) -> None:
    msg = getattr(cpb, message)(**VALID.get(message, {}))
    check_request(msg)
    try:
        setattr(msg, field, value)
    except ValueError:  # protobuf itself refuses a lone surrogate
        return
    err = refused(msg, field)
    assert all(c.isprintable() for c in err.message), err.message


def test_sizes_and_counts_are_bounded() -> None:
    kid, dg = b"k" * 32, b"d" * 32
    refused(cpb.CreateKeyRequest(label="é" * 200), "label")  # 200 characters but 400 bytes of UTF-8
    check_request(cpb.CreateKeyRequest(label="é" * 128))
    refused(cpb.SubmitSignRequestRequest(key_id=kid, digest=dg, description="d" * 1025), "description")
    check_request(cpb.SubmitSignRequestRequest(key_id=kid, digest=dg, description="d" * 1024))
    refused(cpb.SubmitSignRequestRequest(key_id=kid, digest=dg, derivation_path=[1] * 100_000), "derivation_path")
    refused(cpb.SubmitSignRequestRequest(key_id=kid + b"x", digest=dg), "key_id")
    refused(cpb.DecideSignRequestRequest(request_id="r", approver="a", decision=1, signature=b"s" * 63), "signature")
    refused(cpb.ProposePolicyChangeRequest(signed_change=b"c" * (1 << 20 | 1)), "signed_change")
    refused(cpb.SubmitPolicyAttestationRequest(), "attestation")
    refused(cpb.ListSignRequestsRequest(key_id=b"k" * 31), "key_id")
    check_request(cpb.ListSignRequestsRequest())


def test_names_and_enums() -> None:
    refused(cpb.DecideSignRequestRequest(request_id="r", approver="-alice", decision=1, signature=b"s" * 64), "approver")
    refused(cpb.DecideSignRequestRequest(request_id="r", approver="alice", decision=77, signature=b"s" * 64), "decision")
    refused(cpb.ListSignRequestsRequest(state=99), "state")
    refused(cpb.ListPolicyProposalsRequest(state=-1), "state")
    refused(cpb.GetAuditLogRequest(component="node-1\n"), "component")
    refused(cpb.ApprovePolicyChangeRequest(proposal_id="0" * 32, admin="", signature=b"s" * 64), "admin")


# --- one label rule, audit details never cut silently ----------------------------------------


def test_check_label_is_governance_text() -> None:
    for bad in HOSTILE_TEXT[:-2]:
        with pytest.raises(RpcError) as e:
            check_label(bad, "dkg.key_label")
        assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("dkg.key_label:")
    assert check_label("treasury 1 (cold)", "label") == "treasury 1 (cold)"


def test_detail_text_keeps_what_fits_and_flags_what_it_cuts() -> None:
    assert detail_text("description", "d" * MAX_DETAIL_TEXT) == {"description": "d" * MAX_DETAIL_TEXT}
    cut = detail_text("reason", "r" * (MAX_DETAIL_TEXT + 1))
    assert cut == {"reason": "r" * MAX_DETAIL_TEXT, "reason_truncated": True}
    check_details(cut)
    assert check_details(detail_text("reason", "a\x00b")) == {"reason": "a\\x00b"}
