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


def test_the_signing_thread_reuses_the_decisions_decoding(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread takes the request from coordinator/request_codec.py (the decision decoded the
    same stored bytes): no fresh decode, and the bundle it sends is the same canonical bytes."""
    from governance.approval import ApprovalBundle, SigningRequest

    sreq = h.submit("hf-2")
    h.decide(sreq, "alice")
    decodes: list[bytes] = []
    fresh = SigningRequest.from_bytes

    def counted(data: bytes) -> SigningRequest:
        decodes.append(bytes(data))
        return fresh(data)

    monkeypatch.setattr(SigningRequest, "from_bytes", staticmethod(counted))
    h.decide(sreq, "bert")
    assert h.db.sign_request_state("hf-2") == "done"
    assert sreq.encode() not in decodes  # neither the decision nor the thread decoded the request afresh
    monkeypatch.undo()
    bundle = ApprovalBundle.from_bytes(h.bundles["hf-2"])
    assert bundle.request == sreq and bundle.to_bytes() == h.bundles["hf-2"]
    assert sorted(a.approver for a in bundle.approvals) == ["alice", "bert"]
