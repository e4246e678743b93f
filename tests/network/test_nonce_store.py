"""The node's FROST nonce store (issue 16, mpc_node/nonce_store.py): sealed at rest, one-time.

Store-level: the records are opaque bytes here (the node's MakeNonces stores
``SigningNonces.to_bytes()``); a property test runs random interleavings of batches, consumes
and discards against a model: a nonce is consumed at most once, its share is the first
consumer's for good, a discard or a retirement never deletes a used one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from mpc_node.nonce_store import FreshNonce, NonceError, NonceInfo
from mpc_node.storage import NodeStore, RequestAlreadyServed, Reservation, ServedRequest, StoreError

from ..conftest import scaled

PASS = b"store passphrase"
KEY = bytes(range(32))
PK = b"\x11" * 32  # an ed25519 group key encoding (the store only checks its length)


def _open(path: Path) -> NodeStore:
    s = NodeStore.open(path, PASS, 1, scrypt_n=2**10)
    if not s.list_keys():
        s.put_key_share(KEY, b"frost record", label="f", public_key=PK, threshold=2, parties=3, scheme="ed25519")
        s.activate_key(KEY)
    return s


def _batch(n: int, epoch: int = 0) -> list[FreshNonce]:
    return [
        FreshNonce(NonceInfo(os.urandom(32), KEY, epoch, 1, os.urandom(32), os.urandom(32), 1000), b"secret-" + os.urandom(16))
        for _ in range(n)
    ]


def _served(rid: str, attempt: int = 1) -> ServedRequest:
    res = Reservation(rid, attempt, KEY, b"\x07" * 32, (1, 2), b"\x05" * 32, 1000)
    return ServedRequest(rid, KEY, b"\x09" * 32, 1000, (1000, 60_000), res)


def _entry():
    from mpc_node.audit_outbox import OutboxEntry

    return OutboxEntry("coordinator", "sign-share", "", "released", {})


def test_a_key_row_keeps_its_scheme_and_its_length(tmp_path) -> None:
    with _open(tmp_path / "s.db") as s:
        assert [(k.scheme, k.public_key) for k in s.list_keys()] == [("ed25519", PK)]
        with pytest.raises(StoreError, match="public_key"):
            s.put_key_share(os.urandom(32), b"r", label="x", public_key=b"\x02" * 32, threshold=2, parties=3)  # ECDSA: 33
        with pytest.raises(StoreError, match="scheme"):
            s.put_key_share(os.urandom(32), b"r", label="x", public_key=PK, threshold=2, parties=3, scheme="rsa")


def test_nonces_are_sealed_bound_to_key_and_id_and_their_secret_is_gone_once_used(tmp_path) -> None:
    with _open(tmp_path / "s.db") as s:
        a, b = _batch(2)
        s.put_nonces(KEY, 0, [a, b], cap=10)
        info, record = s.frost_nonce(a.info.nonce_id)
        assert record == a.record and not info.used and s.count_fresh_nonces(KEY) == 2
        with s._write() as c:  # a sealed blob moved to another row does not decrypt
            blob = c.execute("SELECT record FROM frost_nonces WHERE nonce_id = ?", (a.info.nonce_id,)).fetchone()[0]
            c.execute("UPDATE frost_nonces SET record = ? WHERE nonce_id = ?", (blob, b.info.nonce_id))
        with pytest.raises(StoreError, match="does not decrypt"):
            s.frost_nonce(b.info.nonce_id)
        s.consume_nonce(a.info.nonce_id, b"z" * 32, package_sha256=bytes(32), epoch=0, served=_served("r-1"), audit=_entry)
        info, record = s.frost_nonce(a.info.nonce_id)
        assert info.used and record is None and (info.request_id, info.attempt) == ("r-1", 1)
        with s._read() as c:
            assert c.execute("SELECT record FROM frost_nonces WHERE nonce_id = ?", (a.info.nonce_id,)).fetchone()[0] is None
        assert s.nonce_share(a.info.nonce_id, "r-1", 1) == b"z" * 32 and s.nonce_share(a.info.nonce_id, "r-1", 2) is None
        with pytest.raises(StoreError), s._write() as c:  # the schema keeps a used row: no un-use, no delete
            c.execute("DELETE FROM frost_nonces WHERE nonce_id = ?", (a.info.nonce_id,))


def test_batches_are_all_or_nothing_within_the_cap_and_at_the_active_epoch(tmp_path) -> None:
    with _open(tmp_path / "s.db") as s:
        s.put_nonces(KEY, 0, _batch(3), cap=4)
        with pytest.raises(NonceError) as e:
            s.put_nonces(KEY, 0, _batch(2), cap=4)
        assert e.value.kind == "cap" and s.count_fresh_nonces(KEY) == 3
        with pytest.raises(NonceError) as e:
            s.put_nonces(KEY, 1, _batch(1, epoch=1), cap=10)
        assert e.value.kind == "epoch"
        with pytest.raises(NonceError) as e:
            s.put_nonces(KEY, 0, _batch(1, epoch=1), cap=10)
        assert e.value.kind == "nonce-mismatch" and s.count_fresh_nonces() == 3


def test_retiring_the_key_deletes_its_fresh_nonces_never_a_used_one(tmp_path) -> None:
    with _open(tmp_path / "s.db") as s:
        a, b = _batch(2)
        s.put_nonces(KEY, 0, [a, b], cap=10)
        s.consume_nonce(a.info.nonce_id, b"z" * 32, package_sha256=bytes(32), epoch=0, served=_served("r-1"), audit=_entry)
        assert s.leave_key(KEY, epoch=1, threshold=2, committee=(2, 3, 4))
        assert s.count_fresh_nonces(KEY) == 0 and s.frost_nonce(b.info.nonce_id) is None
        assert s.nonce_share(a.info.nonce_id, "r-1", 1) == b"z" * 32
        assert s.delete_all_fresh_nonces() == 0


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 3)),
        st.tuples(st.just("consume"), st.integers(0, 7), st.sampled_from(["r-a", "r-b", "r-c"]), st.integers(1, 2)),
        st.tuples(st.just("discard"), st.integers(0, 7)),
    ),
    max_size=25,
)


@settings(max_examples=scaled(25))
@given(ops=OPS)
def test_a_nonce_is_consumed_at_most_once_whatever_the_interleaving(tmp_path_factory, ops) -> None:
    with _open(tmp_path_factory.mktemp("n") / "s.db") as s:
        ids: list[bytes] = []
        fresh: set[bytes] = set()
        used: dict[bytes, tuple[str, int, bytes]] = {}
        served: set[tuple[str, int]] = set()
        for op in ops:
            if op[0] == "put":
                batch = _batch(op[1])
                s.put_nonces(KEY, 0, batch, cap=1000)
                ids += [n.info.nonce_id for n in batch]
                fresh |= {n.info.nonce_id for n in batch}
            elif not ids:
                continue
            elif op[0] == "consume":
                nid, rid, attempt = ids[op[1] % len(ids)], op[2], op[3]
                share = os.urandom(32)
                try:
                    s.consume_nonce(nid, share, package_sha256=bytes(32), epoch=0, served=_served(rid, attempt), audit=_entry)
                except NonceError as e:
                    assert e.kind == ("nonce-used" if nid in used else "nonce-unknown")
                except RequestAlreadyServed:
                    assert (rid, attempt) in served and nid in fresh
                else:
                    assert nid in fresh and (rid, attempt) not in served
                    fresh.discard(nid)
                    used[nid] = (rid, attempt, share)
                    served.add((rid, attempt))
            else:
                nid = ids[op[1] % len(ids)]
                n = s.discard_nonces(KEY, (nid,))
                assert n == (1 if nid in fresh else 0)
                fresh.discard(nid)
        assert s.count_fresh_nonces(KEY) == len(fresh)
        for nid, (rid, attempt, share) in used.items():
            assert s.nonce_share(nid, rid, attempt) == share  # the first consumer's, for good
            assert s.frost_nonce(nid)[1] is None
