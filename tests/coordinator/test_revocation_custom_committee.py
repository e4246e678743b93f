"""A key the admins reshared to a committee of their own choosing (leaving out an active node)
holds a node that is then revoked: the coordinator's roster-implied reshare drops the revoked
node and adds nobody (the nodes refuse an unsigned reshare that would hand the excluded node a
share: tests/network/test_roster_implied_attack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.keyop import KeyOpKind, SignedKeyOperation
from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import prepare
from tests.network.keyops_util import Handle, close, dkg, services, sign

from .test_keyops_orchestration import Coordinator, N, T, _signed_op


@pytest.fixture
def coord_own(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Coordinator]:
    lay = prepare(tmp_path_factory.mktemp("custom-revoke"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = services(lay)
    c = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    yield c
    c.close()
    close(svcs)


def test_a_revocation_drops_the_node_from_an_admin_chosen_committee_and_adds_nobody(coord_own: Coordinator) -> None:
    coord = coord_own
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    full = (1, 2, 3, 4, 5)
    chosen = _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=full, new=(1, 2, 3, 4), old_t=3, new_t=3)
    assert coord.ops.run(coord.ops.start(chosen, "admin-quorum", "admin1", wait=True)) == "done"
    admins = coord.lay.governance()[0]
    cur = coord.svcs[1].roster_state.current()
    assert cur is not None
    change = RosterChange(revoke_node(cur, 4), cur.digest(), admins.digest())
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
    assert st.authorized_by == "roster" and list(st.new_committee) == [1, 2, 3]
    assert not SignedKeyOperation.from_bytes(st.signed_operation).signatures
    assert coord.ops.reconcile(roster, backoff_ms=0) == []  # nothing left to do: no revoked node holds it
    assert isinstance(sign(coord.lay, coord.svcs, k, [1, 2, 3], (1, 2, 3), 2), bytes)
