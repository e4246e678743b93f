"""Scheduled refresh of FROST keys (issue 16 item 5): the coordinator's scheduler
(coordinator.schedule.RefreshScheduler) refreshes an Ed25519 key whose policy has a
``refresh_period_s`` once due, as an ECDSA key's, with unsigned KeyOperation v2 the nodes
authorize by their own schedule; the new epoch's public shares are recorded (signing at a new
epoch: tests/coordinator/test_frost_keyops_coordinator.py). Fixtures and fake clocks from tests/coordinator/test_scheduled_refresh.py."""

from __future__ import annotations

import dataclasses
import os

from coordinator.db import KeyRecord, now_ms
from coordinator.schedule import RefreshScheduler
from crypto_core.frost.public import FrostPublic
from governance.approval import SCHEME_ED25519
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout
from tests.integration.govtools import default_policy, signed_change
from tests.network.frost_util import frost_dkg

from .test_keyops_orchestration import Coordinator
from .test_scheduled_refresh import PERIOD, Clock, _jump, clock, coord, lay, real_clocks, svcs  # noqa: F401 (fixtures)


def test_scheduler_refreshes_a_due_ed25519_key(
    lay: Layout, svcs: dict[int, NodeService], coord: Coordinator, clock: Clock,  # noqa: F811 (the fixtures imported above)
) -> None:
    key = frost_dkg(svcs, SCHEME_ED25519, 2, b"keyops")
    base = default_policy(lay)
    policy = dataclasses.replace(base, version=1, refresh_period_s=PERIOD)
    data = signed_change(lay, policy, None, "admin1", "admin2", scope=key.key_id).to_bytes()
    for s in svcs.values():
        s.gov.install(data, actor="test")
    coord.db.add_key(KeyRecord(key.key_id, "keyops", bytes(key.public_key), b"", 2, 3, "active", now_ms(), "kg-" + os.urandom(4).hex(),
                               SCHEME_ED25519), tuple(bytes(s) for s in key.public_shares))
    sched = RefreshScheduler(coord.ops, coord.db, coord.audit, coord.handles,  # type: ignore[arg-type]
                             lambda kid: policy if kid == key.key_id else base, name="coordinator", clock=clock)
    assert sched.check() == []
    _jump(svcs, clock, PERIOD + 3)
    started = sched.check()
    assert len(started) == 1
    st = coord.wait(started[0])
    assert st.state == "done" and st.authorized_by == "schedule" and st.new_epoch == 1, st.error
    shares = coord.db.frost_public_shares(key.key_id, 1)
    assert len(shares) == 3 and shares != tuple(bytes(s) for s in key.public_shares)
    FrostPublic(SCHEME_ED25519, 2, 3, bytes(key.public_key), shares).validate()
    for s in svcs.values():
        held = s._any_key(key.key_id)
        assert held.epoch == 1 and held.public_shares == shares
