"""A presignature consumed at once is never written (issue 8, item 6).

``NodeStore.put_used_presignature`` stores only the tombstone, with the served request, in one
transaction. To prove that the fresh record's secret scalars never reach the database file or
its WAL, the store's AEAD is replaced by a transparent one, so anything written would be
visible in plain text; a control run through ``put_presignature`` shows the scan finds them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from crypto_core.hazmat.presignature import load_presignature
from mpc_node.presig_store import PoolError
from mpc_node.storage import NodeStore, PresignatureAlreadyUsed, RequestAlreadyServed, ServedRequest, StoreError

from ..crypto.dkg_util import keygen
from ..crypto.sign_util import presign

N = 2**10
PASS = b"store passphrase"


class Transparent:
    """AEAD stand-in that stores plaintext (plus a fake tag), so a file scan sees every write."""

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return data + bytes(16)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return data[:-16]


@pytest.fixture(scope="module")
def material():
    keys = keygen(2, 3)
    pres = presign(keys, (1, 2), session=b"W" * 32, seed=b"store")
    return keys[1], pres[1].to_bytes()


def _store(path: Path, ks) -> NodeStore:
    s = NodeStore.open(path, PASS, 1, scrypt_n=N)
    s._aead = Transparent()  # test only: make every write visible in the files
    s.put_key_share(ks.key_id, b"share record", label="k", public_key=ks.public_key.encode(), threshold=2, parties=3)
    s.activate_key(ks.key_id)
    return s


def _files_contain(path: Path, needles: list[bytes]) -> bool:
    blobs = [p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)]
    return any(n in b for n in needles for b in blobs)


def _secret_bytes(record: bytes) -> list[bytes]:
    pre = load_presignature(record)
    assert pre._secret is not None
    return [v.to_bytes(32, "big") for v in pre._secret]


def test_fresh_record_never_reaches_the_files(tmp_path: Path, material) -> None:
    ks, record = material
    secrets = _secret_bytes(record)
    pre = load_presignature(record)
    tomb = pre.mark_used()

    # control: the old two-step path leaves the secrets in the WAL (or the file)
    control = tmp_path / "control.db"
    with _store(control, ks) as s:
        s.put_presignature(pre.sigid, ks.key_id, record)
        s.consume_presignature(pre.sigid, tomb)
        assert _files_contain(control, secrets)

    db = tmp_path / "node.db"
    with _store(db, ks) as s:
        req = ServedRequest("req-1", ks.key_id, bytes(32), 1_000_000, None)
        s.put_used_presignature(pre.sigid, ks.key_id, tomb, request=req)
        assert not _files_contain(db, secrets)
        assert _files_contain(db, [tomb])  # the scan does see what is written
        assert s.get_presignature(pre.sigid) == (tomb, True)
        assert s.request_served("req-1")
    assert not _files_contain(db, secrets)


def test_put_used_presignature_refuses_and_changes_nothing(tmp_path: Path, material) -> None:
    ks, record = material
    pre = load_presignature(record)
    tomb = pre.mark_used()
    with _store(tmp_path / "node.db", ks) as s:
        s.put_used_presignature(pre.sigid, ks.key_id, tomb, request=ServedRequest("a", ks.key_id, bytes(32), 1, None))
        with pytest.raises(PresignatureAlreadyUsed):  # a sigid is one-time
            s.put_used_presignature(pre.sigid, ks.key_id, tomb)
        with pytest.raises(PresignatureAlreadyUsed):
            s.consume_presignature(pre.sigid, tomb)
        with pytest.raises(StoreError):  # cannot be refilled with a fresh record either
            s.put_presignature(pre.sigid, ks.key_id, record)
        other = bytes([7]) * 32
        with pytest.raises(RequestAlreadyServed):  # served request refused: nothing written
            s.put_used_presignature(other, ks.key_id, tomb, request=ServedRequest("a", ks.key_id, bytes(32), 2, None))
        assert s.get_presignature(other) is None
        with pytest.raises(StoreError, match="key_id"):  # unknown key: nothing written
            s.put_used_presignature(other, bytes(32), tomb, request=ServedRequest("b", ks.key_id, bytes(32), 3, None))
        assert s.get_presignature(other) is None and not s.request_served("b")
        with pytest.raises(StoreError, match="sigid"):
            s.put_used_presignature(b"short", ks.key_id, tomb)
        # the session's share epoch (p14e review): another epoch, or an unknown key, refused before anything is written
        with pytest.raises(PoolError, match="not at epoch 1: nothing released") as e:
            s.put_used_presignature(other, ks.key_id, tomb, request=ServedRequest("c", ks.key_id, bytes(32), 4, None), epoch=1)
        assert e.value.kind == "epoch" and s.get_presignature(other) is None and not s.request_served("c")
        with pytest.raises(PoolError, match="not active here"):
            s.put_used_presignature(other, bytes(32), tomb, epoch=0)
        s.put_used_presignature(other, ks.key_id, tomb, request=ServedRequest("c", ks.key_id, bytes(32), 4, None), epoch=0)
        assert s.request_served("c")


def test_concurrent_put_used_presignature_succeeds_once(tmp_path: Path, material) -> None:
    ks, record = material
    pre = load_presignature(record)
    tomb = pre.mark_used()
    s = _store(tmp_path / "node.db", ks)
    wins, losses = [], []

    def worker(n: int) -> None:
        try:
            s.put_used_presignature(pre.sigid, ks.key_id, tomb, request=ServedRequest(f"r{n}", ks.key_id, bytes(32), n, None))
            wins.append(n)
        except PresignatureAlreadyUsed:
            losses.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert [s.request_served(f"r{n}") for n in range(8)].count(True) == 1  # the losers' requests rolled back
    s.close()
