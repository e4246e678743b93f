"""Issue 14 (latency): the deciding approval hands the request to the signing before the audit
flusher's wake-up, the metrics and the log line -- and only after the transaction that moved it
to SIGNING committed with that decision's ``sign-decision`` entry and ``sign-approved`` entry
queued (coordinator/requests.py ``decide``). A decision that does not reach the quorum starts
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.wire.mpc.v1 import coordinator_pb2
from tests.coordinator.signreq_util import Harness

S = coordinator_pb2


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def test_the_signing_starts_after_the_commit_and_before_the_flusher_wakes(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, tuple[str | None, list[tuple[str, str]]] | None]] = []
    start, soon = h.sr._start_signing, h.sr._audit_soon

    def started(rid: str, known: object = None) -> None:
        queued = [(e.audit.action, e.audit.request_id) for e in h.db.pending_audit()]  # committed, not yet appended
        events.append(("start", (h.db.sign_request_state(rid), queued)))
        start(rid, known)  # type: ignore[arg-type]

    def woke() -> None:
        events.append(("soon", None))
        soon()

    monkeypatch.setattr(h.sr, "_start_signing", started)
    monkeypatch.setattr(h.sr, "_audit_soon", woke)
    sreq = h.submit("hf-1")
    events.clear()
    first = h.decide(sreq, "alice")
    assert first.state == S.SIGN_REQUEST_STATE_PENDING_APPROVAL and events == [("soon", None)]  # no quorum: nothing starts
    events.clear()
    h.decide(sreq, "bert")
    assert [e[0] for e in events][:2] == ["start", "soon"]
    seen = events[0][1]
    assert seen is not None
    state, queued = seen
    assert state == "signing"
    assert ("sign-decision", "hf-1") in queued and ("sign-approved", "hf-1") in queued  # in the moving transaction
    assert h.db.sign_request_state("hf-1") == "done" and "hf-1" in h.signed_at
