"""A pending request's expiry does not follow the coordinator's wall clock back (issue 16 p16).

``expire_due`` (the sweep), the check before signing and the watch compared ``expires_ms`` with
the wall clock: stepped back a day, an unapproved request stayed pending (and approvable) a day
past its TTL, and an approved one was sent to the nodes to sign. They now read
:meth:`coordinator.db.CoordinatorDb.expiry_ms` (the later of the wall clock and the wall clock at
start + steady time since). The times signed into the request stay the wall clock's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.service import _live, _remaining_s
from governance.approval import ApprovalBundle, Decision, SigningRequest
from governance.attestation import PolicyAttestation, PolicyHead, sign_attestation
from governance.policy import DEFAULT_SCOPE
from mpcnet.common.steadyclock import ExpiryClock
from tests.governance.gov_util import ADMIN_KEYS, admin_set

from .lifecycle_util import T0_MS, TTL_S, World, default_policy

DAY_MS = 86_400_000


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    w = World(tmp_path)
    monkeypatch.setattr("coordinator.policies.now_ms", w.clock)
    w.steady = [5_000_000]  # type: ignore[attr-defined]
    w.db.expiry = ExpiryClock.start(lambda: w.clock.ms, lambda: w.steady[0])  # type: ignore[attr-defined]
    yield w
    w.close()


def test_a_step_back_does_not_keep_a_pending_request_alive(world: Any) -> None:
    info = world.submit("r1")
    assert info.expires_unix_ms == T0_MS + TTL_S * 1000  # signed with the wall clock
    world.clock.ms -= DAY_MS
    world.steady[0] += (TTL_S + 1) * 1000
    world.requests.expire_due()
    rec = world.db.get_sign_request("r1")
    assert rec is not None and rec.state == "expired"
    assert [e.action for e in world.entries("r1")] == ["sign-request", "sign-expired"]


def test_a_step_back_does_not_sign_an_expired_approved_request(world: Any) -> None:
    world.submit("r2")
    world.decide("r2", "alice", Decision.APPROVE)
    world.decide("r2", "bert", Decision.APPROVE)
    world.clock.ms -= DAY_MS
    world.steady[0] += (TTL_S + 1) * 1000
    assert world.sign_next() == "r2"
    rec = world.db.get_sign_request("r2")
    assert rec is not None and rec.state == "expired" and "r2" not in world.nodes.calls


def test_a_step_forward_expires_early_as_the_nodes_would(world: Any) -> None:
    world.submit("r3")
    world.clock.ms += DAY_MS
    world.requests.expire_due()
    rec = world.db.get_sign_request("r3")
    assert rec is not None and rec.state == "expired"


def test_the_signing_paths_judge_liveness_on_the_expiry_clock(world: Any) -> None:
    info = world.submit("r4")
    sreq = SigningRequest.from_bytes(info.request)
    bundle = ApprovalBundle(sreq, ()).to_bytes()
    world.clock.ms -= DAY_MS
    world.steady[0] += (TTL_S + 1) * 1000
    now = world.db.expiry_ms(world.clock.ms)
    assert now == T0_MS + (TTL_S + 1) * 1000
    assert not _live(bundle, now) and _remaining_s(bundle, now) == 0.0


def test_a_step_back_refuses_no_fresh_policy_attestation(world: Any) -> None:
    """An attestation an admin issued just now is not "in the future" after the coordinator's
    wall clock was stepped back a day (its ``issued_at_ms`` is signed, a wall time)."""
    issued = world.clock.ms + 10_000
    world.steady[0] += 10_000
    world.clock.ms -= DAY_MS
    pol = default_policy()
    att = PolicyAttestation(admin_set().digest(), issued, "ada", (PolicyHead(DEFAULT_SCOPE, pol.version, pol.digest()),))
    signed = world.policies._accepted_attestation(sign_attestation(att, ADMIN_KEYS["ada"]).to_bytes(), "ada")
    assert signed.attestation.issued_at_ms == issued
