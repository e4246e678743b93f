"""The roster as a live governance object (issue 11 item 3), in process with real stores:
:class:`mpc_node.roster_state.NodeRoster` (install, refusals, restart, a conflicting config),
:class:`coordinator.roster.RosterBook` (apply, refusals, restart) and
:class:`coordinator.nodes.NodeRegistry` (handles following the roster)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import grpc
import pytest

from coordinator.config import CoordinatorConfig, NodeEndpoint, load_coordinator_config
from coordinator.db import CoordinatorDb
from coordinator.nodes import NodeRegistry
from coordinator.roster import RosterBook, RosterStartError as CoordinatorRosterStartError
from governance.roster import Roster, SignedRosterChange, change_endpoint, revoke_node, rotate_keys
from mpc_node.audit_outbox import AuditFlusher
from mpc_node.config import NodeConfig, load_node_config
from mpc_node.roster_state import NodeRoster, RosterStartError
from mpc_node.storage import NodeStore
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.rostertools import cert_fingerprint, history, signed_next

N, T = 4, 2
Code = grpc.StatusCode
PASS = b"roster test passphrase"


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("roster-state"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def genesis(lay: Layout) -> SignedRosterChange:
    (g,) = history(lay)
    return g


@pytest.fixture(scope="module")
def moved(lay: Layout, genesis: SignedRosterChange) -> SignedRosterChange:
    """Version 2: node 2 at another endpoint (epoch unchanged)."""
    r1 = genesis.change.new_roster
    return signed_next(lay, r1, change_endpoint(r1, 2, "127.0.0.1:1"))


@pytest.fixture(scope="module")
def revoked(lay: Layout, moved: SignedRosterChange) -> SignedRosterChange:
    """Version 3: node 4 revoked (epoch 1)."""
    r2 = moved.change.new_roster
    return signed_next(lay, r2, revoke_node(r2, 4))


class _Node:
    """One node's roster state over its own store and audit log in a directory."""

    def __init__(self, lay: Layout, d: Path, cfg: NodeConfig | None = None) -> None:
        self.cfg = cfg or load_node_config(lay.node_config(1))
        keys = load_keystore(self.cfg.keystore, read_passphrase(file=self.cfg.passphrase_file, env=self.cfg.passphrase_env))
        self.store = NodeStore.open(d / "node.db", PASS, self.cfg.index, scrypt_n=2**10)
        self.audit = AuditLog.open(d / "audit.db", component=self.cfg.name, signing_key=keys.identity)
        AuditFlusher(self.store, self.audit).attach()  # as the node does: an install's entry is queued with it
        self.roster = NodeRoster(self.cfg, self.store, self.audit)

    def install(self, signed: SignedRosterChange | bytes) -> tuple[bool, Roster]:
        data = signed if isinstance(signed, bytes) else signed.to_bytes()
        return self.roster.install(data, actor="coordinator")

    def entries(self, outcome: str | None = None) -> list:
        return [e for e in self.audit.entries() if e.action == "roster-install" and outcome in (None, e.outcome)]

    def close(self) -> None:
        self.store.close()
        self.audit.close()


@pytest.fixture
def node(lay: Layout, tmp_path: Path):
    n = _Node(lay, tmp_path)
    yield n
    n.close()


# --- the node ------------------------------------------------------------------------------


def test_node_installs_an_endpoint_change_and_a_revocation(lay, node, genesis, moved, revoked) -> None:
    seen: list[tuple[int | None, int]] = []
    node.roster.add_listener(lambda old, new: seen.append((None if old is None else old.version, new.version)))
    assert node.roster.version == 1 and sorted(node.roster.peers()) == [1, 2, 3, 4]
    assert node.roster.refused_fingerprints() == frozenset()

    assert node.install(moved) == (True, moved.change.new_roster)
    assert node.roster.entry(2).endpoint == "127.0.0.1:1" and sorted(node.roster.peers()) == [1, 2, 3, 4]
    assert node.install(revoked) == (True, revoked.change.new_roster)
    assert sorted(node.roster.peers()) == [1, 2, 3]  # envelopes are only ever opened with these keys
    assert node.roster.entry(4) is not None and not node.roster.entry(4).active  # kept, revoked
    assert node.roster.refused_fingerprints() == frozenset({cert_fingerprint(lay, "node-4")})
    assert seen == [(1, 2), (2, 3)]

    assert node.install(revoked) == (False, revoked.change.new_roster)  # the same change again: a no-op
    assert seen == [(1, 2), (2, 3)]
    with pytest.raises(RpcError) as e:  # an older link again (stale): does not follow the roster in force
        node.install(moved)
    assert e.value.code == Code.FAILED_PRECONDITION
    assert e.value.message.startswith("signed_change.previous_digest: is not the digest of the current roster")
    assert e.value.message.endswith("(this node is at version 3)")
    assert node.store.roster_changes() == [genesis.to_bytes(), moved.to_bytes(), revoked.to_bytes()]
    installed = node.entries("installed")
    assert [(e.details["version"], e.details["revoked"]) for e in installed] == [(2, ""), (3, "4")]
    assert installed[-1].details["admins"] == "admin1,admin2" and installed[-1].actor == "coordinator"


def test_node_peers_follow_every_install_and_are_the_callers_own(lay, node, genesis, moved, revoked) -> None:
    """peers() is built once per roster in force (mpc_node/roster_state.py): each install is seen
    at once, entry by entry, and a caller changing the dict it got changes nothing else."""
    def expected(r: Roster) -> dict[int, tuple[str, bytes, bytes]]:
        return {e.index: (e.name, e.identity_key, e.encryption_key) for e in r.entries if e.active}

    def got() -> dict[int, tuple[str, bytes, bytes]]:
        return {i: (p.name, p.identity_public, p.encryption_public) for i, p in node.roster.peers().items()}

    assert got() == expected(genesis.change.new_roster)
    mine = node.roster.peers()
    mine.pop(1)
    assert 1 in node.roster.peers() and node.roster.peers() is not node.roster.peers()
    for change in (moved, revoked):
        node.install(change)
        assert got() == expected(change.change.new_roster)
    assert sorted(mine) == [2, 3, 4]  # a dict handed out before is not changed by an install


def _revoke_and_move(r: Roster, index: int) -> Roster:
    new = revoke_node(r, index)
    return dataclasses.replace(
        new, entries=tuple(dataclasses.replace(e, endpoint="127.0.0.1:3") if e.index == index else e for e in new.entries)
    )


def _forked(lay: Layout, genesis: SignedRosterChange) -> SignedRosterChange:
    r1 = genesis.change.new_roster
    return signed_next(lay, r1, change_endpoint(r1, 3, "127.0.0.1:2"))


@pytest.mark.parametrize(
    "make,code,field",
    [
        # another version 2 (a fork of the chain)
        (lambda lay, g, m: _forked(lay, g), Code.FAILED_PRECONDITION, "signed_change.previous_digest"),
        # the genesis again (a replay)
        (lambda lay, g, m: g, Code.FAILED_PRECONDITION, "signed_change.previous_digest"),
        # no admin signature
        (
            lambda lay, g, m: SignedRosterChange(signed_next(lay, m.change.new_roster, revoke_node(m.change.new_roster, 4)).change, ()),
            Code.PERMISSION_DENIED, "signed_change.signatures",
        ),
        # one admin is not a quorum
        (
            lambda lay, g, m: signed_next(lay, m.change.new_roster, revoke_node(m.change.new_roster, 4), "admin1"),
            Code.PERMISSION_DENIED, "signed_change.signatures",
        ),
        # made for another cluster (another governance root)
        (
            lambda lay, g, m: signed_next(lay, m.change.new_roster, revoke_node(m.change.new_roster, 4), governance_root=b"\x07" * 32),
            Code.PERMISSION_DENIED, "signed_change.governance_root",
        ),
        # not the next version
        (
            lambda lay, g, m: signed_next(
                lay, m.change.new_roster, dataclasses.replace(revoke_node(m.change.new_roster, 4), version=9)
            ),
            Code.FAILED_PRECONDITION, "signed_change.new_roster.version",
        ),
        # a revocation that also moves the node (revocation may change nothing but the status)
        (
            lambda lay, g, m: signed_next(lay, m.change.new_roster, _revoke_and_move(m.change.new_roster, 4)),
            Code.PERMISSION_DENIED, "signed_change.new_roster.entries[3]: a revocation may change nothing but the status",
        ),
    ],
    ids=["forked", "replayed", "unsigned", "one-admin", "foreign-cluster", "skips-a-version", "bad-step"],
)
def test_node_refuses_bad_changes_naming_the_field_and_audits(lay, node, genesis, moved, make, code, field) -> None:
    node.install(moved)
    before = node.store.roster_changes()
    bad = make(lay, genesis, moved)
    with pytest.raises(RpcError) as e:
        node.install(bad)
    assert e.value.code == code, e.value.message
    assert e.value.message.startswith(field), e.value.message
    assert node.store.roster_changes() == before and node.roster.version == 2
    refused = node.entries("refused")
    assert len(refused) == 1 and refused[0].details["reason"].startswith(field)


def test_node_refuses_a_malformed_change(node) -> None:
    with pytest.raises(RpcError) as e:
        node.install(b"\x00garbage")
    assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("signed_change.")
    assert node.roster.version == 1 and len(node.entries("refused")) == 1


def test_a_key_rotated_away_never_comes_back(lay, node, genesis) -> None:
    r1 = genesis.change.new_roster
    fresh = bytes([9]) * 32
    r2 = rotate_keys(r1, 3, tls_fingerprint=fresh)
    assert node.install(signed_next(lay, r1, r2))[0]
    assert cert_fingerprint(lay, "node-3") in node.roster.refused_fingerprints()  # rotated away: refused
    r3 = rotate_keys(r2, 3, tls_fingerprint=r1.entry(3).tls_fingerprint)
    with pytest.raises(RpcError) as e:
        node.install(signed_next(lay, r2, r3))
    assert e.value.code == Code.PERMISSION_DENIED
    assert e.value.message == "signed_change.new_roster.entries: a key rotated away earlier is back in the roster"
    assert node.roster.version == 2


def test_a_legacy_node_refuses_roster_changes(lay, tmp_path, moved) -> None:
    cfg = dataclasses.replace(load_node_config(lay.node_config(1)), roster_history=(), signed_roster=None)
    n = _Node(lay, tmp_path, cfg)
    try:
        assert n.roster.current() is None and n.roster.version == 0 and sorted(n.roster.peers()) == [1, 2, 3, 4]
        with pytest.raises(RpcError) as e:
            n.install(moved)
        assert e.value.code == Code.FAILED_PRECONDITION
        assert "has no signed roster (its config has no governance.roster_history)" in e.value.message
        assert n.store.roster_changes() == []
    finally:
        n.close()


def test_a_legacy_config_over_a_stored_chain_does_not_start(lay, tmp_path, moved, revoked) -> None:
    """p14e review: a fixed-roster config over a store holding a signed chain started with roster
    version 0, brought a revoked node back, and (with the release's roster pin,
    mpc_node/in_force.py) had every signature share refused stale-roster, for ever."""
    n = _Node(lay, tmp_path)
    n.install(moved)
    n.install(revoked)  # node 4 revoked
    n.close()
    cfg = dataclasses.replace(load_node_config(lay.node_config(1)), roster_history=(), signed_roster=None)
    with pytest.raises(RosterStartError) as e:
        _Node(lay, tmp_path, cfg)
    assert "holds a signed roster chain (version 3)" in str(e.value) and "governance.roster_history" in str(e.value)
    again = _Node(lay, tmp_path)  # the cluster's config still starts, at the stored version
    try:
        assert again.roster.version == 3 and sorted(again.roster.peers()) == [1, 2, 3]
    finally:
        again.close()


def test_restart_keeps_the_chain_the_genesis_config_is_extended(lay, tmp_path, genesis, moved, revoked) -> None:
    n = _Node(lay, tmp_path)
    n.install(moved)
    n.install(revoked)
    n.close()
    # restarted with its genesis-only config: the store's longer chain wins
    again = _Node(lay, tmp_path)
    try:
        assert again.roster.version == 3 and sorted(again.roster.peers()) == [1, 2, 3]
        assert again.roster.history() == (genesis.to_bytes(), moved.to_bytes(), revoked.to_bytes())
        assert cert_fingerprint(lay, "node-4") in again.roster.refused_fingerprints()
    finally:
        again.close()
    # a config holding the whole chain (a node added later gets it) agrees with the store
    cfg = dataclasses.replace(load_node_config(lay.node_config(1)), roster_history=(genesis, moved, revoked))
    full = _Node(lay, tmp_path, cfg)
    try:
        assert full.roster.version == 3
    finally:
        full.close()


def test_a_config_whose_chain_conflicts_with_the_store_stops_the_node(lay, tmp_path, genesis, moved) -> None:
    n = _Node(lay, tmp_path)
    n.install(moved)
    n.close()
    cfg = dataclasses.replace(load_node_config(lay.node_config(1)), roster_history=(genesis, _forked(lay, genesis)))
    with pytest.raises(RosterStartError) as e:
        _Node(lay, tmp_path, cfg)
    assert str(e.value) == (
        "governance.roster_history[1] differs from version 2 of the roster this node installed "
        "(a config for another cluster or roster); fix the config"
    )


# --- the coordinator -----------------------------------------------------------------------


class _Book:
    def __init__(self, lay: Layout, d: Path, cfg: CoordinatorConfig | None = None) -> None:
        base = cfg or load_coordinator_config(lay.coordinator_config)
        self.cfg = dataclasses.replace(base, db=d / "coordinator.db")
        self.db = CoordinatorDb(self.cfg.db)
        self.book = RosterBook(self.cfg, self.db)

    def audit(self, outcome: str | None = None) -> list:
        return [
            q.audit for q in self.db.pending_audit() if q.audit.action == "roster-apply" and outcome in (None, q.audit.outcome)
        ]


@pytest.fixture
def book(lay: Layout, tmp_path: Path):
    b = _Book(lay, tmp_path)
    yield b
    b.db.close()


def test_coordinator_applies_an_endpoint_change_and_a_revocation(lay, book, genesis, moved, revoked) -> None:
    seen: list[tuple[int, int]] = []
    flushed: list[int] = []
    book.book.add_listener(lambda old, new: seen.append((old.version, new.version)))
    book.book.flush_audit = lambda: flushed.append(len(book.audit()))
    assert book.book.active() == (1, 2, 3, 4)
    assert book.book.endpoints()[2].endpoint == book.cfg.nodes[2].endpoint

    assert book.book.apply(moved, "admin1") == moved.change.new_roster
    assert book.book.endpoints()[2] == NodeEndpoint(2, "node-2", "127.0.0.1:1")  # moved: the roster's endpoint wins
    assert book.book.endpoints()[1] == book.cfg.nodes[1]
    assert book.book.apply(revoked, "admin1") == revoked.change.new_roster
    assert book.book.active() == (1, 2, 3) and sorted(book.book.endpoints()) == [1, 2, 3]
    assert book.book.refused_fingerprints() == frozenset({cert_fingerprint(lay, "node-4")})
    assert seen == [(1, 2), (2, 3)] and flushed == [1, 2]  # the audit entry is queued with the change, then flushed

    assert book.book.apply(revoked, "admin1") == revoked.change.new_roster  # again: a no-op
    assert seen == [(1, 2), (2, 3)]
    with pytest.raises(RpcError) as e:  # an older link again (stale)
        book.book.apply(moved, "admin1")
    assert e.value.code == Code.FAILED_PRECONDITION and e.value.message.startswith("signed_change.previous_digest:")
    assert book.db.roster_changes() == [genesis.to_bytes(), moved.to_bytes(), revoked.to_bytes()]
    assert len(book.audit("refused")) == 1
    applied = book.audit("applied")
    assert [(a.details["version"], a.details["active"], a.details["revoked"]) for a in applied] == [
        (2, "1,2,3,4", ""), (3, "1,2,3", "4"),
    ]
    assert applied[0].actor == "admin1"


@pytest.mark.parametrize(
    "make,code,field",
    [
        (lambda lay, g, m: _forked(lay, g), Code.FAILED_PRECONDITION, "signed_change.previous_digest"),
        (lambda lay, g, m: g, Code.FAILED_PRECONDITION, "signed_change.previous_digest"),
        (
            lambda lay, g, m: SignedRosterChange(signed_next(lay, m.change.new_roster, revoke_node(m.change.new_roster, 4)).change, ()),
            Code.PERMISSION_DENIED, "signed_change.signatures",
        ),
        (
            lambda lay, g, m: signed_next(lay, m.change.new_roster, revoke_node(m.change.new_roster, 4), governance_root=b"\x07" * 32),
            Code.PERMISSION_DENIED, "signed_change.governance_root",
        ),
    ],
    ids=["forked", "replayed", "unsigned", "foreign-cluster"],
)
def test_coordinator_refuses_bad_changes_naming_the_field_and_audits(lay, book, genesis, moved, make, code, field) -> None:
    seen: list[int] = []
    book.book.apply(moved, "admin1")
    book.book.add_listener(lambda old, new: seen.append(new.version))
    with pytest.raises(RpcError) as e:
        book.book.apply(make(lay, genesis, moved), "admin2")
    assert e.value.code == code and e.value.message.startswith(field), e.value.message
    assert book.book.version == 2 and len(book.db.roster_changes()) == 2 and seen == []
    refused = book.audit("refused")
    assert len(refused) == 1 and refused[0].details["reason"].startswith(field) and refused[0].actor == "admin2"


def test_a_legacy_coordinator_refuses_roster_changes(lay, tmp_path, moved) -> None:
    cfg = dataclasses.replace(load_coordinator_config(lay.coordinator_config), roster_history=(), signed_roster=None)
    b = _Book(lay, tmp_path, cfg)
    try:
        assert b.book.current() is None and b.book.active() == (1, 2, 3, 4)
        with pytest.raises(RpcError) as e:
            b.book.apply(moved, "admin1")
        assert e.value.code == Code.FAILED_PRECONDITION and "has no signed roster" in e.value.message
        assert b.db.roster_changes() == [] and len(b.audit("refused")) == 1
    finally:
        b.db.close()


def test_coordinator_restart_keeps_the_chain_and_a_conflict_stops_it(lay, tmp_path, genesis, moved, revoked) -> None:
    b = _Book(lay, tmp_path)
    b.book.apply(moved, "admin1")
    b.book.apply(revoked, "admin1")
    b.db.close()
    again = _Book(lay, tmp_path)
    try:
        assert again.book.version == 3 and again.book.active() == (1, 2, 3)
    finally:
        again.db.close()
    cfg = dataclasses.replace(load_coordinator_config(lay.coordinator_config), roster_history=(genesis, _forked(lay, genesis)))
    with pytest.raises(CoordinatorRosterStartError) as e:
        _Book(lay, tmp_path, cfg)
    assert "governance.roster_history[1] differs from version 2 of the roster in the database" in str(e.value)


# --- the coordinator's node handles --------------------------------------------------------


def _eps(*items: tuple[int, str]) -> dict[int, NodeEndpoint]:
    return {i: NodeEndpoint(i, f"node-{i}", ep) for i, ep in items}


def test_node_handles_follow_the_roster_copy_on_write() -> None:
    reg = NodeRegistry(_eps((1, "127.0.0.1:1001"), (2, "127.0.0.1:1002"), (3, "127.0.0.1:1003")), grpc.ssl_channel_credentials())
    try:
        before = reg.snapshot()
        items = reg.items()  # a view of one published snapshot
        h1, h2, h3 = reg[1], reg[2], reg[3]
        added, removed = reg.follow(_eps((1, "127.0.0.1:1001"), (2, "127.0.0.1:2002"), (5, "127.0.0.1:1005")))
        assert (added, removed) == ((2, 5), (3,))
        assert sorted(reg) == [1, 2, 5] and len(reg) == 3 and 3 not in reg
        assert reg[1] is h1  # unchanged: the same handle (and its health)
        assert reg[2] is not h2 and reg[2].endpoint == "127.0.0.1:2002"
        assert reg[3] is h3 and reg.retired(3)  # still named by an operation begun before, but closed
        assert reg.get(3) is None and reg.get(1) is h1
        with pytest.raises(ValueError):  # a closed channel is never dialed again
            h3.stub.Health(node_pb2.NodeHealthRequest(), timeout=0.1)
        assert sorted(k for k, _ in items) == [1, 2, 3] and before == {1: h1, 2: h2, 3: h3}  # old snapshots unchanged
        with pytest.raises(KeyError):
            reg[9]
    finally:
        reg.close()


def test_node_handles_iterate_safely_while_the_roster_changes() -> None:
    reg = NodeRegistry(_eps(*((i, f"127.0.0.1:{1000 + i}") for i in range(1, 6))), grpc.ssl_channel_credentials())
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for i, h in reg.items():
                    assert h.index == i
                assert len(list(reg.values())) in (4, 5)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for k in range(200):
            drop = 1 + k % 5
            reg.follow(_eps(*((i, f"127.0.0.1:{1000 + i}") for i in range(1, 6) if i != drop)))
            reg.follow(_eps(*((i, f"127.0.0.1:{1000 + i}") for i in range(1, 6))))
    finally:
        stop.set()
        t.join()
        reg.close()
    assert errors == []


# --- pushing the chain to the nodes ---------------------------------------------------------


class _FakeNode:
    """A node's GetRoster/InstallRosterChange: holds a chain, appends what it is sent (or fails)."""

    def __init__(self, chain: list[bytes], root: bytes, fail: grpc.StatusCode | None = None) -> None:
        self.chain = list(chain)
        self.root = root
        self.fail = fail
        self.installed: list[bytes] = []

    def _check(self) -> None:
        if self.fail is not None:
            raise _RpcFailure(self.fail)

    def GetRoster(self, req: object, timeout: float) -> node_pb2.RosterHistory:
        self._check()
        return node_pb2.RosterHistory(signed_changes=self.chain, governance_root=self.root)

    def InstallRosterChange(self, req: node_pb2.InstallRosterChangeRequest, timeout: float) -> node_pb2.InstallRosterChangeResponse:
        self._check()
        self.chain.append(bytes(req.signed_change))
        self.installed.append(bytes(req.signed_change))
        return node_pb2.InstallRosterChangeResponse(installed=True, version=len(self.chain))


class _RpcFailure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"fake {self._code.name}"


def test_roster_sync_pushes_what_each_node_lacks_oldest_first(lay, book, tmp_path, genesis, moved, revoked) -> None:
    from coordinator.roster_sync import RosterSync

    root = lay.governance()[0].digest()
    book.book.apply(moved, "admin1")
    book.book.apply(revoked, "admin1")  # version 3: node 4 revoked, 1..3 active
    g, m, r = genesis.to_bytes(), moved.to_bytes(), revoked.to_bytes()
    reg = NodeRegistry(book.book.endpoints(), grpc.ssl_channel_credentials())
    behind, forked = _FakeNode([g], root), _FakeNode([g, _forked(lay, genesis).to_bytes()], root)
    down = _FakeNode([], root, Code.UNAVAILABLE)
    for i, fake in ((1, behind), (2, forked), (3, down)):
        reg[i].stub = fake  # type: ignore[assignment]
    keys = load_keystore(book.cfg.keystore, read_passphrase(file=book.cfg.passphrase_file, env=book.cfg.passphrase_env))
    with AuditLog.open(tmp_path / "caudit.db", component="coordinator", signing_key=keys.identity) as audit:
        sync = RosterSync(book.book, reg, audit, root)
        try:
            assert sync.sync_node(1) and behind.installed == [m, r] and sync.synced(1) and sync.node_version(1) == 3
            assert sync.sync_node(1) and behind.installed == [m, r]  # nothing more to send
            assert not sync.sync_node(2) and forked.installed == [] and not sync.synced(2)
            assert not sync.sync_node(2)  # refused again, audited once
            assert not sync.sync_node(3) and not sync.synced(3)  # down: retried later, not audited
            assert not sync.sync_node(4)  # revoked: no handle, never dialed
            forked.chain = [g, m, r, r]
            assert not sync.sync_node(2)  # ahead of the coordinator: not pushed to
            pushes = [(e.outcome, e.details) for e in audit.entries() if e.action == "roster-push"]
            assert [(o, d.get("node"), d.get("changes")) for o, d in pushes] == [
                ("synced", "node-1", 2), ("refused", "node-2", None), ("refused", "node-2", None),
            ]
            assert "another roster version 2 than the coordinator (a fork)" in pushes[1][1]["reason"]
            assert "a longer roster chain (4 versions)" in pushes[2][1]["reason"]
            other = _FakeNode([g], b"\x01" * 32)
            reg[1].stub = other  # type: ignore[assignment]
            assert not sync.sync_node(1) and other.installed == []  # another governance root
        finally:
            reg.close()


def test_concurrent_applies_store_one_chain(lay, book, genesis, moved) -> None:
    """Racing applies of the same change and of a fork: one link is stored, the listeners run
    once, every other apply is a no-op (the same change) or refused (the fork)."""
    seen: list[int] = []
    book.book.add_listener(lambda old, new: seen.append(new.version))
    fork = _forked(lay, genesis)
    barrier = threading.Barrier(6)
    results: list[object] = []

    def go(signed: SignedRosterChange) -> None:
        barrier.wait()
        try:
            results.append(book.book.apply(signed, "admin1").digest())
        except RpcError as e:
            results.append(e.code)

    threads = [threading.Thread(target=go, args=(s,)) for s in (moved, moved, moved, fork, fork, fork)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [2] and book.book.version == 2 and len(book.db.roster_changes()) == 2
    winner = SignedRosterChange.from_bytes(book.db.roster_changes()[1])
    assert winner.to_bytes() in (moved.to_bytes(), fork.to_bytes())
    assert results.count(winner.change.new_roster.digest()) == 3 and results.count(Code.FAILED_PRECONDITION) == 3
