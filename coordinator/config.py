"""The coordinator's configuration file (JSON).

Example::

    {
      "name": "coordinator", "listen": "127.0.0.1:7000", "threshold": 3,
      "db": "coordinator.db",
      "tls": {"cert": "coordinator.pem", "key": "coordinator.key", "ca": "../ca/ca.pem"},
      "nodes": [{"index": 1, "name": "node-1", "endpoint": "127.0.0.1:7001"}, ...],
      "client_roles": ["admin", "requester", "approver", "auditor", "officer"],
      "step_timeout_s": 30, "max_requests": 64, "max_parallel_sessions": 4, "max_clock_skew_s": 30,
      "workers": 48, "max_streams": 256, "stream_lifetime_s": 60,
      "log_file": "coordinator.log",
      "keystore": "keystore.json", "passphrase_file": "passphrase",   # or "passphrase_env"
      "audit_db": "audit.db",
      "governance": {"admin_set": {...}, "initial_policy": {...}},     # as in the node config
      "test_mode": false                                                 # tests only: coordinator.faults
    }

``client_roles`` are the certificate roles that may call the API at all; each RPC further
requires its own role (``coordinator.roles``). The keystore holds the coordinator's Ed25519
identity key, which signs its audit log (its X25519 key is unused). The governance section lets
the coordinator check admin signatures and approvals as they arrive; the nodes check them again
with their own copy, so a coordinator with a wrong one can only cause refusals.

``max_requests`` bounds the requests in progress (more get RESOURCE_EXHAUSTED; a key creation
holds its call's server thread while its DKG runs or waits for a session, so the server runs
``max_requests`` threads for them on top of ``workers``);
``max_parallel_sessions`` bounds the protocol sessions run at once (further requests queue):
the nodes are CPU bound, and running more sessions at once than there are cores only adds
contention.

``max_streams`` (default 256) bounds the long-lived streams open at once (``WatchSignRequest``
and server reflection; more get RESOURCE_EXHAUSTED "too many open streams (N); retry later"):
each holds a server thread, so the server runs ``workers + max_streams`` threads and streams can
never take the ``workers`` that serve unary calls (approvals, ``ClusterStatus``).
``max_streams_per_caller`` (default ``max_streams // 4``, at least 1) bounds the streams one
caller (certificate name) holds at once, so one certificate holder cannot take every slot and
starve everyone else's waits (more get RESOURCE_EXHAUSTED "too many open streams for NAME (N)").
``stream_lifetime_s`` (default 60, at most 3600): a watch stream ends after this long with the
request's current state (clients resume); see :mod:`mpcnet.common.streams`.

``max_waiting_decisions`` (default 64, 0 to 1000; issue 14): deciding approvals whose answers
may wait at once for the end of the signing (``wait_done_ms``, :mod:`coordinator.decide_wait`);
each holds a server thread for up to 5 s, so the server runs that many threads on top of
``workers`` and waits can never take the threads that serve other unary calls; past it a deciding
approval is answered at once (SIGNING) and its client watches. 0: never wait.

``max_clock_skew_s`` (default 30): the health probe measures each node's clock against the
coordinator's (:mod:`mpcnet.common.clockskew`); signing leaves out a node whose clock is off by more
than this while enough other nodes are available, and ``ClusterStatus`` flags it.

``liveness_recheck_s`` (default 5, at most 60): before a refresh or reshare fails because members
of its old committee were judged down by the 1 s background health probe, exactly those are asked
once more with this deadline (:mod:`coordinator.liveness`); a node busy with background work that
answered late once is then found serving and the operation proceeds. A node that answers
NOT_SERVING, or not within it, still fails the operation, with the same message.

``anomaly`` (optional): thresholds of the anomaly rules (:mod:`coordinator.anomaly`, loaded by
:mod:`coordinator.anomaly_config`); absent, the defaults.

``presign`` (optional, issue 14): presignature pools and one-round signing
(:mod:`coordinator.pool_config`); absent, pools are off.

``test_mode`` (default false): key operations honour the crash/delay points of
:mod:`coordinator.faults` (a fault file named by ``MPC_TEST_COORDINATOR_FAULT_FILE``); never
set it in production.

Relative paths are relative to the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coordinator.anomaly import AnomalyConfig
from coordinator.anomaly_config import load_anomaly
from coordinator.pool_config import PresignConfig, load_presign
from governance.policy import AdminSet, SignedPolicyChange
from governance.roster import Roster, SignedRosterChange, active_entries
from mpcnet.common.config import ConfigError, load_governance, load_json, load_roster_history
from mpcnet.common.jsonlog import load_log_format
from mpcnet.common.metrics import MetricsSettings, load_metrics_settings
from mpcnet.common.pki import ROLES, CertPaths

DEFAULT_CLIENT_ROLES = ["admin", "requester", "approver", "auditor", "officer"]
MAX_CLOCK_SKEW_S = 7 * 86400.0  # fits NodeStatus.max_clock_skew_ms (uint32 ms)
MAX_STREAM_LIFETIME_S = 3600.0
DEFAULT_RECHECK_S = 5.0  # liveness_recheck_s: the second health check's deadline (s); a busy node answers within it
MAX_RECHECK_S = 60.0  # liveness_recheck_s at most (s): the key operation waits for it

_KEYS = {
    "name", "listen", "threshold", "db", "tls", "nodes", "client_roles", "step_timeout_s", "dkg_timeout_s",
    "max_requests", "log_file", "log_level", "workers", "health_interval_s", "max_parallel_sessions",
    "keystore", "passphrase_file", "passphrase_env", "audit_db", "governance", "sweep_interval_s",
    "max_clock_skew_s", "max_streams", "max_streams_per_caller", "stream_lifetime_s", "test_mode", "log_format",
    "max_waiting_decisions",  # issue 14: coordinator/decide_wait.py, coordinator/main.py
    "liveness_recheck_s",  # coordinator/liveness.py
    "anomaly",  # issue 15: coordinator/anomaly_config.py
    "presign",  # issue 14: coordinator/pool_config.py
}
_KEYS.add("metrics")  # issue 15: mpcnet.common.metrics


@dataclass(frozen=True)
class NodeEndpoint:
    index: int
    name: str
    endpoint: str


@dataclass(frozen=True)
class CoordinatorConfig:
    path: Path
    name: str
    listen: str
    threshold: int
    db: Path
    cert: CertPaths
    ca_cert: Path
    nodes: dict[int, NodeEndpoint]
    client_roles: tuple[str, ...]
    step_timeout_s: float
    dkg_timeout_s: float
    max_requests: int
    log_file: Path | None
    log_level: str
    workers: int
    health_interval_s: float
    max_parallel_sessions: int
    keystore: Path
    passphrase_file: Path | None
    passphrase_env: str | None
    audit_db: Path
    admin_set: AdminSet
    initial_policy: SignedPolicyChange
    sweep_interval_s: float
    max_clock_skew_s: float = 30.0
    max_streams: int = 256
    stream_lifetime_s: float = 60.0
    max_streams_per_caller: int = 64
    max_waiting_decisions: int = 64  # issue 14: deciding answers waiting for DONE at once (own threads)
    liveness_recheck_s: float = DEFAULT_RECHECK_S  # the second health check's deadline (s) before a key operation fails
    # the admin-signed roster chain from the config (empty: legacy, the fixed `nodes` list) and
    # the roster at its end; the database may hold a longer chain extending it
    roster_history: tuple[SignedRosterChange, ...] = ()
    signed_roster: Roster | None = None
    test_mode: bool = False  # coordinator.faults: crash/delay points of key operations (tests only)
    metrics: MetricsSettings | None = None  # the metrics endpoint (mpcnet.common.metrics); None: none
    log_format: str = "text"  # "text" | "json" (mpcnet.common.jsonlog)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)  # thresholds (coordinator/anomaly_config.py)
    presign: PresignConfig = field(default_factory=PresignConfig)  # presignature pools (coordinator/pool_config.py)

    @property
    def parties(self) -> int:
        return len(self.nodes)


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    f = load_json(path, "coordinator config")
    f.extra_keys(_KEYS)
    nodes: dict[int, NodeEndpoint] = {}
    for entry in f.list("nodes"):
        entry.extra_keys({"index", "name", "endpoint"})
        ne = NodeEndpoint(entry.integer("index", lo=1, hi=1024), entry.name("name"), entry.endpoint("endpoint"))
        if ne.index in nodes:
            raise entry.error("index", f"duplicate node index {ne.index}")
        nodes[ne.index] = ne
    admins, initial = load_governance(f)
    history, signed_roster = load_roster_history(f, admins)
    if signed_roster is not None:
        # the roster says who the nodes are; `nodes` may only give the endpoint to dial a node
        # at (a dev cluster's ports can change at a restart)
        for i, ne in nodes.items():
            e = signed_roster.entry(i)
            if e is None or e.name != ne.name:
                raise f.error("nodes", f"node {i} ({ne.name}) is not entry {i} of the roster")
        nodes = {
            e.index: nodes.get(e.index) or NodeEndpoint(e.index, e.name, e.endpoint) for e in active_entries(signed_roster)
        }
    n = len(nodes)
    if signed_roster is None and sorted(nodes) != list(range(1, n + 1)):
        raise f.error("nodes", f"indices must be exactly 1..{n}")
    if n < 2:
        raise f.error("nodes", "need at least 2 nodes")
    tls = f.obj("tls")
    tls.extra_keys({"cert", "key", "ca"})
    roles = f.doc.get("client_roles", DEFAULT_CLIENT_ROLES)
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise f.error("client_roles", f"must be a non-empty list of roles from {', '.join(ROLES)}")
    if "node" in roles:
        raise f.error("client_roles", "nodes may not call the client API")
    pf, pe = f.path("passphrase_file", required=False), f.opt_str("passphrase_env")
    if pf is None and pe is None:
        raise f.error("passphrase_file", "missing (give passphrase_file or passphrase_env)")
    max_skew = f.number("max_clock_skew_s", 30.0)
    if not max_skew <= MAX_CLOCK_SKEW_S:
        raise f.error("max_clock_skew_s", f"must be a number of seconds in (0, {MAX_CLOCK_SKEW_S:.0f}]")
    max_streams = f.integer("max_streams", 256, lo=1, hi=10_000)
    lifetime = f.number("stream_lifetime_s", 60.0)
    if not lifetime <= MAX_STREAM_LIFETIME_S:
        raise f.error("stream_lifetime_s", f"must be a number of seconds in (0, {MAX_STREAM_LIFETIME_S:.0f}]")
    recheck_s = f.number("liveness_recheck_s", DEFAULT_RECHECK_S)
    if not recheck_s <= MAX_RECHECK_S:
        raise f.error("liveness_recheck_s", f"must be a number of seconds in (0, {MAX_RECHECK_S:.0f}]")
    cfg = CoordinatorConfig(
        path=Path(path),
        name=f.name("name", "coordinator"),
        listen=f.endpoint("listen"),
        threshold=f.integer("threshold", lo=2, hi=n),
        db=f.req_path("db"),
        cert=CertPaths(tls.req_path("cert"), tls.req_path("key")),
        ca_cert=tls.req_path("ca"),
        nodes=nodes,
        client_roles=tuple(roles),
        step_timeout_s=f.number("step_timeout_s", 20.0),
        dkg_timeout_s=f.number("dkg_timeout_s", 60.0),
        max_requests=f.integer("max_requests", 64, lo=1, hi=10_000),
        log_file=f.path("log_file", required=False),
        log_level=f.text("log_level", "INFO"),
        log_format=load_log_format(f),
        workers=f.integer("workers", 48, lo=4, hi=1024),
        health_interval_s=f.number("health_interval_s", 1.0),
        max_parallel_sessions=f.integer("max_parallel_sessions", 4, lo=1, hi=10_000),
        keystore=f.req_path("keystore"),
        passphrase_file=pf,
        passphrase_env=pe,
        audit_db=f.path("audit_db", required=False) or Path(path).parent / "audit.db",
        admin_set=admins,
        initial_policy=initial,
        sweep_interval_s=f.number("sweep_interval_s", 1.0),
        max_clock_skew_s=max_skew,
        max_streams=max_streams,
        stream_lifetime_s=lifetime,
        max_streams_per_caller=f.integer("max_streams_per_caller", max(1, max_streams // 4), lo=1, hi=max_streams),
        max_waiting_decisions=f.integer("max_waiting_decisions", 64, lo=0, hi=1000),
        liveness_recheck_s=recheck_s,
        roster_history=history,
        signed_roster=signed_roster,
        test_mode=f.flag("test_mode", False),
        metrics=load_metrics_settings(f),
        anomaly=load_anomaly(f),
        presign=load_presign(f),
    )
    if cfg.workers <= cfg.max_requests // 2:
        raise ConfigError(f"{path}: workers: must exceed max_requests / 2")
    return cfg
