"""p16 roster: a coordinator killed after a membership change's roster change committed (the
change in force) but before the reshares it calls for were started has the change's proposal
recorded applied at the next start with nothing run again (cae0db4). A node REVOKED by the change
was caught later by the background reconcile (its committee holds a node no longer active), but a
node ADDED by the change never got its reshares: its keys never reached it. The background pass
(``KeyOperations.reconcile`` over the roster history) now starts every such missed follow, once.

The rule is checked on :func:`coordinator.keyops._missed_follow` directly.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.keyop_store import KeyOpRecord
from coordinator.keyops import _missed_follow
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation
from governance.roster import Roster

N, T = 5, 3


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
