"""A revocation installed while a share is being released (p14e attack round), driven in process.

Finding: ``SignPresigned`` and ``SignSchnorr`` checked the approvals against the policy in
force and the signers (and receipts) against the roster in force, then released the share in a
later transaction that looked at neither. An admin-signed policy change revoking an approver
(or a roster change revoking a signer) installed between the two was not seen: the share left
*after* the revocation, under approvals the node no longer accepted (a sibling of the ban that
did not stop live sessions). A signing session's last step (the recheck, then the consume) had
the same window. Now the release transaction reads the policy and roster in force and refuses
(``stale-policy`` / ``stale-roster``), consuming, recording and releasing nothing; the
presignature or nonce then signs a request approved under the new policy.

The race is made deterministic: the test's hook installs the change right after the node's
approvals check returned (the window a concurrent install hits)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from governance.approval import SCHEME_ED25519
from governance.policy import KeyPolicy
from governance.roster import revoke_node
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.govtools import approved_bundle, default_policy, signed_change
from tests.integration.rostertools import history, signed_next

from .frost_util import for_signer, frost_dkg, make_nonces, schnorr_request
from .keyops_util import run as run_sign
from .presign_util import Code, close, kind, presign, run_session, service, sign_request

N, T = 3, 2


@pytest.fixture
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("revocation-race"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


def _ecdsa_key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"race"))
    key: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), None)
    return key


def _revoke_approver2(lay: Layout, key_id: bytes) -> node_pb2.InstallPolicyRequest:
    """The key's own policy (version 1 of its scope): approver2 is no longer an approver."""
    pol = default_policy(lay)
    approvers = {n: k for n, k in pol.approvers.items() if n != "approver2"}
    new = KeyPolicy(1, approvers, 2, pol.requesters, pol.ttl_seconds, pol.rate_limit)
    return node_pb2.InstallPolicyRequest(signed_change=signed_change(lay, new, None, "admin1", "admin2", scope=key_id).to_bytes())


def _revoke_node3(lay: Layout) -> node_pb2.InstallRosterChangeRequest:
    r1 = history(lay)[0].change.new_roster
    return node_pb2.InstallRosterChangeRequest(signed_change=signed_next(lay, r1, revoke_node(r1, 3)).to_bytes())


def _install_roster(svc: NodeService, data: bytes) -> None:
    """Install a roster change on ``svc`` as far as the window a racing release hits: stored and
    in force, its listeners (which delete the fresh presignatures with a revoked signer and end
    live sessions) not yet run."""
    listeners = svc.roster_state._listeners
    svc.roster_state._listeners = []
    try:
        assert svc.roster_state.install(data, actor="admin1")[0]
    finally:
        svc.roster_state._listeners = listeners


def _after_the_check(svc: NodeService, install: Callable[[], Any], check: str = "check_sign") -> None:
    """Run ``install`` once, right after ``svc``'s next ``gov.<check>`` returns: ``check_sign``
    (the approvals check of SignPresigned / SignSchnorr) or ``recheck`` (a signing session's last)."""
    real = getattr(svc.gov, check)

    def hooked(*a: Any, **kw: Any) -> Any:
        out = real(*a, **kw)
        setattr(svc.gov, check, real)
        install()
        return out

    setattr(svc.gov, check, hooked)


def _session_share(lay: Layout, svcs: dict[int, NodeService], key_id: bytes, signers: list[int], reserve_by: list[int],
                   **epoch: int) -> tuple[str, Any]:
    """Run a multi-round signing of a fresh approved digest by ``signers``: (request id, node 1's result)."""
    digest = os.urandom(32)
    rid, bundle = approved_bundle(lay, key_id, digest)
    params = node_pb2.SignParams(key_id=key_id, signers=signers, digest=digest, request_id=rid, approval_bundle=bundle, **epoch)
    return rid, run_sign(svcs, os.urandom(32), signers, reserve_by=reserve_by, sign=params)[1]


def _refused(call: Callable[..., Any], req: Any) -> RpcError:
    with pytest.raises(RpcError) as e:
        call(req, None)
    return e.value


def test_a_policy_change_installed_after_the_approvals_check_stops_the_presigned_share(lay, svcs) -> None:
    key = _ecdsa_key(svcs)
    (p,) = presign(svcs, key, (1, 2), count=1)
    n1 = svcs[1]
    change = _revoke_approver2(lay, key.key_id)
    _after_the_check(n1, lambda: n1.InstallPolicy(change, None))
    req = sign_request(lay, key, p)  # approved by approver1 and approver2 under the default policy
    e = _refused(n1.SignPresigned, req)
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "stale-policy"), e.message
    assert e.message.startswith("approval_bundle.request.policy_version: "), e.message
    assert [x.presig_id for x in n1.store.fresh_presignatures(key.key_id)] == [p.presig_id]  # nothing consumed
    assert not n1.store.request_served(req.request_id)
    refused = [x for x in n1.audit.entries() if x.action == "sign-share" and x.outcome == "refused"]
    assert refused and "policy changed" in str(refused[-1].details["reason"])
    # the same request again: refused by the policy now in force, before any release
    e = _refused(n1.SignPresigned, req)
    assert (e.code, kind(e)) == (Code.PERMISSION_DENIED, "denied") or kind(e) == "stale-policy", e.message


def test_a_roster_change_installed_after_the_approvals_check_stops_the_presigned_share(lay, svcs) -> None:
    key = _ecdsa_key(svcs)
    (p,) = presign(svcs, key, (1, 3), count=1)
    n1 = svcs[1]
    change = _revoke_node3(lay)
    _after_the_check(n1, lambda: _install_roster(n1, change.signed_change))
    req = sign_request(lay, key, p)
    e = _refused(n1.SignPresigned, req)
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "stale-roster"), e.message
    assert e.message.startswith("roster: changed to version 2"), e.message
    assert not n1.store.request_served(req.request_id)
    assert [x.presig_id for x in n1.store.fresh_presignatures(key.key_id)] == [p.presig_id]  # not consumed


@pytest.mark.parametrize("what", ["policy", "roster"])
def test_a_revocation_installed_after_the_approvals_check_stops_the_schnorr_share(lay, svcs, what) -> None:
    key = frost_dkg(svcs, SCHEME_ED25519, T)
    got = make_nonces(svcs, key, (1, 3))
    n1 = svcs[1]
    if what == "policy":
        change: Any = _revoke_approver2(lay, key.key_id)
        _after_the_check(n1, lambda: n1.InstallPolicy(change, None))
    else:
        change = _revoke_node3(lay)
        _after_the_check(n1, lambda: _install_roster(n1, change.signed_change))
    req = for_signer(schnorr_request(lay, key, [got[1][0], got[3][0]]), 1)
    e = _refused(n1.SignSchnorr, req)
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, f"stale-{what}"), e.message
    assert not n1.store.request_served(req.request_id)
    assert [i.nonce_id for i in n1.store.fresh_nonces(key.key_id)] == [got[1][0].nonce_id]  # not consumed


def test_without_a_change_the_pinned_release_signs(lay, svcs) -> None:
    key = _ecdsa_key(svcs)
    (p,) = presign(svcs, key, (1, 2), count=1)
    req = sign_request(lay, key, p)
    assert not svcs[1].SignPresigned(req, None).replayed
    assert svcs[1].SignPresigned(req, None).replayed


@pytest.mark.parametrize("what", ["policy", "roster"])
def test_a_revocation_installed_after_a_signing_sessions_recheck_stops_its_share(lay, svcs, what) -> None:
    key = _ecdsa_key(svcs)
    n1 = svcs[1]
    change: Any = _revoke_approver2(lay, key.key_id) if what == "policy" else _revoke_node3(lay)
    if what == "policy":
        _after_the_check(n1, lambda: n1.InstallPolicy(change, None), "recheck")
    else:
        _after_the_check(n1, lambda: _install_roster(n1, change.signed_change), "recheck")
    rid, e = _session_share(lay, svcs, key.key_id, [1, 2], [1, 2], epoch=0)
    assert isinstance(e, RpcError) and (e.code, kind(e)) == (Code.FAILED_PRECONDITION, f"stale-{what}"), e
    assert e.message.startswith("sign."), e.message
    assert not n1.store.request_served(rid)


@pytest.mark.parametrize("state", ["holding", "left"])
def test_an_epoch_commit_after_a_signing_sessions_recheck_stops_its_share(lay, svcs, state) -> None:
    """p14e review: the signing session's release (``put_used_presignature``) checked that the
    key was active, not at which epoch, nor whether this node had left its committee: a refresh
    or reshare committed after the session's last checks released a share of the old epoch, an
    error about the store (UNAVAILABLE) where the key had merely moved on. Now FAILED_PRECONDITION
    ``epoch`` naming ``sign.epoch``, nothing recorded."""
    key = _ecdsa_key(svcs)
    n1 = svcs[1]

    def commit_epoch_1() -> None:
        with n1.store._write() as c:  # what a commit of epoch 1 leaves (mpc_node/epoch_store.py)
            c.execute(
                "INSERT OR REPLACE INTO key_epochs (key_id, epoch, committee, state, changed_ms) VALUES (?, 1, '1,2,3', ?, 0)",
                (key.key_id, state),
            )

    _after_the_check(n1, commit_epoch_1, "recheck")
    rid, e = _session_share(lay, svcs, key.key_id, [1, 2], [1, 2], epoch=0)
    assert isinstance(e, RpcError) and (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "epoch"), e
    assert e.message.startswith("sign.epoch: key ") and "nothing released" in e.message, e.message
    assert not n1.store.request_served(rid)
    refused = [x for x in n1.audit.entries() if x.action == "sign-share" and x.outcome == "refused"]
    assert refused and "not at epoch 0" in str(refused[-1].details["reason"])


def _ban_pending(svc: NodeService, key_id: bytes, peer: int) -> None:
    """A ban as :meth:`BanRegistry.record` makes it count at once: pending, its store write (which
    deletes the key's fresh presignatures with ``peer``) not done, e.g. refused by a full disk."""
    with svc.bans._mu:
        svc.bans._pending[(key_id, peer)] = "test: a check failed"


@pytest.mark.parametrize("path", ["presigned", "schnorr", "session"])
def test_a_ban_pending_after_the_checks_stops_the_share(lay, svcs, path) -> None:
    """p14e review: the release checked the bans before the approvals, not in its transaction. A
    ban counts once pending (mpc_node/bans.py), before its store write deletes the presignatures
    with the peer; a store that refused that write kept them. Now the releasing transaction asks
    the ban registry again (InForce.still): PERMISSION_DENIED ``mpc-banned``, nothing consumed."""
    n1 = svcs[1]
    if path == "schnorr":
        key = frost_dkg(svcs, SCHEME_ED25519, T)
        got = make_nonces(svcs, key, (1, 3))
        _after_the_check(n1, lambda: _ban_pending(n1, key.key_id, 3))
        e = _refused(n1.SignSchnorr, for_signer(schnorr_request(lay, key, [got[1][0], got[3][0]]), 1))
        assert [i.nonce_id for i in n1.store.fresh_nonces(key.key_id)] == [got[1][0].nonce_id]
    elif path == "presigned":
        key = _ecdsa_key(svcs)
        (p,) = presign(svcs, key, (1, 3), count=1)
        _after_the_check(n1, lambda: _ban_pending(n1, key.key_id, 3))
        e = _refused(n1.SignPresigned, sign_request(lay, key, p))
        assert [x.presig_id for x in n1.store.fresh_presignatures(key.key_id)] == [p.presig_id]
    else:
        key = _ecdsa_key(svcs)
        _after_the_check(n1, lambda: _ban_pending(n1, key.key_id, 3), "recheck")
        rid, e = _session_share(lay, svcs, key.key_id, [1, 3], [1, 2, 3])
        assert isinstance(e, RpcError), e
        assert not n1.store.request_served(rid)
    assert (e.code, kind(e)) == (Code.PERMISSION_DENIED, "mpc-banned"), e.message
    assert "is banned by node-1" in e.message and dict(e.metadata)["mpc-banned"] == "3"
    refused = [x for x in n1.audit.entries() if x.action == "sign-share" and x.outcome == "refused"]
    assert refused and "banned" in str(refused[-1].details["reason"])
