"""A policy attestation kept while a share is being released (p16 attack round), driven in process.

Finding: with ``policy_max_age_s`` > 0 a node checks, before signing, that the newest admin-signed
policy attestation it holds confirms the heads it enforces (``NodeGovernance.check_confirmed``),
but the share left in a later transaction (the consume of SignPresigned / SignSchnorr, a signing
session's last step) that re-checked only the policy and roster versions. An attestation kept
between the two that no longer confirmed this node's heads (it names a head this node never got:
a withheld change) did not stop the share. Now the check pins the attestation it used
(``AttestationPin``) and the releasing transaction refuses if the newest stored one names other
heads for the key's scope or the default scope: FAILED_PRECONDITION ``stale-policy`` naming
``policy_attestation``, nothing consumed, recorded or released, the refusal audited. A newer
attestation naming the same heads (a routine re-attestation) still signs.

The race is made deterministic as in ``test_revocation_race``: the test's hook keeps the newer
attestation right after the node's check returned (the window a concurrent install hits)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from governance.approval import SCHEME_ED25519
from governance.attestation import PolicyAttestation, PolicyHead, sign_attestation
from governance.policy import DEFAULT_SCOPE, KeyPolicy
from mpc_node.service import NodeService
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.govtools import approved_bundle, default_policy
from tests.integration.relay_util import reserve_request

from .frost_util import for_signer, frost_dkg, make_nonces, schnorr_request
from .presign_util import Code, close, kind, presign, service, sign_request
from .test_revocation_race import _after_the_check, _ecdsa_key, _refused, _revoke_approver2, _session_share

N, T = 3, 2
PATHS = ["presigned", "schnorr", "session"]


@pytest.fixture
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("attestation-race"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=3600)


@pytest.fixture
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    attest(lay, out, [default_head(lay)], issued=now_ms() - 1000)
    yield out
    for s in out.values():
        close(s)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def default_head(lay: Layout) -> PolicyHead:
    pol = default_policy(lay)
    return PolicyHead(DEFAULT_SCOPE, pol.version, pol.digest())


def withheld_key_head(lay: Layout, key_id: bytes) -> PolicyHead:
    """The head of a key policy (version 1 of the key's scope, approver2 revoked) the nodes never got."""
    pol = default_policy(lay)
    new = KeyPolicy(1, {n: k for n, k in pol.approvers.items() if n != "approver2"}, 2, pol.requesters, pol.ttl_seconds, pol.rate_limit)
    return PolicyHead(key_id, 1, new.digest())


def attestation(lay: Layout, heads: list[PolicyHead], issued: int) -> bytes:
    att = PolicyAttestation.build(lay.governance()[0].digest(), issued, "admin1", heads)
    return sign_attestation(att, load_identity(lay.dir, "admin1").signing_key).to_bytes()


def attest(lay: Layout, svcs: dict[int, NodeService], heads: list[PolicyHead], issued: int) -> None:
    req = node_pb2.InstallPolicyAttestationRequest(attestation=attestation(lay, heads, issued))
    for s in svcs.values():
        assert s.InstallPolicyAttestation(req, None).stored


def _release(lay: Layout, svcs: dict[int, NodeService], path: str, heads: Any) -> tuple[str, Any, Any]:
    """Release node 1's share on ``path`` while ``heads(key_id)`` are attested (newer) on node 1
    right after its check: (request id, the RpcError or the answer, what must be left unused)."""
    n1 = svcs[1]
    check = "recheck" if path == "session" else "check_sign"

    def hook(key_id: bytes) -> None:
        data = attestation(lay, heads(key_id), now_ms())
        _after_the_check(n1, lambda: n1.InstallPolicyAttestation(node_pb2.InstallPolicyAttestationRequest(attestation=data), None), check)

    if path == "schnorr":
        key = frost_dkg(svcs, SCHEME_ED25519, T)
        got = make_nonces(svcs, key, (1, 3))
        hook(key.key_id)
        req = for_signer(schnorr_request(lay, key, [got[1][0], got[3][0]]), 1)
        try:
            out: Any = n1.SignSchnorr(req, None)
        except RpcError as e:
            out = e
        left = [i.nonce_id for i in n1.store.fresh_nonces(key.key_id)] == [got[1][0].nonce_id]
        return req.request_id, out, left
    key = _ecdsa_key(svcs)
    if path == "presigned":
        (p,) = presign(svcs, key, (1, 2), count=1)
        hook(key.key_id)
        preq = sign_request(lay, key, p)
        try:
            out = n1.SignPresigned(preq, None)
        except RpcError as e:
            out = e
        left = [x.presig_id for x in n1.store.fresh_presignatures(key.key_id)] == [p.presig_id]
        return preq.request_id, out, left
    hook(key.key_id)
    rid, out = _session_share(lay, svcs, key.key_id, [1, 2], [1, 2], epoch=0)
    return rid, out, None


@pytest.mark.parametrize("path", PATHS)
def test_an_attestation_of_a_withheld_head_kept_after_the_check_stops_the_share(lay, svcs, path) -> None:
    n1 = svcs[1]
    rid, e, left = _release(lay, svcs, path, lambda key_id: [default_head(lay), withheld_key_head(lay, key_id)])
    assert isinstance(e, RpcError), e
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "stale-policy"), e.message
    prefix = "sign." if path == "session" else ""
    assert e.message.startswith(f"{prefix}policy_attestation: a newer attestation"), e.message
    assert "nothing was released" in e.message and "(node-1)" in e.message, e.message
    assert not n1.store.request_served(rid)
    assert left in (True, None)  # the presignature / nonce is not consumed
    refused = [x for x in n1.audit.entries() if x.action == "sign-share" and x.outcome == "refused" and x.request_id == rid]
    assert refused and "policy_attestation" in str(refused[-1].details["reason"]), refused
    assert not [x for x in n1.audit.entries() if x.action == "sign-share" and x.outcome == "released" and x.request_id == rid]


@pytest.mark.parametrize("path", PATHS)
def test_a_newer_attestation_of_the_same_heads_kept_after_the_check_still_signs(lay, svcs, path) -> None:
    rid, out, left = _release(lay, svcs, path, lambda key_id: [default_head(lay)])
    assert not isinstance(out, RpcError), out
    assert svcs[1].store.request_served(rid)
    assert left in (False, None)  # consumed
    assert svcs[1].gov.attestation() is not None and svcs[1].gov.attestation().issued_at_ms > now_ms() - 60_000


def test_an_attestation_of_a_newer_default_head_kept_after_the_check_stops_the_share(lay, svcs) -> None:
    """The default scope's head counts as much as the key's own (a key without its own policy)."""
    newer = PolicyHead(DEFAULT_SCOPE, default_policy(lay).version + 1, os.urandom(32))
    rid, e, left = _release(lay, svcs, "presigned", lambda key_id: [newer])
    assert isinstance(e, RpcError) and kind(e) == "stale-policy", e
    assert "for the default scope" in e.message, e.message
    assert left and not svcs[1].store.request_served(rid)


@pytest.mark.parametrize("what", ["attestation", "policy", "same-heads"])
def test_a_change_kept_after_the_reservation_check_stops_the_grant(lay, svcs, what) -> None:
    """Sibling: ReserveSigning checked the approvals (policy, attestation, roster) and then granted
    the attempt in a later transaction that looked at none of them. Now the grant's transaction
    refuses as the release does (``stale-policy``), granting and recording nothing."""
    key = _ecdsa_key(svcs)
    n1 = svcs[1]
    if what == "policy":
        change = _revoke_approver2(lay, key.key_id)
        _after_the_check(n1, lambda: n1.InstallPolicy(change, None))
    else:
        heads = [default_head(lay)] + ([withheld_key_head(lay, key.key_id)] if what == "attestation" else [])
        data = attestation(lay, heads, now_ms())
        _after_the_check(n1, lambda: n1.InstallPolicyAttestation(node_pb2.InstallPolicyAttestationRequest(attestation=data), None))
    digest = os.urandom(32)
    rid, bundle = approved_bundle(lay, key.key_id, digest)
    sign = node_pb2.SignParams(key_id=key.key_id, signers=[1, 2], digest=digest, request_id=rid, approval_bundle=bundle)
    req = reserve_request(os.urandom(32), sign, 1)
    if what == "same-heads":
        assert n1.ReserveSigning(req, None).created
        assert n1.store.reservation(rid, 1) is not None
        return
    e = _refused(n1.ReserveSigning, req)
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "stale-policy"), e.message
    field = "policy_attestation: " if what == "attestation" else "approval_bundle.request.policy_version: "
    assert e.message.startswith(field), e.message
    assert n1.store.reservation(rid, 1) is None
    refused = [x for x in n1.audit.entries() if x.action == "sign-reserve" and x.outcome == "refused" and x.request_id == rid]
    assert refused, "the refused grant is audited"
