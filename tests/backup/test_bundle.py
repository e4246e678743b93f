"""Backup bundles of a real DKG (mpcnet.common.bundle, mpcnet.common.backup): a bundle verifies
publicly; each tampered part, commitment, piece or signature is refused naming the node or the
officer at fault; officers check their pieces and re-encrypt them to a ceremony's targets; a
target rebuilds the share from m good deliveries and refuses fewer or wrongly bound ones."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.group import G, Point, Q, scalar_to_bytes
from crypto_core.shamir import interpolate_at_zero
from governance.policy import AdminSet
from governance.recovery import BackupBundle, BackupPiece, PieceDelivery, PiecePurpose, SignedBackupPart, sign_backup_part
from mpcnet.common import agekeys
from mpcnet.common.backup import (
    drill_check,
    key_record,
    make_part,
    officer_check,
    officer_deliveries,
    open_deliveries,
    recover_key,
    recovered_share,
)
from mpcnet.common.bundle import BundleError, assemble_bundle, read_bundle, verify_bundle

from ..conftest import scaled
from .bundle_util import (
    ADMIN_KEYS,
    ADMINS,
    CREATED_MS,
    HISTORY,
    NODE_ENCRYPTION,
    NODE_IDENTITY,
    OFFICER_KEYS,
    ROOT,
    World,
    raw,
    world,
)

CEREMONY = bytes(range(16))
W = world()  # 2-of-3, committee (1, 2, 4), 3 officers, quorum 2


def resign(sp: SignedBackupPart, **changes: object) -> SignedBackupPart:
    """The part with ``changes``, signed again by its own node (a node that lies, not a forger)."""
    part = dataclasses.replace(sp.part, **changes)
    return sign_backup_part(part, NODE_IDENTITY[part.node])


def with_part(w: World, share_index: int, sp: SignedBackupPart) -> BackupBundle:
    parts = tuple(sp if p.part.share_index == share_index else p for p in w.bundle.parts)
    return dataclasses.replace(w.bundle, parts=parts)


def refused(bundle: BackupBundle, field: str, *, node: int | None = None, officer: int | None = None) -> BundleError:
    with pytest.raises(BundleError) as e:
        verify_bundle(bundle, ADMINS)
    assert e.value.field == field, e.value
    assert (e.value.node, e.value.officer) == (node, officer), e.value
    return e.value


# --- the public check ---------------------------------------------------------------------------


def test_a_bundle_of_a_real_dkg_verifies_and_round_trips() -> None:
    summary = verify_bundle(W.bundle, ADMINS)
    assert summary.committee == (1, 2, 4) and summary.threshold == 2 and summary.quorum == 2
    assert summary.officers == ("officer1", "officer2", "officer3") and summary.roster_versions == (1, 2, 2)
    assert summary.key_id == W.shares[1].key_id and summary.digest == W.bundle.digest()
    data = W.bundle.to_file()
    assert data.startswith(b"MPCNET-BACKUP-BUNDLE\n")
    again = read_bundle(data)
    assert again == W.bundle and again.to_file() == data
    assert verify_bundle(again, ADMINS) == summary
    assert summary.to_dict()["committee"] == [1, 2, 4]


def test_the_bundle_reveals_no_share_or_piece() -> None:
    data = W.bundle.to_file()
    for ks in W.shares.values():
        assert scalar_to_bytes(ks.secret_share) not in data


def test_assembly_orders_parts_and_cuts_the_roster_history() -> None:
    shuffled = assemble_bundle(W.key, W.config, HISTORY, tuple(reversed(W.parts)), CREATED_MS)
    assert shuffled == W.bundle
    w1 = dataclasses.replace(W, parts=tuple(resign(p, roster_version=1) for p in W.parts))
    b1 = assemble_bundle(W.key, W.config, HISTORY, w1.parts, CREATED_MS)
    assert len(b1.roster_history) == 1
    verify_bundle(b1, ADMINS)
    with pytest.raises(BundleError) as e:
        assemble_bundle(W.key, W.config, HISTORY, W.parts[:2], CREATED_MS)
    assert e.value.field == "parts" and e.value.node == 4
    with pytest.raises(BundleError) as e2:
        assemble_bundle(W.key, W.config, HISTORY, (*W.parts, W.parts[0]), CREATED_MS)
    assert e2.value.node == 1


def test_a_forged_signature_names_the_node() -> None:
    sp = W.bundle.parts[1]
    forged = SignedBackupPart(sp.part, bytes(64))
    refused(with_part(W, 2, forged), "parts[1].signature", node=2)
    by_other = sign_backup_part(sp.part, NODE_IDENTITY[1])
    refused(with_part(W, 2, by_other), "parts[1].signature", node=2)


def test_a_missing_part_names_the_node() -> None:
    refused(dataclasses.replace(W.bundle, parts=W.bundle.parts[:2]), "parts", node=4)


def test_a_part_of_the_wrong_node_names_it() -> None:
    sp = resign(W.bundle.parts[2], node=5)  # share index 3 belongs to node 4
    refused(with_part(W, 3, sp), "parts[2].node", node=5)


def test_a_commitment_that_is_not_the_public_share_names_the_node() -> None:
    sp = W.bundle.parts[0]
    bad = (Point.decode(sp.part.commitments[0]) + G).encode()
    refused(with_part(W, 1, resign(sp, commitments=(bad, *sp.part.commitments[1:]))), "parts[0].commitments[0]", node=1)


def test_a_commitment_off_the_curve_names_the_node() -> None:
    sp = W.bundle.parts[2]
    bad = b"\x02" + b"\xff" * 32  # x >= p
    refused(with_part(W, 3, resign(sp, commitments=(sp.part.commitments[0], bad))), "parts[2].commitments[1]", node=4)


def test_a_malformed_piece_file_names_the_node_and_officer() -> None:
    sp = W.bundle.parts[1]
    junk = b"age-encryption.org/v1\n-> scrypt AAAA 18\n\n--- " + b"A" * 43 + b"\n" + bytes(40)
    pieces = (sp.part.pieces[0], junk, sp.part.pieces[2])
    refused(with_part(W, 2, resign(sp, pieces=pieces)), "parts[1].pieces[1]", node=2, officer=2)


def test_a_public_share_off_the_polynomial_names_its_node() -> None:
    t, committee = 2, (1, 2, 3, 4)
    w = world(t, committee, seed=b"four")
    shares = list(w.key.public_shares)
    shares[3] = (Point.decode(shares[3]) + G).encode()
    key = dataclasses.replace(w.key, public_shares=tuple(shares))
    parts = tuple(resign(p, key_digest=key.digest()) for p in w.parts)
    bundle = dataclasses.replace(w.bundle, key=key, parts=parts)
    with pytest.raises(BundleError) as e:  # check_structure first: C_0 of node 4 is no longer its public share
        verify_bundle(bundle, ADMINS)
    assert e.value.node == 4
    part4 = resign(parts[3], commitments=(shares[3], *parts[3].part.commitments[1:]))
    bundle2 = dataclasses.replace(bundle, parts=(*parts[:3], part4))
    refused(bundle2, "key.public_shares[3]", node=4)


def test_a_wrong_key_id_is_refused() -> None:
    key = dataclasses.replace(W.key, key_id=bytes(32))
    parts = tuple(resign(p, key_id=bytes(32), key_digest=key.digest()) for p in W.parts)
    refused(dataclasses.replace(W.bundle, key=key, parts=parts), "key.key_id")


def test_another_admin_set_or_too_few_config_signatures_is_refused() -> None:
    others = AdminSet({n: raw(k) for n, k in ADMIN_KEYS.items()}, 2, b"\x07" * 32)
    with pytest.raises(BundleError) as e:
        verify_bundle(W.bundle, others)
    assert e.value.field == "governance_root"
    one = dataclasses.replace(W.config, signatures=W.config.signatures[:1])
    with pytest.raises(BundleError) as e2:
        verify_bundle(dataclasses.replace(W.bundle, config=one), ADMINS)
    assert e2.value.field.startswith("config")


def test_a_bundle_file_of_an_unknown_version_or_truncated_is_refused() -> None:
    data = W.bundle.to_file()
    with pytest.raises(BundleError) as e:
        read_bundle(data[:-1])
    assert e.value.field
    with pytest.raises(BundleError) as e2:
        read_bundle(b"MPCNET-BACKUP-BUNDLX\n" + data[21:])
    assert e2.value.field == "bundle"


# --- officers ------------------------------------------------------------------------------------


def test_every_officer_checks_her_pieces() -> None:
    for j in (1, 2, 3):
        report = officer_check(W.bundle, OFFICER_KEYS[j])
        assert report.officer_index == j and report.officer_name == f"officer{j}" and report.ok
        assert [(p.share_index, p.node, p.outcome) for p in report.pieces] == [(1, 1, "ok"), (2, 2, "ok"), (3, 4, "ok")]
    with pytest.raises(BundleError) as e:
        officer_check(W.bundle, OFFICER_KEYS[5])  # officer 5 is not in a 3-officer configuration
    assert e.value.field == "recovery_key"


def _lying_piece(w: World, share_index: int, officer: int, delta: int = 1, binding: dict[str, int] | None = None) -> BackupBundle:
    """The bundle with officer ``officer``'s piece of ``share_index`` replaced by a wrong value
    (or a wrong binding), re-signed by the node (a node that lies)."""
    sp = w.bundle.parts[share_index - 1]
    cfg = w.config.change.config
    old = BackupPiece.from_bytes(agekeys.decrypt(OFFICER_KEYS[officer], sp.part.pieces[officer - 1]))
    value = (int.from_bytes(old.value, "big") + delta) % Q
    fields = dict(key_id=old.key_id, epoch=old.epoch, share_index=old.share_index, officer_index=old.officer_index,
                  config_version=old.config_version, value=scalar_to_bytes(value))
    fields.update(binding or {})
    piece = agekeys.encrypt(cfg.officers[officer - 1].recipient, BackupPiece(**fields).encode())  # type: ignore[arg-type]
    pieces = list(sp.part.pieces)
    pieces[officer - 1] = piece
    return with_part(w, share_index, resign(sp, pieces=tuple(pieces)))


def test_a_bad_piece_passes_the_public_check_but_its_officer_names_it() -> None:
    bundle = _lying_piece(W, 2, 3)
    verify_bundle(bundle, ADMINS)  # the public check cannot see inside a piece
    report = officer_check(bundle, OFFICER_KEYS[3])
    assert not report.ok
    assert [(p.node, p.outcome) for p in report.pieces] == [(1, "ok"), (2, "bad-piece"), (4, "ok")]
    assert officer_check(bundle, OFFICER_KEYS[1]).ok
    with pytest.raises(BundleError) as e:
        officer_deliveries(bundle, OFFICER_KEYS[3], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL,
                           targets={2: agekeys.public_key(NODE_ENCRYPTION[2])})
    assert (e.value.node, e.value.officer) == (2, 3) and "bad-piece" in str(e.value)


def test_a_piece_bound_to_another_share_or_version_is_a_wrong_binding() -> None:
    for binding in ({"share_index": 1}, {"config_version": 2}, {"epoch": 1}, {"officer_index": 1}):
        bundle = _lying_piece(W, 3, 2, 0, binding)
        report = officer_check(bundle, OFFICER_KEYS[2])
        assert report.pieces[2].outcome == "wrong-binding", binding
        assert next(iter(binding)) in report.pieces[2].reason


def test_a_piece_to_the_wrong_officer_is_undecryptable() -> None:
    sp = W.bundle.parts[0]
    pieces = (sp.part.pieces[1], sp.part.pieces[1], sp.part.pieces[2])  # officer 2's piece in officer 1's slot
    bundle = with_part(W, 1, resign(sp, pieces=pieces))
    verify_bundle(bundle, ADMINS)
    assert officer_check(bundle, OFFICER_KEYS[1]).pieces[0].outcome == "undecryptable"


def test_a_tampered_higher_commitment_makes_every_officer_name_the_node() -> None:
    sp = W.bundle.parts[2]
    c1 = (Point.decode(sp.part.commitments[1]) + G).encode()
    bundle = with_part(W, 3, resign(sp, commitments=(sp.part.commitments[0], c1)))
    verify_bundle(bundle, ADMINS)
    for j in (1, 2, 3):
        assert [p.outcome for p in officer_check(bundle, OFFICER_KEYS[j]).pieces] == ["ok", "ok", "bad-piece"]


# --- deliveries -----------------------------------------------------------------------------------


def deliveries(w: World, purpose: PiecePurpose = PiecePurpose.DRILL, ceremony: bytes = CEREMONY,
               officers: tuple[int, ...] = (1, 2, 3), bundle: BackupBundle | None = None) -> dict[int, dict[int, bytes]]:
    """``{share index: {officer: age file}}``: every officer's pieces to every node of the committee."""
    b = bundle or w.bundle
    targets = {s: agekeys.public_key(NODE_ENCRYPTION[w.node(s)]) for s in range(1, len(w.committee) + 1)}
    out: dict[int, dict[int, bytes]] = {s: {} for s in targets}
    for j in officers:
        for s, data in officer_deliveries(b, OFFICER_KEYS[j], ceremony_id=ceremony, purpose=purpose, targets=targets).items():
            out[s][j] = data
    return out


def test_m_good_deliveries_rebuild_each_nodes_share() -> None:
    got = deliveries(W)
    for s, files in got.items():
        for pair in itertools.combinations(files, 2):
            secret, outcomes = open_deliveries(W.bundle, s, {j: files[j] for j in pair}, NODE_ENCRYPTION[W.node(s)],
                                               ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
            assert secret == W.shares[s].secret_share
            missing = ({1, 2, 3} - set(pair)).pop()
            assert outcomes == {**{j: "ok" for j in pair}, missing: "missing"}


def test_m_minus_1_good_deliveries_refuse_naming_officers() -> None:
    files = deliveries(W)[2]
    key = NODE_ENCRYPTION[2]
    secret, outcomes = open_deliveries(W.bundle, 2, {1: files[1]}, key, ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
    assert secret is None and outcomes == {1: "ok", 2: "missing", 3: "missing"}
    other = deliveries(W, ceremony=b"\x01" * 16)[2]
    secret, outcomes = open_deliveries(W.bundle, 2, {1: files[1], 3: other[3]}, key, ceremony_id=CEREMONY,
                                       purpose=PiecePurpose.DRILL)
    assert secret is None and outcomes == {1: "ok", 2: "missing", 3: "wrong-binding"}


@pytest.mark.parametrize(
    "what", ["ceremony", "purpose", "share", "key", "bundle", "undecryptable", "bad-piece"],
)
def test_a_wrongly_bound_delivery_is_named(what: str) -> None:
    files = dict(deliveries(W)[1])
    key = NODE_ENCRYPTION[1]
    target = agekeys.public_key(key)
    if what == "ceremony":
        files[2] = deliveries(W, ceremony=b"\x09" * 16, officers=(2,))[1][2]
    elif what == "purpose":
        files[2] = deliveries(W, purpose=PiecePurpose.RESTORE, officers=(2,))[1][2]
    elif what == "share":  # officer 2's piece of share 3, re-sent to node 1
        files[2] = deliveries(W, officers=(2,))[3][2]
        files[2] = _reencrypt(files[2], NODE_ENCRYPTION[4], target)
    elif what == "key":
        w2 = world(seed=b"other key")
        files[2] = deliveries(w2, officers=(2,))[1][2]
    elif what == "bundle":
        other_bundle = dataclasses.replace(W.bundle, created_ms=CREATED_MS + 1)
        files[2] = deliveries(W, officers=(2,), bundle=other_bundle)[1][2]
    elif what == "undecryptable":
        files[2] = deliveries(W, officers=(2,))[2][2]  # addressed to node 2
    else:  # right binding, wrong value
        d = PieceDelivery.from_bytes(agekeys.decrypt(key, files[2]))
        v = (int.from_bytes(d.value, "big") + 1) % Q
        files[2] = agekeys.encrypt(target, dataclasses.replace(d, value=scalar_to_bytes(v)).encode())
    expected = {"undecryptable": "undecryptable", "bad-piece": "bad-piece"}.get(what, "wrong-binding")
    secret, outcomes = open_deliveries(W.bundle, 1, files, key, ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
    assert secret == W.shares[1].secret_share  # officers 1 and 3 are still a quorum
    assert outcomes == {1: "ok", 2: expected, 3: "ok"}
    del files[3]
    secret, outcomes = open_deliveries(W.bundle, 1, files, key, ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
    assert secret is None and outcomes[2] == expected and outcomes[3] == "missing"


def _reencrypt(data: bytes, private: bytes, to: bytes) -> bytes:
    return agekeys.encrypt(to, agekeys.decrypt(private, data))


def test_open_deliveries_refuses_an_unknown_officer_or_share() -> None:
    files = deliveries(W)[1]
    with pytest.raises(BundleError) as e:
        open_deliveries(W.bundle, 1, {4: files[1]}, NODE_ENCRYPTION[1], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
    assert e.value.field == "ciphertexts"
    with pytest.raises(BundleError) as e2:
        open_deliveries(W.bundle, 4, files, NODE_ENCRYPTION[1], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL)
    assert e2.value.field == "share_index"


def test_a_drill_compares_with_the_live_share() -> None:
    files = deliveries(W)[3]
    key = NODE_ENCRYPTION[4]
    live = W.shares[3].secret_share
    assert drill_check(W.bundle, 3, files, key, ceremony_id=CEREMONY, live_share=live) == (True, {1: "ok", 2: "ok", 3: "ok"})
    ok, outcomes = drill_check(W.bundle, 3, files, key, ceremony_id=CEREMONY, live_share=live + 1)
    assert not ok and outcomes == {1: "ok", 2: "ok", 3: "ok"}  # the bundle is of another share than the live one
    ok, outcomes = drill_check(W.bundle, 3, {2: files[2]}, key, ceremony_id=CEREMONY, live_share=live)
    assert not ok and outcomes == {1: "missing", 2: "ok", 3: "missing"}
    restore = deliveries(W, purpose=PiecePurpose.RESTORE)[3]
    ok, outcomes = drill_check(W.bundle, 3, restore, key, ceremony_id=CEREMONY, live_share=live)
    assert not ok and set(outcomes.values()) == {"wrong-binding"}


def test_restore_gives_a_recovered_share_and_export_gives_the_key() -> None:
    got = deliveries(W, purpose=PiecePurpose.RESTORE)
    secret, _ = open_deliveries(W.bundle, 3, got[3], NODE_ENCRYPTION[4], ceremony_id=CEREMONY, purpose=PiecePurpose.RESTORE)
    assert secret is not None
    rs = recovered_share(W.bundle, 3, secret)
    assert rs.key_id == W.shares[3].key_id and rs.index == 3 and rs.epoch == 0 and rs.key_label == b"label"
    # break-glass: every officer's pieces of shares 1 and 2 to one off-line recipient
    offline, offline_pub = agekeys.generate()
    shares = {}
    for s in (1, 2):
        files = {j: officer_deliveries(W.bundle, OFFICER_KEYS[j], ceremony_id=CEREMONY, purpose=PiecePurpose.EXPORT,
                                       targets={s: offline_pub})[s] for j in (2, 3)}
        x, outcomes = open_deliveries(W.bundle, s, files, offline, ceremony_id=CEREMONY, purpose=PiecePurpose.EXPORT)
        assert x is not None and outcomes == {1: "missing", 2: "ok", 3: "ok"}
        shares[s] = x
    key = recover_key(W.bundle, shares)
    assert Point.base_mul(key) == W.shares[1].public_key
    assert key == interpolate_at_zero({s: W.shares[s].secret_share for s in (1, 3)})
    with pytest.raises(BundleError):
        recover_key(W.bundle, {1: shares[1]})
    with pytest.raises(BundleError) as e:
        recover_key(W.bundle, {1: shares[1], 2: (shares[2] + 1) % Q})
    assert e.value.node == 2


def test_make_part_refuses_a_key_record_of_another_share() -> None:
    other = world(seed=b"another")
    with pytest.raises(BundleError):
        make_part(W.shares[1], node=1, roster_version=1, governance_root=ROOT, config_change=W.config, key=other.key,
                  identity=NODE_IDENTITY[1], now_ms=1)
    with pytest.raises(BundleError) as e:
        make_part(W.shares[1], node=2, roster_version=1, governance_root=ROOT, config_change=W.config, key=W.key,
                  identity=NODE_IDENTITY[2], now_ms=1)
    assert e.value.field == "key.committee"
    with pytest.raises(BundleError) as e2:
        make_part(W.shares[1], node=1, roster_version=1, governance_root=b"\x01" * 32, config_change=W.config, key=W.key,
                  identity=NODE_IDENTITY[1], now_ms=1)
    assert e2.value.field == "config_change.governance_root"
    with pytest.raises(BundleError) as e3:
        officer_deliveries(W.bundle, OFFICER_KEYS[1], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL, targets={4: bytes(32)})
    assert e3.value.field == "targets[4]"
    with pytest.raises(BundleError) as e4:
        officer_deliveries(W.bundle, OFFICER_KEYS[1], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL, targets={1: bytes(32)})
    assert e4.value.field == "targets[1]"  # a low-order recipient
    assert key_record(W.shares[2], W.committee) == W.key


@given(st.data())
@settings(max_examples=scaled(6), deadline=None)
def test_any_quorum_of_officers_restores_any_node(data: st.DataObject) -> None:
    k = data.draw(st.integers(2, 4), label="k")
    m = data.draw(st.integers(2, k), label="m")
    t, committee = data.draw(st.sampled_from([(2, (1, 2, 4)), (2, (2, 3)), (3, (1, 2, 3, 5))]), label="key")
    w = world(t, committee, k=k, m=m, seed=b"prop")
    verify_bundle(w.bundle, ADMINS)
    s = data.draw(st.integers(1, len(committee)), label="share")
    officers = tuple(sorted(data.draw(st.sets(st.integers(1, k), min_size=m, max_size=m), label="officers")))
    target = {s: agekeys.public_key(NODE_ENCRYPTION[w.node(s)])}
    files = {j: officer_deliveries(w.bundle, OFFICER_KEYS[j], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL,
                                   targets=target)[s] for j in officers}
    secret, outcomes = open_deliveries(w.bundle, s, files, NODE_ENCRYPTION[w.node(s)], ceremony_id=CEREMONY,
                                       purpose=PiecePurpose.DRILL)
    assert secret == w.shares[s].secret_share
    assert Point.base_mul(secret).encode() == w.key.public_shares[s - 1]
    assert {j for j, o in outcomes.items() if o == "ok"} == set(officers)
    fewer = dict(itertools.islice(files.items(), m - 1))
    secret2, _ = open_deliveries(w.bundle, s, fewer, NODE_ENCRYPTION[w.node(s)], ceremony_id=CEREMONY,
                                 purpose=PiecePurpose.DRILL)
    assert secret2 is None


def test_the_public_bundle_module_loads_no_secret_crypto() -> None:
    """What the coordinator imports to check and assemble bundles holds no share or piece."""
    from ..test_import_contract import SECRET_CRYPTO_MODULES, _loaded_by

    loaded = _loaded_by("mpcnet.common.bundle")
    assert "crypto_core.feldman" in loaded
    assert not loaded & (SECRET_CRYPTO_MODULES | {"mpcnet.common.backup"}), sorted(loaded & SECRET_CRYPTO_MODULES)
