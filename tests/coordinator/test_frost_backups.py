"""The coordinator backs up and drills FROST keys (issue 16 item 5) as it does ECDSA keys: its
background pass collects a bundle of every active key, an ed25519 / bip340 one included (the key
record names its scheme and the bundle verifies in the key's group), ``ExportBackup`` serves it,
``ClusterStatus`` lists it, and a drill of it runs to ``done`` once two officers gave pieces.

The in-process world of tests/coordinator/recovery_util.py, whose fake nodes also hold a share of
a FROST key from the real FROST DKG and make its parts with :func:`mpcnet.common.backup.make_part`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.db import KeyRecord, now_ms
from crypto_core.frost.keyshare import FrostKeyShare
from governance.recovery import BackupBundle, DrillReport, PiecePurpose, sign_drill_report
from mpcnet.common.backup import key_record, make_part
from mpcnet.common.bundle import verify_bundle
from mpcnet.wire.mpc.v1 import node_pb2
from tests.coordinator.recovery_util import FakeNode, World, _outcomes
from tests.crypto.frost.frost_util import keygen

SCHEMES = ("ed25519", "schnorr-secp256k1-bip340")


class FrostNode(FakeNode):
    """A fake node that also holds ``frost``, its share of a FROST key (parts and drills by the
    real :mod:`mpcnet.common.backup` code); the ECDSA key's calls go to :class:`FakeNode`."""

    frost: FrostKeyShare

    def GetBackupPart(self, req: node_pb2.GetBackupPartRequest, **kw: Any) -> node_pb2.GetBackupPartResponse:
        if bytes(req.key_id) != self.frost.key_id:
            return super().GetBackupPart(req, **kw)
        self._up()
        change = self._config()
        slot = (bytes(req.key_id), req.epoch, change.change.config.version)
        if slot not in self.parts:
            part = make_part(
                self.frost, node=self.index, roster_version=1, governance_root=self.world.admins.digest(), config_change=change,
                key=key_record(self.frost, (1, 2, 3)), identity=self.identity, now_ms=now_ms(),
            )
            self.parts[slot] = part.to_bytes()
        return node_pb2.GetBackupPartResponse(signed_part=self.parts[slot])

    def DrillShare(self, req: node_pb2.DrillShareRequest, **kw: Any) -> node_pb2.DrillShareResponse:
        bundle = BackupBundle.from_file(bytes(req.bundle))
        if bundle.key.key_id != self.frost.key_id:
            return super().DrillShare(req, **kw)
        self._up()
        self.drills += 1
        secret, outcomes = self._open(bytes(req.bundle), [bytes(p) for p in req.pieces], bytes(req.ceremony_id), PiecePurpose.DRILL)
        ok = secret is not None and secret == self.frost.secret_share
        report = sign_drill_report(DrillReport(
            bytes(req.ceremony_id), bundle.key.key_id, 0, self.index, self.index, bundle.digest(), ok, tuple(sorted(outcomes.items())),
        ), self.identity)
        return node_pb2.DrillShareResponse(report=report.to_bytes(), outcomes=_outcomes(outcomes))


class FrostWorld(World):
    node_class = FrostNode

    def __init__(self, directory: Path, scheme: str) -> None:
        super().__init__(directory)
        shares = keygen(scheme, 2, 3)
        for ks in shares:
            node = self.nodes[ks.index]
            assert isinstance(node, FrostNode)
            node.frost = ks
        first = shares[0]
        self.frost_id = first.key_id
        self.db.add_key(
            KeyRecord(first.key_id, first.key_label.decode(), first.public_key, b"", 2, 3, "active", now_ms(), "keygen-2", scheme),
            tuple(first.public_shares),
        )


@pytest.fixture(params=SCHEMES)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FrostWorld]:
    w = FrostWorld(tmp_path, request.param)
    yield w
    w.close()


def test_a_frost_key_is_backed_up_exported_listed_and_drilled(world: FrostWorld) -> None:
    world.configure(drill_period_s=86400)
    stored = world.backups.check()
    assert len(stored) == 2  # the ECDSA key's bundle and the FROST key's
    newest = world.db.newest_bundle(world.frost_id)
    assert newest is not None and newest.digest in stored
    bundle = BackupBundle.from_file(newest.bundle)
    scheme = world.nodes[1].frost.scheme  # type: ignore[attr-defined]
    assert bundle.key.scheme == scheme and bundle.key.chain_code == b""
    assert verify_bundle(bundle, world.admins).key_id == world.frost_id
    info = world.backups.export(world.frost_id, b"", "admin")  # no longer refused
    assert info.bundle_digest == newest.digest and ("backup-export", "exported") in world.actions()
    status = {r.key_id: r for r in world.backups.status()}
    assert status[world.frost_id].backed_up and status[world.key_id].backed_up
    # a drill of the FROST key: two officers' pieces, every node rebuilds its share
    c = world.ceremonies.start_drill(world.frost_id, "officer1")
    assert c.bundle_digest == newest.digest
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    done = world.ceremonies.submit(world.pieces("officer3", c.ceremony_id, PiecePurpose.DRILL), "officer3")
    assert done.state == "done", done.error
    assert all(t.state == "ok" for t in done.targets)
    row = {r.key_id: r for r in world.backups.status()}[world.frost_id]
    assert row.last_drill_outcome == "ok" and not row.drill_overdue
    assert ("drill-recorded", "ok") in world.actions()
