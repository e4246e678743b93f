"""governance.recovery: recovery officers and their configuration chain, backup parts and bundles,
piece deliveries, recovery orders and the node-signed receipts and drill reports (issue 12)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings, strategies as st

from governance.encoding import Encoder
from governance.errors import GovernanceError
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, check_authorized
from governance.recovery import (
    AGE_HEADER,
    BACKUP_BUNDLE_TAG,
    BUNDLE_MAGIC,
    BackupBundle,
    BackupKey,
    BackupPart,
    BackupPiece,
    DrillReport,
    EpochAttestation,
    Officer,
    PieceDelivery,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    RecoveryOrder,
    RecoveryOrderKind,
    RecoveryReceipt,
    RecoveryTarget,
    SignedBackupPart,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_backup_part,
    sign_drill_report,
    sign_epoch_attestation,
    sign_recovery_config_change,
    sign_recovery_order,
    sign_recovery_receipt,
    verify_recovery_config_change,
    verify_recovery_config_history,
    verify_recovery_order,
)
from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, rotate_keys, sign_roster_change

from ..conftest import scaled
from .gov_util import ADMIN_KEYS, OTHER_CLUSTER_ID, admin_set, raw

ADMINS = admin_set()  # ada, bob, cyd; quorum 2
ROOT = ADMINS.digest()
KEY_ID = hashlib.sha256(b"key").digest()
PK = bytes.fromhex("02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
CC = bytes(range(32))
NODE_KEYS = {i: Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"node %d" % i).digest()) for i in range(1, 9)}
NEW_NODE_KEYS = {i: Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"new node %d" % i).digest()) for i in range(1, 9)}


def x25519(seed: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def point(seed: int) -> bytes:
    """A 33-byte string shaped like a compressed point (governance checks only the shape)."""
    return bytes([2 + seed % 2]) + hashlib.sha256(b"pt %d" % seed).digest()


def age_file(seed: int) -> bytes:
    return AGE_HEADER + b"-> X25519 " + hashlib.sha256(b"age %d" % seed).digest() + b"\n---\n" + bytes(40)


def entry(i: int, key: Ed25519PrivateKey | None = None) -> RosterEntry:
    return RosterEntry(i, f"node-{i}", raw(key or NODE_KEYS[i]), x25519(b"enc %d" % i), hashlib.sha256(b"cert %d" % i).digest(),
                       f"localhost:{7000 + i}")


def signed_roster(new: Roster, prev: Roster | None, admins: tuple[str, ...] = ("ada", "bob")) -> SignedRosterChange:
    change = RosterChange(new, None if prev is None else prev.digest(), ROOT)
    return SignedRosterChange(change, tuple(sign_roster_change(change, a, ADMIN_KEYS[a]) for a in admins))


ROSTER_1 = Roster(1, 0, tuple(entry(i) for i in range(1, 6)))
HISTORY = (signed_roster(ROSTER_1, None),)


def officers(k: int = 3) -> tuple[Officer, ...]:
    return tuple(Officer(f"officer{j}", x25519(b"officer %d" % j)) for j in range(1, k + 1))


def config(version: int = 1, *, k: int = 3, quorum: int = 2, export_quorum: int = 3, drill: int = 0) -> RecoveryConfig:
    return RecoveryConfig(version, officers(k), quorum, export_quorum, drill)


def signed_config(
    cfg: RecoveryConfig, prev: RecoveryConfig | None = None, admins: tuple[str, ...] = ("ada", "bob"), root: bytes = ROOT
) -> SignedRecoveryConfigChange:
    change = RecoveryConfigChange(root, None if prev is None else prev.digest(), cfg)
    return SignedRecoveryConfigChange(change, tuple(sign_recovery_config_change(change, a, ADMIN_KEYS[a]) for a in admins))


CONFIG = config()
SIGNED_CONFIG = signed_config(CONFIG)


def backup_key(committee: tuple[int, ...] = (1, 2, 3, 4, 5), threshold: int = 3, epoch: int = 2) -> BackupKey:
    return BackupKey(KEY_ID, PK, CC, "treasury", threshold, epoch, committee, tuple(point(n) for n in committee))


KEY = backup_key()


def part(share_index: int, node: int | None = None, **kw: Any) -> BackupPart:
    node = KEY.committee[share_index - 1] if node is None else node
    fields: dict[str, Any] = dict(
        governance_root=ROOT, key_digest=KEY.digest(), key_id=KEY_ID, epoch=KEY.epoch, share_index=share_index, node=node,
        roster_version=1, config_version=CONFIG.version, config_digest=CONFIG.digest(),
        commitments=(point(node), point(100 + node)), pieces=tuple(age_file(10 * node + j) for j in range(1, 4)),
        created_ms=1_750_000_000_000,
    )
    fields.update(kw)
    return BackupPart(**fields)


def signed_part(share_index: int, node: int | None = None, key: Ed25519PrivateKey | None = None, **kw: Any) -> SignedBackupPart:
    p = part(share_index, node, **kw)
    return sign_backup_part(p, key or NODE_KEYS[p.node])


def bundle(parts: tuple[SignedBackupPart, ...] | None = None, **kw: Any) -> BackupBundle:
    fields: dict[str, Any] = dict(
        format_version=1, governance_root=ROOT, key=KEY, config=SIGNED_CONFIG, roster_history=HISTORY,
        parts=tuple(signed_part(s) for s in range(1, 6)) if parts is None else parts, created_ms=1_750_000_001_000,
    )
    fields.update(kw)
    return BackupBundle(**fields)


def follow_up(**kw: Any) -> KeyOperation:
    fields: dict[str, Any] = dict(
        governance_root=ROOT, op_id=bytes([9] * 16), kind=KeyOpKind.REFRESH, key_id=KEY_ID, public_key=PK, chain_code=CC,
        old_epoch=2, old_threshold=3, old_committee=(1, 2, 3, 4, 5), new_threshold=3, new_committee=(1, 2, 3, 4, 5),
        roster_version=4, reason="after restore",
    )
    fields.update(kw)
    return KeyOperation(**fields)


EXPIRES_MS = 1_750_086_400_000


def order(kind: RecoveryOrderKind = RecoveryOrderKind.RESTORE, **kw: Any) -> RecoveryOrder:
    restore = kind is RecoveryOrderKind.RESTORE
    fields: dict[str, Any] = dict(
        governance_root=ROOT, order_id=bytes([5] * 16), kind=kind, key_id=KEY_ID, public_key=PK, chain_code=CC, epoch=2,
        bundle_digest=hashlib.sha256(b"bundle").digest(), config_version=1, roster_version=4,
        targets=tuple(RecoveryTarget(s, s if restore else 0) for s in ((3, 4, 5) if restore else (1, 2, 3))),
        export_recipient=b"" if restore else x25519(b"offline"), follow_up=follow_up() if restore else None,
        reason="region outage: nodes 3-5 lost", expires_ms=EXPIRES_MS,
    )
    fields.update(kw)
    return RecoveryOrder(**fields)


def signed_order(o: RecoveryOrder, admins: tuple[str, ...] = ("ada", "bob")) -> SignedRecoveryOrder:
    return SignedRecoveryOrder(o, tuple(sign_recovery_order(o, a, ADMIN_KEYS[a]) for a in admins))


def refused(field: str) -> Any:
    return pytest.raises(GovernanceError, match="^" + re.escape(field) + ": ")


# --- officers and configuration ----------------------------------------------------------------


def test_config_round_trips_and_looks_officers_up() -> None:
    cfg = config(k=4, quorum=3, drill=86400)
    assert RecoveryConfig.from_bytes(cfg.encode()) == cfg
    assert RecoveryConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.officer_index("officer3") == 3
    assert cfg.officer_by_recipient(x25519(b"officer 2")) == 2
    assert cfg.officer_by_recipient(x25519(b"nobody")) is None
    with refused("officer"):
        cfg.officer_index("mallory")
    o = cfg.officers[0]
    assert Officer.from_bytes(o.encode()) == o and Officer.from_dict(o.to_dict()) == o


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"version": 0}, "version"),
        ({"officers": ()}, "officers"),
        ({"officers": officers(2) + (Officer("officer1", x25519(b"x")),)}, r"officers[2].name"),
        ({"officers": officers(2) + (Officer("other", x25519(b"officer 1")),)}, r"officers[2].recipient"),
        ({"officers": (*officers(2), "officer3")}, r"officers[2]"),
        ({"quorum": 1}, "quorum"),
        ({"quorum": 4}, "quorum"),
        ({"quorum": True}, "quorum"),
        ({"export_quorum": 0}, "export_quorum"),
        ({"export_quorum": 256}, "export_quorum"),
        ({"drill_period_s": -1}, "drill_period_s"),
        ({"drill_period_s": 10 * 365 * 86400 + 1}, "drill_period_s"),
    ],
)
def test_config_refuses_each_bad_field(kw: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = dict(version=1, officers=officers(3), quorum=2, export_quorum=3, drill_period_s=0)
    fields.update(kw)
    with refused(field):
        RecoveryConfig(**fields)


def test_officer_refuses_bad_name_and_low_order_recipient() -> None:
    with refused("name"):
        Officer("bad name", x25519(b"a"))
    with refused("recipient"):
        Officer("ok", bytes(32))
    with refused("recipient"):
        Officer("ok", bytes(31))


def test_config_chain_rules() -> None:
    first = verify_recovery_config_change(None, SIGNED_CONFIG, ADMINS)
    assert first == CONFIG
    second = config(2, k=4, quorum=3)
    assert verify_recovery_config_change(CONFIG, signed_config(second, CONFIG), ADMINS) == second
    assert verify_recovery_config_history(ADMINS, [SIGNED_CONFIG, signed_config(second, CONFIG)]) == second
    assert verify_recovery_config_history(ADMINS, []) is None
    with refused("previous_digest"):
        verify_recovery_config_change(None, signed_config(second, CONFIG), ADMINS)
    with refused("previous_digest"):
        verify_recovery_config_change(CONFIG, SIGNED_CONFIG, ADMINS)
    with refused("previous_digest"):  # forked: names another predecessor
        verify_recovery_config_change(CONFIG, signed_config(second, config(1, k=4)), ADMINS)
    with refused("config.version"):
        verify_recovery_config_change(None, signed_config(config(2)), ADMINS)
    with refused("config.version"):
        verify_recovery_config_change(CONFIG, signed_config(config(3), CONFIG), ADMINS)
    with refused("signatures"):
        verify_recovery_config_change(None, signed_config(CONFIG, admins=("ada",)), ADMINS)
    with refused("signatures"):  # a repeated admin counts once
        verify_recovery_config_change(None, signed_config(CONFIG, admins=("ada", "ada")), ADMINS)
    with refused("governance_root"):
        verify_recovery_config_change(None, signed_config(CONFIG, root=admin_set(cluster_id=OTHER_CLUSTER_ID).digest()), ADMINS)
    with refused(r"history[1].previous_digest"):
        verify_recovery_config_history(ADMINS, [SIGNED_CONFIG, signed_config(second, None)])


def test_config_export_quorum_must_exceed_the_admin_quorum_and_fit_the_admins() -> None:
    for eq in (1, 2, 4):
        with refused("config.export_quorum"):
            verify_recovery_config_change(None, signed_config(config(export_quorum=eq)), ADMINS)
    assert verify_recovery_config_change(None, signed_config(config(export_quorum=3)), ADMINS).export_quorum == 3


def test_forged_config_signature_is_refused_naming_the_admin() -> None:
    good = SIGNED_CONFIG
    forged = SignedRecoveryConfigChange(good.change, (good.signatures[0], dataclasses.replace(good.signatures[1], admin="cyd")))
    with pytest.raises(GovernanceError, match=r"^signatures\[1\]\.signature: ") as e:
        verify_recovery_config_change(None, forged, ADMINS)
    assert e.value.subject == "cyd"


def test_signed_config_round_trips_and_refuses_non_canonical_encoding() -> None:
    data = SIGNED_CONFIG.to_bytes()
    assert SignedRecoveryConfigChange.from_bytes(data) == SIGNED_CONFIG
    assert SignedRecoveryConfigChange.from_dict(SIGNED_CONFIG.to_dict()) == SIGNED_CONFIG
    with refused("encoding"):
        SignedRecoveryConfigChange.from_bytes(data + b"\x00")
    with refused("tag"):
        RecoveryConfig.from_bytes(SIGNED_CONFIG.change.encode())


# --- key record, parts, bundle -------------------------------------------------------------------


def test_backup_key_round_trips_and_refuses_bad_fields() -> None:
    assert BackupKey.from_bytes(KEY.encode()) == KEY
    assert BackupKey.from_dict(KEY.to_dict()) == KEY
    assert KEY.share_index(4) == 4
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key_id": bytes(31)}, "key_id"),
        ({"public_key": b"\x04" + bytes(32)}, "public_key"),
        ({"chain_code": b""}, "chain_code"),
        ({"label": "a\nb"}, "label"),
        ({"label": "é" * 200}, "label"),
        ({"threshold": 1}, "threshold"),
        ({"threshold": 6}, "threshold"),
        ({"epoch": 2**32}, "epoch"),
        ({"committee": (2, 1, 3, 4, 5)}, "committee"),
        ({"public_shares": (point(1),)}, "public_shares"),
        ({"public_shares": (point(1), point(2), point(3), point(4), bytes(33))}, r"public_shares[4]"),
    ]
    for kw, field in cases:
        with refused(field):
            dataclasses.replace(KEY, **kw)


def test_part_round_trips_and_refuses_bad_fields() -> None:
    sp = signed_part(2)
    assert SignedBackupPart.from_bytes(sp.to_bytes()) == sp
    assert BackupPart.from_bytes(sp.part.encode()) == sp.part
    assert sp.verify(raw(NODE_KEYS[2])) and not sp.verify(raw(NODE_KEYS[3]))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"governance_root": bytes(1)}, "governance_root"),
        ({"key_digest": bytes(33)}, "key_digest"),
        ({"node": 256}, "node"),
        ({"roster_version": 0}, "roster_version"),
        ({"config_version": 0}, "config_version"),
        ({"config_digest": b""}, "config_digest"),
        ({"commitments": (point(1),)}, "commitments"),
        ({"commitments": (point(1), b"\x05" + bytes(32))}, r"commitments[1]"),
        ({"pieces": (age_file(1),)}, "pieces"),
        ({"pieces": (age_file(1), age_file(2), b"not age")}, r"pieces[2]"),
        ({"pieces": (age_file(1), age_file(2), AGE_HEADER + bytes(2048))}, r"pieces[2]"),
        ({"created_ms": -1}, "created_ms"),
    ]
    for kw, field in cases:
        with refused(field):
            part(2, **kw)
    with refused("share_index"):
        dataclasses.replace(part(2), share_index=0)
    with refused("signature"):
        SignedBackupPart.from_bytes(sp.to_bytes()[:-1])
    with refused("encoding"):
        SignedBackupPart.from_bytes(sp.to_bytes() + b"\x00")


def test_bundle_round_trips_and_checks() -> None:
    b = bundle()
    data = b.to_file()
    assert data.startswith(BUNDLE_MAGIC)
    again = BackupBundle.from_file(data)
    assert again == b and again.digest() == b.digest() == hashlib.sha256(data).digest()
    assert b.check_structure(ADMINS) == CONFIG
    # parts are kept in share-index order whatever order they came in
    assert bundle(tuple(reversed(b.parts))) == b


def test_bundle_file_refusals() -> None:
    data = bundle().to_file()
    with refused("bundle"):
        BackupBundle.from_file(b"NOT-A-BUNDLE\n" + data[len(BUNDLE_MAGIC):])
    with refused("encoding"):
        BackupBundle.from_file(data + b"\x00")
    with refused("bundle"):
        BackupBundle.from_file(BUNDLE_MAGIC + bytes(16 << 20))
    future = BUNDLE_MAGIC + Encoder(BACKUP_BUNDLE_TAG).uint(2).raw(b"whatever").finish()
    with pytest.raises(GovernanceError, match=r"^format_version: unknown bundle format version 2"):
        BackupBundle.from_file(future)
    with refused("format_version"):
        bundle(format_version=2)


def _check(b: BackupBundle) -> GovernanceError:
    with pytest.raises(GovernanceError) as e:
        b.check_structure(ADMINS)
    return e.value


def test_bundle_refuses_a_tampered_part_signature_naming_part_and_node() -> None:
    parts = list(bundle().parts)
    parts[2] = SignedBackupPart(parts[2].part, bytes(64))
    e = _check(bundle(tuple(parts)))
    assert e.field == "parts[2].signature" and e.subject == "node 3" and "node 3" in str(e)
    # a part whose content changed after signing
    parts = list(bundle().parts)
    parts[1] = SignedBackupPart(dataclasses.replace(parts[1].part, created_ms=1), parts[1].signature)
    e = _check(bundle(tuple(parts)))
    assert e.field == "parts[1].signature" and e.subject == "node 2"


def test_bundle_refuses_the_wrong_node_at_a_share_index() -> None:
    parts = list(bundle().parts)
    parts[3] = signed_part(4, node=5)  # signed by node 5, for node 4's position
    e = _check(bundle(tuple(parts)))
    assert e.field == "parts[3].node" and e.subject == "node 5" and "node 4" in str(e)


def test_bundle_refuses_a_missing_or_duplicated_part() -> None:
    parts = bundle().parts
    e = _check(bundle(parts[:2] + parts[3:]))
    assert e.field == "parts" and e.subject == "node 3" and "share index 3" in str(e)
    e = _check(bundle(parts[:2] + (parts[1],) + parts[3:]))
    assert e.field == "parts[2].share_index" and e.subject == "node 2"
    e = _check(bundle(parts + (signed_part(6, node=6),)))
    assert e.field == "parts[5].share_index"


def test_bundle_refuses_wrong_config_and_key_bindings() -> None:
    other = config(1, k=3, quorum=2, drill=60)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"config_digest": other.digest()}, "config_digest"),
        ({"config_version": 2}, "config_version"),
        ({"key_digest": backup_key(epoch=3).digest()}, "key_digest"),
        ({"key_id": bytes(32)}, "key_id"),
        ({"epoch": 1}, "epoch"),
        ({"governance_root": bytes(32)}, "governance_root"),
        ({"roster_version": 2}, "roster_version"),
        ({"commitments": (point(99), point(98))}, "commitments[0]"),
        ({"commitments": (point(2), point(98), point(97))}, "commitments"),
        ({"pieces": (age_file(1), age_file(2))}, "pieces"),
    ]
    for kw, field in cases:
        parts = list(bundle().parts)
        parts[1] = signed_part(2, **kw)
        e = _check(bundle(tuple(parts)))
        assert (e.field, e.subject) == (f"parts[1].{field}", "node 2"), (kw, e)


def test_bundle_refuses_bad_config_roster_or_root() -> None:
    e = _check(bundle(config=signed_config(CONFIG, admins=("ada",))))
    assert e.field == "config.signatures"
    e = _check(bundle(config=signed_config(config(export_quorum=2))))
    assert e.field == "config.config.export_quorum"
    e = _check(bundle(roster_history=(signed_roster(ROSTER_1, None, admins=("ada",)),)))
    assert e.field == "roster_history[0].signatures"
    e = _check(bundle(governance_root=bytes(32)))
    assert e.field == "governance_root"


def test_bundle_checks_each_part_against_the_roster_at_its_version() -> None:
    # node 2's keys are rotated after it made its part: the old part still verifies at version 1,
    # a part claiming version 2 but signed with the old key does not.
    r2 = rotate_keys(ROSTER_1, 2, identity_key=raw(NEW_NODE_KEYS[2]))
    history = (HISTORY[0], signed_roster(r2, ROSTER_1))
    assert bundle(roster_history=history).check_structure(ADMINS) == CONFIG
    parts = list(bundle().parts)
    parts[1] = signed_part(2, roster_version=2)
    e = _check(bundle(tuple(parts), roster_history=history))
    assert e.field == "parts[1].signature" and e.subject == "node 2"
    parts[1] = signed_part(2, roster_version=2, key=NEW_NODE_KEYS[2])
    assert bundle(tuple(parts), roster_history=history).check_structure(ADMINS) == CONFIG


# --- pieces and deliveries -------------------------------------------------------------------------


def test_piece_and_delivery_round_trip_and_hide_the_value() -> None:
    secret = bytes(range(1, 33))
    piece = BackupPiece(KEY_ID, 2, 3, 1, 1, secret)
    assert BackupPiece.from_bytes(piece.encode()) == piece
    d = PieceDelivery(bytes(16), PiecePurpose.DRILL, KEY_ID, 2, 3, 1, hashlib.sha256(b"b").digest(), secret)
    assert PieceDelivery.from_bytes(d.encode()) == d
    assert d.purpose is PiecePurpose.DRILL
    for obj in (piece, d):
        assert secret.hex() not in repr(obj) and str(list(secret)) not in repr(obj) and repr(secret) not in repr(obj)
    with refused("value"):
        BackupPiece(KEY_ID, 2, 3, 1, 1, bytes(31))
    with refused("officer_index"):
        BackupPiece(KEY_ID, 2, 3, 65, 1, secret)
    with refused("purpose"):
        PieceDelivery(bytes(16), 4, KEY_ID, 2, 3, 1, bytes(32), secret)  # type: ignore[arg-type]
    with refused("ceremony_id"):
        PieceDelivery(bytes(32), PiecePurpose.RESTORE, KEY_ID, 2, 3, 1, bytes(32), secret)
    with refused("tag"):
        PieceDelivery.from_bytes(piece.encode())


# --- orders --------------------------------------------------------------------------------------


def test_orders_round_trip() -> None:
    for kind in RecoveryOrderKind:
        o = order(kind)
        assert RecoveryOrder.from_bytes(o.encode()) == o
        assert RecoveryOrder.from_dict(o.to_dict()) == o
        s = signed_order(o)
        assert SignedRecoveryOrder.from_bytes(s.to_bytes()) == s
        assert SignedRecoveryOrder.from_dict(s.to_dict()) == s
        assert len(o.proposal_id) == 32 and o.proposal_id == o.digest()[:16].hex()


@pytest.mark.parametrize(
    ("kind", "kw", "field"),
    [
        (RecoveryOrderKind.RESTORE, {"order_id": bytes(15)}, "order_id"),
        (RecoveryOrderKind.RESTORE, {"public_key": bytes(33)}, "public_key"),
        (RecoveryOrderKind.RESTORE, {"bundle_digest": bytes(8)}, "bundle_digest"),
        (RecoveryOrderKind.RESTORE, {"config_version": 0}, "config_version"),
        (RecoveryOrderKind.RESTORE, {"targets": ()}, "targets"),
        (RecoveryOrderKind.RESTORE, {"targets": (RecoveryTarget(4, 4), RecoveryTarget(3, 3))}, "targets[1].share_index"),
        (RecoveryOrderKind.RESTORE, {"targets": (RecoveryTarget(3, 4),)}, "targets[0].node"),
        (RecoveryOrderKind.RESTORE, {"targets": (RecoveryTarget(3, 0),)}, "targets[0].node"),
        (RecoveryOrderKind.RESTORE, {"targets": (RecoveryTarget(6, 6),)}, "targets[0].node"),
        (RecoveryOrderKind.RESTORE, {"export_recipient": x25519(b"o")}, "export_recipient"),
        (RecoveryOrderKind.RESTORE, {"follow_up": None}, "follow_up"),
        (RecoveryOrderKind.RESTORE, {"follow_up": follow_up(old_epoch=3)}, "follow_up.old_epoch"),
        (RecoveryOrderKind.RESTORE, {"follow_up": follow_up(roster_version=5)}, "follow_up.roster_version"),
        (RecoveryOrderKind.RESTORE, {"follow_up": follow_up(key_id=bytes(32))}, "follow_up.key_id"),
        (RecoveryOrderKind.RESTORE, {"follow_up": follow_up(chain_code=bytes(32))}, "follow_up.chain_code"),
        (RecoveryOrderKind.RESTORE, {"follow_up": follow_up(governance_root=bytes(32))}, "follow_up.governance_root"),
        (RecoveryOrderKind.RESTORE, {"reason": ""}, "reason"),
        (RecoveryOrderKind.RESTORE, {"reason": "   "}, "reason"),
        (RecoveryOrderKind.RESTORE, {"reason": "a\x1b[2Jb"}, "reason"),
        (RecoveryOrderKind.RESTORE, {"reason": "x" * 201}, "reason"),
        (RecoveryOrderKind.RESTORE, {"expires_ms": 0}, "expires_ms"),
        (RecoveryOrderKind.RESTORE, {"expires_ms": 2**63}, "expires_ms"),
        (RecoveryOrderKind.EXPORT, {"expires_ms": -1}, "expires_ms"),
        (RecoveryOrderKind.EXPORT, {"export_recipient": b""}, "export_recipient"),
        (RecoveryOrderKind.EXPORT, {"export_recipient": bytes(32)}, "export_recipient"),
        (RecoveryOrderKind.EXPORT, {"targets": (RecoveryTarget(1, 1),)}, "targets[0].node"),
        (RecoveryOrderKind.EXPORT, {"follow_up": follow_up()}, "follow_up"),
    ],
)
def test_order_refuses_each_bad_field(kind: RecoveryOrderKind, kw: dict[str, Any], field: str) -> None:
    with refused(field):
        order(kind, **kw)


def test_order_refuses_an_unknown_kind() -> None:
    with refused("kind"):
        dataclasses.replace(order(), kind=3)  # type: ignore[arg-type]


def test_restore_order_follow_up_may_be_a_reshare() -> None:
    reshare = follow_up(kind=KeyOpKind.RESHARE, new_committee=(1, 2, 3, 4, 5, 6))
    assert order(follow_up=reshare).follow_up == reshare


def test_restore_order_needs_the_admin_quorum() -> None:
    o = order()
    assert verify_recovery_order(signed_order(o), ADMINS, CONFIG) == o
    with refused("signatures"):
        verify_recovery_order(signed_order(o, ("ada",)), ADMINS, CONFIG)
    with refused("signatures"):
        verify_recovery_order(signed_order(o, ("ada", "ada")), ADMINS, CONFIG)
    with refused("config_version"):
        verify_recovery_order(signed_order(o), ADMINS, config(2))
    with refused("governance_root"):
        verify_recovery_order(signed_order(order(governance_root=bytes(32), follow_up=follow_up(governance_root=bytes(32)))),
                              ADMINS, CONFIG)
    forged = SignedRecoveryOrder(o, signed_order(order(reason="other")).signatures)
    with refused(r"signatures[0].signature"):
        verify_recovery_order(forged, ADMINS, CONFIG)


def test_export_order_needs_the_export_quorum() -> None:
    o = order(RecoveryOrderKind.EXPORT)
    with pytest.raises(GovernanceError, match=r"^signatures: 2 distinct admin\(s\) signed this break-glass export, 3 required"):
        verify_recovery_order(signed_order(o), ADMINS, CONFIG)
    with refused("signatures"):
        verify_recovery_order(signed_order(o, ("ada", "bob", "bob")), ADMINS, CONFIG)
    assert verify_recovery_order(signed_order(o, ("ada", "bob", "cyd")), ADMINS, CONFIG) == o


def test_an_order_expires_at_expires_ms() -> None:
    for kind, admins in ((RecoveryOrderKind.RESTORE, ("ada", "bob")), (RecoveryOrderKind.EXPORT, ("ada", "bob", "cyd"))):
        o = order(kind)
        s = signed_order(o, admins)
        assert verify_recovery_order(s, ADMINS, CONFIG) == o  # no clock: no expiry check
        assert verify_recovery_order(s, ADMINS, CONFIG, now_ms=0) == o
        assert verify_recovery_order(s, ADMINS, CONFIG, now_ms=EXPIRES_MS - 1) == o
        for now in (EXPIRES_MS, EXPIRES_MS + 1, 2**63 - 1):
            with pytest.raises(GovernanceError, match=r"^expires_ms: the order expired at 1750086400000 ms"):
                verify_recovery_order(s, ADMINS, CONFIG, now_ms=now)
        with refused("now_ms"):
            verify_recovery_order(s, ADMINS, CONFIG, now_ms=-1)
    # expires_ms is signed: changing it breaks every admin signature
    o = order()
    with refused("signatures[0].signature"):
        verify_recovery_order(SignedRecoveryOrder(order(expires_ms=EXPIRES_MS + 1), signed_order(o).signatures), ADMINS, CONFIG)
    assert RecoveryOrder.from_dict(o.to_dict()).expires_ms == EXPIRES_MS and o.to_dict()["expires_ms"] == EXPIRES_MS
    d = o.to_dict()
    del d["expires_ms"]
    with refused("expires_ms"):
        RecoveryOrder.from_dict(d)


def test_follow_up_of_an_order_is_authorized_as_recovery_order() -> None:
    from governance.roster import Roster as _Roster

    roster = _Roster(4, 3, tuple(entry(i) for i in range(1, 6)))
    unsigned = SignedKeyOperation(follow_up())
    with refused("signatures"):
        check_authorized(unsigned, ADMINS, roster)
    assert check_authorized(unsigned, ADMINS, roster, ordered=True) == "recovery-order"
    # ordered does not lift the root, roster-version or membership checks
    with refused("roster_version"):
        check_authorized(unsigned, ADMINS, _Roster(5, 3, roster.entries), ordered=True)


# --- node statements -------------------------------------------------------------------------------


def test_recovery_receipt_signs_round_trips_and_verifies() -> None:
    r = sign_recovery_receipt(RecoveryReceipt(bytes([5] * 16), KEY_ID, 2, 3, 3, point(3)), NODE_KEYS[3])
    assert RecoveryReceipt.from_bytes(r.to_bytes()) == r
    assert r.verify(raw(NODE_KEYS[3])) and not r.verify(raw(NODE_KEYS[4]))
    assert not dataclasses.replace(r, share_index=4).verify(raw(NODE_KEYS[3]))
    with refused("node"):
        RecoveryReceipt(bytes(16), KEY_ID, 2, 3, 0, point(3))
    with refused("encoding"):
        RecoveryReceipt.from_bytes(r.to_bytes() + b"\x00")
    assert r.to_dict()["node"] == 3


def test_epoch_attestation_signs_round_trips_and_verifies() -> None:
    a = sign_epoch_attestation(EpochAttestation(bytes([7] * 16), KEY_ID, 2, 3), NODE_KEYS[3])
    assert EpochAttestation.from_bytes(a.to_bytes()) == a
    assert a.verify(NODE_KEYS[3].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    assert not a.verify(NODE_KEYS[4].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    assert not dataclasses.replace(a, epoch=1).verify(NODE_KEYS[3].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    assert not dataclasses.replace(a, ceremony_id=bytes(16)).verify(
        NODE_KEYS[3].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    assert a.to_dict() == {
        "ceremony_id": "07" * 16, "key_id": KEY_ID.hex(), "epoch": 2, "node": 3, "attested_ms": 0, "signature": a.signature.hex(),
    }
    later = sign_epoch_attestation(EpochAttestation(bytes([7] * 16), KEY_ID, 2, 3, attested_ms=1_800_000_000_000), NODE_KEYS[3])
    assert EpochAttestation.from_bytes(later.to_bytes()) == later and later.message() != a.message()
    assert not dataclasses.replace(later, attested_ms=1).verify(NODE_KEYS[3].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    with refused("attested_ms"):
        EpochAttestation(bytes(16), KEY_ID, 2, 3, attested_ms=-1)
    with refused("ceremony_id"):
        EpochAttestation(bytes(32), KEY_ID, 2, 3)
    with refused("key_id"):
        EpochAttestation(bytes(16), bytes(31), 2, 3)
    with refused("epoch"):
        EpochAttestation(bytes(16), KEY_ID, 2**32, 3)
    with refused("node"):
        EpochAttestation(bytes(16), KEY_ID, 2, 0)
    with refused("signature"):
        EpochAttestation(bytes(16), KEY_ID, 2, 3, bytes(63))
    with pytest.raises(GovernanceError):
        EpochAttestation.from_bytes(a.to_bytes() + b"\x00")
    with pytest.raises(GovernanceError):  # another statement's tag
        EpochAttestation.from_bytes(sign_recovery_receipt(RecoveryReceipt(bytes(16), KEY_ID, 2, 3, 3, point(3)), NODE_KEYS[3]).to_bytes())
    with refused("attestation"):
        sign_epoch_attestation(object(), NODE_KEYS[3])  # type: ignore[arg-type]


def test_drill_report_signs_round_trips_and_verifies() -> None:
    outcomes = ((1, "ok"), (2, "bad-piece"), (3, "missing"))
    rep = sign_drill_report(DrillReport(bytes(16), KEY_ID, 2, 1, 1, bytes(32), False, outcomes), NODE_KEYS[1])
    assert DrillReport.from_bytes(rep.to_bytes()) == rep
    assert rep.verify(raw(NODE_KEYS[1]))
    assert not dataclasses.replace(rep, ok=True).verify(raw(NODE_KEYS[1]))
    with refused(r"outcomes[1].outcome"):
        DrillReport(bytes(16), KEY_ID, 2, 1, 1, bytes(32), True, ((1, "ok"), (2, "fine")))
    with refused(r"outcomes[1].officer"):
        DrillReport(bytes(16), KEY_ID, 2, 1, 1, bytes(32), True, ((2, "ok"), (1, "ok")))
    with refused("ok"):
        DrillReport(bytes(16), KEY_ID, 2, 1, 1, bytes(32), 1, ())  # type: ignore[arg-type]
    assert rep.to_dict()["outcomes"] == [{"officer": o, "outcome": s} for o, s in outcomes]


# --- property tests ----------------------------------------------------------------------------------


@settings(max_examples=scaled(30), deadline=None)
@given(
    k=st.integers(2, 12), data=st.data(), drill=st.integers(0, 10 * 365 * 86400), version=st.integers(1, 2**63 - 1),
)
def test_config_round_trip_property(k: int, data: st.DataObject, drill: int, version: int) -> None:
    quorum = data.draw(st.integers(2, k))
    cfg = RecoveryConfig(version, officers(k), quorum, data.draw(st.integers(1, 255)), drill)
    assert RecoveryConfig.from_bytes(cfg.encode()) == cfg
    assert RecoveryConfig.from_dict(cfg.to_dict()) == cfg


@settings(max_examples=scaled(20), deadline=None)
@given(
    n=st.integers(2, 7), data=st.data(), epoch=st.integers(0, 2**32 - 1), created=st.integers(0, 2**63 - 1),
    label=st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), max_size=20),
)
def test_part_bundle_and_order_round_trip_property(n: int, data: st.DataObject, epoch: int, created: int, label: str) -> None:
    committee = tuple(sorted(data.draw(st.sets(st.integers(1, 8), min_size=n, max_size=n))))
    t = data.draw(st.integers(2, n))
    key = BackupKey(KEY_ID, PK, CC, label, t, epoch, committee, tuple(point(x) for x in committee))
    assert BackupKey.from_bytes(key.encode()) == key
    s = data.draw(st.integers(1, n))
    sp = sign_backup_part(
        BackupPart(ROOT, key.digest(), KEY_ID, epoch, s, committee[s - 1], 1, 1, CONFIG.digest(),
                   (point(1), point(2)), (age_file(1), age_file(2), age_file(3)), created),
        NODE_KEYS[committee[s - 1]],
    )
    assert SignedBackupPart.from_bytes(sp.to_bytes()) == sp
    b = BackupBundle(1, ROOT, key, SIGNED_CONFIG, HISTORY, (sp,), created)
    assert BackupBundle.from_file(b.to_file()) == b
    targets = tuple(sorted(data.draw(st.sets(st.integers(1, n), min_size=1, max_size=n))))
    o = order(
        epoch=min(epoch, 2**32 - 2), targets=tuple(RecoveryTarget(i, committee[i - 1]) for i in targets),
        follow_up=follow_up(old_epoch=min(epoch, 2**32 - 2), old_committee=committee, new_committee=committee, old_threshold=t,
                            new_threshold=t),
    )
    assert RecoveryOrder.from_bytes(o.encode()) == o
    assert SignedRecoveryOrder.from_bytes(signed_order(o).to_bytes()) == signed_order(o)


# --- more refusals -------------------------------------------------------------------------------


def test_bundle_file_with_parts_out_of_order_is_not_canonical() -> None:
    b = bundle()
    enc = (
        Encoder(BACKUP_BUNDLE_TAG).uint(1).raw(ROOT).raw(KEY.encode()).raw(SIGNED_CONFIG.to_bytes()).count(1)
        .raw(HISTORY[0].to_bytes()).count(5)
    )
    for p in reversed(b.parts):
        enc.raw(p.to_bytes())
    with refused("encoding"):
        BackupBundle.from_file(BUNDLE_MAGIC + enc.uint(b.created_ms).finish())


def test_bundle_refuses_a_part_of_a_node_revoked_at_its_roster_version() -> None:
    from governance.roster import revoke_node

    r2 = revoke_node(ROSTER_1, 2)
    history = (HISTORY[0], signed_roster(r2, ROSTER_1))
    parts = list(bundle().parts)
    parts[1] = signed_part(2, roster_version=2)
    e = _check(bundle(tuple(parts), roster_history=history))
    assert e.field == "parts[1].node" and e.subject == "node 2" and "not an active node of roster version 2" in str(e)


def test_json_forms_refuse_unknown_and_missing_keys() -> None:
    d = CONFIG.to_dict()
    with refused("extra"):
        RecoveryConfig.from_dict({**d, "extra": 1})
    del d["quorum"]
    with refused("quorum"):
        RecoveryConfig.from_dict(d)
    od = order().to_dict()
    with refused("kind"):
        RecoveryOrder.from_dict({**od, "kind": "steal"})
    with refused("export_recipient"):
        RecoveryOrder.from_dict({**od, "export_recipient": "00"})
    with refused("follow_up.old_epoch"):
        RecoveryOrder.from_dict({**od, "follow_up": {**follow_up().to_dict(), "old_epoch": "2"}})
    with refused(r"officers[0].recipient"):
        RecoveryConfig.from_dict({**CONFIG.to_dict(), "officers": [{"name": "x", "recipient": "zz"}]})


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"ceremony_id": bytes(15)}, "ceremony_id"),
        ({"key_id": bytes(31)}, "key_id"),
        ({"epoch": -1}, "epoch"),
        ({"share_index": 256}, "share_index"),
        ({"officer_index": 0}, "officer_index"),
        ({"bundle_digest": bytes(33)}, "bundle_digest"),
        ({"value": "secret"}, "value"),
    ],
)
def test_delivery_refuses_each_bad_field(kw: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = dict(
        ceremony_id=bytes(16), purpose=PiecePurpose.EXPORT, key_id=KEY_ID, epoch=2, share_index=1, officer_index=1,
        bundle_digest=bytes(32), value=bytes(32),
    )
    fields.update(kw)
    with refused(field):
        PieceDelivery(**fields)


def test_statements_refuse_bad_fields() -> None:
    with refused("order_id"):
        RecoveryReceipt(bytes(32), KEY_ID, 2, 3, 3, point(3))
    with refused("public_share"):
        RecoveryReceipt(bytes(16), KEY_ID, 2, 3, 3, bytes(33))
    with refused("signature"):
        RecoveryReceipt(bytes(16), KEY_ID, 2, 3, 3, point(3), bytes(63))
    with refused("bundle_digest"):
        DrillReport(bytes(16), KEY_ID, 2, 1, 1, bytes(31), True, ())
    with refused("outcomes"):
        DrillReport(bytes(16), KEY_ID, 2, 1, 1, bytes(32), True, tuple((i, "ok") for i in range(1, 66)))
    with refused("tag"):
        DrillReport.from_bytes(sign_recovery_receipt(RecoveryReceipt(bytes(16), KEY_ID, 2, 3, 3, point(3)), NODE_KEYS[3]).to_bytes())


_ENCODINGS: list[tuple[Any, bytes]] = [
    (RecoveryConfig.from_bytes, CONFIG.encode()),
    (SignedRecoveryConfigChange.from_bytes, SIGNED_CONFIG.to_bytes()),
    (SignedBackupPart.from_bytes, signed_part(1).to_bytes()),
    (SignedRecoveryOrder.from_bytes, signed_order(order()).to_bytes()),
    (RecoveryOrder.from_bytes, order(RecoveryOrderKind.EXPORT).encode()),
    (DrillReport.from_bytes, DrillReport(bytes(16), KEY_ID, 2, 1, 1, bytes(32), True, ((1, "ok"),)).to_bytes()),
    (EpochAttestation.from_bytes, EpochAttestation(bytes(16), KEY_ID, 2, 1).to_bytes()),
    (PieceDelivery.from_bytes, PieceDelivery(bytes(16), PiecePurpose.DRILL, KEY_ID, 2, 3, 1, bytes(32), bytes(32)).encode()),
]


@settings(max_examples=scaled(60), deadline=None)
@given(which=st.integers(0, len(_ENCODINGS) - 1), data=st.data())
def test_a_mutated_encoding_is_refused_or_canonical(which: int, data: st.DataObject) -> None:
    """Changing, dropping or appending bytes never gives a decoder anything but a GovernanceError
    or an object that re-encodes to exactly the bytes it read."""
    decode, good = _ENCODINGS[which]
    pos = data.draw(st.integers(0, len(good) - 1))
    mutated = data.draw(st.sampled_from([
        good[:pos] + bytes([good[pos] ^ data.draw(st.integers(1, 255))]) + good[pos + 1:],
        good[:pos],
        good + data.draw(st.binary(min_size=1, max_size=4)),
    ]))
    try:
        obj = decode(mutated)
    except GovernanceError:
        return
    reencoded = obj.to_bytes() if hasattr(obj, "to_bytes") else obj.encode()
    assert reencoded == mutated
