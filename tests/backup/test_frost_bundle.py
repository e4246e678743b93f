"""Backup bundles of FROST keys (issue 16 item 5): ed25519 and schnorr-secp256k1-bip340 keys from
the real FROST DKG back up, verify, check, drill, restore and export like ECDSA keys, in their own
group; the key record names the scheme (BackupKey v2) and decodes strictly; a tampered part,
commitment or piece names the node or officer at fault; ECDSA records encode as before."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from crypto_core.errors import DecodeError
from crypto_core.frost.group import ED25519, SECP256K1, Group
from crypto_core.frost.poly import interpolate_scalars
from governance.encoding import Encoder
from governance.errors import GovernanceError
from governance.recovery import (
    BACKUP_KEY_TAG,
    BACKUP_KEY_V2_TAG,
    BackupBundle,
    BackupKey,
    BackupPiece,
    PiecePurpose,
    SignedBackupPart,
    sign_backup_part,
)
from mpcnet.common import agekeys
from mpcnet.common.backup import (
    drill_check,
    make_part,
    officer_check,
    officer_deliveries,
    open_deliveries,
    recover_key,
    recovered_share,
)
from mpcnet.common.bundle import BundleError, read_bundle, verify_bundle

from ..crypto.frost.frost_util import bad_elements
from .bundle_util import ADMINS, NODE_ENCRYPTION, NODE_IDENTITY, OFFICER_KEYS, ROOT, World, world

CEREMONY = bytes(range(16))
SCHEMES = ("ed25519", "schnorr-secp256k1-bip340")
GROUPS: dict[str, Group] = {"ed25519": ED25519, "schnorr-secp256k1-bip340": SECP256K1}
_WORLDS: dict[str, World] = {}


def W(scheme: str) -> World:
    """2-of-3 FROST key of ``scheme``, committee (1, 2, 4), 3 officers, quorum 2."""
    if scheme not in _WORLDS:
        _WORLDS[scheme] = world(scheme=scheme)
    return _WORLDS[scheme]


def resign(sp: SignedBackupPart, **changes: Any) -> SignedBackupPart:
    part = dataclasses.replace(sp.part, **changes)
    return sign_backup_part(part, NODE_IDENTITY[part.node])


def with_part(w: World, share_index: int, sp: SignedBackupPart) -> BackupBundle:
    parts = tuple(sp if p.part.share_index == share_index else p for p in w.bundle.parts)
    return dataclasses.replace(w.bundle, parts=parts)


def refused(bundle: BackupBundle, field: str, node: int | None = None) -> BundleError:
    with pytest.raises(BundleError) as e:
        verify_bundle(bundle, ADMINS)
    assert (e.value.field, e.value.node) == (field, node), e.value
    return e.value


def deliveries(w: World, purpose: PiecePurpose = PiecePurpose.DRILL, officers: tuple[int, ...] = (1, 2, 3)) -> dict[int, dict[int, bytes]]:
    targets = {s: agekeys.public_key(NODE_ENCRYPTION[w.node(s)]) for s in range(1, len(w.committee) + 1)}
    out: dict[int, dict[int, bytes]] = {s: {} for s in targets}
    for j in officers:
        for s, data in officer_deliveries(w.bundle, OFFICER_KEYS[j], ceremony_id=CEREMONY, purpose=purpose, targets=targets).items():
            out[s][j] = data
    return out


# --- the bundle and its key record --------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_frost_bundle_verifies_round_trips_and_names_its_scheme(scheme: str) -> None:
    w = W(scheme)
    group = GROUPS[scheme]
    summary = verify_bundle(w.bundle, ADMINS)
    assert summary.scheme == scheme and summary.to_dict()["scheme"] == scheme
    assert summary.key_id == w.shares[1].key_id and summary.public_key == w.shares[1].public_key
    assert len(summary.public_key) == group.element_len and w.bundle.key.chain_code == b""
    assert all(len(c) == group.element_len for p in w.bundle.parts for c in p.part.commitments)
    assert w.bundle.key.encode().startswith(Encoder(BACKUP_KEY_V2_TAG).finish())
    data = w.bundle.to_file()
    again = read_bundle(data)
    assert again == w.bundle and again.to_file() == data and verify_bundle(again, ADMINS) == summary
    assert BackupKey.from_dict(w.bundle.key.to_dict()) == w.bundle.key
    for share in w.shares.values():  # no share or piece in the file
        assert group.encode_scalar(share.secret_share) not in data


def test_an_ecdsa_key_record_is_still_version_1() -> None:
    key = world().key
    assert key.scheme == "ecdsa-secp256k1" and not key.is_frost
    assert key.encode().startswith(Encoder(BACKUP_KEY_TAG).finish()) and "scheme" not in key.to_dict()
    assert BackupKey.from_bytes(key.encode()) == key


def _v2(key: BackupKey, scheme: str, pk: bytes, cc: bytes, shares: tuple[bytes, ...]) -> bytes:
    enc = Encoder(BACKUP_KEY_V2_TAG).raw(key.key_id).text(scheme).raw(pk).raw(cc).text(key.label)
    enc.uint(key.threshold).uint(key.epoch).count(len(key.committee))
    for i in key.committee:
        enc.uint(i)
    enc.count(len(shares))
    for s in shares:
        enc.raw(s)
    return enc.finish()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_frost_key_record_decodes_strictly_naming_the_field(scheme: str) -> None:
    key = W(scheme).key
    pk, shares = key.public_key, key.public_shares
    assert BackupKey.from_bytes(_v2(key, scheme, pk, b"", shares)) == key
    other_len = bytes(33 if len(pk) == 32 else 32)
    cases = {
        "scheme": _v2(key, "ecdsa-secp256k1", pk, b"", shares),
        "scheme ": _v2(key, "ed448", pk, b"", shares),
        "chain_code": _v2(key, scheme, pk, bytes(32), shares),
        "public_key": _v2(key, scheme, other_len, b"", shares),
        "public_shares[1]": _v2(key, scheme, pk, b"", (shares[0], other_len, shares[2])),
    }
    for field, data in cases.items():
        with pytest.raises(GovernanceError) as e:
            BackupKey.from_bytes(data)
        assert e.value.field == field.strip(), (field, e.value)
    with pytest.raises(GovernanceError):
        BackupKey.from_bytes(key.encode() + b"\x00")
    with pytest.raises(GovernanceError) as e:
        dataclasses.replace(key, chain_code=bytes(32))
    assert e.value.field == "chain_code"
    with pytest.raises(GovernanceError) as e:
        BackupKey.from_dict(key.to_dict() | {"scheme": "ecdsa-secp256k1"})
    assert e.value.field == "scheme"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wrong_key_id_or_public_share_is_refused(scheme: str) -> None:
    w = W(scheme)
    other = world(scheme=scheme, seed=b"another")
    bad_id = dataclasses.replace(w.bundle, key=dataclasses.replace(w.key, key_id=other.key.key_id))
    refused(bad_id, "parts[0].key_id", node=1)  # the parts name the real key id (check_key_public: below)
    # an ECDSA-looking record of the same points: another key id, refused
    shares = list(w.key.public_shares)
    shares[2] = other.key.public_shares[2]
    key = dataclasses.replace(w.key, public_shares=tuple(shares))
    bundle = dataclasses.replace(w.bundle, key=key)
    with pytest.raises(BundleError):
        verify_bundle(bundle, ADMINS)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_bad_commitment_names_the_node(scheme: str) -> None:
    w = W(scheme)
    sp = w.bundle.parts[1]
    for why, bad in bad_elements(scheme).items():
        try:
            part = resign(sp, commitments=(sp.part.commitments[0], bad))
        except GovernanceError:
            continue  # refused by the governance shape check already (wrong length, prefix)
        err = refused(with_part(w, 2, part), "parts[1].commitments[1]", node=2)
        assert err.node == 2, why
    swapped = resign(sp, commitments=(w.bundle.parts[0].part.commitments[0], sp.part.commitments[1]))
    refused(with_part(w, 2, swapped), "parts[1].commitments[0]", node=2)


def test_an_ed25519_part_with_secp256k1_commitments_is_refused() -> None:
    w, other = W("ed25519"), W("schnorr-secp256k1-bip340")
    sp = w.bundle.parts[0]
    with pytest.raises(GovernanceError) as e:
        resign(sp, commitments=(sp.part.commitments[0], other.bundle.parts[0].part.commitments[1]))
    assert e.value.field == "commitments[1]"  # one group per part
    mixed = resign(sp, commitments=other.bundle.parts[0].part.commitments)
    with pytest.raises(BundleError) as e2:
        verify_bundle(with_part(w, 1, mixed), ADMINS)
    assert e2.value.node == 1


# --- officers, deliveries, drills, restore and export ---------------------------------------------


def _lying_piece(w: World, scheme: str, share_index: int, officer: int) -> BackupBundle:
    group = GROUPS[scheme]
    sp = w.bundle.parts[share_index - 1]
    cfg = w.config.change.config
    old = BackupPiece.from_bytes(agekeys.decrypt(OFFICER_KEYS[officer], sp.part.pieces[officer - 1]))
    value = (group.decode_scalar(old.value) + 1) % group.order
    piece = dataclasses.replace(old, value=group.encode_scalar(value))
    pieces = list(sp.part.pieces)
    pieces[officer - 1] = agekeys.encrypt(cfg.officers[officer - 1].recipient, piece.encode())
    return with_part(w, share_index, resign(sp, pieces=tuple(pieces)))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_officer_checks_and_a_bad_piece_is_named(scheme: str) -> None:
    w = W(scheme)
    for j in (1, 2, 3):
        assert officer_check(w.bundle, OFFICER_KEYS[j]).ok
    bundle = _lying_piece(w, scheme, 2, 3)
    verify_bundle(bundle, ADMINS)  # the public check cannot see inside a piece
    report = officer_check(bundle, OFFICER_KEYS[3])
    assert [(p.node, p.outcome) for p in report.pieces] == [(1, "ok"), (2, "bad-piece"), (4, "ok")]
    with pytest.raises(BundleError) as e:
        officer_deliveries(bundle, OFFICER_KEYS[3], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL,
                           targets={2: agekeys.public_key(NODE_ENCRYPTION[2])})
    assert (e.value.node, e.value.officer) == (2, 3)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_any_quorum_of_deliveries_rebuilds_each_share_and_drills(scheme: str) -> None:
    w = W(scheme)
    got = deliveries(w)
    for s, files in got.items():
        key = NODE_ENCRYPTION[w.node(s)]
        for pair in itertools.combinations(files, 2):
            secret, outcomes = open_deliveries(w.bundle, s, {j: files[j] for j in pair}, key, ceremony_id=CEREMONY,
                                               purpose=PiecePurpose.DRILL)
            assert secret == w.shares[s].secret_share
            assert {j for j, o in outcomes.items() if o == "ok"} == set(pair)
        secret, outcomes = open_deliveries(w.bundle, s, {1: files[1]}, key, ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
        assert secret is None and outcomes == {1: "ok", 2: "missing", 3: "missing"}
        live = w.shares[s].secret_share
        assert drill_check(w.bundle, s, files, key, ceremony_id=CEREMONY, live_share=live)[0]
        assert not drill_check(w.bundle, s, files, key, ceremony_id=CEREMONY, live_share=live + 1)[0]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_export_gives_the_group_secret_and_a_frost_key_is_no_recovered_ecdsa_share(scheme: str) -> None:
    w = W(scheme)
    group = GROUPS[scheme]
    offline, offline_pub = agekeys.generate()
    shares = {}
    for s in (1, 3):
        files = {j: officer_deliveries(w.bundle, OFFICER_KEYS[j], ceremony_id=CEREMONY, purpose=PiecePurpose.EXPORT,
                                       targets={s: offline_pub})[s] for j in (1, 2)}
        x, _ = open_deliveries(w.bundle, s, files, offline, ceremony_id=CEREMONY, purpose=PiecePurpose.EXPORT)
        assert x is not None
        shares[s] = x
    secret = recover_key(w.bundle, shares)
    assert group.encode(group.base_mul(secret)) == w.key.public_key
    assert secret == interpolate_scalars(group, {s: w.shares[s].secret_share for s in (1, 2)})
    with pytest.raises(BundleError) as e:
        recover_key(w.bundle, {1: shares[1], 3: (shares[3] + 1) % group.order})
    assert e.value.node == 4
    with pytest.raises(DecodeError) as e2:
        recovered_share(w.bundle, 1, shares[1])
    assert e2.value.field == "key.scheme"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_make_part_refuses_a_record_of_another_scheme_or_key(scheme: str) -> None:
    w = W(scheme)
    other = W(next(s for s in SCHEMES if s != scheme))
    for key in (other.key, world().key):
        with pytest.raises(BundleError):
            make_part(w.shares[1], node=1, roster_version=1, governance_root=ROOT, config_change=w.config, key=key,
                      identity=NODE_IDENTITY[1], now_ms=1)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_key_records_group_checks_name_the_field(scheme: str) -> None:
    from mpcnet.common.key_group import check_key_public

    w, other = W(scheme), world(scheme=scheme, seed=b"another")
    check_key_public(w.key)
    with pytest.raises(DecodeError) as e:
        check_key_public(dataclasses.replace(w.key, key_id=other.key.key_id))
    assert e.value.field == "key_id"
    shares = list(w.key.public_shares)
    shares[2] = other.key.public_shares[2]
    with pytest.raises(DecodeError) as e:
        check_key_public(dataclasses.replace(w.key, public_shares=tuple(shares)))
    assert e.value.field == "public_shares[2]"
    with pytest.raises(DecodeError) as e:
        check_key_public(dataclasses.replace(w.key, public_key=other.key.public_key))
    assert e.value.field == "public_shares"


def test_the_public_bundle_checks_load_no_frost_share_splitting() -> None:
    """What the coordinator imports to check FROST bundles does not load the secret split/rebuild."""
    from ..test_import_contract import _loaded_by

    loaded = _loaded_by("mpcnet.common.bundle")
    assert "crypto_core.frost.feldman" in loaded and "mpcnet.common.key_group" in loaded
    assert not loaded & {"crypto_core.frost.backup", "crypto_core.backup", "mpcnet.common.backup"}


# --- recovery orders of FROST keys (RecoveryOrder v2) ---------------------------------------------


def _frost_order(w: World, **changes: Any) -> Any:
    from governance.keyop import KeyOperation, KeyOpKind
    from governance.recovery import RecoveryOrder, RecoveryOrderKind, RecoveryTarget

    key = w.key
    follow = KeyOperation(ROOT, bytes(16), KeyOpKind.REFRESH, key.key_id, key.public_key, b"", key.epoch, 2, key.committee, 2,
                          key.committee, 1, "after the restore", scheme=key.scheme)
    fields: dict[str, Any] = dict(
        governance_root=ROOT, order_id=bytes(range(16)), kind=RecoveryOrderKind.RESTORE, key_id=key.key_id,
        public_key=key.public_key, chain_code=b"", epoch=key.epoch, bundle_digest=w.bundle.digest(), config_version=1,
        roster_version=1, targets=(RecoveryTarget(2, 2),), export_recipient=b"", follow_up=follow, reason="disk lost",
        expires_ms=10**13, scheme=key.scheme,
    )
    fields.update(changes)
    return RecoveryOrder(**fields)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_frost_recovery_order_is_v2_round_trips_and_matches_only_its_bundle(scheme: str) -> None:
    from governance.recovery import RECOVERY_ORDER_TAG, RECOVERY_ORDER_V2_TAG, RecoveryOrder
    from mpcnet.common.bundle import check_order_bundle

    w = W(scheme)
    order = _frost_order(w)
    data = order.encode()
    assert data.startswith(Encoder(RECOVERY_ORDER_V2_TAG).finish())
    assert RecoveryOrder.from_bytes(data) == order and RecoveryOrder.from_dict(order.to_dict()) == order
    check_order_bundle(order, w.bundle)
    with pytest.raises(GovernanceError) as e:
        RecoveryOrder.from_bytes(data + b"\x00")
    with pytest.raises(GovernanceError) as e:  # the same fields under the v1 tag: a 33-byte key and a chain code expected
        RecoveryOrder.from_bytes(Encoder(RECOVERY_ORDER_TAG).finish() + data[len(Encoder(RECOVERY_ORDER_V2_TAG).finish()):])
    with pytest.raises(GovernanceError) as e:
        _frost_order(w, chain_code=bytes(32))
    assert e.value.field == "chain_code"
    other = next(s for s in SCHEMES if s != scheme)
    with pytest.raises(GovernanceError) as e:
        _frost_order(w, scheme=other)  # the follow-up names the key's scheme (or the key length differs)
    assert e.value.field in ("public_key", "follow_up.scheme")
    with pytest.raises(GovernanceError) as e:
        RecoveryOrder.from_dict(order.to_dict() | {"scheme": "ecdsa-secp256k1"})
    assert e.value.field == "scheme"
    ecdsa = world()  # an order for another key's bundle is refused naming the field
    with pytest.raises(BundleError) as e2:
        check_order_bundle(order, ecdsa.bundle)
    assert e2.value.field.startswith("order.")
