"""Operator (issue 11), through the coordinator's orchestration: a refresh fails because node 5
lost its outcome (it crashed before storing) after the others confirmed it; the admins revoke
node 5. The roster-implied reshare that drops it must run to completion: before, every node
that confirmed the lost session refused it ("one epoch, one session") and the key kept the
revoked node's share for good (the background pass retried and failed forever)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.keyop import KeyOpKind
from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import prepare
from mpcnet.wire.mpc.v1 import node_pb2
from tests.network.keyops_util import Handle, close, dkg, run, services, sign

from .test_keyops_orchestration import Coordinator, N, T, _signed_op


@pytest.fixture
def coord_lost(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Coordinator]:
    lay = prepare(tmp_path_factory.mktemp("lost-revoke"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = services(lay)
    c = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    yield c
    c.close()
    close(svcs)


def test_revoking_the_node_that_lost_a_refresh_lets_the_roster_reshare_run(coord_lost: Coordinator) -> None:
    coord = coord_lost
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    full = tuple(range(1, N + 1))
    op = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=T, new_t=T)
    sid = os.urandom(32)
    params = node_pb2.ReshareParams(operation=op.to_bytes(), dealers=list(full), key_label=b"keyops")
    res = run(coord.svcs, sid, list(full), reshare=params)
    assert all(r.finished for r in res.values())
    with coord.svcs[N].store._write() as c:  # node 5 "crashed" before storing (test only)
        c.execute("DELETE FROM pending_epochs WHERE key_id = ? AND session_id = ?", (k.key_id, sid))
    admins = coord.lay.governance()[0]
    cur = coord.svcs[1].roster_state.current()
    assert cur is not None
    change = RosterChange(revoke_node(cur, N), cur.digest(), admins.digest())
    signed = SignedRosterChange(change, tuple(
        sign_roster_change(change, a, load_identity(coord.lay.dir, a).signing_key) for a in ("admin1", "admin2")
    ))
    for s in coord.svcs.values():
        s.roster_state.install(signed.to_bytes(), actor="admin1")
    roster = coord.svcs[1].roster_state.current()
    assert roster is not None
    op_id = coord.ops.start_roster_implied(k.key_id, roster, wait=True)
    assert op_id is not None
    st = coord.ops.get(op_id)
    assert st.state == "done", st.error
    assert list(st.new_committee) == list(range(1, N))
    assert isinstance(sign(coord.lay, coord.svcs, k, list(range(1, T + 1)), tuple(range(1, N)), 1), bytes)
