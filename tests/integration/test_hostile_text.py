"""Issue 10 items 1, 3, 4, 5 against real processes (the shared 3-of-5 cluster): hostile text,
identifiers and sizes in Coordinator requests are refused with INVALID_ARGUMENT naming the field
before any work starts (no DKG, no request left RUNNING, no audit entry holding the raw text);
documented ids with a dot are accepted and kept in the audit trail; every entry of a signing
request records the SHA-256 of the request its approvals sign; errors quote a short prefix."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest

from governance.approval import SigningRequest
from mpcnet.client import MpcClient
from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

Code = grpc.StatusCode
SHORT = 400  # an error's details never echo the caller's value in full


def refused(call, req, field: str, code: Code = Code.INVALID_ARGUMENT) -> str:
    with pytest.raises(grpc.RpcError) as e:
        call(req, timeout=30)
    details = e.value.details() or ""
    assert e.value.code() == code, (e.value.code(), details)
    assert details.startswith(f"{field}:"), details
    assert len(details) < SHORT and details.isprintable(), details
    return details


@pytest.fixture(scope="module")
def requester(cluster):
    with MpcClient.from_cluster(cluster.lay.dir, identity="requester1", timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def auditor(cluster):
    with MpcClient.from_cluster(cluster.lay.dir, identity="auditor1", timeout=120) as c:
        yield c


def test_create_key_with_a_nul_label_is_refused_before_any_dkg_and_leaves_nothing(client, auditor) -> None:
    keys_before = len(client.list_keys())
    node_audit = len(auditor.fetch_audit("node-1").entries)
    details = refused(client._stub.CreateKey, cpb.CreateKeyRequest(label="a\x00b", request_id="kid-nul"), "label")
    assert "U+0000" in details
    refused(client._stub.GetRequest, cpb.GetRequestRequest(request_id="kid-nul"), "request_id", Code.NOT_FOUND)
    assert len(client.list_keys()) == keys_before
    assert len(auditor.fetch_audit("node-1").entries) == node_audit  # no node saw a DKG
    assert not [e for e in auditor.fetch_audit("coordinator").entries if e.request_id == "kid-nul"]
    for label in ("ops\x1b[8m\n<fake row>", "x\u202egnp", "a\u2028b", "L" * 4_000_000):
        refused(client._stub.CreateKey, cpb.CreateKeyRequest(label=label), "label")


def test_a_newline_after_a_request_id_is_refused_and_a_dotted_id_is_kept_everywhere(client, requester, team, auditor) -> None:
    refused(client._stub.CreateKey, cpb.CreateKeyRequest(label="k", request_id="kid-X\n"), "request_id")
    key = client.create_key("dotted", request_id="batch.7")
    digest = hashlib.sha256(b"batch.7").digest()
    refused(
        requester._stub.SubmitSignRequest,
        cpb.SubmitSignRequestRequest(key_id=key.key_id, digest=digest, request_id="kid-X\n"), "request_id",
    )
    description = "d" * 600 + " decisive tail " + "e" * 409
    assert len(description) == 1024
    done = team.sign(key.key_id, digest, description=description, request_id="batch.7")
    info = requester._stub.GetSignRequest(cpb.GetSignRequestRequest(request_id="batch.7"), timeout=30)
    assert done.request_id == "batch.7" and info.state == cpb.SIGN_REQUEST_STATE_DONE
    want = SigningRequest.from_bytes(info.request).request_digest().hex()  # what each approval signs
    entries = [e for e in auditor.fetch_audit("coordinator").entries if e.request_id == "batch.7"]
    actions = [e.action for e in entries]
    assert "key-create" in actions and "sign-request" in actions and "sign-done" in actions, actions
    for e in entries:
        d = json.loads(e.details_json)
        if e.action.startswith("sign-"):
            assert d["request_sha256"] == want, (e.action, d)
        if e.action == "sign-request":
            assert d["description"] == description and "description_truncated" not in d
    # the nodes' entries of the shares they released tie to the same approvals (the coordinator is untrusted)
    node_entries = [
        (e.action, json.loads(e.details_json)) for name in ("node-1", "node-2", "node-3")
        for e in auditor.fetch_audit(name).entries if e.request_id == "batch.7"
    ]
    released = [d for a, d in node_entries if a == "sign-share" and d.get("attempt") is not None]
    assert released, node_entries
    for action, d in node_entries:
        if action in ("sign-start", "sign-reserve", "sign-share"):
            assert d.get("request_sha256") == want, (action, d)


def test_sizes_and_proposal_ids_get_short_invalid_argument(client, requester, auditor, key) -> None:
    details = refused(client._stub.GetPolicyProposal, cpb.GetPolicyProposalRequest(proposal_id="a" * 100_000), "proposal_id")
    assert "100000 characters" in details
    kid, digest = key.key_id, bytes(32)
    submit = requester._stub.SubmitSignRequest
    refused(submit, cpb.SubmitSignRequestRequest(key_id=kid, digest=digest, description="D" * 4_000_000), "description")
    refused(submit, cpb.SubmitSignRequestRequest(key_id=kid, digest=digest, description="a\nstate  REJECTED"), "description")
    refused(submit, cpb.SubmitSignRequestRequest(key_id=kid, digest=digest, derivation_path=[0] * 100_000), "derivation_path")
    refused(client._stub.ListSignRequests, cpb.ListSignRequestsRequest(state=42), "state")
    refused(auditor._stub.GetAuditLog, cpb.GetAuditLogRequest(component="x" * 100_000), "component")


def test_a_longest_label_is_kept_whole_in_every_audit_entry(client, auditor) -> None:
    """A label is at most 256 characters; the nodes' ``keygen`` entry cut it to 200 silently (no
    ``label_truncated``), so the node trail disagreed with the coordinator's ``key-create``."""
    label = "treasury-" + "L" * 240 + "-cold"  # 254 characters, the decisive part at the end
    key = client.create_key(label, request_id="kid-long-label")
    for component in ("coordinator", "node-1"):
        entries = [e for e in auditor.fetch_audit(component).entries if key.key_id.hex() in e.details_json]
        details = [json.loads(e.details_json) for e in entries if e.action in ("key-create", "keygen")]
        assert details and all(d["label"] == label and "label_truncated" not in d for d in details), (component, details)
