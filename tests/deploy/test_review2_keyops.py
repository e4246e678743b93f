"""Review 2 (issue 13): the coordinator's retry of a failed roster-implied reshare that added nodes.

Finding (fixed, medium): node 4 is added while its operator has not started it, so the key's
roster-implied reshare to nodes 1-4 fails; then node 3 is revoked. The revocation's reshare drops
node 3 and adds nobody (right: a revoked node's share must go first, even with node 4 down), but
afterwards the key (committee 1, 2, threshold 2) was never reshared to node 4: the background
retry looked only at the newest operation, a done drop, and took the committee for an
admin-chosen one. The key stayed on two nodes (no redundancy) while the roster says 1, 2, 4.
Now a done roster-implied drop that followed such a failed follow keeps the key following the
roster: once every active node answers it is reshared to the active nodes. An admin-chosen
committee (its newest add was admin-signed) still stays as chosen; the retry never runs while
another operation of the key is live, and one of a key that moved on (another epoch) is not retried.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import coordinator.keyops as keyops
from coordinator.keyop_store import KeyOpRecord
from coordinator.keyops import KeyOperations
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation

NOW = 1_900_000_000_000
KEY = b"\x01" * 32
ROSTER: Any = SimpleNamespace()  # the roster in force (active_entries is patched)


def _op(old: tuple[int, ...], new: tuple[int, ...], epoch: int, state: str, by: str = "roster", age: int = 1000) -> KeyOpRecord:
    from crypto_core.group import G

    op = KeyOperation(b"\x02" * 32, bytes([epoch]) * 16, KeyOpKind.RESHARE, KEY, G.encode(), b"\x04" * 32, epoch, 2, old, 2,
                      new, 2, "roster")
    return KeyOpRecord(f"op-{epoch}-{state}", KEY, SignedKeyOperation(op).to_bytes(), by, state, b"", (), (), (), "", 0,
                       NOW - age, NOW - age)


def _coordinator(ops: list[KeyOpRecord], epoch: int, committee: tuple[int, ...], healthy: dict[int, bool]) -> Any:
    started: list[bytes] = []

    def start(key_id: bytes, roster: Any) -> str:
        started.append(key_id)
        return "new-op"

    fake = SimpleNamespace(
        db=SimpleNamespace(
            expiry_ms=lambda wall: wall,  # the wall clock, never stepped here
            list_keys=lambda state: [SimpleNamespace(key_id=KEY, scheme="ecdsa-secp256k1")],
            list_key_operations=lambda key_id: ops,
        ),
        epoch_of=lambda k: (epoch, committee), nodes={i: SimpleNamespace(healthy=h) for i, h in healthy.items()},
        start_roster_implied=start,
    )
    fake._failed_follow = lambda ops, epoch: KeyOperations._failed_follow(fake, ops, epoch)  # type: ignore[arg-type]
    fake._op = lambda rec: SignedKeyOperation.from_bytes(rec.signed).operation
    return fake


@pytest.fixture(autouse=True)
def _roster_124(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyops, "active_entries", lambda roster: [SimpleNamespace(index=i) for i in (1, 2, 4)])
    monkeypatch.setattr(keyops, "now_ms", lambda: NOW)


FOLLOW_FAILED = _op((1, 2, 3), (1, 2, 3, 4), 3, "failed", age=5000)
DROP_3 = _op((1, 2, 3), (1, 2), 3, "done")


@pytest.mark.parametrize(("ops", "node4", "starts"), [
    ([FOLLOW_FAILED, DROP_3], True, True),        # the follow the revocation interrupted: resumed once node 4 answers
    ([FOLLOW_FAILED, DROP_3], False, False),      # not while node 4 does not answer
    ([DROP_3], True, False),                      # a drop alone: the committee was the admins' choice
    ([_op((1, 2, 3), (1, 2, 3, 4), 3, "failed", by="admin-quorum"), DROP_3], True, False),  # an admin's add: as chosen
    ([_op((1, 2, 3), (1, 2, 3, 4), 2, "failed"), DROP_3], True, False),  # a follow from another epoch than the drop's
    ([FOLLOW_FAILED, _op((1, 2, 3), (1, 2), 3, "failed")], True, False),  # a failed drop is no resumed follow
    ([FOLLOW_FAILED, _op((1, 2, 3), (1, 2), 3, "running")], True, False),  # a live operation: never two at once
])
def test_a_follow_interrupted_by_a_revocation_is_resumed(ops: list[KeyOpRecord], node4: bool, starts: bool) -> None:
    fake = _coordinator(ops, 4, (1, 2), {1: True, 2: True, 4: node4})
    assert (KeyOperations.reconcile(fake, ROSTER, backoff_ms=30_000) == ["new-op"]) is starts


def test_a_key_that_moved_on_since_the_drop_is_not_resumed() -> None:
    """The drop's result is not the key's epoch (e.g. a restore since): no resumption."""
    fake = _coordinator([FOLLOW_FAILED, DROP_3], 7, (1, 2), {1: True, 2: True, 4: True})
    assert KeyOperations.reconcile(fake, ROSTER, backoff_ms=30_000) == []


# --- the nodes' side: the resumed follow must not be refused as "no roster change adds it" --------


def test_a_drop_or_a_refresh_keeps_the_committee_anchor_so_the_resumed_follow_is_accepted() -> None:
    """Node 4 joined at roster version 2 (the failed follow's), node 3 was revoked at version 3.
    The drop recorded version 3 as the one that set the committee, so every node refused the
    resumed follow (PERMISSION_DENIED: node 4 'was in the roster when the committee was set').
    An unsigned operation that adds nobody now keeps the anchor; an admin's choice still sets it."""
    from crypto_core.group import G
    from mpc_node.keyops import _check_implied, anchor_after
    from mpcnet.common.rpc import RpcError

    def op(old: tuple[int, ...], new: tuple[int, ...], version: int, kind: KeyOpKind = KeyOpKind.RESHARE) -> KeyOperation:
        return KeyOperation(b"\x02" * 32, b"\x05" * 16, kind, KEY, G.encode(), b"\x04" * 32, 4, 2, old, 2, new, version, "r")

    drop, resumed = op((1, 2, 3), (1, 2), 3), op((1, 2), (1, 2, 4), 3)
    joined = {1: 1, 2: 1, 3: 1, 4: 2}
    assert anchor_after(drop, "roster", 1) == 1 and anchor_after(drop, "roster", None) == 0
    assert anchor_after(op((1, 2), (1, 2), 5, KeyOpKind.REFRESH), "schedule", 1) == 1
    _check_implied(resumed, 1, joined)  # accepted: node 4 joined after the committee was set
    with pytest.raises(RpcError):
        _check_implied(resumed, anchor_after(drop, "admin-quorum", 1), joined)  # an admin's drop is a choice: refused
    assert anchor_after(resumed, "roster", 1) == 3  # a follow that adds sets it
