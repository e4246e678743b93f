"""A node's refresh schedule is not shortened by a wall clock stepped back across its restart
(p16 review, newuser).

The node judges an unsigned (scheduled) refresh due by its expiry clock minus the share's wall
stamp ``key_epochs.changed_ms``; the expiry clock adopts the wall clock again at each start, so a
node restarted with its clock a day back refused the coordinator's due refresh ("not due") for a
day more, and again after each such restart. The store now keeps the steady time of the share's
last change (``key_epoch_steady``, schema step 13) and the age is the larger of the two."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mpc_node.epoch_store import KeyEpoch
from mpc_node.epochs import EpochService
from mpc_node.storage import NodeStore
from tests.steady_fake import FakeSteady

PASS = b"pw"
N = 2**10
T0 = 1_750_000_000_000
DAY_MS = 86_400_000
PERIOD_S = 3_600
KID = b"\x07" * 32


def _schedule(store: NodeStore, wall_ms: int) -> object:
    node = SimpleNamespace(
        gov=SimpleNamespace(policy_for=lambda key_id: ("default", SimpleNamespace(refresh_period_s=PERIOD_S))),
        expiry_clock=SimpleNamespace(now_ms=lambda: wall_ms),
        store=store,
    )
    held = KeyEpoch(KID, b"\x02" * 33, "k", 0, 2, (1, 2, 3), "active", T0)
    return EpochService(node).schedule(held)  # type: ignore[arg-type]


def test_a_step_back_across_a_restart_does_not_postpone_a_due_refresh(tmp_path: Path) -> None:
    steady = FakeSteady(T0)
    with NodeStore.open(tmp_path / "n.db", PASS, 1, scrypt_n=N, steady=steady.source()) as s, s._write() as c:
        s.set_key_committee(c, KID, (1, 2, 3))
    steady.ms += PERIOD_S * 1000 + 1000  # the node is down an hour; its wall clock is set back a day
    with NodeStore.open(tmp_path / "n.db", PASS, 1, scrypt_n=N, steady=steady.source()) as s:
        assert s.key_change_age_ms(KID) == PERIOD_S * 1000 + 1000
        sched = _schedule(s, T0 + PERIOD_S * 1000 + 1000 - DAY_MS)
        assert sched is not None and sched.due  # type: ignore[attr-defined]


def test_not_due_before_its_period_by_either_clock(tmp_path: Path) -> None:
    steady = FakeSteady(T0)
    with NodeStore.open(tmp_path / "n.db", PASS, 1, scrypt_n=N, steady=steady.source()) as s, s._write() as c:
        s.set_key_committee(c, KID, (1, 2, 3))
    steady.ms += 60_000
    with NodeStore.open(tmp_path / "n.db", PASS, 1, scrypt_n=N, steady=steady.source()) as s:
        sched = _schedule(s, T0 + 60_000 - DAY_MS)
        assert sched is not None and not sched.due  # type: ignore[attr-defined]


def test_a_share_without_the_record_is_judged_by_its_wall_stamp(tmp_path: Path) -> None:
    with NodeStore.open(tmp_path / "n.db", PASS, 1, scrypt_n=N, steady=FakeSteady(T0).source()) as s:
        assert s.key_change_age_ms(KID) is None
        sched = _schedule(s, T0 + PERIOD_S * 1000 + 1000)
        assert sched is not None and sched.due  # type: ignore[attr-defined]
