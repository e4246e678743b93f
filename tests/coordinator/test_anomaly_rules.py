"""Each rule of coordinator/anomaly.py: a scenario that triggers it and one that does not."""

from __future__ import annotations

from coordinator.anomaly import RULES, AnomalyConfig, AnomalyDetector, Detection

KEY = bytes.fromhex("ab" * 32)
OTHER = bytes.fromhex("cd" * 32)
S = 1000  # ms
W = 60 * S  # the default window


def engine(**kw: object) -> AnomalyDetector:
    return AnomalyDetector(AnomalyConfig(**kw))  # type: ignore[arg-type]


def rules(ds: list[Detection]) -> list[str]:
    return [d.rule for d in ds]


# --- key_burst ------------------------------------------------------------------------------
def test_key_burst_fires_above_min_count_and_names_the_key_prefix() -> None:
    e = engine(burst_min_count=5)
    out: list[Detection] = []
    for i in range(6):
        out += e.signed(KEY, (i % 2,), ["node-1"], 1_000_000 + i * S)
    bursts = [d for d in out if d.rule == "key_burst"]
    assert bursts == [Detection("key_burst", "abababab", 6.0, 5.0, 60.0)]


def test_key_burst_quiet_at_a_steady_rate_and_on_other_keys() -> None:
    e = engine(burst_min_count=5)
    out: list[Detection] = []
    for i in range(50):  # 4 per window, for 12 windows
        out += e.signed(KEY, (0,), ["node-1"], i * 15 * S)
    for i in range(5):
        out += e.signed(OTHER, (0,), ["node-1"], 50 * 15 * S + i)
    assert "key_burst" not in rules(out)


def test_key_burst_measures_against_the_keys_own_baseline() -> None:
    e = engine(burst_min_count=5, burst_factor=2.0, baseline_windows=4)
    t = 0
    for _ in range(4 * 10):  # warming up: 10 per window over 4 windows (above min_count: reported)
        e.signed(KEY, (0,), [], t)
        t += 6 * S
    out: list[Detection] = []
    for _ in range(3 * 10):  # 10 > 5 but it is now the key's normal rate
        out += e.signed(KEY, (0,), [], t)
        t += 6 * S
    assert "key_burst" not in rules(out)
    for i in range(21):  # 21 in one window > 2 x 10
        out += e.signed(KEY, (0,), [], t + i * S)
    bursts = [d for d in out if d.rule == "key_burst"]
    assert len(bursts) == 1 and bursts[0].observed > bursts[0].expected >= 20


def test_key_burst_reported_once_per_window() -> None:
    e = engine(burst_min_count=1)
    out: list[Detection] = []
    for i in range(10):
        out += e.signed(KEY, (0,), [], i * S)
    assert rules(out).count("key_burst") == 1
    out = []
    for i in range(12):  # a window later, 12 > 5 x the baseline of 1 per window: reported again
        out += e.signed(KEY, (0,), [], 200 * S + i)
    assert rules(out).count("key_burst") == 1


# --- new_derivation_path --------------------------------------------------------------------
def test_new_derivation_path_fires_on_a_path_never_signed() -> None:
    e = engine()
    assert e.signed(KEY, (0, 1), [], 0) == []  # the first use of a key does not count
    assert e.signed(KEY, (0, 1), [], S) == []
    out = e.signed(KEY, (0, 2), [], 2 * S)
    assert out == [Detection("new_derivation_path", "abababab", 2.0, 1.0, 60.0)]


def test_new_derivation_path_quiet_on_known_paths_and_first_use() -> None:
    e = engine()
    out = e.signed(KEY, (), [], 0) + e.signed(OTHER, (7,), [], 1) + e.signed(KEY, (), [], 2) + e.signed(OTHER, (7,), [], 3)
    assert out == []


# --- requester_rate -------------------------------------------------------------------------
def test_requester_rate_fires_for_the_noisy_requester_only() -> None:
    e = engine(requester_min_count=3)
    out: list[Detection] = []
    for i in range(4):
        out += e.request_created("bot", KEY, i * S)
        out += e.request_created("alice", KEY, i * S + 1) if i < 3 else []
    assert out == [Detection("requester_rate", "bot", 4.0, 3.0, 60.0)]


def test_requester_rate_quiet_when_spread_over_windows() -> None:
    e = engine(requester_min_count=3)
    out: list[Detection] = []
    for i in range(20):
        out += e.request_created("bot", KEY, i * 30 * S)  # 2 per window
    assert out == []


# --- repeated_rejections --------------------------------------------------------------------
def test_repeated_rejections_fire_per_key_and_per_requester() -> None:
    e = engine(max_rejections=2)
    out: list[Detection] = []
    for i in range(3):
        out += e.request_rejected("mallory", KEY, i * S)
    assert sorted((d.rule, d.subject) for d in out) == [
        ("repeated_rejections", "key:abababab"), ("repeated_rejections", "mallory"),
    ]


def test_repeated_rejections_quiet_below_the_maximum_or_outside_the_window() -> None:
    e = engine(max_rejections=2)
    out = e.request_rejected("a", KEY, 0) + e.request_rejected("b", OTHER, 1)
    out += e.request_rejected("a", KEY, 2 * W) + e.request_rejected("a", KEY, 4 * W)
    assert out == []


# --- denied_calls ---------------------------------------------------------------------------
def test_denied_calls_fire_above_the_maximum() -> None:
    e = engine(max_denied=2)
    out: list[Detection] = []
    for i in range(3):
        out += e.rpc_denied("eve", i * S)
    assert out == [Detection("denied_calls", "eve", 3.0, 2.0, 60.0)]


def test_denied_calls_quiet_for_spread_callers() -> None:
    e = engine(max_denied=2)
    out: list[Detection] = []
    for i in range(10):
        out += e.rpc_denied(f"user-{i}", i * S)
    out += e.rpc_denied("eve", 0) + e.rpc_denied("eve", 2 * W) + e.rpc_denied("eve", 4 * W)
    assert out == []


# --- protocol_aborts ------------------------------------------------------------------------
def test_protocol_aborts_fire_on_repeated_aborts_and_on_any_ban() -> None:
    e = engine(max_aborts=1)
    assert e.session_aborted(KEY, 0, 0) == []
    assert rules(e.session_aborted(KEY, 0, S)) == ["protocol_aborts"]
    banned = e.session_aborted(OTHER, 1, 0)
    assert banned == [Detection("protocol_aborts", "cdcdcdcd", 1.0, 0.0, 60.0)]


def test_protocol_aborts_quiet_for_a_single_abort_without_bans() -> None:
    e = engine(max_aborts=1)
    out = e.session_aborted(KEY, 0, 0) + e.session_aborted(KEY, 0, 2 * W) + e.session_aborted(OTHER, 0, 2 * W)
    assert out == []


# --- audit_head_stalled ---------------------------------------------------------------------
def test_audit_head_stalled_fires_when_a_signer_does_not_advance() -> None:
    e = engine(audit_stall_s=10)
    assert e.audit_head("node-1", 5, 0) == []
    e.signed(KEY, (), ["node-1", "node-2"], 1 * S)
    assert e.audit_head("node-1", 5, 5 * S) == []  # not yet stall_s after the signing
    out = e.audit_head("node-1", 5, 12 * S)
    assert out == [Detection("audit_head_stalled", "node-1", 12.0, 10.0, 60.0)]


def test_audit_head_stalled_quiet_for_a_session_the_last_advance_may_include() -> None:
    e = engine(audit_stall_s=10)
    e.audit_head("node-1", 5, 0)
    e.audit_head("node-1", 9, 5 * S)  # the poll saw the session's entries, written before it ended
    e.signed(KEY, (), ["node-1"], 6 * S, started_ms=3 * S)
    assert e.audit_head("node-1", 9, 100 * S) == []


def test_audit_head_stalled_quiet_when_idle_or_advancing() -> None:
    e = engine(audit_stall_s=10)
    out = e.audit_head("node-1", 5, 0) + e.audit_head("node-3", 9, 0)
    out += e.audit_head("node-3", 9, 100 * S)  # idle: no signing, no reason to advance
    e.signed(KEY, (), ["node-1"], 1 * S)
    out += e.audit_head("node-1", 6, 2 * S)  # advanced after the signing
    out += e.audit_head("node-1", 6, 100 * S)  # and nothing signed since
    assert out == []


# --- the engine -----------------------------------------------------------------------------
def test_disabled_engine_reports_nothing() -> None:
    e = engine(enabled=False, max_denied=0)
    assert e.rpc_denied("eve", 0) == []


def test_active_counts_subjects_detected_in_the_last_window() -> None:
    e = engine(max_denied=0)
    e.rpc_denied("eve", 0)
    e.rpc_denied("bob", 1)
    assert e.active(S)["denied_calls"] == 2 and set(e.active(S)) == set(RULES)
    assert e.active(W + 2)["denied_calls"] == 0


def test_memory_is_bounded_by_the_caps() -> None:
    e = engine(max_subjects=4, max_events=8, max_paths=3, max_denied=10**6)
    for i in range(100):
        e.rpc_denied(f"caller-{i}", i)
        e.signed(bytes([i]) * 32, (i,), [], i)
        for p in range(10):
            e.signed(KEY, (p,), [], i)
    assert len(e.denied.windows) == 4 and len(e.key_burst.windows) == 4
    q = e.key_burst.windows._by.get("abababab")
    assert q is not None and len(q) == 8
    paths = e.new_path._paths.get("abababab")
    assert paths is not None and len(paths) == 3
