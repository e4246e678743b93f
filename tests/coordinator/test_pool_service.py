"""CoordinatorService._sign tries the one-round path first (issue 14): its signature is returned
without a session; None (no pool, a fallback) runs the full protocol, whose attempt follows the
one the presignature took."""

from __future__ import annotations

from typing import Any

import coincurve
import pytest

import coordinator.service as service
from coordinator.db import KeyRecord
from coordinator.service import SIGN_RELEASE_ROUND, CoordinatorService
from mpcnet.wire.mpc.v1 import common_pb2

from .test_sign_attempt_taken import _Signed, _svc


class _OneRound:
    def __init__(self, result: Any, svc: Any) -> None:
        self.result, self.svc, self.calls = result, svc, 0

    def sign(self, rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes) -> Any:
        self.calls += 1
        if self.result is None:
            self.svc.db.next_sign_attempt(rid)  # it took attempt 1 and fell back
        return self.result


def _key() -> KeyRecord:
    pub = coincurve.PrivateKey().public_key.format(compressed=True)
    return KeyRecord(b"\x01" * 32, "k", pub, b"\x02" * 32, 2, 3, "active", 0, "r")


def test_a_one_round_signature_is_returned_without_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "run_session", lambda *a, **kw: pytest.fail("no session expected"))
    svc = _svc(3)
    sig = common_pb2.Signature(r=b"\x01" * 32)
    svc.presigned = _OneRound((sig, (1, 2), 1), svc)
    assert CoordinatorService._sign(svc, "req-1", _key(), b"\x03" * 32, (), b"") == (sig, (1, 2), 1)  # type: ignore[arg-type]


def test_a_fallback_runs_the_full_protocol_at_the_next_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def run_session(nodes: dict[int, Any], sid: bytes, start: Any, timeout: float, *, before_step: Any, **_: Any) -> Any:
        attempts.append(before_step(SIGN_RELEASE_ROUND)["attempt"])
        raise _Signed(tuple(sorted(nodes)))

    monkeypatch.setattr(service, "run_session", run_session)
    svc = _svc(3)
    svc.presigned = _OneRound(None, svc)
    with pytest.raises(_Signed):
        CoordinatorService._sign(svc, "req-1", _key(), b"\x03" * 32, (), b"")  # type: ignore[arg-type]
    assert svc.presigned.calls == 1 and attempts == [2]
