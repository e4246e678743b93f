"""A request's and a bundle's canonical encoding is computed once per instance (issue 14: the
node's SignPresigned decodes, checks and hashes one request up to five times). The cache never
answers for other field values and never lets a non-canonical encoding through."""

from __future__ import annotations

import dataclasses

import pytest

from governance.approval import ApprovalBundle, SigningRequest
from governance.errors import GovernanceError

from .gov_util import NOW_MS, approve, policy, request


def test_the_encoding_is_computed_once_and_equals_a_fresh_one() -> None:
    req = request()
    first = req.encode()
    assert req.encode() is first and first == req._encode() and req.to_bytes() is first
    bundle = ApprovalBundle(req, tuple(approve(req, "alice", "bert")))
    wire = bundle.to_bytes()
    assert bundle.to_bytes() is wire and wire == bundle._encode()
    decoded = ApprovalBundle.from_bytes(wire)
    assert decoded == bundle and decoded.to_bytes() == wire and decoded.request.encode() == first


def test_a_replaced_request_or_bundle_encodes_its_own_fields() -> None:
    req = request()
    req.encode()
    other = dataclasses.replace(req, description="another invoice")
    assert other.encode() != req.encode() and other.encode() == other._encode()
    assert SigningRequest.from_bytes(other.encode()) == other
    bundle = ApprovalBundle(req, tuple(approve(req, "alice", "bert")))
    bundle.to_bytes()
    fewer = dataclasses.replace(bundle, approvals=bundle.approvals[:1])
    assert fewer.to_bytes() != bundle.to_bytes() and fewer.to_bytes() == fewer._encode()
    moved = dataclasses.replace(bundle, request=other)
    assert moved.to_bytes() == moved._encode() and moved.to_bytes() != bundle.to_bytes()
    # approvals of one request never verify for another, cached encodings or not
    with pytest.raises(GovernanceError) as e:
        moved.verify(policy(), now_ms=NOW_MS)
    assert e.value.field == "approvals[0].signature"


def test_non_canonical_bytes_are_still_refused() -> None:
    req = request()
    wire = ApprovalBundle(req, tuple(approve(req, "alice", "bert"))).to_bytes()
    with pytest.raises(GovernanceError) as e:
        ApprovalBundle.from_bytes(wire + b"\x00")
    assert e.value.field  # trailing bytes: named, never accepted
    with pytest.raises(GovernanceError):
        SigningRequest.from_bytes(req.encode() + b"\x00")
