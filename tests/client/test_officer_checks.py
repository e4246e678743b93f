"""What an officer's client refuses before it decrypts anything (issue 12, attacker review):
piece destinations come from the bundle, the admin-signed order and a verified roster history
that extends the bundle's (mpcnet.common.bundle.ceremony_targets), never from the coordinator; a
ceremony's kind and order agree; an order is verified against the recovery configuration in
force, not the (perhaps old) bundle's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.recovery import SignedRecoveryOrder
from governance.roster import RosterChange, rotate_keys
from mpcnet.client import backup as sdk_backup
from mpcnet.client.errors import MpcError
from mpcnet.client.identities import Identity
from mpcnet.client.sdk import MpcClient
from mpcnet.common import agekeys
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

from .backup_fake import KEY_ID, RecoveryFake, officer_keys, signed_config
from .lifecycle_fake import admin_client, entry, node_keys, raw_ed, sign_both

Keys = dict[str, tuple[bytes, bytes]]


def configured(fake: RecoveryFake) -> Keys:
    keys = officer_keys()
    fake.config_history.append(signed_config(fake.admins.digest(), keys))
    fake.make_bundle()
    return keys


def officer(fake: RecoveryFake, name: str = "officer1") -> MpcClient:
    """A fresh officer client (it has seen no roster or configuration before)."""
    c = admin_client(fake)
    c.identity = Identity(name, "officer", None, Ed25519PrivateKey.generate())  # type: ignore[arg-type]
    return c


def replace_node3(fake: RecoveryFake) -> None:
    """Roster version 2: node 3's keys rotated to a replacement host's (seed 33)."""
    cur = fake.history[-1].change.new_roster
    ident, enc, fp = node_keys(33)
    new = rotate_keys(cur, 3, identity_key=raw_ed(ident), encryption_key=enc, tls_fingerprint=fp)
    fake.history.append(sign_both(RosterChange(new, cur.digest(), fake.admins.digest())))


def show_stale_roster(fake: RecoveryFake) -> None:
    """The coordinator shows roster version 1 only (node 3 still with its old, stolen keys)."""
    old = list(fake.history[:1])
    fake.evil["GetRoster"] = lambda r: node_pb2.RosterHistory(signed_changes=[h.to_bytes() for h in old],
                                                              governance_root=fake.admins.digest())


def edited(fake: RecoveryFake, cid: bytes, edit: Any) -> None:
    """GetCeremony of ``cid`` answers a copy changed by ``edit``."""
    def hook(c: Any) -> Any:
        out = type(c)()
        out.CopyFrom(c)
        if bytes(out.ceremony_id) == cid:
            edit(out)
        return out
    fake.evil["GetCeremony"] = hook


def approved_order(fake: RecoveryFake, *, nodes: list[int] | None = None, recipient: bytes | None = None) -> bytes:
    ada, bob, cyd = admin_client(fake, "ada"), admin_client(fake, "bob"), admin_client(fake, "cyd")
    order = (ada.build_recovery_order(KEY_ID, nodes=nodes or [3], reason="host lost") if recipient is None
             else ada.build_recovery_order(KEY_ID, export_recipient=recipient, reason="migrating"))
    p = ada.propose_recovery_order(order)
    bob.approve_lifecycle(p.proposal_id)
    if recipient is not None:
        cyd.approve_lifecycle(p.proposal_id)
    assert order.order_id in fake.ceremonies
    return order.order_id


def refused(fake: RecoveryFake, c: MpcClient, cid: bytes, key: bytes) -> MpcError:
    with pytest.raises(MpcError) as e:
        c.contribute(cid, key)
    assert "SubmitRecoveryPieces" not in fake.calls
    return e.value


def test_a_restore_after_a_replacement_is_refused_when_the_coordinator_shows_the_old_roster() -> None:
    fake = RecoveryFake()
    keys = configured(fake)  # the bundle was made at roster version 1
    replace_node3(fake)
    cid = approved_order(fake, nodes=[3])  # the order names roster version 2 (node 3 replaced)
    show_stale_roster(fake)
    old_key = entry(3).encryption_key
    edited(fake, cid, lambda c: setattr(c.targets[0], "recipient", old_key))
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "roster_history" in e.message and "older than the order's 2" in e.message


def test_a_drill_is_refused_when_the_roster_shown_does_not_extend_the_bundles() -> None:
    fake = RecoveryFake()
    replace_node3(fake)
    keys = configured(fake)  # the bundle carries roster history 1..2
    cid = bytes(fake._StartDrill(None).ceremony_id)
    show_stale_roster(fake)
    edited(fake, cid, lambda c: setattr(c.targets[2], "recipient", entry(3).encryption_key))
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert "roster_history" in e.message and "does not extend the bundle's roster history" in e.message


def test_a_drill_that_carries_an_order_is_malformed() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    restore = approved_order(fake, nodes=[3])
    signed = bytes(fake.ceremonies[restore].signed_order)
    cid = bytes(fake._StartDrill(None).ceremony_id)
    edited(fake, cid, lambda c: setattr(c, "signed_order", signed))
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert e.code == grpc.StatusCode.DATA_LOSS and "a drill carries no order" in e.message


def test_a_restore_or_export_without_its_order_is_malformed() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    for cid in (approved_order(fake, nodes=[3]), approved_order(fake, recipient=agekeys.generate()[1])):
        edited(fake, cid, lambda c: setattr(c, "signed_order", b""))
        e = refused(fake, officer(fake), cid, keys["officer1"][0])
        assert e.code == grpc.StatusCode.DATA_LOSS and "carries its admin-signed order, this one has none" in e.message


@pytest.mark.parametrize("kind", ["export", "restore"])
def test_an_order_is_verified_against_the_configuration_in_force_not_the_old_bundles(kind: str) -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    cid = approved_order(fake, nodes=[3]) if kind == "restore" else approved_order(fake, recipient=agekeys.generate()[1])
    # the admins change the recovery configuration (say, a higher export quorum, or an officer
    # removed); the coordinator keeps offering the old bundle and the order made for it
    first = fake.config_history[0]
    fake.config_history.append(signed_config(fake.admins.digest(), keys, version=2, quorum=2, prev=first.change.config))
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "order.config_version" in e.message and "configuration in force" in e.message


def test_a_bundle_whose_configuration_is_not_in_the_verified_chain_is_refused() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    cid = approved_order(fake, nodes=[3])
    other = signed_config(fake.admins.digest(), officer_keys())  # admin-signed, version 1, but not the chain shown
    fake.config_history[0] = other
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert "bundle.config" in e.message and "not a change of the verified recovery configuration chain" in e.message


def test_a_restore_and_a_drill_still_run_through_the_shared_checks() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    cid = approved_order(fake, nodes=[2, 4])
    for name in ("officer1", "officer3"):
        c = officer(fake, name).contribute(cid, keys[name][0])
    assert c.state == "done" and [t.state for t in c.targets] == ["ok", "ok"]
    drill = bytes(fake._StartDrill(None).ceremony_id)
    for name in ("officer2", "officer3"):
        c = officer(fake, name).contribute(drill, keys[name][0])
    assert c.state == "done" and [t.state for t in c.targets] == ["ok"] * 5


def _drill_with(fake: RecoveryFake, make: Any) -> tuple[bytes, Any]:
    cid = bytes(fake._StartDrill(None).ceremony_id)
    atts = make(cid)

    def edit(c: Any) -> None:
        del c.epoch_attestations[:]
        c.epoch_attestations.extend(atts)

    edited(fake, cid, edit)
    return cid, atts


def test_a_drill_without_threshold_epoch_attestations_gets_no_pieces() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    cid, _ = _drill_with(fake, lambda cid: [])
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "ceremony.epoch_attestations: 0 valid attestation(s) of epoch 0" in e.message and "threshold 3 needed" in e.message

    # two good ones; the rest do not count: a repeat, a forged signature, another ceremony, a
    # non-member, garbage
    other_cid = b"\x07" * 16
    cid, _ = _drill_with(fake, lambda cid: [
        fake.attestation(cid, 1), fake.attestation(cid, 2), fake.attestation(cid, 2), fake.attestation(cid, 3, seed=99),
        fake.attestation(other_cid, 4), fake.attestation(cid, 6), b"\x00garbage",
    ])
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert "2 valid attestation(s)" in e.message and "nodes [1, 2]" in e.message
    for why in ("node 2 twice", "node 3's signature does not verify", "node 4's is for another ceremony or key",
                "node 6 is not an active member", "malformed"):
        assert why in e.message, why


def test_a_drill_of_a_superseded_bundle_is_refused_on_one_attestation_of_the_live_epoch() -> None:
    fake = RecoveryFake()
    keys = configured(fake)  # bundle of epoch 0; the nodes have refreshed to epoch 1 (the fake lists no newer bundle)
    cid, _ = _drill_with(fake, lambda cid: [fake.attestation(cid, n) for n in (1, 2, 3, 4)] + [fake.attestation(cid, 5, epoch=1)])
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert "epoch_attestations[4]: node 5 attests live epoch 1, the bundle is of epoch 0" in e.message


def test_a_drill_with_threshold_attestations_of_the_bundles_epoch_runs() -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    cid, _ = _drill_with(fake, lambda cid: [fake.attestation(cid, n) for n in (2, 4, 5)])
    officer(fake, "officer1").contribute(cid, keys["officer1"][0])
    c = officer(fake, "officer2").contribute(cid, keys["officer2"][0])
    assert c.state == "done" and [t.state for t in c.targets] == ["ok"] * 5


def test_an_expired_restore_order_gets_no_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = RecoveryFake()
    keys = configured(fake)
    cid = approved_order(fake, nodes=[3])
    expires_ms = SignedRecoveryOrder.from_bytes(bytes(fake.ceremonies[cid].signed_order)).order.expires_ms
    monkeypatch.setattr(sdk_backup.time, "time", lambda: expires_ms / 1000 + 1)
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert "order.expires_ms" in e.message


def test_a_drill_kept_open_past_its_attestations_freshness_gets_no_pieces() -> None:
    """Attack (wiring review): a coordinator opens a drill while every node is at epoch 0, keeps
    it open past a refresh (the attestations it collected stay valid signatures) and hides the
    newer bundle: an officer would hand each holder, perhaps corrupted since, its
    refreshed-away share. Officers count only attestations at most 24 h old (or 5 min ahead)."""
    import time

    from mpcnet.client.backup import ATTESTATION_MAX_AGE_MS, ATTESTATION_SKEW_MS

    fake = RecoveryFake()
    keys = configured(fake)
    now = int(time.time() * 1000)
    old = now - ATTESTATION_MAX_AGE_MS - 60_000
    cid, _ = _drill_with(fake, lambda cid: [fake.attestation(cid, n, attested_ms=old) for n in (1, 2, 3, 4, 5)])
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "0 valid attestation(s)" in e.message and "not within 24 h of now" in e.message and "start a new drill" in e.message
    ahead = now + ATTESTATION_SKEW_MS + 60_000
    cid, _ = _drill_with(fake, lambda cid: [fake.attestation(cid, n, attested_ms=ahead) for n in (1, 2, 3)]
                         + [fake.attestation(cid, n) for n in (4, 5)])
    e = refused(fake, officer(fake), cid, keys["officer1"][0])
    assert "2 valid attestation(s)" in e.message and "nodes [4, 5]" in e.message
    # three recent ones (one an hour old) are enough
    cid, _ = _drill_with(fake, lambda cid: [fake.attestation(cid, 1, attested_ms=now - 3_600_000)]
                         + [fake.attestation(cid, n) for n in (2, 3)])
    c = officer(fake).contribute(cid, keys["officer1"][0])
    assert c.ceremony_id == cid


def test_an_export_under_a_rolled_back_configuration_gets_no_pieces(tmp_path: Path) -> None:
    """Attack (wiring review): every ``mpc`` command is a fresh process, and an export needs no
    node that would refuse it; a coordinator showing an older, still admin-signed recovery
    configuration (lower export quorum, an officer since removed) got an export order of that
    configuration honoured. The identity's seen-chains file (mpcnet.client.seen) remembers the
    chain it verified before, across processes."""
    from mpcnet.client.seen import SeenChains

    fake = RecoveryFake()
    keys = configured(fake)
    cid = approved_order(fake, recipient=agekeys.generate()[1])  # an export order of configuration 1
    first = fake.config_history[0]
    fake.config_history.append(signed_config(fake.admins.digest(), keys, version=2, quorum=2, prev=first.change.config))
    seen = tmp_path / "seen-chains.json"
    earlier = officer(fake)
    earlier.seen_chains = SeenChains(seen, fake.admins.digest())
    assert earlier.recovery_config().config is not None  # an earlier command verified configuration 2 (and the roster)
    earlier.roster()
    shown = [first.to_bytes()]  # now the coordinator shows configuration 1 only (every signature on it is genuine)
    fake.evil["GetRecoveryConfig"] = lambda r: coordinator_pb2.RecoveryConfigHistory(history=shown,
                                                                                     governance_root=fake.admins.digest())
    later = officer(fake)  # a new process: nothing in memory
    later.seen_chains = SeenChains(seen, fake.admins.digest())
    e = refused(fake, later, cid, keys["officer1"][0])
    assert e.code == grpc.StatusCode.DATA_LOSS and e.message.startswith("recovery_config: the coordinator shows 1 change(s)")
    assert "does not extend the 2 this identity verified before" in e.message
    # a fresh identity (no file) still trusts what it is shown first
    fresh = officer(fake)
    fresh.seen_chains = SeenChains(tmp_path / "other.json", fake.admins.digest())
    assert fresh.recovery_config().config is not None and fresh.recovery_config().config.version == 1  # type: ignore[union-attr]


def test_the_seen_chains_file_refuses_a_rolled_back_roster_and_a_malformed_file(tmp_path: Path) -> None:
    from mpcnet.client.seen import SeenChains

    fake = RecoveryFake()
    configured(fake)
    old = list(fake.history)
    replace_node3(fake)
    seen = tmp_path / "seen-chains.json"
    c = officer(fake)
    c.seen_chains = SeenChains(seen, fake.admins.digest())
    assert c.roster().version == 2
    assert oct(seen.stat().st_mode & 0o777) == "0o600"
    fake.history[:] = old  # the coordinator shows roster version 1 again
    later = officer(fake)
    later.seen_chains = SeenChains(seen, fake.admins.digest())
    with pytest.raises(MpcError) as e:
        later.roster()
    assert e.value.code == grpc.StatusCode.DATA_LOSS and e.value.message.startswith("roster: the coordinator shows 1 change(s)")
    # another cluster's marks (re-created in the same directory) are not this one's
    other = officer(fake)
    other.seen_chains = SeenChains(seen, b"\x01" * 32)
    assert other.roster().version == 1
    seen.write_text(json.dumps({"version": 1, "root": fake.admins.digest().hex(), "chains": {"roster": {"changes": 0, "last": "zz"}}}))
    with pytest.raises(MpcError) as e:
        later.roster()
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "not a seen-chains file" in e.value.message
