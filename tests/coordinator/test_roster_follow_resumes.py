"""p16 roster: a coordinator killed after a membership change's roster change committed (the
change in force) but before the reshares it calls for were started has the change's proposal
recorded applied at the next start with nothing run again (cae0db4). A node REVOKED by the change
was caught later by the background reconcile (its committee holds a node no longer active), but a
node ADDED by the change never got its reshares: its keys never reached it. The background pass
(``KeyOperations.reconcile`` over the roster history) now starts every such missed follow, once.

The regression runs in-process nodes: a key made by nodes 1-4 under roster version 1, node 5
added by version 2 (in force on every node), its follow never started (the kill), a restart of
the coordinator; the background pass reshares the key to 1-5 and node 5 ends up holding a share
that signs. The rule's edges are checked on :func:`coordinator.keyops._missed_follow` directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.keyop_store import KeyOpRecord
from coordinator.keyops import _missed_follow
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation
from governance.roster import Roster, RosterChange, SignedRosterChange, active_entries, add_node, sign_roster_change
from mpc_node.service import NodeService
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.wire.mpc.v1 import node_pb2
from tests.coordinator.test_keyops_orchestration import Coordinator
from tests.network.keyops_util import Handle, close, dkg, services, sign

N, T = 5, 3


def _rewrite_history(lay: Layout, index: int, history: list[SignedRosterChange]) -> None:
    """Node ``index``'s config names ``history`` as its roster chain."""
    path = lay.node_config(index)
    cfg = json.loads(path.read_text())
    cfg["governance"]["roster_history"] = [c.to_dict() for c in history]
    path.write_text(json.dumps(cfg))


def _sign(lay: Layout, change: RosterChange) -> SignedRosterChange:
    return SignedRosterChange(change, tuple(
        sign_roster_change(change, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2")
    ))


@pytest.fixture
def added(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Layout, list[SignedRosterChange], dict[int, NodeService]]]:
    """A cluster whose roster version 1 holds nodes 1-4 and version 2 adds node 5 (its entry
    from the layout's five), nodes 1-4 running on version 1."""
    lay = prepare(tmp_path_factory.mktemp("roster-follow"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    admins = lay.governance()[0]
    five = json.loads(lay.roster_path.read_text())[0]
    entries = SignedRosterChange.from_dict(five).change.new_roster.entries
    v1 = _sign(lay, RosterChange(Roster(1, 0, tuple(entries[:4])), None, admins.digest()))
    v2 = _sign(lay, RosterChange(add_node(v1.change.new_roster, entries[4]), v1.change.new_roster.digest(), admins.digest()))
    for i in range(1, N + 1):
        _rewrite_history(lay, i, [v1] if i < 5 else [v1, v2])
    svcs = {i: services(lay, only=i)[i] for i in range(1, N)}
    yield lay, [v1, v2], svcs
    close(svcs)


def test_a_kill_between_adding_a_node_and_its_reshares_is_resumed_at_the_restart(
    added: tuple[Layout, list[SignedRosterChange], dict[int, NodeService]], tmp_path: Path,
) -> None:
    lay, (v1, v2), svcs = added
    k = dkg(svcs, T)  # nodes 1-4: the active nodes of version 1
    handles = {i: Handle(s) for i, s in svcs.items()}
    coord = Coordinator(tmp_path, lay, svcs, handles)
    try:
        coord.add_key(k)
        # version 2 (adding node 5) is applied and pushed to every node; node 5 starts with it
        for s in svcs.values():
            s.roster_state.install(v2.to_bytes(), actor="admin1")
        svcs[5] = services(lay, only=5)[5]
        handles[5] = Handle(svcs[5])
        cur = svcs[1].roster_state.current()
        assert cur is not None and cur.version == 2 and len(active_entries(cur)) == 5
        # the kill: the change is in force, its follow (follow_roster) never started; a new process
        coord.restart()
        history = (v1.change.new_roster, v2.change.new_roster)
        ids = coord.ops.reconcile(cur, history=history)
        assert len(ids) == 1, ids
        st = coord.wait(ids[0])
        assert st.state == "done", st.error
        assert st.authorized_by == "roster" and list(st.new_committee) == [1, 2, 3, 4, 5]
        keys = {x.key_id: x for x in svcs[5].ListKeys(node_pb2.NodeListKeysRequest(), None).keys}
        assert keys[k.key_id].epoch == 1 and 5 in keys[k.key_id].committee  # the added node holds a share
        assert isinstance(sign(lay, svcs, k, [1, 2, 5], (1, 2, 3, 4, 5), 1), bytes)
        coord.flush()
        started = [e for e in coord.audit.entries() if e.action == "key-operation" and e.outcome == "started"]
        assert len(started) == 1 and started[0].details.get("authorized_by") == "roster", started  # audited
        assert coord.ops.reconcile(cur, history=history) == []  # once: nothing left to do
        coord.restart()
        assert coord.ops.reconcile(cur, history=history) == []
    finally:
        coord.close()


# --- the rule ----------------------------------------------------------------------------------

KEY = b"\x01" * 32


def _roster(version: int, active: tuple[int, ...], revoked: tuple[int, ...] = ()) -> Roster:
    entries = [SimpleNamespace(index=i, active=True) for i in active] + [SimpleNamespace(index=i, active=False) for i in revoked]
    r: Any = SimpleNamespace(version=version, entries=sorted(entries, key=lambda e: e.index))
    return r  # type: ignore[no-any-return]


def _op(old: tuple[int, ...], new: tuple[int, ...], version: int, by: str = "roster", state: str = "done") -> KeyOpRecord:
    from crypto_core.group import G

    op = KeyOperation(b"\x02" * 32, b"\x03" * 16, KeyOpKind.RESHARE, KEY, G.encode(), b"\x04" * 32, 0, 2, old, 2, new, version, "t")
    return KeyOpRecord("op", KEY, SignedKeyOperation(op).to_bytes(), by, state, b"", (), (), (), "", 0, 1, 1)


V1 = _roster(1, (1, 2, 3))
V2 = _roster(2, (1, 2, 3, 4))  # adds node 4
V3 = _roster(3, (1, 2, 3, 4))  # an endpoint change
V4 = _roster(4, (1, 2, 4), (3,))  # revokes node 3


@pytest.mark.parametrize(("committee", "ops", "history", "missed"), [
    ((1, 2, 3), [], (V1, V2), 2),                                        # the kill: the follow never started
    ((1, 2, 3), [], (V1, V2, V3), 2),                                    # ... and an endpoint change since
    ((1, 2, 3), [_op((1, 2, 3), (1, 2, 3, 4), 2, state="failed")], (V1, V2), None),  # started and failed: retried as before
    ((1, 2, 3), [_op((1, 2, 3, 4), (1, 2, 3), 2, by="admin-quorum")], (V1, V2), None),  # an admin chose 1-3 since
    ((1, 2, 3), [_op((1, 2), (1, 2, 3, 4), 2, by="admin-quorum", state="failed")], (V1, V2), 2),  # a failed one changed nothing
    ((1, 2), [], (V1, V2), None),                                        # an admin-chosen committee is left alone
    ((1, 2), [_op((1, 2, 3), (1, 2), 4)], (V1, V2, V3, V4), 2),          # a revocation's drop after the missed follow
    ((1, 2, 3), [], (V1,), None),                                        # no membership change
    ((1, 2, 3), [_op((1, 2), (1, 2, 3), 3, by="admin-quorum")], (V1, V2, V3), None),  # chosen after the change
])
def test_which_follows_were_missed(committee: tuple[int, ...], ops: list[KeyOpRecord], history: tuple[Roster, ...],
                                   missed: int | None) -> None:
    assert _missed_follow(committee, ops, history) == missed
