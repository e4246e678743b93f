"""An attacker's review of the backup formats and cryptography (issue 12): a coordinator that
hands nodes and officers crafted key records, targets, bundles, rosters and orders must not get a
node to back up a record that cannot be restored, an officer to send a piece to a key it chose,
or anyone to act on an order for another bundle; malformed input raises only the documented
error classes. The finding tests failed before their fixes; the robustness properties
(mutated bundles, age files, deliveries) guard behaviour that was already right."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from governance.keyop import KeyOperation, KeyOpKind
from governance.recovery import PiecePurpose, RecoveryOrder, RecoveryOrderKind, RecoveryTarget
from governance.roster import change_endpoint, revoke_node, rotate_keys
from mpcnet.common import agekeys
from mpcnet.common.backup import make_part, officer_check, officer_deliveries, open_deliveries
from mpcnet.common.bundle import (
    BundleError,
    assemble_bundle,
    ceremony_targets,
    check_order_bundle,
    read_bundle,
    verify_bundle,
)

from ..conftest import scaled
from .bundle_util import (
    ADMINS,
    CREATED_MS,
    HISTORY,
    NODE_ENCRYPTION,
    NODE_IDENTITY,
    OFFICER_KEYS,
    ROOT,
    ROSTER_1,
    ROSTER_2,
    signed_roster,
    world,
)

CEREMONY = bytes(range(16))
ORDER_EXPIRES_MS = 4_102_444_800_000  # 2100-01-01: the test orders do not expire
W = world()  # 2-of-3, committee (1, 2, 4), 3 officers, quorum 2


def test_make_part_refuses_a_key_record_with_another_label() -> None:
    """The key label is part of every refresh/reshare configuration digest: a bundle whose record
    carries another label verifies, drills and restores, but the restored share can never deal
    in the follow-up operation. A node must not sign such a record."""
    relabelled = dataclasses.replace(W.key, label="not-the-label")
    with pytest.raises(BundleError) as e:
        make_part(W.shares[1], node=1, roster_version=1, governance_root=ROOT, config_change=W.config, key=relabelled,
                  identity=NODE_IDENTITY[1], now_ms=1)
    assert e.value.field == "key.label"


@pytest.mark.parametrize("bad", [True, "1", "\x1b[2J", 1.0])
def test_officer_deliveries_refuses_a_share_index_that_is_no_int(bad: object) -> None:
    """``True == 1`` in Python: a target keyed ``True`` must not be taken for share 1, and caller
    text must not reach the error's field unescaped."""
    target = {bad: agekeys.public_key(NODE_ENCRYPTION[1])}
    with pytest.raises(BundleError) as e:
        officer_deliveries(W.bundle, OFFICER_KEYS[1], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL, targets=target)  # type: ignore[arg-type]
    assert e.value.field == "targets"


def follow_up(**changes: Any) -> KeyOperation:
    k = W.key
    op = KeyOperation(ROOT, b"\x07" * 16, KeyOpKind.REFRESH, k.key_id, k.public_key, k.chain_code, k.epoch, k.threshold,
                      k.committee, k.threshold, k.committee, 2, "after restore")
    return dataclasses.replace(op, **changes)


def restore_order(**changes: Any) -> RecoveryOrder:
    k = W.key
    op = follow_up()
    base = RecoveryOrder(ROOT, b"\x05" * 16, RecoveryOrderKind.RESTORE, k.key_id, k.public_key, k.chain_code, k.epoch,
                         W.bundle.digest(), 1, 2, (RecoveryTarget(2, 2), RecoveryTarget(3, 4)), b"", op, "lost nodes 2 and 4",
                         ORDER_EXPIRES_MS)
    return dataclasses.replace(base, **changes)


def export_order(**changes: Any) -> RecoveryOrder:
    k = W.key
    base = RecoveryOrder(ROOT, b"\x06" * 16, RecoveryOrderKind.EXPORT, k.key_id, k.public_key, k.chain_code, k.epoch,
                         W.bundle.digest(), 1, 2, (RecoveryTarget(1, 0), RecoveryTarget(2, 0)),
                         agekeys.public_key(OFFICER_KEYS[5]), None, "migrate away", ORDER_EXPIRES_MS)
    return dataclasses.replace(base, **changes)


def test_an_order_for_the_bundle_passes() -> None:
    check_order_bundle(restore_order(), W.bundle)
    check_order_bundle(export_order(), W.bundle)


OTHER = world(seed=b"another key")


@pytest.mark.parametrize(
    ("order", "field"),
    [
        (lambda: restore_order(bundle_digest=OTHER.bundle.digest()), "order.bundle_digest"),
        (lambda: export_order(bundle_digest=bytes(32)), "order.bundle_digest"),
        (lambda: restore_order(epoch=W.key.epoch + 1, follow_up=follow_up(old_epoch=W.key.epoch + 1)),
         "order.epoch"),
        (lambda: export_order(key_id=OTHER.key.key_id), "order.key_id"),
        (lambda: export_order(public_key=OTHER.key.public_key), "order.public_key"),
        (lambda: export_order(config_version=2), "order.config_version"),
        (lambda: export_order(targets=(RecoveryTarget(1, 0), RecoveryTarget(4, 0))), "order.targets[1].share_index"),
        (lambda: export_order(targets=(RecoveryTarget(1, 0),)), "order.targets"),
        (lambda: export_order(targets=(RecoveryTarget(1, 0), RecoveryTarget(2, 0), RecoveryTarget(3, 0))), "order.targets"),
        # a follow-up whose old committee names node 5 at position 3: the target must still be node 4
        (lambda: restore_order(
            targets=(RecoveryTarget(3, 5),),
            follow_up=follow_up(old_committee=(1, 2, 5), new_committee=(1, 2, 5))),
         "order.targets[0].node"),
        (lambda: restore_order(
            targets=(RecoveryTarget(2, 2),),
            follow_up=follow_up(old_committee=(1, 2, 5), new_committee=(1, 2, 5))),
         "order.follow_up.old_committee"),
        (lambda: restore_order(follow_up=follow_up(old_threshold=3, new_threshold=3)),
         "order.follow_up.old_threshold"),
    ],
)
def test_an_order_for_another_bundle_key_or_share_is_refused(order: Callable[[], RecoveryOrder], field: str) -> None:
    """A coordinator pairing an admin-signed order with another bundle (or a ceremony with
    another order) is refused by every participant with the field named."""
    with pytest.raises(BundleError) as e:
        check_order_bundle(order(), W.bundle)
    assert e.value.field == field, e.value


# --- malformed input: only the documented errors ----------------------------------------------

FILE = W.bundle.to_file()
PIECE = W.bundle.parts[0].part.pieces[0]


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, byte in edits:
        out[pos % len(out)] = byte
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4)


@given(EDITS)
@settings(max_examples=scaled(60), deadline=None)
def test_a_mutated_bundle_file_is_refused_with_a_bundle_error(edits: list[tuple[int, int]]) -> None:
    """Bytes flipped anywhere in a bundle file: reading, verifying and an officer's check raise
    BundleError or succeed; no other exception (decoder, EC library, age/pyrage)."""
    try:
        bundle = read_bundle(_mutate(FILE, edits))
        verify_bundle(bundle, ADMINS)
        officer_check(bundle, OFFICER_KEYS[1])
    except BundleError:
        pass


@given(EDITS, st.integers(0, 40))
@settings(max_examples=scaled(60), deadline=None)
def test_a_mutated_or_truncated_age_file_is_an_age_key_error(edits: list[tuple[int, int]], cut: int) -> None:
    """An officer's age file flipped or truncated: decrypt raises AgeKeyError (never a pyrage
    error or a Rust panic, which is a BaseException)."""
    for data in (_mutate(PIECE, edits), PIECE[: len(PIECE) - cut]):
        try:
            agekeys.decrypt(OFFICER_KEYS[1], data)
        except agekeys.AgeKeyError:
            pass


@given(st.binary(max_size=200))
@settings(max_examples=scaled(40), deadline=None)
def test_arbitrary_deliveries_are_outcomes_never_exceptions(junk: bytes) -> None:
    """Whatever a coordinator puts in a node's deliveries, open_deliveries answers outcomes."""
    files = {1: junk, 2: agekeys.AGE_HEADER + junk, 3: PIECE}
    secret, outcomes = open_deliveries(W.bundle, 1, files, NODE_ENCRYPTION[1], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
    assert secret is None and set(outcomes.values()) <= {"undecryptable", "wrong-binding"}


@pytest.mark.parametrize(
    "text",
    ["", "age1", "age1" + "q" * 58, "AGE1" + "Q" * 58, "age1\u212a", "a" * 10_000, "age1qqqqqqqq\x00", "\ud800"],
)
def test_bad_recipient_text_is_an_age_key_error(text: str) -> None:
    with pytest.raises(agekeys.AgeKeyError):
        agekeys.parse_recipient(text)


@pytest.mark.parametrize(("kw", "field"), [({"ceremony_id": b"short"}, "ceremony_id"), ({"purpose": 7}, "purpose")])
def test_officer_deliveries_names_a_bad_ceremony_or_purpose(kw: dict[str, Any], field: str) -> None:
    """Caller errors are a BundleError naming the field (the documented class), before any decryption."""
    args: dict[str, Any] = {"ceremony_id": CEREMONY, "purpose": PiecePurpose.DRILL, **kw}
    with pytest.raises(BundleError) as e:
        officer_deliveries(W.bundle, OFFICER_KEYS[1], targets={1: agekeys.public_key(NODE_ENCRYPTION[1])}, **args)
    assert e.value.field == field


def test_assembly_names_a_part_outside_the_committee() -> None:
    stray = dataclasses.replace(W.parts[2], part=dataclasses.replace(W.parts[2].part, share_index=4))
    with pytest.raises(BundleError) as e:
        assemble_bundle(W.key, W.config, HISTORY, (*W.parts, stray), CREATED_MS)
    assert e.value.field == "parts" and "share index 4" in e.value.message and e.value.node == 4


# --- where an officer's pieces go ---------------------------------------------------------------

NEW_HOST_4 = agekeys.public_key(bytes([44]) * 32)  # node 4 replaced on a new host (roster version 3)
ROSTER_3 = rotate_keys(ROSTER_2, 4, encryption_key=NEW_HOST_4)
REPLACED = (*HISTORY, signed_roster(ROSTER_3, ROSTER_2))


def enc(node: int) -> bytes:
    return agekeys.public_key(NODE_ENCRYPTION[node])


def test_drill_targets_are_each_holders_key_in_the_roster_in_force() -> None:
    assert ceremony_targets(W.bundle, ADMINS, HISTORY) == {1: enc(1), 2: enc(2), 3: enc(4)}
    assert ceremony_targets(W.bundle, ADMINS, REPLACED) == {1: enc(1), 2: enc(2), 3: NEW_HOST_4}


def test_restore_targets_use_a_roster_at_least_as_new_as_the_order() -> None:
    order = restore_order(roster_version=3, follow_up=follow_up(roster_version=3))
    assert ceremony_targets(W.bundle, ADMINS, REPLACED, order) == {2: enc(2), 3: NEW_HOST_4}
    with pytest.raises(BundleError) as e:  # the coordinator shows the roster before node 4 was replaced
        ceremony_targets(W.bundle, ADMINS, HISTORY, order)
    assert e.value.field == "roster_history" and "stale" in e.value.message


def test_export_targets_are_the_orders_recipient() -> None:
    order = export_order()
    assert ceremony_targets(W.bundle, ADMINS, (), order) == {1: order.export_recipient, 2: order.export_recipient}
    with pytest.raises(BundleError) as e:
        ceremony_targets(W.bundle, ADMINS, (), export_order(bundle_digest=bytes(32)))
    assert e.value.field == "order.bundle_digest"


def test_a_roster_that_does_not_extend_the_bundles_is_refused() -> None:
    """A stale roster (shorter than the bundle's own history) or a fork of it."""
    fork = (HISTORY[0], signed_roster(change_endpoint(ROSTER_1, 3, "127.0.0.1:9999"), ROSTER_1))
    for history in (HISTORY[:1], fork):
        with pytest.raises(BundleError) as e:
            ceremony_targets(W.bundle, ADMINS, history)
        assert e.value.field == "roster_history"
    with pytest.raises(BundleError) as e2:  # not signed by this admin set
        ceremony_targets(W.bundle, ADMINS, (dataclasses.replace(HISTORY[0], signatures=()),))
    assert e2.value.field.startswith("roster_history")


def test_a_revoked_target_is_refused() -> None:
    revoked = (*HISTORY, signed_roster(revoke_node(ROSTER_2, 2), ROSTER_2))
    with pytest.raises(BundleError) as e:
        ceremony_targets(W.bundle, ADMINS, revoked)
    assert e.value.field == "targets[2]" and e.value.node == 2


def test_an_identity_with_a_look_alike_letter_is_refused() -> None:
    """U+212A KELVIN SIGN is upper case and lower-cases to ASCII 'k': the text is not an age
    identity (age refuses it) and must not parse as one."""
    text = agekeys.identity_text(bytes(range(32))).replace("K", "\u212a", 1)
    with pytest.raises(agekeys.AgeKeyError):
        agekeys.parse_identity(text)
