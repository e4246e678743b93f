"""Background refills stand aside for foreground operations (coordinator.foreground): the
presignature refiller starts no presign session for a key with a recorded or running key
operation, none on a node a foreground operation holds, reconciles no held node, and resumes
(woken at once) when the hold ends; the FROST nonce refill makes no nonces for a held key or on
a held node."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from coordinator.foreground import Foreground
from coordinator.frost_sign import REFILL_TARGET

from .frost_util import KEY_ID, frost_cluster
from .pool_util import Cluster, cluster


def _aside(c: Cluster, fg: Foreground, recorded: set[bytes]) -> None:
    """Wire the pools as the service does: keys with a recorded operation or held, nodes held."""
    c.pools.deps = dataclasses.replace(c.pools.deps, stand_aside=lambda: (frozenset(recorded) | fg.keys_held(), fg.nodes_held()))
    fg.listen(c.pools.wake)


def _pools(c: Cluster) -> list[tuple[int, ...]]:
    return [p[3] for _, p, _ in c.pools.due()]


def test_the_refiller_starts_nothing_for_a_key_with_a_key_operation_and_resumes_after(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    fg = Foreground()
    recorded: set[bytes] = set()
    _aside(c, fg, recorded)
    assert _pools(c) == [(1, 2), (1, 3)]  # empty pools: both due
    recorded.add(c.key.key_id)  # the operation is recorded (state running), its session not yet started
    assert _pools(c) == []
    recorded.clear()
    with fg.hold("key operation x", keys=(c.key.key_id,)):
        assert _pools(c) == []
        c.pools._wake.clear()
        c.pools.step()  # a whole pass: no presign session starts
        assert c.pools._inflight == 0 and c.pools._filling == {}
        assert not c.pools._wake.is_set()
    assert c.pools._wake.is_set()  # the end of the hold wakes the refiller: it refills at once
    assert _pools(c) == [(1, 2), (1, 3)]


def test_a_pool_topping_up_when_its_key_was_held_resumes_topping_up(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    fg = Foreground()
    _aside(c, fg, set())
    c.presign((1, 2), 9)  # above refill_at 8: not due ...
    c.pools._topping.add((c.key.key_id, 0, (), (1, 2)))  # ... but it fell to refill_at before: topping up to 16
    with fg.hold("key operation x", keys=(c.key.key_id,)):
        assert _pools(c) == []
    assert (1, 2) in _pools(c)  # still topping up after the hold


def test_no_presign_session_on_a_node_a_foreground_operation_holds(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    fg = Foreground()
    _aside(c, fg, set())
    with fg.hold("ceremony c", nodes=(3,)):
        assert _pools(c) == [(1, 2)]  # the other preferred set waits; no other set is started instead
    with fg.hold("keygen request r", nodes=(1, 2, 3)):
        assert _pools(c) == []
    assert _pools(c) == [(1, 2), (1, 3)]


def test_sessions_running_when_a_hold_starts_finish(tmp_path: Path) -> None:
    """A presign session already running is never cut: the hold only stops new ones."""
    c = cluster(tmp_path)
    fg = Foreground()
    _aside(c, fg, set())
    with c.pools._lock:  # one session of (1, 2) is filling
        c.pools._filling[(c.key.key_id, 0, (), (1, 2))] = 8
    with fg.hold("key operation x", keys=(c.key.key_id,)):
        assert c.pools._filling == {(c.key.key_id, 0, (), (1, 2)): 8}


def test_no_reconcile_of_a_held_node_until_the_hold_ends(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    fg = Foreground()
    _aside(c, fg, set())
    with fg.hold("ceremony c", nodes=(2,)):
        c.pools.reconcile_due()
        assert set(c.pools._reconciled) == {1, 3}
    c.pools.reconcile_due()
    assert set(c.pools._reconciled) == {1, 2, 3}


def test_the_frost_nonce_refill_stands_aside_for_a_held_key_and_held_nodes(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path)
    fg = Foreground()
    c.signing.deps = dataclasses.replace(c.signing.deps, stand_aside=lambda: (fg.keys_held(), fg.nodes_held()))
    with fg.hold("key operation x", keys=(KEY_ID,)):
        assert c.signing.refill() == 0 and c.db.fresh_nonce_counts(KEY_ID, 0) == {}
    with fg.hold("ceremony c", nodes=(2,)):
        assert c.signing.refill() > 0
        assert set(c.db.fresh_nonce_counts(KEY_ID, 0)) == {1, 3}
    assert c.signing.refill() > 0  # after it: node 2 too
    counts = c.db.fresh_nonce_counts(KEY_ID, 0)
    assert set(counts) == {1, 2, 3} and all(v >= REFILL_TARGET for v in counts.values())


def test_stand_aside_is_read_once_per_pass(tmp_path: Path) -> None:
    """One pass reads what is held once (not per pool): a hold that starts during a pass applies
    from the next pass, and the read is cheap."""
    c = cluster(tmp_path)
    calls: list[float] = []

    def aside() -> tuple[frozenset[bytes], frozenset[int]]:
        calls.append(time.monotonic())
        return frozenset(), frozenset()

    c.pools.deps = dataclasses.replace(c.pools.deps, stand_aside=aside)
    c.pools.due()
    assert len(calls) == 1
