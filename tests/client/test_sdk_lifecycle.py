"""The SDK's key lifecycle methods (issue 11 item 6) against an in-memory coordinator: roster
verification, key operations built from checked key records, approvals that sign only what the
caller expects, operation views that must match their signed operation."""

from __future__ import annotations

import hashlib

import grpc
import pytest

from governance.keyop import KeyOpKind, SignedKeyOperation
from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change
from mpcnet.client import MpcError
from mpcnet.client.lifecycle import describe_roster_change
from mpcnet.wire.mpc.v1 import coordinator_pb2
from tests.governance.gov_util import ADMIN_KEYS, OTHER_CLUSTER_ID, admin_set

from .lifecycle_fake import KEY_ID, FakeCoordinator, admin_client, entry, sign_both


def test_roster_verifies_the_history_against_the_clients_admin_set() -> None:
    fake = FakeCoordinator()
    view = admin_client(fake).roster()
    assert view.version == 1 and view.active() == (1, 2, 3, 4, 5) and view.revoked() == ()
    assert view.as_dict()["digest"] == view.roster.digest().hex()


def test_roster_signed_by_another_admin_set_is_refused() -> None:
    fake = FakeCoordinator()
    other = admin_set(cluster_id=OTHER_CLUSTER_ID)
    r = fake.history[0].change.new_roster
    change = RosterChange(r, None, other.digest())
    fake.history = [SignedRosterChange(change, tuple(sign_roster_change(change, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))]
    fake.admins = other  # the coordinator claims the other root too
    with pytest.raises(MpcError) as e:
        admin_client(fake).roster()
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "governance_root" in e.value.message


def test_roster_without_quorum_is_refused() -> None:
    fake = FakeCoordinator()
    prev = fake.history[0].change.new_roster
    change = RosterChange(revoke_node(prev, 3), prev.digest(), admin_set().digest())
    fake.history.append(SignedRosterChange(change, (sign_roster_change(change, "ada", ADMIN_KEYS["ada"]),)))
    with pytest.raises(MpcError) as e:
        admin_client(fake).roster()
    assert e.value.code == grpc.StatusCode.DATA_LOSS and e.value.message.startswith("roster.history[1]"), e.value.message


def test_a_rolled_back_roster_is_refused() -> None:
    fake = FakeCoordinator()
    c = admin_client(fake)
    prev = fake.history[0].change.new_roster
    fake.history.append(sign_both(RosterChange(revoke_node(prev, 3), prev.digest(), admin_set().digest())))
    assert c.roster().version == 2
    fake.history.pop()
    with pytest.raises(MpcError) as e:
        c.roster()
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "does not extend" in e.value.message


def test_remove_node_then_approve_applies_and_reshares_nothing_client_side() -> None:
    fake = FakeCoordinator()
    p = admin_client(fake, "ada").remove_node(3)
    assert p.kind == "roster" and p.state == "pending" and p.verified_signers == ("ada",)
    assert describe_roster_change(fake.history[0].change.new_roster, p.signed.change.new_roster) == ["revoke node 3 (node-3)"]  # type: ignore[union-attr]
    done = admin_client(fake, "bob").approve_lifecycle(p.proposal_id, expect_digest=p.digest)
    assert done.state == "applied" and set(done.verified_signers or ()) == {"ada", "bob"}
    assert admin_client(fake).roster().revoked() == (3,)


def test_approve_signs_nothing_for_another_digest_or_a_stale_change() -> None:
    fake = FakeCoordinator()
    p = admin_client(fake, "ada").remove_node(3)
    bob = admin_client(fake, "bob")
    with pytest.raises(MpcError) as e:
        bob.approve_lifecycle(p.proposal_id, expect_digest=hashlib.sha256(b"other").digest())
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "nothing was signed" in e.value.message
    q = admin_client(fake, "ada").remove_node(4)  # both made for version 1
    bob.approve_lifecycle(q.proposal_id)
    with pytest.raises(MpcError) as e:
        bob.approve_lifecycle(p.proposal_id)
    assert "previous_digest" in e.value.message and "nothing was signed" in e.value.message
    assert "propose it again" in e.value.message and "one at a time" in e.value.message  # what a newcomer does next
    assert fake.calls.count("ApproveLifecycleProposal") == 1


def test_approve_refuses_a_proposal_substituted_by_the_coordinator() -> None:
    fake = FakeCoordinator()
    p = admin_client(fake, "ada").remove_node(3)
    q = admin_client(fake, "ada").remove_node(4)
    fake.evil["GetLifecycleProposal"] = lambda _: fake.proposals[q.proposal_id]
    with pytest.raises(MpcError) as e:
        admin_client(fake, "bob").approve_lifecycle(p.proposal_id)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "ApproveLifecycleProposal" not in fake.calls


def test_add_node_refuses_a_reused_index() -> None:
    fake = FakeCoordinator()
    with pytest.raises(MpcError) as e:
        admin_client(fake).add_node(entry(3, seed=99))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("entry.index")
    p = admin_client(fake).add_node(entry(6))
    assert p.signed.change.new_roster.entry(6) is not None  # type: ignore[union-attr]


def test_refresh_builds_the_operation_from_the_key_record_and_the_roster() -> None:
    fake = FakeCoordinator()
    fake.epoch = 4
    p = admin_client(fake, "ada").refresh_key(KEY_ID, reason="quarterly")
    op = p.signed.operation  # type: ignore[union-attr]
    assert (op.kind, op.old_epoch, op.old_committee, op.old_threshold, op.roster_version) == (KeyOpKind.REFRESH, 4, (1, 2, 3, 4, 5), 3, 1)
    assert op.governance_root == admin_set().digest() and op.reason == "quarterly"
    done = admin_client(fake, "bob").approve_lifecycle(p.proposal_id)
    assert done.operations == (p.proposal_id,)
    v = admin_client(fake).wait_key_operation(p.proposal_id, timeout=5)
    assert v.state == "done" and v.operation.new_epoch == 5


def test_reshare_checks_nodes_and_threshold() -> None:
    fake = FakeCoordinator()
    c = admin_client(fake)
    for nodes, threshold, field in (([1, 2, 9], 2, "nodes: node 9"), ([1, 2, 2, 4], 2, "nodes: a node appears twice"),
                                    ([1, 2, 4], 4, "threshold")):
        with pytest.raises(MpcError) as e:
            c.reshare_key(KEY_ID, threshold, nodes)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith(field), e.value.message
    p = c.reshare_key(KEY_ID, 3, [5, 4, 2, 1])
    assert p.signed.operation.new_committee == (1, 2, 4, 5)  # type: ignore[union-attr]
    assert "ProposeKeyOperation" in fake.calls


@pytest.mark.parametrize("lie", ["public_key", "key_id", "no_committee"])
def test_a_key_record_that_does_not_check_out_builds_no_operation(lie: str) -> None:
    fake = FakeCoordinator()
    c = admin_client(fake)
    c.refresh_key(KEY_ID)  # the client has seen the key now
    if lie == "public_key":
        from crypto_core.group import G

        fake.public = (G * 777).encode()
    elif lie == "key_id":
        fake.chain_code = hashlib.sha256(b"other").digest()
    else:
        fake.committee = ()
    fake.calls.clear()
    with pytest.raises(MpcError) as e:
        c.refresh_key(KEY_ID)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and e.value.message.startswith("key."), e.value.message
    assert "ProposeKeyOperation" not in fake.calls


def test_approving_a_stale_key_operation_signs_nothing() -> None:
    fake = FakeCoordinator()
    p = admin_client(fake, "ada").refresh_key(KEY_ID)
    fake.epoch = 1  # the key moved on
    with pytest.raises(MpcError) as e:
        admin_client(fake, "bob").approve_lifecycle(p.proposal_id)
    assert "operation.old_epoch" in e.value.message and "nothing was signed" in e.value.message
    assert "ApproveLifecycleProposal" not in fake.calls


def test_operation_views_must_match_the_signed_operation() -> None:
    fake = FakeCoordinator()
    p = admin_client(fake, "ada").refresh_key(KEY_ID)
    admin_client(fake, "bob").approve_lifecycle(p.proposal_id)

    def lie(s: coordinator_pb2.KeyOperationStatus) -> coordinator_pb2.KeyOperationStatus:
        out = coordinator_pb2.KeyOperationStatus()
        out.CopyFrom(s)
        out.new_epoch = 9
        return out

    fake.evil["GetKeyOperation"] = lie
    with pytest.raises(MpcError) as e:
        admin_client(fake).key_operation(p.proposal_id)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and e.value.message.startswith("operation.new_epoch")
    assert [v.operation_id for v in admin_client(fake).key_operations(KEY_ID)] == [p.proposal_id]


def test_wait_key_operation_times_out_naming_the_state() -> None:
    fake = FakeCoordinator()
    p = admin_client(fake, "ada").refresh_key(KEY_ID)
    admin_client(fake, "bob").approve_lifecycle(p.proposal_id)
    fake.ops[p.proposal_id].state = "committing"
    with pytest.raises(MpcError) as e:
        admin_client(fake).wait_key_operation(p.proposal_id, timeout=0.0, sleep=lambda s: None)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and "still committing" in e.value.message


def test_wait_key_operation_rides_out_a_coordinator_restart() -> None:
    """A coordinator restarting in the middle of the operation (UNAVAILABLE) is waited out, said
    once; before the first answer, or a refusal, is raised."""
    from .lifecycle_fake import FakeRpcError

    fake = FakeCoordinator()
    p = admin_client(fake, "ada").refresh_key(KEY_ID)
    admin_client(fake, "bob").approve_lifecycle(p.proposal_id)
    op = fake.ops[p.proposal_id]
    op.state = "running"
    answers: list[str] = ["ok", "down", "down", "down", "ok-done"]

    def flaky(s: coordinator_pb2.KeyOperationStatus) -> coordinator_pb2.KeyOperationStatus:
        a = answers.pop(0)
        if a == "down":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
        if a == "ok-done":
            s.state = "done"
        return s

    fake.evil["GetKeyOperation"] = flaky
    said: list[str] = []
    v = admin_client(fake).wait_key_operation(p.proposal_id, timeout=60, sleep=lambda s: None, on_retry=said.append)
    assert v.state == "done" and not answers
    assert said == ["UNAVAILABLE: failed to connect to all addresses"]
    answers[:] = ["down"]  # never answered yet: the coordinator is not there at all
    with pytest.raises(MpcError) as e:
        admin_client(fake).wait_key_operation(p.proposal_id, timeout=60, sleep=lambda s: None)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    fake.evil["GetKeyOperation"] = lambda s: (_ for _ in ()).throw(FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "no"))
    with pytest.raises(MpcError) as e:
        admin_client(fake).wait_key_operation(p.proposal_id, timeout=60, sleep=lambda s: None)
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_signed_operation_round_trips() -> None:
    fake = FakeCoordinator()
    p = admin_client(fake, "ada").refresh_key(KEY_ID)
    assert SignedKeyOperation.from_bytes(bytes(fake.proposals[p.proposal_id].signed)).operation == p.signed.operation  # type: ignore[union-attr]


def test_push_roster_does_not_count_an_unreachable_revoked_node_as_a_failure() -> None:
    """'mpc roster push' after 'node remove 3': node 3 is down (mpc-cluster does not start it)
    or refuses; that is no failure, while an active node that cannot be reached still is."""
    from types import SimpleNamespace

    from mpcnet.wire.mpc.v1 import node_pb2

    from .lifecycle_fake import FakeRpcError

    fake = FakeCoordinator()
    prev = fake.history[0].change.new_roster
    fake.history.append(sign_both(RosterChange(revoke_node(prev, 3), prev.digest(), admin_set().digest())))
    c = admin_client(fake)

    def held(req: object, timeout: float | None = None) -> object:
        return node_pb2.RosterHistory(signed_changes=[h.to_bytes() for h in fake.history])

    def down(req: object, timeout: float | None = None) -> object:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect")

    stubs = {"node-1": SimpleNamespace(GetRoster=held), "node-2": SimpleNamespace(GetRoster=down),
             "node-3": SimpleNamespace(GetRoster=down)}
    c._nodes = lambda: list(stubs)  # type: ignore[method-assign]
    c._node_stub = lambda name: stubs[name]  # type: ignore[method-assign,assignment,return-value]
    out = c.push_roster()
    assert out == {"node-1": "already", "node-2": "error: UNAVAILABLE: failed to connect",
                   "node-3": "revoked, not reached: UNAVAILABLE: failed to connect"}


def test_rotate_keys_names_the_node_that_does_not_answer() -> None:
    """Dialled directly, a node that hangs is named (the CLI would otherwise blame the coordinator)."""
    from pathlib import Path
    from types import SimpleNamespace

    from mpcnet.common.pki import CertPaths

    from .lifecycle_fake import FakeRpcError

    def hangs(req: object, timeout: float | None = None) -> object:
        raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    c = admin_client(FakeCoordinator())
    c.node_endpoints = {"node-2": "localhost:1"}
    c._node_stub = lambda name: SimpleNamespace(PrepareKeyRotation=hangs)  # type: ignore[method-assign,assignment,return-value]
    with pytest.raises(MpcError) as e:
        c.rotate_node_keys(2, CertPaths(Path("ca.pem"), Path("ca.key")))
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert e.value.message.startswith("node 2 ('node-2'): Deadline Exceeded (is it running?"), e.value.message
