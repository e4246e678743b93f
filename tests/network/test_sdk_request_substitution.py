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
from mpcnet.client.sdk import MpcClient, MpcError, SignRequest
from mpcnet.wire.mpc.v1 import coordinator_pb2, governance_pb2

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


# --- the same class for keys, policies and policy proposals -----------------------------------


def _admin_client(stub: Any) -> MpcClient:
    from tests.governance.gov_util import ADMIN_KEYS, admin_set

    c = MpcClient.__new__(MpcClient)
    c.timeout = 5.0
    c._stub = stub
    c.identity = Identity("ada", "admin", None, ADMIN_KEYS["ada"])  # type: ignore[arg-type]
    c.admin_set = admin_set()
    c.node_endpoints = {}
    return c


def _signed(scope: bytes, version: int = 1) -> bytes:
    from governance.policy import SignedPolicyChange, sign_policy_change
    from tests.governance.gov_util import ADMIN_KEYS, change, policy

    ch = change(policy(version=version), None, scope=scope)
    return SignedPolicyChange(ch, tuple(sign_policy_change(ch, n, ADMIN_KEYS[n]) for n in ("ada", "bob"))).to_bytes()


def test_approve_policy_signs_nothing_for_another_proposal_than_the_one_named() -> None:
    from governance.policy import SignedPolicyChange
    from tests.governance.gov_util import KEY_ID, OTHER_KEY_ID

    reviewed = SignedPolicyChange.from_bytes(_signed(KEY_ID)).change.digest()[:16].hex()
    evil = SignedPolicyChange.from_bytes(_signed(OTHER_KEY_ID))

    class PStub:
        def __init__(self) -> None:
            self.approved: list[Any] = []

        def GetPolicyProposal(self, req: Any, timeout: float | None = None) -> coordinator_pb2.PolicyProposal:
            return coordinator_pb2.PolicyProposal(  # a valid proposal: but another one
                proposal_id=evil.change.digest()[:16].hex(), state=S.PROPOSAL_STATE_PENDING,
                signed_change=evil.to_bytes(), admin_quorum=2,
            )

        def ApprovePolicyChange(self, req: Any, timeout: float | None = None) -> Any:
            self.approved.append(req)
            raise AssertionError("an admin signature over another proposal was sent")

    stub = PStub()
    c = _admin_client(stub)
    with pytest.raises(MpcError) as e:
        c.approve_policy(reviewed)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and reviewed in e.value.message
    assert stub.approved == []
    with pytest.raises(MpcError) as e:
        c.get_proposal(reviewed)
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_get_key_refuses_another_key() -> None:
    from mpcnet.wire.mpc.v1 import common_pb2

    pk = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")

    class KStub:
        def GetKey(self, req: Any, timeout: float | None = None) -> common_pb2.KeyInfo:
            return common_pb2.KeyInfo(key_id=b"\x09" * 32, public_key=pk, chain_code=bytes(32), threshold=2, parties=3)

    c = _admin_client(KStub())
    with pytest.raises(MpcError) as e:
        c.get_key(b"\x01" * 32)
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert c.get_key(b"\x09" * 32).public_key == pk


@pytest.mark.parametrize("asked,scope,inherited,ok", [
    ("key", "key", False, True),
    ("key", "default", True, True),
    ("default", "default", False, True),
    ("key", "other", False, False),  # another key's policy shown as this key's
    ("key", "default", False, False),  # the default policy shown as the key's own
    ("key", "key", True, False),
    ("default", "key", False, False),  # a key's policy shown as the default
])
def test_get_policy_refuses_another_scopes_policy(asked: str, scope: str, inherited: bool, ok: bool) -> None:
    from governance.policy import DEFAULT_SCOPE
    from tests.governance.gov_util import KEY_ID, OTHER_KEY_ID

    scopes = {"key": KEY_ID, "other": OTHER_KEY_ID, "default": DEFAULT_SCOPE}

    class PStub:
        def GetPolicy(self, req: Any, timeout: float | None = None) -> coordinator_pb2.PolicyInfo:
            return coordinator_pb2.PolicyInfo(
                scope=scopes[scope], policy=governance_pb2.PolicyState(signed_change=_signed(scopes[scope])), inherited=inherited,
            )

    c = _admin_client(PStub())
    kid = KEY_ID if asked == "key" else None
    if ok:
        assert c.get_policy(kid).signed_change.change.scope == scopes[scope]
    else:
        with pytest.raises(MpcError) as e:
            c.get_policy(kid)
        assert e.value.code == grpc.StatusCode.DATA_LOSS


# --- a DONE request's signature must be by the key (at the path) the coordinator reports -------


def _done(signer_seed: bytes) -> coordinator_pb2.SignRequestInfo:
    from coincurve import PrivateKey
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from mpcnet.wire.mpc.v1 import common_pb2

    sk = PrivateKey(signer_seed)
    rec = sk.sign_recoverable(DIGEST, hasher=None)
    r, s, v = int.from_bytes(rec[:32], "big"), int.from_bytes(rec[32:64], "big"), rec[64]
    sig = common_pb2.Signature(
        r=rec[:32], s=rec[32:64], recovery_id=v, der=encode_dss_signature(r, s), public_key=sk.public_key.format(compressed=True)
    )
    return coordinator_pb2.SignRequestInfo(
        request_id="r-1", state=S.SIGN_REQUEST_STATE_DONE, request=canonical("r-1"), updated_unix_ms=2, signature=sig, signers=[1, 2],
    )


@pytest.mark.parametrize("signer,ok", [(b"\x11" * 32, True), (b"\x22" * 32, False)])
def test_a_signature_by_another_key_than_the_requests_is_refused(signer: bytes, ok: bool) -> None:
    from coincurve import PrivateKey

    from mpcnet.wire.mpc.v1 import common_pb2

    key_pk = PrivateKey(b"\x11" * 32).public_key.format(compressed=True)  # the key the coordinator reports for KEY

    class DStub(Stub):
        def GetKey(self, req: Any, timeout: float | None = None) -> common_pb2.KeyInfo:
            assert req.key_id == KEY
            return common_pb2.KeyInfo(key_id=KEY, public_key=key_pk, chain_code=bytes(32), threshold=2, parties=3)

    c, _ = client(_done(signer))
    c._stub = DStub(_done(signer))  # type: ignore[assignment]
    calls: list[Callable[[], SignRequest]] = [lambda: c.get_sign_request("r-1"), lambda: c.wait_sign_request("r-1")]
    for call in calls:
        if ok:
            assert call().signature is not None
        else:
            with pytest.raises(MpcError) as e:
                call()
            assert e.value.code == grpc.StatusCode.DATA_LOSS and "signature.public_key" in e.value.message


def test_get_request_refuses_another_request() -> None:
    class RStub:
        def GetRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.RequestStatus:
            return coordinator_pb2.RequestStatus(
                request_id="other", kind=coordinator_pb2.REQUEST_KIND_KEYGEN, state=coordinator_pb2.REQUEST_STATE_SUCCEEDED,
            )

    c, _ = client(info("r-1"))
    c._stub = RStub()  # type: ignore[assignment]
    with pytest.raises(MpcError) as e:
        c.get_request("kg-1")
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert c.get_request("other").request_id == "other"
