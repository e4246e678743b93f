"""Issue 14 red team, on real processes: a node's backup state changes (a recovery configuration
installed, a backup part made, a recovery order installed, a share restored) are each ONE transaction with their
audit entry (the store's audit outbox). A node killed right after the commit, before the entry
reached its audit log (test-mode crash point ``audit-queued``), logs the entry exactly once
after its restart (a repeat of the request adds none), and its audit chain verifies."""

from __future__ import annotations

import pytest

from mpcnet.cluster.launcher import Layout
from mpcnet.wire.mpc.v1 import node_pb2

from .audit_crash_util import crash, install_config, make_layout, matching, recovery_config, restart_entries
from .keyops_util import close, services


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_layout(tmp_path_factory.mktemp("backups-audit-crash"))


def test_a_kill_after_a_recovery_config_install_logs_it_once(lay: Layout) -> None:
    crash(lay, "install-recovery-config")
    assert len(matching(restart_entries(lay, 1), "recovery-config", "installed", version=1)) == 1
    svcs = services(lay, only=1)
    try:
        assert len(svcs[1].store.recovery_config_changes()) == 1
        install_config(svcs, recovery_config(lay, svcs), [1])  # the install again: already installed, no entry
    finally:
        close(svcs)
    assert len(matching(restart_entries(lay, 1), "recovery-config", "installed")) == 1


def test_a_kill_after_a_backup_part_is_made_logs_it_once(lay: Layout) -> None:
    key_id = crash(lay, "backup-part")[0]["key_id"]
    assert len(matching(restart_entries(lay, 1), "backup-part", "made", key_id=key_id, epoch=0)) == 1
    svcs = services(lay, only=1)
    try:
        stored = svcs[1].store.backup_part(bytes.fromhex(key_id), 0, 1)
        assert stored is not None
        again = svcs[1].GetBackupPart(node_pb2.GetBackupPartRequest(key_id=bytes.fromhex(key_id), epoch=0), None)
        assert again.signed_part == stored  # the stored part, no second entry
    finally:
        close(svcs)
    assert len(matching(restart_entries(lay, 1), "backup-part", key_id=key_id)) == 1


def test_a_kill_after_a_recovery_order_is_installed_logs_it_once(lay: Layout) -> None:
    said = crash(lay, "recovery-order")[0]
    entries = restart_entries(lay, 1)
    assert len(matching(entries, "recovery-order", "installed", key_id=said["key_id"], order_id=said["order_id"])) == 1
    svcs = services(lay, only=1)
    try:
        assert svcs[1].store.recovery_order(bytes.fromhex(said["order_id"])) is not None
    finally:
        close(svcs)


def test_a_kill_after_a_share_is_restored_logs_it_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    lay = make_layout(tmp_path_factory.mktemp("restore-audit-crash"))  # its own: node 3's store is emptied
    said = crash(lay, "restore-share")[0]
    entries = restart_entries(lay, 3)
    assert len(matching(entries, "share-restored", "restored", key_id=said["key_id"], order_id=said["order_id"])) == 1
    assert len(matching(entries, "recovery-order", "installed", order_id=said["order_id"])) == 1  # committed before it
    svcs = services(lay, only=3)
    try:
        restored = svcs[3].store.restored_key(bytes.fromhex(said["key_id"]))
        assert restored is not None and restored.order_id.hex() == said["order_id"]
    finally:
        close(svcs)
