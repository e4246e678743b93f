"""Issue 14 (lean path): a :class:`SigningTeam` asks the deciding approval's answer to carry
DONE (``wait_done_ms``) and opens no watch when it does; it watches when the answer is SIGNING;
``decide_wait_ms = 0`` is the earlier flow (answer SIGNING, then watch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from mpcnet.client import TEAM_DECIDE_WAIT_MS, SigningTeam


@dataclass
class Answer:
    state: str
    request_id: str = "r-1"


@dataclass
class Requester:
    timeout: float = 5.0
    watched: list[str] = field(default_factory=list)

    def submit_sign_request(self, key_id: Any, digest: Any, **kw: Any) -> Answer:
        return Answer("pending_approval")

    def wait_sign_request(self, rid: str, timeout: float | None = None) -> Answer:
        self.watched.append(rid)
        return Answer("done")


@dataclass
class Approver:
    answer: str
    waits: list[int] = field(default_factory=list)

    def approve(self, rid: str, *, seen: Any = None, wait_done_ms: int = 0) -> Answer:
        self.waits.append(wait_done_ms)
        return Answer(self.answer)


@pytest.mark.parametrize("deciding,watches", [("done", 0), ("signing", 1)])
def test_the_deciding_answer_replaces_the_watch_when_it_carries_done(deciding: str, watches: int) -> None:
    req, a1, a2 = Requester(), Approver("pending_approval"), Approver(deciding)
    team = SigningTeam(req, [a1, a2])  # type: ignore[list-item,arg-type]
    assert team.request(b"\x01" * 32, b"\x02" * 32).state == "done"
    assert a1.waits == a2.waits == [TEAM_DECIDE_WAIT_MS]
    assert len(req.watched) == watches


def test_decide_wait_0_is_the_earlier_flow() -> None:
    req, a1, a2 = Requester(), Approver("pending_approval"), Approver("signing")
    team = SigningTeam(req, [a1, a2])  # type: ignore[list-item,arg-type]
    team.decide_wait_ms = 0
    assert team.request(b"\x01" * 32, b"\x02" * 32).state == "done"
    assert a2.waits == [0] and req.watched == ["r-1"]


def test_watched_counts_the_requests_that_needed_a_watch() -> None:
    req, a1, a2 = Requester(), Approver("pending_approval"), Approver("signing")
    team = SigningTeam(req, [a1, a2])  # type: ignore[list-item,arg-type]
    assert team.watched == 0
    team.request(b"\x01" * 32, b"\x02" * 32)
    a2.answer = "done"
    team.request(b"\x01" * 32, b"\x02" * 32)
    assert team.watched == 1


def test_watched_is_exact_under_concurrency() -> None:
    import threading

    req, a1, a2 = Requester(), Approver("pending_approval"), Approver("signing")
    team = SigningTeam(req, [a1, a2])  # type: ignore[list-item,arg-type]

    def run() -> None:
        for _ in range(200):
            team.request(b"\x01" * 32, b"\x02" * 32)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert team.watched == 1600
