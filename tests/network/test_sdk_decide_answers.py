"""Second attacker round (issue 10): what the coordinator answers to a decision, a submission and
a wait is held to what the client signed or submitted.

* ``approve``/``submit_sign_request`` took a DONE answer's signature without checking it is by the
  request's key (``get``/``watch`` did since the first round): a signature by another key was
  shown as the request's.
* the answer to ``DecideSignRequest`` and every state of a watch are about the request id asked
  for, but their canonical request could be another one under that id (another digest): the
  approver was shown a request other than the one just signed, and a requester's wait ended with
  another digest (and its signature) than the one submitted."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from coincurve import PrivateKey

from mpcnet.client.sdk import MpcError
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2
from tests.network.test_sdk_request_substitution import DIGEST, KEY, OTHER, Stub, _done, client, info

S = coordinator_pb2
KEY_PK = PrivateKey(b"\x11" * 32).public_key.format(compressed=True)  # the key the coordinator reports for KEY


class Answers(Stub):
    """GetSignRequest: the pending request; DecideSignRequest/SubmitSignRequest: ``answer``;
    a watch yields ``stream``."""

    def __init__(self, answer: coordinator_pb2.SignRequestInfo, stream: list[coordinator_pb2.SignRequestInfo] | None = None) -> None:
        super().__init__(answer)
        self.stream = stream or [answer]

    def GetSignRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.SignRequestInfo:
        return info("r-1")

    def GetKey(self, req: Any, timeout: float | None = None) -> common_pb2.KeyInfo:
        return common_pb2.KeyInfo(key_id=KEY, public_key=KEY_PK, chain_code=bytes(32), threshold=2, parties=3)

    def WatchSignRequest(self, req: Any, timeout: float | None = None) -> Any:
        states = self.stream

        class _S:
            def __iter__(s) -> Any:
                yield from states

            def cancel(s) -> None:
                pass

        return _S()


@pytest.mark.parametrize("call", ["approve", "submit"])
@pytest.mark.parametrize("signer,ok", [(b"\x11" * 32, True), (b"\x22" * 32, False)], ids=["its key", "another key"])
def test_approve_and_submit_refuse_a_signature_by_another_key(call: str, signer: bytes, ok: bool) -> None:
    c, _ = client(info("r-1"))
    c._stub = Answers(_done(signer))  # type: ignore[assignment]

    def run() -> Any:
        if call == "approve":
            return c.approve("r-1")
        return c.submit_sign_request(KEY, DIGEST, description="payroll", request_id="r-1")

    if ok:
        assert run().signature is not None
    else:
        with pytest.raises(MpcError) as e:
            run()
        assert e.value.code == grpc.StatusCode.DATA_LOSS and "signature.public_key" in e.value.message


def test_the_answer_to_an_approval_is_the_request_signed() -> None:
    c, _ = client(info("r-1"))
    stub = Answers(info("r-1", digest=OTHER))  # "recorded", but shown with another digest under the id
    c._stub = stub  # type: ignore[assignment]
    with pytest.raises(MpcError) as e:
        c.approve("r-1")
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "request" in e.value.message
    assert len(stub.decided) == 1  # the approval was sent (over the request shown), the answer refused


def test_a_watch_refuses_another_request_under_the_same_id() -> None:
    c, _ = client(info("r-1"))
    ended = info("r-1", digest=OTHER)
    ended.state = S.SIGN_REQUEST_STATE_REJECTED
    c._stub = Answers(info("r-1"), stream=[info("r-1"), ended])  # type: ignore[assignment]
    with pytest.raises(MpcError) as e:
        c.wait_sign_request("r-1")
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_a_wait_after_a_submission_ends_with_the_request_submitted() -> None:
    c, _ = client(info("r-1"))
    ended = info("r-1", digest=OTHER)
    ended.state = S.SIGN_REQUEST_STATE_REJECTED
    c._stub = Answers(info("r-1"), stream=[ended])  # type: ignore[assignment]
    assert c.submit_sign_request(KEY, DIGEST, description="payroll", request_id="r-1").request.digest == DIGEST
    with pytest.raises(MpcError) as e:
        c.wait_sign_request("r-1")
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    honest = info("r-1")
    honest.state = S.SIGN_REQUEST_STATE_REJECTED
    c._stub = Answers(info("r-1"), stream=[info("r-1"), honest])  # type: ignore[assignment]
    assert c.wait_sign_request("r-1").state == "rejected"


class Listing(Answers):
    def ListSignRequests(self, req: Any, timeout: float | None = None) -> Any:
        return S.ListSignRequestsResponse(requests=[info("r-0"), self.answer])


@pytest.mark.parametrize("signer,ok", [(b"\x11" * 32, True), (b"\x22" * 32, False)], ids=["its key", "another key"])
def test_a_list_refuses_a_signature_by_another_key(signer: bytes, ok: bool) -> None:
    """``list_sign_requests`` (``mpc requests --json``, which scripts collect signatures from)
    took a DONE request's signature without checking it is by the request's key, as the single
    views do since the first round."""
    c, _ = client(info("r-1"))
    stub = Listing(_done(signer))
    c._stub = stub  # type: ignore[assignment]
    if ok:
        assert [r.signature is not None for r in c.list_sign_requests()] == [False, True]
    else:
        with pytest.raises(MpcError) as e:
            c.list_sign_requests()
        assert e.value.code == grpc.StatusCode.DATA_LOSS and "signature.public_key" in e.value.message


@pytest.mark.parametrize("case", ["its key", "another key", "another digest"])
def test_get_request_refuses_a_signature_that_is_not_the_requests(case: str) -> None:
    """``get_request`` (what ``mpc request show`` falls back to, JSON with the signature) took the
    signature as sent: neither recovered over the request's digest nor by its key at its path."""
    done = _done(b"\x22" * 32 if case == "another key" else b"\x11" * 32)

    class RStub(Answers):
        def GetRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.RequestStatus:
            return coordinator_pb2.RequestStatus(
                request_id="r-1", kind=coordinator_pb2.REQUEST_KIND_SIGN, state=coordinator_pb2.REQUEST_STATE_SUCCEEDED, key_id=KEY,
                digest=b"\x0f" * 32 if case == "another digest" else DIGEST, signature=done.signature, signers=[1, 2],
            )

    c, _ = client(info("r-1"))
    c._stub = RStub(done)  # type: ignore[assignment]
    if case == "its key":
        assert c.get_request("r-1").signature is not None
    else:
        with pytest.raises(MpcError) as e:
            c.get_request("r-1")
        assert e.value.code == grpc.StatusCode.DATA_LOSS and "signature" in e.value.message
