"""A node whose wall clock is set back does not accept what already expired (issue 14 red team).

Approval and request expiry and the attestations' maximum age are judged by the node's expiry
clock (``NodeService.expiry_clock``): the later of the wall clock and (the wall clock at start +
the store's steady time since). Recovery-order expiry: tests/network/test_node_backup.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import ApprovalBundle
from governance.attestation import PolicyAttestation, PolicyHead, sign_attestation
from governance.policy import DEFAULT_SCOPE, SignedPolicyChange, sign_policy_change
from mpc_node.governance import NodeGovernance
from mpc_node.storage import NodeStore
from mpcnet.common.rpc import RpcError
from mpcnet.common.steadyclock import ExpiryClock
from mpcnet.common.stores.audit import AuditLog
from tests.steady_fake import FakeSteady

from ..governance.gov_util import ADMIN_KEYS, KEY_ID, NOW_MS, admin_set, approve, change, policy, request

DAY_MS = 86_400_000


class Host:
    """An injected wall clock and the store's steady clock, moved together or apart."""

    def __init__(self, tmp_path: Path) -> None:
        self.wall_ms = NOW_MS
        self.steady = FakeSteady(NOW_MS)
        self.store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=2**10, steady=self.steady.source())
        self.expiry = ExpiryClock.start(lambda: self.wall_ms, self.store.steady.now_ms)

    def elapse(self, ms: int) -> None:
        self.wall_ms += ms
        self.steady.ms += ms

    def gov(self, tmp_path: Path, max_age_s: int) -> NodeGovernance:
        c = change(policy(), None, scope=DEFAULT_SCOPE)
        initial = SignedPolicyChange(c, tuple(sign_policy_change(c, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))
        audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=Ed25519PrivateKey.generate(),
                              clock=lambda: self.wall_ms)
        return NodeGovernance("node-1", admin_set(), initial, self.store, audit, max_age_s=max_age_s, clock=self.expiry.now_ms)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path)
    yield h
    h.store.close()


def _kind(gov: NodeGovernance, data: bytes, attestation: bytes = b"") -> str:
    req = ApprovalBundle.from_bytes(data).request
    try:
        gov.check_sign(data, key_id=KEY_ID, digest=req.digest, path=req.derivation_path, request_id=req.request_id,
                       attestation=attestation)
    except RpcError as e:
        return dict(e.metadata or ())["mpc-governance"]
    return "ok"


def test_an_expired_approval_stays_expired_when_the_wall_clock_is_set_back(host: Host, tmp_path: Path) -> None:
    gov = host.gov(tmp_path, 0)
    req = request()  # expires at NOW_MS + 600,000
    data = ApprovalBundle(req, tuple(approve(req, "alice", "bert"))).to_bytes()
    assert _kind(gov, data) == "ok"
    host.elapse(600_001)
    assert _kind(gov, data) == "expired"
    host.wall_ms -= DAY_MS  # set back a day: by the wall clock alone it would be valid again
    assert _kind(gov, data) == "expired"
    assert host.expiry.now_ms() == NOW_MS + 600_001
    host.wall_ms += 2 * DAY_MS  # a step forward is followed at once
    assert host.expiry.now_ms() == NOW_MS + DAY_MS + 600_001


def test_a_stale_attestation_stays_stale_when_the_wall_clock_is_set_back(host: Host, tmp_path: Path) -> None:
    gov = host.gov(tmp_path, 60)  # attestations at most 60 s old
    head = PolicyHead(DEFAULT_SCOPE, 1, policy().digest())
    att = sign_attestation(PolicyAttestation.build(admin_set().digest(), NOW_MS, "ada", [head]), ADMIN_KEYS["ada"])
    req = request()  # valid for 600 s
    data = ApprovalBundle(req, tuple(approve(req, "alice", "bert"))).to_bytes()
    assert _kind(gov, data, att.to_bytes()) == "ok"
    host.elapse(61_000)
    assert _kind(gov, data) == "policy-unconfirmed"
    host.wall_ms -= DAY_MS
    assert _kind(gov, data) == "policy-unconfirmed"
