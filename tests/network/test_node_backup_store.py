"""The node's backup/recovery tables (mpc_node.backup_store): append-only chains and orders, one
part per (key, epoch, configuration), restored shares sealed and never next to a live share,
erased by the commit of the key's next epoch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mpc_node.backup_store import BackupStateError, RestoredKey, StoredOrder
from mpc_node.epoch_store import PendingEpoch
from mpc_node.storage import NodeStore

PASS = b"store passphrase"
KEY = b"k" * 32
PUB = b"\x02" + b"p" * 32


def _open(tmp_path: Path, node: int = 2) -> NodeStore:
    return NodeStore.open(tmp_path / "s.db", PASS, node, scrypt_n=2**10)


def _restored(order: bytes = b"o" * 16, epoch: int = 3) -> RestoredKey:
    return RestoredKey(KEY, epoch, 2, (1, 2, 3), PUB, "treasury", order, b"signed receipt")


def test_recovery_config_chain_is_append_only_and_compare_and_set(tmp_path: Path) -> None:
    with _open(tmp_path) as st:
        assert st.recovery_config_changes() == []
        st.put_recovery_config_changes(1, [b"v1", b"v2"])
        with pytest.raises(BackupStateError, match="stored version is 2, expected 0"):
            st.put_recovery_config_changes(1, [b"other"])
        st.put_recovery_config_changes(3, [b"v3"])
        assert st.recovery_config_changes() == [b"v1", b"v2", b"v3"]
        with st._write() as c, pytest.raises(sqlite3.IntegrityError, match="final"):
            c.execute("DELETE FROM recovery_config_changes WHERE version = 1")
        assert st.recovery_config_changes() == [b"v1", b"v2", b"v3"]


def test_first_backup_part_wins(tmp_path: Path) -> None:
    with _open(tmp_path) as st:
        assert st.backup_part(KEY, 0, 1) is None
        assert st.put_backup_part(KEY, 0, 1, b"first") == b"first"
        assert st.put_backup_part(KEY, 0, 1, b"second") == b"first"  # every call answers the same part
        assert st.put_backup_part(KEY, 0, 2, b"new config") == b"new config"
        assert st.backup_part(KEY, 0, 1) == b"first"


def test_orders_are_idempotent_and_final(tmp_path: Path) -> None:
    with _open(tmp_path) as st:
        o = StoredOrder(b"o" * 16, "restore", KEY, b"follow-up op", b"signed order")
        assert st.put_recovery_order(o) is True
        assert st.put_recovery_order(o) is False
        with pytest.raises(BackupStateError, match="another recovery order"):
            st.put_recovery_order(StoredOrder(b"o" * 16, "restore", KEY, b"follow-up op", b"another signed order"))
        st.put_recovery_order(StoredOrder(b"e" * 16, "export", KEY, b"", b"export order"))
        assert [x.kind for x in st.recovery_orders_for(KEY)] == ["restore", "export"]
        assert st.recovery_order(b"o" * 16) == o and st.recovery_orders_for(b"z" * 32) == []


def test_restored_share_is_sealed_refused_next_to_a_live_share_and_erased_at_commit(tmp_path: Path) -> None:
    with _open(tmp_path) as st:
        st.put_restored_share(_restored(), b"RECOVERED-SHARE-RECORD")
        rk = st.restored_key(KEY)
        assert rk == _restored() and st.restored_share(KEY) == b"RECOVERED-SHARE-RECORD"
        with st._read() as c:
            raw = bytes(c.execute("SELECT record FROM restored_shares").fetchone()[0])
        assert b"RECOVERED-SHARE-RECORD" not in raw  # sealed (AES-GCM under the store key)
        with pytest.raises(BackupStateError, match="already holds a restored share of key .* at epoch 3, not 2"):
            st.put_restored_share(_restored(b"x" * 16, epoch=2), b"other epoch")
        st.put_restored_share(_restored(b"x" * 16), b"RECOVERED-SHARE-RECORD")  # a later order of the same epoch replaces it
        assert st.restored_key(KEY) == _restored(b"x" * 16)
        # the follow-up refresh leaves a pending share; its commit makes the key live and erases the restored one
        st.put_pending_epoch(PendingEpoch(KEY, b"s" * 32, 4, 2, (1, 2, 3), b"d" * 32, b"receipt", False, True, False), b"new share")
        out = st.commit_epoch(KEY, b"s" * 32, label="treasury", public_key=PUB, epoch=4)
        assert out.holds_share and out.epoch == 4
        assert st.restored_key(KEY) is None and st.restored_share(KEY) is None
        assert st.get_key_share(KEY) == b"new share"


def test_a_live_share_is_never_replaced_by_a_restore(tmp_path: Path) -> None:
    with _open(tmp_path) as st:
        st.put_key_share(KEY, b"share", label="treasury", public_key=PUB, threshold=2, parties=3)
        with pytest.raises(BackupStateError, match="a live share is never replaced"):
            st.put_restored_share(_restored(), b"record")
        assert st.restored_key(KEY) is None


def test_a_restored_blob_moved_to_another_node_does_not_decrypt(tmp_path: Path) -> None:
    with _open(tmp_path, node=2) as st:
        st.put_restored_share(_restored(), b"record")
        with st._read() as c:
            blob = bytes(c.execute("SELECT record FROM restored_shares").fetchone()[0])
    from mpc_node.backup_store import KIND_RESTORED_SHARE
    from mpc_node.storage import StoreError

    with NodeStore.open(tmp_path / "other.db", PASS, 3, scrypt_n=2**10) as other, pytest.raises(StoreError, match="does not decrypt"):
        other._unseal(KIND_RESTORED_SHARE, KEY, blob)
