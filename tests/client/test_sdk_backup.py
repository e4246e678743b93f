"""The SDK side of issue 12 (mpcnet.client.backup) against the in-memory coordinator: what an
admin's approval and an officer's contribution check, and what a lying coordinator gets."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from governance.recovery import Officer
from mpcnet.client.errors import MpcError

from .backup_fake import KEY_ID, RecoveryFake, officer_keys, signed_config
from .lifecycle_fake import admin_client


def configured(fake: RecoveryFake) -> dict[str, tuple[bytes, bytes]]:
    keys = officer_keys()
    fake.config_history.append(signed_config(fake.admins.digest(), keys))
    fake.make_bundle()
    return keys


def test_a_recovery_config_proposal_that_no_longer_extends_the_chain_is_not_signed() -> None:
    fake = RecoveryFake()
    ada, bob = admin_client(fake, "ada"), admin_client(fake, "bob")
    officers = [(n, pub) for n, (_p, pub) in officer_keys().items()]
    first = ada.propose_recovery_config(ada.build_recovery_config(officers, quorum=2, export_quorum=3))
    second = ada.propose_recovery_config(ada.build_recovery_config(officers[:2], quorum=2, export_quorum=3))
    assert bob.approve_lifecycle(first.proposal_id).state == "applied"
    with pytest.raises(MpcError) as e:
        bob.approve_lifecycle(second.proposal_id)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "previous_digest" in e.value.message
    assert "nothing was signed" in e.value.message
    nxt = ada.build_recovery_config(officers[:2], quorum=2, export_quorum=3)
    assert nxt.config.version == 2 and nxt.previous_digest == fake.config_history[0].change.config.digest()
    assert nxt.config.officers == tuple(Officer(n, k) for n, k in officers[:2])


def test_a_restore_order_is_not_signed_once_the_key_moved_on() -> None:
    fake = RecoveryFake()
    configured(fake)
    ada, bob = admin_client(fake, "ada"), admin_client(fake, "bob")
    p = ada.propose_recovery_order(ada.build_recovery_order(KEY_ID, nodes=[2], reason="lost disk"))
    fake.epoch = 1
    with pytest.raises(MpcError) as e:
        bob.approve_lifecycle(p.proposal_id)
    assert "order.epoch" in e.value.message and "ApproveLifecycleProposal" not in fake.calls


def test_an_order_naming_a_bundle_of_an_old_configuration_is_not_signed() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    ada, bob = admin_client(fake, "ada"), admin_client(fake, "bob")
    p = ada.propose_recovery_order(ada.build_recovery_order(KEY_ID, nodes=[1, 5], reason="two hosts gone"))
    first = fake.config_history[0]
    fake.config_history.append(signed_config(fake.admins.digest(), keys, version=2, quorum=3, prev=first.change.config))
    with pytest.raises(MpcError) as e:
        bob.approve_lifecycle(p.proposal_id)
    assert "config_version" in e.value.message and "nothing was signed" in e.value.message


def test_an_order_expires_valid_for_seconds_from_now() -> None:
    fake = RecoveryFake()
    configured(fake)
    ada = admin_client(fake)
    before = int(time.time() * 1000)
    order = ada.build_recovery_order(KEY_ID, nodes=[2], reason="lost disk", valid_for_s=600)
    assert before + 600_000 <= order.expires_ms <= int(time.time() * 1000) + 600_000
    assert ada.build_recovery_order(KEY_ID, nodes=[2], reason="lost disk").expires_ms >= before + 86_400_000  # a day by default
    for bad in (0, -1, 30 * 86_400 + 1, True):
        with pytest.raises(MpcError) as e:
            ada.build_recovery_order(KEY_ID, nodes=[2], reason="x", valid_for_s=bad)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("valid_for:")


def test_a_bundle_of_another_key_or_a_restore_of_a_non_member_is_refused() -> None:
    fake = RecoveryFake(n=4, threshold=3)
    configured(fake)
    ada = admin_client(fake)
    with pytest.raises(MpcError) as e:
        ada.export_backup(b"\x01" * 32)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "bundle.key.key_id" in e.value.message
    with pytest.raises(MpcError) as e:
        ada.build_recovery_order(KEY_ID, nodes=[5], reason="x")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "node 5 holds no share" in e.value.message


def test_a_drill_of_an_old_epoch_bundle_gets_no_pieces() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    c = fake._StartDrill(None)
    fake.epoch = 1
    officer = admin_client(fake)
    officer.identity = type(officer.identity)("officer1", "officer", None, officer.identity.signing_key)  # type: ignore[arg-type,union-attr]
    with pytest.raises(MpcError) as e:
        officer.contribute(bytes(c.ceremony_id), keys["officer1"][0])
    assert "current epoch" in e.value.message and "SubmitRecoveryPieces" not in fake.calls


def test_a_ceremony_whose_order_is_not_the_ceremonys_is_malformed() -> None:
    fake = RecoveryFake()
    configured(fake)
    ada, bob = admin_client(fake, "ada"), admin_client(fake, "bob")
    order = ada.build_recovery_order(KEY_ID, nodes=[3], reason="x")
    bob.approve_lifecycle(ada.propose_recovery_order(order).proposal_id)

    def other_key(c: Any) -> Any:
        c2 = type(c)()
        c2.CopyFrom(c)
        c2.key_id = b"\x02" * 32
        return c2

    fake.evil["GetCeremony"] = other_key
    with pytest.raises(MpcError) as e:
        ada.ceremony(order.order_id)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "signed_order" in e.value.message
