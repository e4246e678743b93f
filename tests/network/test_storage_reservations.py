"""NodeStore: reserved signing attempts and served (request, attempt) records."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from mpc_node.storage import (
    NodeStore,
    RateLimited,
    RequestAlreadyServed,
    Reservation,
    ReservationConflict,
    ServedRequest,
    StoreError,
)

from .test_storage import KEY_ID, _id, _open, _put_active

NOW = 1_750_000_000_000
RD = _id(77)


def res(rid: str = "r", attempt: int = 1, signers: tuple[int, ...] = (1, 2), sid: bytes = _id(50)) -> Reservation:
    return Reservation(rid, attempt, KEY_ID, RD, signers, sid, NOW)


def served(rid: str, r: Reservation | None, now: int = NOW, limit: tuple[int, int] | None = (2, 60_000)) -> ServedRequest:
    return ServedRequest(rid, KEY_ID, _id(9), now, limit, r)


@pytest.fixture
def store(tmp_path: Path):
    s = _open(tmp_path / "node.db")
    _put_active(s)
    for i in range(10):
        s.put_presignature(_id(i), KEY_ID, b"fresh")
    yield s
    s.close()


def test_an_attempt_is_granted_once_to_one_signer_set_and_session(store: NodeStore) -> None:
    assert store.reservation("r", 1) is None
    assert store.reserve_attempt(res()) is True
    assert store.reserve_attempt(res()) is False  # idempotent for the very same grant
    assert store.reservation("r", 1) == res()
    for other in (res(signers=(1, 3)), res(sid=_id(51)), dataclasses.replace(res(), request_digest=_id(78))):
        with pytest.raises(ReservationConflict, match=r"^attempt: attempt 1 of request 'r' is already reserved for signers \[1, 2\]"):
            store.reserve_attempt(other)
    assert store.reservation("r", 1) == res()
    assert store.reserve_attempt(res(attempt=2, signers=(1, 3), sid=_id(51))) is True
    for bad, text in ((res(attempt=4), "reservation.attempt"), (res(attempt=0), "reservation.attempt"),
                      (res(signers=(2, 1)), "reservation.signers"), (res(sid=b"x"), "reservation.session_id")):
        with pytest.raises(StoreError, match=f"^{text}"):
            store.reserve_attempt(bad)


def test_a_share_is_served_once_per_attempt_and_the_request_counts_once(store: NodeStore) -> None:
    store.consume_presignature(_id(0), b"tomb", request=served("r", res()))
    assert store.served_attempts("r") == [1] and store.reservation("r", 1) == res()
    # the same attempt again (another presignature): refused, nothing consumed
    with pytest.raises(RequestAlreadyServed, match="^request_id: 'r' attempt 1 was already served"):
        store.consume_presignature(_id(1), b"tomb", request=served("r", res(), NOW + 1))
    assert store.get_presignature(_id(1)) == (b"fresh", False)
    # a later attempt of the same request by another signer set: served, counted once for the limit
    store.consume_presignature(_id(1), b"tomb", request=served("r", res(attempt=2, signers=(2, 3), sid=_id(52)), NOW + 2))
    assert store.served_attempts("r") == [1, 2] and store.served_times(KEY_ID, NOW - 1) == [NOW]
    store.consume_presignature(_id(2), b"tomb", request=served("s", res("s"), NOW + 3))
    # the limit (2 per minute) is reached for new requests, not for another attempt of a served one
    with pytest.raises(RateLimited):
        store.consume_presignature(_id(3), b"tomb", request=served("t", res("t"), NOW + 4))
    assert store.reservation("t", 1) is None and store.served_attempts("t") == []  # rolled back
    store.consume_presignature(_id(3), b"tomb", request=served("r", res(attempt=3, sid=_id(53)), NOW + 5))
    assert store.served_attempts("r") == [1, 2, 3]


def test_serving_an_attempt_granted_to_others_is_refused(store: NodeStore) -> None:
    store.reserve_attempt(res(signers=(2, 3)))
    with pytest.raises(ReservationConflict):
        store.consume_presignature(_id(0), b"tomb", request=served("r", res()))
    assert store.get_presignature(_id(0)) == (b"fresh", False) and store.served_attempts("r") == []
    assert not store.request_served("r")
    with pytest.raises(StoreError, match="^reservation: is for another request"):
        store.consume_presignature(_id(0), b"tomb", request=served("other", res()))


def test_reservations_and_served_attempts_cannot_be_changed(tmp_path: Path, store: NodeStore) -> None:
    store.consume_presignature(_id(0), b"tomb", request=served("r", res()))
    direct = sqlite3.connect(tmp_path / "node.db")
    try:
        for sql in ("UPDATE reservations SET signers = '1,3'", "DELETE FROM reservations",
                    "UPDATE served_attempts SET attempt = 2", "DELETE FROM served_attempts"):
            with pytest.raises(sqlite3.IntegrityError, match="final"):
                direct.execute(sql)
    finally:
        direct.close()


def test_concurrent_grants_of_one_attempt_agree_on_a_single_winner(tmp_path: Path) -> None:
    first, second = _open(tmp_path / "node.db"), _open(tmp_path / "node.db")
    try:
        winners: list[tuple[int, ...]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def worker(n: int) -> None:
            s = first if n % 2 else second
            barrier.wait()
            try:
                s.reserve_attempt(res(signers=(1, 2 + n), sid=_id(100 + n)))
            except ReservationConflict:
                return
            with lock:
                winners.append((1, 2 + n))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
        got = first.reservation("r", 1)
        assert got is not None and got.signers == winners[0]
    finally:
        first.close()
        second.close()


def test_a_request_served_before_attempts_were_counted_is_never_served_again(store: NodeStore) -> None:
    """A request recorded as served without any served attempt (by a node of the version before
    signing attempts; the store upgrade keeps the row) was served once for good: a compromised
    coordinator replaying its still unexpired approvals after the upgrade gets no attempt of it."""
    store.record_request("old", KEY_ID, _id(9))
    with pytest.raises(RequestAlreadyServed, match=r"^request_id: 'old' was already served"):
        store.consume_presignature(_id(0), b"tomb", request=served("old", res("old")))
    assert store.served_attempts("old") == []
