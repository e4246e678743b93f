"""A signing whose coordinator cannot write its database for a while (disk full) is resumed once a
write succeeds again, and the request ends DONE with its signature; it must not end FAILED
``internal error (OperationalError)``.

Found on a real cluster (the coordinator's data directory a full tmpfs while three FROST
signatures were on their way, node 1 delayed after its nonce consume): FrostSigning's
bookkeeping after the signature (``set_nonce_outcomes``) failed, the signing thread logged a
traceback and ended every request FAILED with INTERNAL, although the signature existed and the
nodes' nonces were consumed. The signer here stands for any signing path (FROST, presigned,
full protocol) whose own writes fail; a resumed signing asks it again, as after a restart (nodes
replay what they consumed).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from coordinator import requests
from governance.errors import GovernanceError
from tests.coordinator.signreq_util import Harness


@pytest.mark.parametrize("error", [
    lambda: sqlite3.OperationalError("database or disk is full"),
    lambda: OSError(28, "No space left on device"),
    lambda: GovernanceError("database", "database or disk is full"),
], ids=["database", "oserror", "audit-log"])
def test_a_signing_stopped_by_a_full_disk_resumes_and_ends_done(tmp_path: Path, monkeypatch, error) -> None:
    monkeypatch.setattr(requests, "STORE_RETRY_S", 0.01)
    h = Harness(tmp_path)
    calls: list[str] = []
    real = h._sign

    def sign(rid, *a):  # type: ignore[no-untyped-def]
        calls.append(rid)
        if len(calls) <= 2:  # the signing path's own writes fail twice (the disk is full)
            raise error()
        return real(rid, *a)

    h.sr.signer = sign
    sreq = h.submit("req-full-1")
    h.decide(sreq, "alice")
    h.decide(sreq, "bert")  # the quorum: the signing runs inline (Harness._inline)
    rec = h.db.get_sign_request("req-full-1")
    assert rec is not None and rec.state == "done", (rec.state if rec else None, rec.error_message if rec else None)
    assert calls == ["req-full-1"] * 3


def test_any_other_error_still_fails_the_request(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def sign(rid, *a):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    h.sr.signer = sign
    sreq = h.submit("req-bug-1")
    h.decide(sreq, "alice")
    h.decide(sreq, "bert")
    rec = h.db.get_sign_request("req-bug-1")
    assert rec is not None and rec.state == "failed" and "internal error (RuntimeError)" in rec.error_message


def test_a_stopping_coordinator_leaves_the_request_signing_for_the_next_start(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(requests, "STORE_RETRY_S", 0.05)
    h = Harness(tmp_path)
    failed = threading.Event()

    def sign(rid, *a):  # type: ignore[no-untyped-def]
        failed.set()
        h.sr._stop.set()  # the coordinator stops while the disk is full
        raise sqlite3.OperationalError("database or disk is full")

    h.sr.signer = sign
    sreq = h.submit("req-stop-1")
    h.decide(sreq, "alice")
    h.decide(sreq, "bert")
    assert failed.is_set()
    rec = h.db.get_sign_request("req-stop-1")
    assert rec is not None and rec.state == "signing"


def _no_such_table() -> sqlite3.OperationalError:
    try:
        sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")
    except sqlite3.OperationalError as e:
        return e
    raise AssertionError("unreachable")


@pytest.mark.parametrize("error", [
    _no_such_table,  # the program's own SQL error (SQLITE_ERROR): no write ever fixes it
    lambda: TimeoutError("a future timed out"),  # an OSError subclass, not the disk
    lambda: ConnectionRefusedError(111, "Connection refused"),  # likewise
], ids=["sql-error", "timeout", "connection"])
def test_an_error_that_no_write_fixes_fails_the_request_at_once(tmp_path: Path, monkeypatch, error) -> None:
    """Regression (review of e59d352): every ``sqlite3.OperationalError`` and ``OSError`` counted as
    the store failing, so a signing stopped by an SQL error of the program or a network
    ``TimeoutError``/``ConnectionError`` was retried every 30 s for ever (request SIGNING, its
    worker thread held) instead of ending FAILED."""
    monkeypatch.setattr(requests, "STORE_RETRY_S", 0.01)
    h = Harness(tmp_path)
    calls: list[str] = []

    def sign(rid, *a):  # type: ignore[no-untyped-def]
        calls.append(rid)
        if len(calls) >= 3:
            h.sr._stop.set()  # retried: end the loop so that the assertion below reports it
        raise error()

    h.sr.signer = sign
    sreq = h.submit("req-bug-2")
    h.decide(sreq, "alice")
    h.decide(sreq, "bert")
    rec = h.db.get_sign_request("req-bug-2")
    assert calls == ["req-bug-2"]
    assert rec is not None and rec.state == "failed" and "internal error" in rec.error_message


def test_the_end_of_a_signing_is_not_retried_for_ever_on_an_error_that_no_write_fixes(tmp_path: Path, monkeypatch) -> None:
    """Sibling (``_record_end``): the DONE transition retried every ``sqlite3.OperationalError``
    and ``OSError`` once a second for ever, an SQL error of the program too. Now only a store
    failure is retried; anything else ends the request FAILED (internal error)."""
    h = Harness(tmp_path)
    real = h.db.transition
    calls: list[str] = []

    def transition(rid, states, state, **kw):  # type: ignore[no-untyped-def]
        if state == "done":
            calls.append(rid)
            if len(calls) >= 3:
                h.sr._stop.set()  # retried: end the loop so that the assertion below reports it
            raise _no_such_table()
        return real(rid, states, state, **kw)

    monkeypatch.setattr(h.db, "transition", transition)
    sreq = h.submit("req-bug-3")
    h.decide(sreq, "alice")
    h.decide(sreq, "bert")
    rec = h.db.get_sign_request("req-bug-3")
    assert calls == ["req-bug-3"]
    assert rec is not None and rec.state == "failed" and "internal error (OperationalError)" in rec.error_message
