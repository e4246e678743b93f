"""A compromised coordinator answers a question about one signing request with another one (a
valid, canonical request of its choice): the SDK must refuse it (DATA_LOSS), never sign an
approval over it, and never hand a requester another request's signature as theirs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import SigningRequest
from mpcnet.client.identities import Identity
from mpcnet.client.sdk import MpcClient, MpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2

S = coordinator_pb2
PENDING = S.SIGN_REQUEST_STATE_PENDING_APPROVAL
KEY, DIGEST, OTHER = b"\x01" * 32, b"\x02" * 32, b"\x0e" * 32


def canonical(rid: str, digest: bytes = DIGEST, description: str = "payroll", path: tuple[int, ...] = ()) -> bytes:
    return SigningRequest(rid, KEY, digest, path, "requester1", description, 1, 2**62, 1, bytes(32)).encode()


def info(rid: str, **kw: Any) -> coordinator_pb2.SignRequestInfo:
    return coordinator_pb2.SignRequestInfo(request_id=rid, state=PENDING, request=canonical(rid, **kw), updated_unix_ms=1)


class Stub:
    """Answers every call with ``answer`` (whatever was asked); records decisions it receives."""

    def __init__(self, answer: coordinator_pb2.SignRequestInfo) -> None:
        self.answer = answer
        self.decided: list[Any] = []

    def GetSignRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.SignRequestInfo:
        return self.answer

    def SubmitSignRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.SignRequestInfo:
        return self.answer

    def DecideSignRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.SignRequestInfo:
        self.decided.append(req)
        return self.answer

    def WatchSignRequest(self, req: Any, timeout: float | None = None) -> Any:
        class _S:
            def __iter__(s) -> Any:
                yield self.answer

            def cancel(s) -> None:
                pass

        return _S()


def client(answer: coordinator_pb2.SignRequestInfo) -> tuple[MpcClient, Stub]:
    c = MpcClient.__new__(MpcClient)
    c.timeout = 5.0
    stub = Stub(answer)
    c._stub = stub  # type: ignore[assignment]
    c.identity = Identity("approver1", "approver", None, Ed25519PrivateKey.generate())  # type: ignore[arg-type]
    return c, stub


def test_get_and_watch_refuse_another_request_than_the_one_asked_for() -> None:
    c, _ = client(info("evil-1", digest=OTHER))
    calls: list[Callable[[], object]] = [
        lambda: c.get_sign_request("r-1"), lambda: next(iter(c.watch_sign_request("r-1"))), lambda: c.wait_sign_request("r-1"),
    ]
    for call in calls:
        with pytest.raises(MpcError) as e:
            call()
        assert e.value.code == grpc.StatusCode.DATA_LOSS and "r-1" in e.value.message and "evil-1" in e.value.message


def test_approve_signs_nothing_for_another_request_than_the_one_named() -> None:
    c, stub = client(info("evil-1", digest=OTHER))
    with pytest.raises(MpcError) as e:
        c.approve("r-1")
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert stub.decided == []  # no approval over the substituted request was signed or sent


@pytest.mark.parametrize("answer", [
    info("r-1", digest=OTHER),  # another digest under the id asked for
    info("r-1", description="something else"),
    info("r-1", path=(7,)),
    info("other-id"),  # the idempotency key asked for was not used
])
def test_submit_refuses_a_request_that_is_not_the_one_submitted(answer: coordinator_pb2.SignRequestInfo) -> None:
    c, _ = client(answer)
    with pytest.raises(MpcError) as e:
        c.submit_sign_request(KEY, DIGEST, description="payroll", request_id="r-1")
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_submit_accepts_the_request_it_asked_for() -> None:
    c, _ = client(info("r-1"))
    assert c.submit_sign_request(KEY, DIGEST, description="payroll", request_id="r-1").request.digest == DIGEST
    c, _ = client(info("server-chosen"))
    assert c.submit_sign_request(KEY.hex(), DIGEST, description="payroll").request_id == "server-chosen"
