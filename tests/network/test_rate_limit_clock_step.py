"""A node's rate limit does not follow wall-clock steps (issue 14 red team).

It counted ``requests.served_ms`` (the wall clock): a step forward of a day emptied the window
(the policy's limit could be exceeded at once), a step back blocked the key for a day. Both the
approvals' pre-check (``NodeGovernance.check_sign`` -> ``count_served_within``) and the
authoritative count in the consume transaction now count the store's steady clock
(``requests.steady_ms``, mpcnet/common/steadyclock.py), which a restart continues."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import ApprovalBundle
from governance.policy import DEFAULT_SCOPE, SignedPolicyChange, sign_policy_change
from mpc_node.governance import NodeGovernance
from mpc_node.storage import NodeStore, RateLimited, ServedRequest
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from tests.steady_fake import FakeSteady

from ..governance.gov_util import ADMIN_KEYS, KEY_ID, NOW_MS, admin_set, approve, change, policy, request

DAY_MS = 86_400_000
LIMIT = (10, 3_600_000)  # policy(): 10 signatures per hour
PASS = b"pw"
N = 2**10
PUB = b"\x02" + b"\x11" * 32


class Wall:
    """The node's injected wall clock (ms)."""

    def __init__(self) -> None:
        self.ms = NOW_MS

    def __call__(self) -> int:
        return self.ms


class Node:
    def __init__(self, path: Path, steady: FakeSteady) -> None:
        self.path, self.steady = path, steady
        self.store = NodeStore.open(path, PASS, 1, scrypt_n=N, steady=steady.source())
        self.n = 0

    def restart(self) -> None:
        self.store.close()
        self.store = NodeStore.open(self.path, PASS, 1, scrypt_n=N, steady=self.steady.source())

    def serve(self, wall_ms: int) -> None:
        """One signature with KEY_ID at the wall time ``wall_ms`` (RateLimited if refused)."""
        self.n += 1
        sigid = self.n.to_bytes(32, "big")
        self.store.put_presignature(sigid, KEY_ID, b"fresh")
        req = ServedRequest(f"r{self.n}", KEY_ID, b"\x07" * 32, wall_ms, LIMIT)
        self.store.consume_presignature(sigid, b"tomb", request=req)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "node.db", FakeSteady(NOW_MS))
    n.store.put_key_share(KEY_ID, b"share", label="k", public_key=PUB, threshold=2, parties=2)
    n.store.activate_key(KEY_ID)
    yield n
    n.store.close()


def _fill(node: Node, wall: Wall, count: int) -> None:
    for _ in range(count):
        node.steady.ms += 1_000
        wall.ms += 1_000
        node.serve(wall.ms)


def test_a_step_forward_a_day_does_not_empty_the_window(node: Node) -> None:
    wall = Wall()
    _fill(node, wall, 10)
    wall.ms += DAY_MS  # the wall clock jumps a day ahead
    node.steady.ms += 1_000
    with pytest.raises(RateLimited, match="^rate_limit: 10 signature"):
        node.serve(wall.ms)
    assert node.store.count_served_within(KEY_ID, LIMIT[1]) == 10  # the pre-check's count
    # exactly one window after the first of the ten, the first leaves it: one more, not more
    node.steady.ms = NOW_MS + 1_000 + LIMIT[1]
    node.serve(wall.ms)
    with pytest.raises(RateLimited):
        node.serve(wall.ms)


def test_a_step_back_a_day_does_not_block_the_key(node: Node) -> None:
    wall = Wall()
    _fill(node, wall, 10)
    wall.ms -= DAY_MS  # the wall clock jumps a day back
    node.steady.ms = NOW_MS + 1_000 + LIMIT[1] - 1  # not yet a window after the first
    with pytest.raises(RateLimited):
        node.serve(wall.ms)
    node.steady.ms = NOW_MS + 10_000 + LIMIT[1]  # a window after the last of the ten: all gone
    _fill(node, wall, 10)
    with pytest.raises(RateLimited):
        node.serve(wall.ms)


def test_a_restart_and_a_reboot_keep_the_window(node: Node) -> None:
    wall = Wall()
    _fill(node, wall, 10)
    node.restart()  # same boot: the same timeline
    wall.ms += DAY_MS
    with pytest.raises(RateLimited):
        node.serve(wall.ms)
    node.steady.boot, node.steady.ms = "boot-2", 5  # a reboot: the raw clock starts over
    node.restart()
    assert node.store.steady.now_ms() == NOW_MS + 10_000  # continues from the newest row
    with pytest.raises(RateLimited):
        node.serve(wall.ms)
    assert node.store.count_served_within(KEY_ID, LIMIT[1]) == 10
    node.steady.ms += LIMIT[1] - 9_000  # the downtime is not counted: the window runs on from the floor
    node.serve(wall.ms)


def test_the_host_clocks_a_wall_step_with_the_real_steady_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default source (CLOCK_BOOTTIME, the host's boot id), the wall clock stepped by patching
    ``time.time_ns`` / ``time.time`` as a host step would."""
    store = NodeStore.open(tmp_path / "host.db", PASS, 1, scrypt_n=N)
    try:
        store.put_key_share(KEY_ID, b"share", label="k", public_key=PUB, threshold=2, parties=2)
        store.activate_key(KEY_ID)
        real_ns = time.time_ns
        for i in range(3):
            store.put_presignature(bytes([i + 1]) * 32, KEY_ID, b"fresh")
        for i in range(2):
            req = ServedRequest(f"h{i}", KEY_ID, b"\x07" * 32, real_ns() // 1_000_000, (2, 3_600_000))
            store.consume_presignature(bytes([i + 1]) * 32, b"tomb", request=req)
        monkeypatch.setattr(time, "time_ns", lambda: real_ns() + DAY_MS * 1_000_000)
        monkeypatch.setattr(time, "time", lambda: real_ns() / 1e9 + DAY_MS / 1000)
        req = ServedRequest("h2", KEY_ID, b"\x07" * 32, time.time_ns() // 1_000_000, (2, 3_600_000))
        with pytest.raises(RateLimited):
            store.consume_presignature(bytes([3]) * 32, b"tomb", request=req)
        assert store.count_served_within(KEY_ID, 3_600_000) == 2
    finally:
        store.close()


def test_the_governance_precheck_counts_steady_time(node: Node, tmp_path: Path) -> None:
    wall = Wall()
    c = change(policy(), None, scope=DEFAULT_SCOPE)
    initial = SignedPolicyChange(c, tuple(sign_policy_change(c, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=Ed25519PrivateKey.generate(), clock=wall)
    gov = NodeGovernance("node-1", admin_set(), initial, node.store, audit, max_age_s=0, clock=wall)
    _fill(node, wall, 10)
    wall.ms += DAY_MS  # a request made and approved at the stepped time: valid by the wall clock
    req = request(request_id="after-step", created_at_ms=wall.ms - 1000, expires_at_ms=wall.ms + 600_000)
    data = ApprovalBundle(req, tuple(approve(req, "alice", "bert"))).to_bytes()
    with pytest.raises(RpcError) as e:
        gov.check_sign(data, key_id=KEY_ID, digest=req.digest, path=req.derivation_path, request_id=req.request_id)
    assert dict(e.value.metadata or ())["mpc-governance"] == "rate-limited"
    audit.close()


def test_the_count_and_the_floor_are_index_lookups(node: Node) -> None:
    from mpc_node.served_window import COUNT_SQL
    from mpc_node.storage import STEADY_FLOOR_SQL

    with node.store._read() as c:
        plan = " ".join(str(r) for r in c.execute("EXPLAIN QUERY PLAN " + COUNT_SQL, (KEY_ID, 0)))
        floor = " ".join(str(r) for r in c.execute("EXPLAIN QUERY PLAN " + STEADY_FLOOR_SQL))
    assert "requests_by_key_steady" in plan, plan
    assert "requests_by_steady" in floor, floor
