"""The SDK's view of presignature pools (issue 14) and the lean client path (survey R13), against
fake coordinator answers (no cluster: the coordinator's pool side is built on another branch).

* ``PresignStatus``/``PoolView`` read ``ClusterStatusResponse.pools`` and ``presign_enabled``; a
  malformed pool (key id length, signer set, hardened path) is DATA_LOSS naming the field; an
  older coordinator (no pool fields) reads as disabled with no pools.
* ``Key.presignatures_ready`` and ``SignRequest.presigned`` come from the wire.
* ``SigningTeam.request`` hands the submitted request to the approvers: no GetSignRequest, and
  an approver still refuses a ``seen`` request other than the one named.
* ``check_approval_once`` skips a repeated check only for the same policy, request and approval.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc
import pytest

from governance.approval import Approval, Decision
from governance.errors import GovernanceError
from mpcnet.client import PoolView, PresignStatus, SigningTeam, approval_cache
from mpcnet.client.sdk import Key, MpcError, SignRequest
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2
from tests.governance.gov_util import approve, policy, request
from tests.network.test_sdk_request_substitution import client, info

KID = bytes(range(32))
PK = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")


def _pool(**kw: Any) -> coordinator_pb2.PoolStatus:
    fields: dict[str, Any] = dict(key_id=KID, epoch=2, derivation_path=[0, 7], signers=[1, 3], ready=5, assigned=1,
                                  filling=4, target=8, refill_at=4, cap=32, used_total=9, discarded_total=2)
    fields.update(kw)
    return coordinator_pb2.PoolStatus(**fields)


def test_pools_read_from_the_cluster_status() -> None:
    st = coordinator_pb2.ClusterStatusResponse(presign_enabled=True, pools=[_pool(), _pool(signers=[2, 3], ready=8, derivation_path=[])])
    ps = PresignStatus.from_proto(st)
    assert ps.enabled and len(ps.pools) == 2
    p = ps.pools[0]
    assert (p.key_id, p.epoch, p.derivation_path, p.signers) == (KID, 2, (0, 7), (1, 3))
    assert (p.ready, p.assigned, p.filling, p.target, p.refill_at, p.cap) == (5, 1, 4, 8, 4, 32)
    assert p.path_text == "m/0/7" and ps.pools[1].path_text == "m" and not p.full and ps.pools[1].full
    assert ps.ready() == 13 and ps.ready(KID) == 13 and ps.ready(bytes(32)) == 0 and len(ps.of_key(KID)) == 2
    d = ps.as_dict()
    assert d["presign_enabled"] is True and d["pools"][0] == {
        "key_id": KID.hex(), "epoch": 2, "path": "m/0/7", "signers": [1, 3], "ready": 5, "assigned": 1, "filling": 4,
        "target": 8, "refill_at": 4, "cap": 32, "used_total": 9, "discarded_total": 2,
    }


def test_an_older_coordinator_reads_as_pools_disabled() -> None:
    ps = PresignStatus.from_proto(coordinator_pb2.ClusterStatusResponse(threshold=2, parties=3))
    assert ps == PresignStatus(False, ())


@pytest.mark.parametrize("bad,field", [
    (dict(key_id=b"\x01" * 31), "pools.key_id"),
    (dict(signers=[]), "pools.signers"),
    (dict(signers=[3, 1]), "pools.signers"),
    (dict(signers=[2, 2]), "pools.signers"),
    (dict(signers=[0, 1]), "pools.signers"),
    (dict(derivation_path=[2**31]), "pools.derivation_path"),
])
def test_a_malformed_pool_is_data_loss_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(MpcError) as e:
        PresignStatus.from_proto(coordinator_pb2.ClusterStatusResponse(pools=[_pool(**bad)]))
    assert e.value.code == grpc.StatusCode.DATA_LOSS and e.value.message.startswith(field + ":")


def test_too_many_pools_is_data_loss() -> None:
    from mpcnet.client.pools import MAX_POOLS_SHOWN

    st = coordinator_pb2.ClusterStatusResponse(pools=[_pool()] * (MAX_POOLS_SHOWN + 1))
    with pytest.raises(MpcError) as e:
        PresignStatus.from_proto(st)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and e.value.message.startswith("pools:")


def test_pool_view_is_frozen_and_typed() -> None:
    p = PoolView.from_proto(_pool())
    with pytest.raises(AttributeError):
        p.ready = 3  # type: ignore[misc]


def test_key_and_request_carry_the_pool_fields() -> None:
    k = Key.from_proto(common_pb2.KeyInfo(key_id=KID, public_key=PK, chain_code=bytes(32), threshold=2, parties=3,
                                          presignatures_ready=7))
    assert k.presignatures_ready == 7
    assert Key.from_proto(common_pb2.KeyInfo(key_id=KID, public_key=PK, chain_code=bytes(32))).presignatures_ready == 0
    msg = info("r-1")
    assert SignRequest.from_proto(msg).presigned is False
    msg.presigned = True
    r = SignRequest.from_proto(msg)
    assert r.presigned is True and r.as_dict()["presigned"] is True


class _Requester:
    def __init__(self, submitted: SignRequest) -> None:
        self.submitted = submitted
        self.timeout = 5.0

    def submit_sign_request(self, *a: Any, **kw: Any) -> SignRequest:
        return self.submitted


def test_signing_team_approvers_sign_the_submitted_request_without_fetching_it() -> None:
    c, stub = client(info("r-1"))
    gets: list[str] = []

    def get(req: Any, timeout: float | None = None) -> coordinator_pb2.SignRequestInfo:
        gets.append(req.request_id)
        return info("r-1")

    stub.GetSignRequest = get  # type: ignore[method-assign]
    submitted = SignRequest.from_proto(info("r-1"))
    done = info("r-1")
    done.state = coordinator_pb2.SIGN_REQUEST_STATE_REJECTED  # a final state: no wait follows
    stub.answer = done
    team = SigningTeam(_Requester(submitted), [c])  # type: ignore[arg-type]
    r = team.request(KID, b"\x02" * 32)
    assert r.state == "rejected" and gets == []
    assert len(stub.decided) == 1 and stub.decided[0].request_id == "r-1"


def test_an_approver_refuses_a_seen_request_other_than_the_one_named() -> None:
    c, stub = client(info("r-1"))
    with pytest.raises(MpcError) as e:
        c.approve("r-1", seen=SignRequest.from_proto(info("evil-1")))
    assert e.value.code == grpc.StatusCode.DATA_LOSS and stub.decided == []
    ok = SignRequest.from_proto(info("r-1"))
    forged = replace(ok, request=SignRequest.from_proto(info("r-1", digest=b"\x0e" * 32)).request)  # bytes of one, object of another
    with pytest.raises(MpcError) as e:
        c.approve("r-1", seen=forged)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("seen:") and stub.decided == []
    c.approve("r-1", seen=ok)  # pinned: another digest under r-1 is refused next
    with pytest.raises(MpcError) as e:
        c.approve("r-1", seen=SignRequest.from_proto(info("r-1", digest=b"\x0e" * 32)))
    assert e.value.code == grpc.StatusCode.DATA_LOSS and len(stub.decided) == 1


def test_an_approval_is_verified_once_and_a_failure_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    approval_cache.forget()
    calls: list[str] = []
    real = approval_cache.check_approval  # type: ignore[attr-defined]

    def counted(p: Any, q: Any, a: Approval) -> None:
        calls.append(a.approver)
        real(p, q, a)

    monkeypatch.setattr(approval_cache, "check_approval", counted)
    pol, req = policy(), request()
    good = approve(req, "alice")[0]
    approval_cache.check_approval_once(pol, req, good)
    approval_cache.check_approval_once(pol, req, good)
    assert calls == ["alice"]
    bad = Approval("bert", Decision.APPROVE, good.signature)  # alice's signature under bert's name
    for _ in range(2):
        with pytest.raises(GovernanceError):
            approval_cache.check_approval_once(pol, req, bad)
    assert calls == ["alice", "bert", "bert"]
    # the same approval under another policy or over another request is checked again
    with pytest.raises(GovernanceError):
        approval_cache.check_approval_once(policy(approvers=("bert", "carol")), req, good)
    with pytest.raises(GovernanceError):
        approval_cache.check_approval_once(pol, request(request_id="req_0002"), good)
    assert calls == ["alice", "bert", "bert", "alice", "alice"]
