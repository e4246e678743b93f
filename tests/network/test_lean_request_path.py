"""The node's lean request path (issue 14): the verified-bundle cache (R6), the held
attestation not re-verified (R6) and the rate-limit pre-check as an indexed COUNT (R7).

The cache must never let through a request that a fresh check refuses: expired, made under a
superseded policy, approved by a revoked approver, or a different (tampered) bundle."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import ApprovalBundle, SigningRequest
from governance.attestation import PolicyAttestation, PolicyHead, SignedPolicyAttestation, sign_attestation
from governance.policy import DEFAULT_SCOPE, KeyPolicy, RateLimit, SignedPolicyChange, sign_policy_change
from mpc_node.bundle_cache import VerifiedBundles, bundle_digest
from mpc_node.governance import NodeGovernance
from mpc_node.storage import NodeStore
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from tests.steady_fake import FakeSteady

from ..governance.gov_util import ADMIN_KEYS, KEY_ID, NOW_MS, admin_set, approve, change, policy, request

N = 2**10


class Clock:
    def __init__(self) -> None:
        self.ms = NOW_MS

    def __call__(self) -> int:
        return self.ms


def _signed(new: KeyPolicy, previous: KeyPolicy | None) -> SignedPolicyChange:
    c = change(new, previous, scope=DEFAULT_SCOPE)
    return SignedPolicyChange(c, tuple(sign_policy_change(c, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    # the store's steady clock stands at NOW_MS (the governance clock's start): see tests/steady_fake.py
    s = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N, steady=FakeSteady(NOW_MS).source())
    yield s
    s.close()


def _gov(store: NodeStore, tmp_path: Path, clock: Clock, *, max_age_s: int = 0) -> NodeGovernance:
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=Ed25519PrivateKey.generate(), clock=clock)
    return NodeGovernance("node-1", admin_set(), _signed(policy(), None), store, audit, max_age_s=max_age_s, clock=clock)


def _bundle(req: SigningRequest, *names: str) -> bytes:
    return ApprovalBundle(req, tuple(approve(req, *names))).to_bytes()


def _check(gov: NodeGovernance, data: bytes, req: SigningRequest, attestation: bytes = b"") -> None:
    gov.check_sign(
        data, key_id=req.key_id, digest=req.digest, path=req.derivation_path, request_id=req.request_id,
        attestation=attestation,
    )


def _kind(e: pytest.ExceptionInfo[RpcError]) -> str:
    return dict(e.value.metadata or ())["mpc-governance"]


# --- R6: the bundle cache --------------------------------------------------------------------


def test_a_bundle_is_verified_once_and_rechecked_from_the_cache(store: NodeStore, tmp_path: Path) -> None:
    clock = Clock()
    gov = _gov(store, tmp_path, clock)
    req = request()
    data = _bundle(req, "alice", "bert")
    for _ in range(3):  # ReserveSigning, StartSession, then the recheck
        _check(gov, data, req)
    assert (gov.bundles.misses, gov.bundles.hits) == (1, 2)
    approved = gov.check_sign(data, key_id=KEY_ID, digest=req.digest, path=req.derivation_path, request_id=req.request_id)
    assert bundle_digest(approved.bundle) == hashlib.sha256(data).digest()  # canonical: the bytes it came from
    gov.recheck(approved, KEY_ID, roster_version=0)
    assert (gov.bundles.misses, gov.bundles.hits) == (1, 4)


def test_the_cache_refuses_an_expired_request(store: NodeStore, tmp_path: Path) -> None:
    clock = Clock()
    gov = _gov(store, tmp_path, clock)
    req = request()
    data = _bundle(req, "alice", "bert")
    approved = gov.check_sign(data, key_id=KEY_ID, digest=req.digest, path=req.derivation_path, request_id=req.request_id)
    clock.ms = req.expires_at_ms + 1
    with pytest.raises(RpcError) as e:
        _check(gov, data, req)
    assert _kind(e) == "expired" and "expires_at_ms" in e.value.message
    with pytest.raises(RpcError) as e:
        gov.recheck(approved, KEY_ID, roster_version=0)
    assert _kind(e) == "expired"
    assert gov.bundles.hits == 2  # refused although cached: the clock is checked every time


def test_the_cache_refuses_after_the_policy_is_superseded(store: NodeStore, tmp_path: Path) -> None:
    clock = Clock()
    gov = _gov(store, tmp_path, clock)
    req = request()
    data = _bundle(req, "alice", "bert")
    approved = gov.check_sign(data, key_id=KEY_ID, digest=req.digest, path=req.derivation_path, request_id=req.request_id)
    gov.install(_signed(policy(version=2), policy()).to_bytes(), actor="admin")
    for run in (lambda: _check(gov, data, req), lambda: gov.recheck(approved, KEY_ID, roster_version=0)):
        with pytest.raises(RpcError) as e:
            run()
        assert _kind(e) == "stale-policy"


def test_the_cache_refuses_an_approval_by_a_revoked_approver(store: NodeStore, tmp_path: Path) -> None:
    clock = Clock()
    gov = _gov(store, tmp_path, clock)
    old = request()
    _check(gov, _bundle(old, "alice", "bert"), old)
    # bert is revoked (v2 keeps alice and carol): a request under v2 with bert's approval is refused,
    # whatever the cache holds for v1
    v2 = policy(version=2, approvers=("alice", "carol"))
    gov.install(_signed(v2, policy()).to_bytes(), actor="admin")
    new = request(request_id="req_0002", policy_version=2, policy_digest=v2.digest())
    with pytest.raises(RpcError) as e:
        _check(gov, ApprovalBundle(new, tuple(approve(new, "alice", "bert"))).to_bytes(), new)
    assert _kind(e) == "denied" and "bert" in e.value.message
    with pytest.raises(RpcError):
        _check(gov, _bundle(old, "alice", "bert"), old)
    _check(gov, _bundle(new, "alice", "carol"), new)


def test_a_tampered_bundle_misses_the_cache(store: NodeStore, tmp_path: Path) -> None:
    clock = Clock()
    gov = _gov(store, tmp_path, clock)
    req = request()
    good = ApprovalBundle(req, tuple(approve(req, "alice", "bert")))
    _check(gov, good.to_bytes(), req)
    sig = bytearray(good.approvals[1].signature)
    sig[0] ^= 1
    bad = ApprovalBundle(req, (good.approvals[0], type(good.approvals[1])("bert", good.approvals[1].decision, bytes(sig))))
    with pytest.raises(RpcError) as e:
        _check(gov, bad.to_bytes(), req)
    assert _kind(e) == "denied"
    assert gov.bundles.misses == 2 and gov.bundles.hits == 0
    _check(gov, good.to_bytes(), req)
    assert gov.bundles.hits == 1


def test_the_cache_is_bounded_lru() -> None:
    cache = VerifiedBundles(capacity=2)
    reqs = [request(request_id=f"req_{i}") for i in range(3)]
    bundles = [ApprovalBundle(r, tuple(approve(r, "alice", "bert"))) for r in reqs]
    for b in bundles:
        cache.verify(b, policy(), now_ms=NOW_MS)
    assert len(cache) == 2 and cache.misses == 3
    cache.verify(bundles[2], policy(), now_ms=NOW_MS)
    cache.verify(bundles[0], policy(), now_ms=NOW_MS)  # evicted: verified again
    assert (cache.hits, cache.misses) == (1, 4)
    for bad in (0, True, "2"):
        with pytest.raises(ValueError, match="^capacity"):
            VerifiedBundles(capacity=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^bundle"):
        cache.verify(bundles[0].to_bytes(), policy(), now_ms=NOW_MS)  # type: ignore[arg-type]


def test_no_check_after_a_policy_change_passes_with_the_old_bundle(store: NodeStore, tmp_path: Path) -> None:
    """Concurrency: checks racing a policy install; every check that starts after the install
    returned is refused (the cache cannot serve the superseded policy's result)."""
    clock = Clock()
    gov = _gov(store, tmp_path, clock)
    req = request()
    data = _bundle(req, "alice", "bert")
    _check(gov, data, req)
    installed = threading.Event()
    late_passes: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            after = installed.is_set()
            try:
                _check(gov, data, req)
            except RpcError:
                continue
            if after:
                late_passes.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gov.install(_signed(policy(version=2), policy()).to_bytes(), actor="admin")
    installed.set()
    time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert late_passes == []


def test_the_held_attestation_is_not_verified_again(store: NodeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    gov = _gov(store, tmp_path, clock, max_age_s=3600)
    head = PolicyHead(DEFAULT_SCOPE, 1, policy().digest())
    att = sign_attestation(PolicyAttestation.build(admin_set().digest(), NOW_MS, "ada", [head]), ADMIN_KEYS["ada"])
    req = request()
    data = _bundle(req, "alice", "bert")
    _check(gov, data, req, att.to_bytes())
    calls: list[str] = []
    real = gov._verified

    def spy(data: bytes, field: str) -> SignedPolicyAttestation:
        calls.append(field)
        return real(data, field)

    monkeypatch.setattr(gov, "_verified", spy)
    _check(gov, data, req, att.to_bytes())
    assert calls == []  # byte-identical to the held one: kept already, not re-verified
    newer = sign_attestation(PolicyAttestation.build(admin_set().digest(), NOW_MS + 1, "bob", [head]), ADMIN_KEYS["bob"])
    _check(gov, data, req, newer.to_bytes())
    assert calls == ["sign.policy_attestation"]
    forged = bytearray(newer.to_bytes())
    forged[-1] ^= 1
    with pytest.raises(RpcError) as e:
        _check(gov, data, req, bytes(forged))
    assert _kind(e) == "denied"
    # the freshness of the held one is still checked every time
    clock.ms = NOW_MS + 3600_000 + 2
    with pytest.raises(RpcError) as e:
        _check(gov, data, req, newer.to_bytes())
    assert e.value.code.name == "FAILED_PRECONDITION"


# --- R7: the rate-limit pre-check as an indexed COUNT ----------------------------------------


def _fill(path: Path, key_id: bytes, times: list[int], prefix: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES (?, ?, ?, ?, ?)",
            [(f"{prefix}{i}", key_id, b"\0" * 32, t // 1000, t) for i, t in enumerate(times)],
        )
    conn.close()


def _best(f: object, runs: int = 7) -> float:
    assert callable(f)
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def test_count_served_is_exact_at_the_window_edges_and_flat_in_time(store: NodeStore, tmp_path: Path) -> None:
    other = hashlib.sha256(b"another key").digest()
    window = 3600_000
    since = NOW_MS - window
    _fill(tmp_path / "node.db", KEY_ID, [since - 5 + (i % 5) for i in range(100)], "old")  # all <= since - 1
    _fill(tmp_path / "node.db", KEY_ID, [since, since + 1, NOW_MS, NOW_MS + 10**7], "edge")  # since: outside
    _fill(tmp_path / "node.db", other, [NOW_MS] * 50, "other")
    assert store.count_served(KEY_ID, since) == 3  # since+1, now, and a later-than-now time count
    assert store.count_served(KEY_ID, since - 1) == 4  # the row at since counts once the bound is below it
    assert store.count_served(KEY_ID, since - 2) == 4 + 20  # and the 20 rows at since - 1
    assert store.count_served(other, since) == 50
    small = _best(lambda: store.count_served(KEY_ID, since))
    _fill(tmp_path / "node.db", KEY_ID, [since - 10**6 + i for i in range(72_000)], "bulk")  # outside the window
    _fill(tmp_path / "node.db", other, [NOW_MS - i for i in range(20_000)], "bulk-other")
    assert store.count_served(KEY_ID, since) == 3
    large = _best(lambda: store.count_served(KEY_ID, since))
    assert large < small * 20 + 0.002, (small, large)  # an index range, not a scan of 72,000 rows
    in_window = store.count_served(other, NOW_MS - 20_000)
    assert in_window == 50 + 20_000  # now - 19,999 .. now: all after now - 20,000
    with pytest.raises(Exception, match="key_id"):
        store.count_served(b"short", since)


def test_the_precheck_refuses_at_the_limit_and_counts_the_edge_right(store: NodeStore, tmp_path: Path) -> None:
    clock = Clock()
    gov = _gov(store, tmp_path, clock)
    limit = policy().rate_limit
    assert limit == RateLimit(max_signatures=10, window_seconds=3600)
    since = NOW_MS - limit.window_seconds * 1000
    _fill(tmp_path / "node.db", KEY_ID, [since] * 30 + [since + 1] * 9, "r")  # 9 inside, 30 exactly at the edge
    req = request()
    data = _bundle(req, "alice", "bert")
    _check(gov, data, req)  # 9 < 10
    _fill(tmp_path / "node.db", KEY_ID, [NOW_MS], "s")
    with pytest.raises(RpcError) as e:
        _check(gov, data, req)
    assert _kind(e) == "rate-limited" and e.value.message.startswith("rate_limit:")
    # a request this node already served (an earlier attempt) is not refused by the pre-check
    conn = sqlite3.connect(tmp_path / "node.db")
    with conn:
        conn.execute("UPDATE requests SET request_id = ? WHERE request_id = 's0'", (req.request_id,))
    conn.close()
    assert store.request_served(req.request_id)
    _check(gov, data, req)
