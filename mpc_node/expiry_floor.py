"""The node's expiry clock, started from a persisted floor, and ``mpc-node reset-clock-floor``.

Expiry (approvals', requests' ``expires_at_ms``, attestations' maximum age, recovery orders) is
judged by :class:`mpcnet.common.steadyclock.ExpiryClock`. Started from the wall clock alone, a
wall clock stepped back (NTP spoofing) and a restart would revive what had expired. So the clock's
value is persisted as a floor in the store (the reserved ``steady_anchors`` row
:data:`~mpcnet.common.steadyclock.WALL_FLOOR_ROW`, relative to the store's steady time): at each
periodic store probe, at start and at a clean stop. At start the clock begins at the later of the
wall clock and the floor + the steady time since it was marked (after a reboot: the uptime the
store had marked; never the downtime). Fail-safe: a clock that was wrongly ahead keeps the node
judging expiry by that time (things expire early) until the operator runs, the node stopped::

    mpc-node reset-clock-floor --config FILE

which sets the floor to the wall clock now, with its ``reset-clock-floor`` audit entry in the same
transaction (delivered to the audit log before the command returns).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import click

from governance.errors import GovernanceError
from mpc_node import audit_outbox
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.config import NodeConfig, load_node_config
from mpc_node.storage import STEADY_FLOOR_SQL, NodeStore, StoreError, _connect as connect_store
from mpc_node.store_rekey import deliver_outbox
from mpcnet.common.cliutil import Failed, PathArg
from mpcnet.common.config import ConfigError
from mpcnet.common.datadir import DataDirBusy, hold_data_dirs
from mpcnet.common.datadir_check import start_failure
from mpcnet.common.keystore import KeystoreError
from mpcnet.common.keystore_lock import hold_keystore
from mpcnet.common.pkcs11token import TokenError
from mpcnet.common.protection import open_operational_keys
from mpcnet.common.steadyclock import ExpiryClock, SteadyClockError, SteadySource, anchor, mark_wall_floor, read_wall_floor
from mpcnet.common.stores.audit import AuditLog
from mpcnet.common.stores.sqlite import write_transaction

log = logging.getLogger("mpc_node.expiry_floor")
RESET_COMMAND = "mpc-node reset-clock-floor --config FILE"


def start_expiry_clock(store: NodeStore, wall_ms: Callable[[], int], tolerance_ms: int) -> ExpiryClock:
    """The node's expiry clock, started from the store's floor (see the module doc), which it then
    keeps current (:attr:`NodeStore.expiry_now`, marked now). Logs one WARNING when the floor is
    ahead of the wall clock by more than ``tolerance_ms`` (ms). Raises :class:`StoreError`."""
    clock = ExpiryClock.start(wall_ms, store.steady.now_ms, store.expiry_floor())
    behind = behind_ms(clock, clock.wall_ms(), tolerance_ms)
    if behind:
        log.warning(
            "the wall clock is %.3f s behind the last time this node saw: it judges expiry by its last seen time "
            "(a clock that was wrongly ahead: stop the node and run %s)", behind / 1000, RESET_COMMAND,
        )
    store.expiry_now = clock.now_ms
    try:
        store.mark_expiry_floor()
    except StoreError as e:  # a full disk: the periodic store probe marks it (and reports the store)
        log.warning("expiry floor not marked at start (the store probe retries): %s", e)
    return clock


def behind_ms(clock: ExpiryClock, wall_ms: int, tolerance_ms: int) -> int:
    """How far (ms) the wall reading ``wall_ms`` is behind ``clock``, if more than ``tolerance_ms``; else 0."""
    behind = clock.at(wall_ms) - wall_ms
    return behind if behind > tolerance_ms else 0


def behind_note(clock: ExpiryClock, wall_ms: int, tolerance_ms: int) -> str:
    """The health reason while the wall clock is behind the expiry clock (beyond tolerance), else ""."""
    behind = behind_ms(clock, wall_ms, tolerance_ms)
    if not behind:
        return ""
    return f"wall clock {behind / 1000:.3f} s behind the last time this node saw: it judges expiry by its last seen time"


def reset_floor(cfg: NodeConfig, wall_ms: int, steady: SteadySource | None = None) -> tuple[int | None, int]:
    """Set the expiry floor of the (stopped) node's store to ``wall_ms`` (ms since the epoch), with
    the ``reset-clock-floor`` audit entry in the same transaction, then deliver the store's audit
    outbox to the audit log. Returns (the floor before, ms since the epoch, or None; the new one).
    Raises :class:`Failed` (no store), :class:`StoreError`, or the keystore/token/log errors."""
    if not cfg.store.exists() or cfg.store.stat().st_size == 0:
        raise Failed(f"store {cfg.store}: no store yet (nothing to reset)")
    keys = open_operational_keys(cfg.keystore, cfg.protection)  # before any change: the entry must be appendable
    conn = connect_store(cfg.store)
    try:
        try:
            clock = anchor(conn, steady or SteadySource(), STEADY_FLOOR_SQL)
            steady_now = clock.now_ms()
            with write_transaction(conn) as c:
                held = read_wall_floor(c)
                before = None if held is None else steady_now + held
                mark_wall_floor(c, wall_ms, steady_now, reset=True)
                details: dict[str, str | int | bool] = {"floor_ms": wall_ms}
                if before is not None:
                    details["previous_floor_ms"] = before
                audit_outbox.queue(c, OutboxEntry(cfg.name, "reset-clock-floor", "", "ok", details), wall_ms)
        except SteadyClockError as e:
            raise StoreError(str(e)) from None
        except sqlite3.Error as e:
            raise StoreError.of_database(e) from None
    finally:
        conn.close()
    try:
        with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity) as audit:
            deliver_outbox(cfg.store, audit)
    except GovernanceError as e:
        raise Failed(f"audit log {cfg.audit_db}: {e} (the entry stays queued: the node appends it at start)") from None
    return before, wall_ms


@click.command(name="reset-clock-floor", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=PathArg("FILE"), required=True, help="the node's config file")
def reset_clock_floor_command(config: Path) -> int:
    """Reset the node's expiry floor to the wall clock now (the node stopped): for a clock that was wrongly ahead."""
    loaded: NodeConfig | None = None
    try:
        cfg = loaded = load_node_config(config)
        with hold_data_dirs((cfg.store.parent, cfg.audit_db.parent), files=(cfg.store, cfg.audit_db)), \
                hold_keystore(cfg.keystore):
            before, after = reset_floor(cfg, time.time_ns() // 1_000_000)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    except DataDirBusy as e:
        raise Failed(f"{e} (is the node running? stop it first)") from None
    except (KeystoreError, StoreError, TokenError, OSError) as e:
        unusable = start_failure((loaded.store.parent, loaded.audit_db.parent), e) if loaded is not None else None
        raise Failed(str(unusable or e)) from None
    if before is None:
        click.echo(f"{cfg.name}: expiry floor set to the wall clock now (there was none)")
    else:
        click.echo(f"{cfg.name}: expiry floor reset to the wall clock now ({(before - after) / 1000:+.3f} s from before)")
    return 0
