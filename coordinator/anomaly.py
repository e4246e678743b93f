"""Anomaly rules on key usage (issue 15): a pure engine, no clock and no I/O.

The coordinator feeds it events as they happen (:mod:`coordinator.anomaly_hook` does the wiring,
the audit entries, the metrics and the log lines); every call takes ``now_ms`` (milliseconds on one
steady clock: only differences are used, so the caller's monitor reads a monotonic clock, never the
wall clock, which a step would move every window with) and returns the :class:`Detection` s it caused (usually none). Rules:

- ``key_burst``: signatures on one key in the last window > max(``burst_min_count``,
  ``burst_factor`` x the key's baseline: its mean count per window over the ``baseline_windows``
  windows before the current one).
- ``new_derivation_path``: a signature at a derivation path never signed on that key before (the
  first signature the engine sees on a key does not count: it has no history).
- ``requester_rate``: one requester's requests in the last window > max(``requester_min_count``,
  ``requester_factor`` x its baseline).
- ``repeated_rejections``: rejected requests on one key, or of one requester, in the last window
  > ``max_rejections``.
- ``denied_calls``: PERMISSION_DENIED answers to one caller in the last window > ``max_denied``.
- ``protocol_aborts``: signing sessions aborted on one key in the last window > ``max_aborts``, or
  any ban (more than ``max_bans``, default 0).
- ``audit_head_stalled``: a node's audit head (its newest sequence number) has not advanced for
  ``audit_stall_s`` after the node took part in a signing that started after the poll that last
  saw its head advance (a node audits every session it serves, so its head must move after
  that poll); the signing ended at least ``audit_stall_s`` ago.

A detection's subject is a key's id prefix (8 hex digits), a requester/caller name, or a node
name; a (rule, subject) pair is reported at most once per window. Memory is bounded: at most
``max_subjects`` subjects per rule (the least recently seen is evicted), at most ``max_events``
timestamps per subject (the oldest dropped, so a count saturates there) and ``max_paths`` paths
per key (an evicted path that comes back is reported as new again). State is in memory; at start
the coordinator refills ``requester_rate`` from the stored requests
(:meth:`AnomalyDetector.refill_requests`, their ``created_steady_ms`` on the store's steady clock),
so a restart in the middle of a burst of requests does not split its window. The other rules
start empty after a restart (no steady time of a signature, rejection, denial or abort is stored).

Errors: :class:`AnomalyConfig` raises ``ValueError`` naming the field for a bad threshold; the
engine itself never raises on well-typed events.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Generic, TypeVar

RULES = (
    "key_burst", "new_derivation_path", "requester_rate", "repeated_rejections", "denied_calls",
    "protocol_aborts", "audit_head_stalled",
)
KEY_PREFIX_HEX = 8  # a key is named by the first 8 hex digits of its id
_SECONDS = ("window_s", "audit_stall_s")
_FACTORS = ("burst_factor", "requester_factor")
_MAY_BE_ZERO = ("max_rejections", "max_denied", "max_aborts", "max_bans")


@dataclass(frozen=True)
class AnomalyConfig:
    """Thresholds (coordinator config ``"anomaly": {...}``; every field optional). Durations in
    seconds, counts per window. ``enabled: false`` turns detection off."""

    enabled: bool = True
    window_s: float = 60.0
    baseline_windows: int = 10
    burst_min_count: int = 20
    burst_factor: float = 5.0
    requester_min_count: int = 30
    requester_factor: float = 5.0
    max_rejections: int = 3
    max_denied: int = 5
    max_aborts: int = 2
    max_bans: int = 0
    audit_stall_s: float = 120.0
    max_subjects: int = 1024
    max_events: int = 4096
    max_paths: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError("enabled: must be true or false")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "enabled":
                continue
            if f.name in _SECONDS:  # under a second rounds toward a 0 ms window that counts nothing
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 7 * 86400:
                    raise ValueError(f"{f.name}: must be a number of seconds in [1, 604800]")
            elif f.name in _FACTORS:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 7 * 86400:
                    raise ValueError(f"{f.name}: must be a number in (0, 604800]")
            else:
                lo = 0 if f.name in _MAY_BE_ZERO else 1
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 1_000_000:
                    raise ValueError(f"{f.name}: must be an integer in {lo}..1000000")

    @property
    def window_ms(self) -> int:
        return round(self.window_s * 1000)


@dataclass(frozen=True)
class Detection:
    """One anomaly: ``rule`` (one of :data:`RULES`), ``subject`` (a key id prefix of 8 hex digits,
    or a requester/caller/node name: caller text, escape it before display), ``observed`` and
    ``expected`` (counts per window, or seconds for ``audit_head_stalled``; observed > expected),
    ``window_s`` (seconds)."""

    rule: str
    subject: str
    observed: float
    expected: float
    window_s: float


def key_prefix(key_id: bytes) -> str:
    """The 8-hex-digit prefix that names a key in detections (never the whole id)."""
    return key_id.hex()[:KEY_PREFIX_HEX]


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A dict of at most ``cap`` entries; touching an entry makes it newest; the oldest goes."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._d: OrderedDict[K, V] = OrderedDict()

    def get(self, k: K) -> V | None:
        v = self._d.get(k)
        if v is not None:
            self._d.move_to_end(k)
        return v

    def put(self, k: K, v: V) -> None:
        self._d[k] = v
        self._d.move_to_end(k)
        while len(self._d) > self.cap:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    def items(self) -> list[tuple[K, V]]:
        return list(self._d.items())


class _Events:
    """One subject's event timestamps (ms): the arrival order (a bounded deque, the oldest arrival
    dropped first) and the same values kept sorted, so a count over a time range is two bisections
    (O(log n)) instead of a scan. Clocks may step backwards: times need not arrive in order."""

    __slots__ = ("arrivals", "max_events", "sorted")

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self.arrivals: deque[int] = deque()
        self.sorted: list[int] = []

    def add(self, t_ms: int) -> None:
        """Record an event at ``t_ms``; beyond ``max_events`` the oldest arrival is dropped."""
        if len(self.arrivals) >= self.max_events:
            self._discard(self.arrivals.popleft())
        self.arrivals.append(t_ms)
        insort(self.sorted, t_ms)

    def drop_older_arrivals(self, floor_ms: int) -> None:
        """Drop arrivals from the oldest on while they are earlier than ``floor_ms`` (stopping at
        the first that is not, as a deque popped from the left would)."""
        q = self.arrivals
        while q and q[0] < floor_ms:
            self._discard(q.popleft())

    def _discard(self, t_ms: int) -> None:
        del self.sorted[bisect_left(self.sorted, t_ms)]

    def count(self, lo_ms: int, hi_ms: int) -> int:
        """Events with lo_ms < t <= hi_ms."""
        if hi_ms <= lo_ms:
            return 0
        return bisect_right(self.sorted, hi_ms) - bisect_right(self.sorted, lo_ms)

    def __len__(self) -> int:
        return len(self.arrivals)


class _Windows:
    """Per-subject event timestamps (ms), bounded: ``max_subjects`` subjects, ``max_events`` each,
    none older than ``horizon_ms`` before the newest event."""

    def __init__(self, cfg: AnomalyConfig, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.max_events = cfg.max_events
        self._by: _Lru[str, _Events] = _Lru(cfg.max_subjects)

    def add(self, subject: str, now_ms: int) -> _Events:
        q = self._by.get(subject)
        if q is None:
            q = _Events(self.max_events)
            self._by.put(subject, q)
        q.add(now_ms)
        q.drop_older_arrivals(now_ms - self.horizon_ms)
        return q

    def __len__(self) -> int:
        return len(self._by)


def _count(q: _Events, lo_ms: int, hi_ms: int) -> int:
    """Events with lo_ms < t <= hi_ms (O(log n))."""
    return q.count(lo_ms, hi_ms)


class _RateRule:
    """Count in the last window above max(min_count, factor x the subject's baseline)."""

    def __init__(self, rule: str, cfg: AnomalyConfig, min_count: int, factor: float) -> None:
        self.rule, self.cfg, self.min_count, self.factor = rule, cfg, min_count, factor
        self.windows = _Windows(cfg, cfg.window_ms * (cfg.baseline_windows + 1))

    def observe(self, subject: str, now_ms: int) -> Detection | None:
        q = self.windows.add(subject, now_ms)
        w = self.cfg.window_ms
        current = _count(q, now_ms - w, now_ms)
        before = _count(q, now_ms - w * (self.cfg.baseline_windows + 1), now_ms - w)
        baseline = before / self.cfg.baseline_windows
        expected = max(float(self.min_count), self.factor * baseline)
        if current > expected:
            return Detection(self.rule, subject, float(current), expected, self.cfg.window_s)
        return None


class _CountRule:
    """Count in the last window above a fixed maximum."""

    def __init__(self, rule: str, cfg: AnomalyConfig, maximum: int) -> None:
        self.rule, self.cfg, self.maximum = rule, cfg, maximum
        self.windows = _Windows(cfg, cfg.window_ms)

    def observe(self, subject: str, now_ms: int, n: int = 1) -> Detection | None:
        q: _Events | None = None
        for _ in range(max(1, n)):
            q = self.windows.add(subject, now_ms)
        assert q is not None
        current = _count(q, now_ms - self.cfg.window_ms, now_ms)
        if current > self.maximum:
            return Detection(self.rule, subject, float(current), float(self.maximum), self.cfg.window_s)
        return None


class KeyBurst(_RateRule):
    """``key_burst``: signatures on one key (subject: its id prefix)."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        super().__init__("key_burst", cfg, cfg.burst_min_count, cfg.burst_factor)


class RequesterRate(_RateRule):
    """``requester_rate``: signing requests of one requester (subject: its name)."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        super().__init__("requester_rate", cfg, cfg.requester_min_count, cfg.requester_factor)


class RepeatedRejections(_CountRule):
    """``repeated_rejections``: subjects ``key:PREFIX`` and the requester's name, counted apart."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        super().__init__("repeated_rejections", cfg, cfg.max_rejections)


class DeniedCalls(_CountRule):
    """``denied_calls``: PERMISSION_DENIED answers per caller name."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        super().__init__("denied_calls", cfg, cfg.max_denied)


class ProtocolAborts:
    """``protocol_aborts``: aborted sessions per key (more than ``max_aborts``) and bans per key
    (more than ``max_bans``) in the window; subject: the key's id prefix."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        self.aborts = _CountRule("protocol_aborts", cfg, cfg.max_aborts)
        self.bans = _CountRule("protocol_aborts", cfg, cfg.max_bans)

    def observe(self, subject: str, bans: int, now_ms: int) -> Detection | None:
        hit = self.aborts.observe(subject, now_ms)
        if bans > 0:
            hit = self.bans.observe(subject, now_ms, bans) or hit
        return hit


class NewDerivationPath:
    """``new_derivation_path``: the paths signed on each key (at most ``max_paths`` per key,
    ``max_subjects`` keys)."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        self.cfg = cfg
        self._paths: _Lru[str, _Lru[tuple[int, ...], bool]] = _Lru(cfg.max_subjects)

    def observe(self, subject: str, path: tuple[int, ...]) -> Detection | None:
        seen = self._paths.get(subject)
        if seen is None:  # the first signature seen on this key: no history to compare with
            seen = _Lru(self.cfg.max_paths)
            seen.put(path, True)
            self._paths.put(subject, seen)
            return None
        if seen.get(path) is not None:
            return None
        known = len(seen)
        seen.put(path, True)
        return Detection("new_derivation_path", subject, float(known + 1), float(known), self.cfg.window_s)


@dataclass
class _Head:
    seq: int
    advanced_ms: int
    signed_ms: int | None = None  # when the first signing that started after advanced_ms ended


class AuditHeadStalled:
    """``audit_head_stalled``: per node (subject: its name), the newest audit sequence number and
    when it last advanced, and the first signing session it took part in after that."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        self.cfg = cfg
        self._nodes: _Lru[str, _Head] = _Lru(cfg.max_subjects)

    def signed(self, node: str, started_ms: int, now_ms: int) -> None:
        """``node`` served a signing session that started at ``started_ms`` and ended at ``now_ms``:
        its audit head must advance past what any poll before ``started_ms`` saw."""
        h = self._nodes.get(node)
        if h is not None and h.signed_ms is None and started_ms > h.advanced_ms:
            h.signed_ms = now_ms

    def head(self, node: str, seq: int, now_ms: int) -> Detection | None:
        h = self._nodes.get(node)
        if h is None or seq != h.seq:  # first poll, or it advanced (or was replaced: a new log)
            self._nodes.put(node, _Head(seq, now_ms))
            return None
        stall_ms = round(self.cfg.audit_stall_s * 1000)
        if h.signed_ms is not None and now_ms - h.signed_ms >= stall_ms:
            return Detection(
                "audit_head_stalled", node, round((now_ms - h.advanced_ms) / 1000, 3), self.cfg.audit_stall_s, self.cfg.window_s
            )
        return None


class AnomalyDetector:
    """The rules together, with the once-per-window limit per (rule, subject). Not thread-safe:
    callers serialise (the hook holds a lock). Each method returns the new detections."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        self.cfg = cfg
        self.key_burst = KeyBurst(cfg)
        self.new_path = NewDerivationPath(cfg)
        self.requester_rate = RequesterRate(cfg)
        self.rejections = RepeatedRejections(cfg)
        self.denied = DeniedCalls(cfg)
        self.aborts = ProtocolAborts(cfg)
        self.audit_heads = AuditHeadStalled(cfg)
        self._last: _Lru[tuple[str, str], int] = _Lru(cfg.max_subjects * len(RULES))

    def _emit(self, hits: Sequence[Detection | None], now_ms: int) -> list[Detection]:
        out: list[Detection] = []
        if not self.cfg.enabled:
            return out
        for d in hits:
            if d is None:
                continue
            last = self._last.get((d.rule, d.subject))
            if last is not None and now_ms - last < self.cfg.window_ms:
                continue
            self._last.put((d.rule, d.subject), now_ms)
            out.append(d)
        return out

    def request_created(self, requester: str, key_id: bytes, now_ms: int) -> list[Detection]:
        """A signing request was accepted (PENDING_APPROVAL)."""
        return self._emit([self.requester_rate.observe(requester, now_ms)], now_ms)

    def request_rejected(self, requester: str, key_id: bytes, now_ms: int) -> list[Detection]:
        """A signing request was rejected by its approvers."""
        return self._emit([
            self.rejections.observe("key:" + key_prefix(key_id), now_ms), self.rejections.observe(requester, now_ms),
        ], now_ms)

    def signed(
        self, key_id: bytes, path: Sequence[int], signers: Iterable[str], now_ms: int, started_ms: int | None = None
    ) -> list[Detection]:
        """A signature was produced on ``key_id`` at ``path`` by the nodes named ``signers``, in
        signing that started at ``started_ms`` (default ``now_ms``)."""
        for node in signers:
            self.audit_heads.signed(node, now_ms if started_ms is None else started_ms, now_ms)
        kp = key_prefix(key_id)
        return self._emit([self.key_burst.observe(kp, now_ms), self.new_path.observe(kp, tuple(path))], now_ms)

    def refill_requests(self, events: Iterable[tuple[str, int]]) -> None:
        """Count requests accepted before a restart in ``requester_rate``'s windows, as if each
        had been observed at its time: ``events`` are (requester, ms on this engine's clock); they
        are added oldest first. Nothing is reported (those requests were judged when made); the
        next request is judged with them in its window and baseline."""
        for requester, t_ms in sorted(events, key=lambda e: e[1]):
            self.requester_rate.windows.add(requester, t_ms)

    def rpc_denied(self, caller: str, now_ms: int) -> list[Detection]:
        """A call from certificate name ``caller`` was answered PERMISSION_DENIED."""
        return self._emit([self.denied.observe(caller, now_ms)], now_ms)

    def session_aborted(self, key_id: bytes, bans: int, now_ms: int) -> list[Detection]:
        """A signing session on ``key_id`` aborted; ``bans``: the nodes it reported banned."""
        return self._emit([self.aborts.observe(key_prefix(key_id), bans, now_ms)], now_ms)

    def audit_head(self, node: str, seq: int, now_ms: int) -> list[Detection]:
        """A poll found node ``node``'s audit head at sequence number ``seq``."""
        return self._emit([self.audit_heads.head(node, seq, now_ms)], now_ms)

    def active(self, now_ms: int) -> dict[str, int]:
        """Per rule, how many subjects had a detection in the last window (every rule present)."""
        counts = dict.fromkeys(RULES, 0)
        for (rule, _), at in self._last.items():
            if now_ms - at < self.cfg.window_ms:
                counts[rule] += 1
        return counts
