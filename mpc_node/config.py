"""The node's configuration file (JSON).

Example::

    {
      "index": 1, "name": "node-1", "listen": "127.0.0.1:7001",
      "threshold": 3,
      "keystore": "keystore.json", "store": "node.db",
      "passphrase_file": "passphrase",            # or "passphrase_env": "MPC_NODE_PASSPHRASE", or
                                                  # "pkcs11": {...} (mpcnet.common.protection)
      "tls": {"cert": "node.pem", "key": "node.key", "ca": "../ca/ca.pem"},
      "roster": [
        {"index": 1, "name": "node-1", "identity_public": "<hex>", "encryption_public": "<hex>"},
        ...
      ],
      "session_timeout_s": 60, "max_sessions": 256, "scrypt_n": 32768,
      "log_file": "node.log", "test_mode": false, "clock_tolerance_s": 5,
      "audit_db": "audit.db",
      "policy_max_age_s": 86400,                  # 0: do not require policy attestations
      "governance": {
        "admin_set": {"cluster_id": "<hex>", "admins": {"admin1": "<hex>", ...}, "quorum": 2},
        "initial_policy": <SignedPolicyChange as a dict: the default policy, admin-signed>
      }
    }

The roster is the node's own, trusted list of every share holder's identity (Ed25519) and
encryption (X25519) public keys: every protocol message is checked against it, never against
anything the coordinator says. Likewise the admin set (the governance root) comes only from this
file: every policy the node enforces must be signed by its admin quorum, the initial default
policy included. ``policy_max_age_s`` bounds how long a withheld policy change can go unnoticed:
the node signs only while the newest admin-signed policy attestation it holds is at most that
old and names exactly the policies it enforces (see :mod:`governance.attestation`; 0 disables
the check, for a cluster without attesting admins). Relative paths are relative to the config
file.

``clock_tolerance_s`` (default 5, at most 300) is how far the node's clock may be off from the
coordinator's that stamped a signing request: the node refuses a request as expired only when
its clock is past the expiry by more than this, and as created in the future only when it is
more than the fixed 5-minute allowance plus this ahead of the node's clock.

``max_streams`` (default 16) bounds the long-lived streams open at once (server reflection; the
node's own RPCs are unary): each holds a server thread, so the server runs ``workers +
max_streams`` threads and more streams get RESOURCE_EXHAUSTED instead of starving the protocol
RPCs; a stream is cancelled after 65 s (:mod:`mpcnet.common.streams`).

``max_presignatures_per_key`` (default 64, 0 disables presign sessions) caps the fresh pool
presignatures a key may have here (stored plus in live presign sessions; RESOURCE_EXHAUSTED
beyond); ``max_presign_batch`` (default 16, at most 64) caps one presign session's ``count``
(issue 14, :mod:`mpc_node.presign`). ``max_nonces_per_key`` (default 256, 0 disables
``MakeNonces``) caps the fresh FROST nonce pairs a key may have here (issue 16,
:mod:`mpc_node.frost_sign`; one ``MakeNonces`` makes 1..64).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crypto_core.sign import MAX_PRESIGN_BATCH
from governance.approval import MAX_CLOCK_TOLERANCE_MS
from governance.policy import AdminSet, SignedPolicyChange
from governance.roster import Roster, SignedRosterChange
from mpcnet.common.config import ConfigError, Fields, load_governance, load_json, load_roster_history
from mpcnet.common.jsonlog import load_log_format
from mpcnet.common.metrics import MetricsSettings, load_metrics_settings
from mpcnet.common.pki import CertPaths
from mpcnet.common.protection import KeyProtection, Pkcs11Settings, load_pkcs11_settings

_KEYS = {
    "index", "name", "listen", "threshold", "keystore", "store", "passphrase_file", "passphrase_env",
    "tls", "roster", "session_timeout_s", "max_sessions", "scrypt_n", "log_file", "log_level",
    "test_mode", "workers", "audit_db", "governance", "clock_tolerance_s",
    "policy_max_age_s", "max_streams", "pkcs11", "log_format",
}
_KEYS.add("metrics")  # issue 15: mpcnet.common.metrics
_KEYS |= {"max_presignatures_per_key", "max_presign_batch"}  # issue 14: presignature pools (mpc_node/presign.py)
_KEYS.add("max_nonces_per_key")  # issue 16: FROST nonces (mpc_node/frost_sign.py)
DEFAULT_POLICY_MAX_AGE_S = 86400
MAX_POLICY_MAX_AGE_S = 366 * 86400
MAX_CLOCK_TOLERANCE_S = MAX_CLOCK_TOLERANCE_MS / 1000


@dataclass(frozen=True)
class Peer:
    index: int
    name: str
    identity_public: bytes
    encryption_public: bytes


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    index: int
    name: str
    listen: str
    threshold: int
    keystore: Path
    store: Path
    passphrase_file: Path | None
    passphrase_env: str | None
    cert: CertPaths
    ca_cert: Path
    roster: dict[int, Peer]
    session_timeout_s: float
    max_sessions: int
    scrypt_n: int
    log_file: Path | None
    log_level: str
    test_mode: bool
    workers: int
    audit_db: Path
    admin_set: AdminSet
    initial_policy: SignedPolicyChange
    policy_max_age_s: int = DEFAULT_POLICY_MAX_AGE_S  # 0: attestations not required
    clock_tolerance_s: float = 5.0
    max_streams: int = 16
    # the admin-signed roster chain from the config (empty: a legacy config, fixed roster) and
    # the roster at its end; the node's store may hold a longer chain extending it
    roster_history: tuple[SignedRosterChange, ...] = ()
    signed_roster: Roster | None = None
    pkcs11: Pkcs11Settings | None = None  # the store key (and maybe the identity) in a PKCS#11 token
    metrics: MetricsSettings | None = None  # the metrics endpoint (mpcnet.common.metrics); None: none
    log_format: str = "text"  # "text" | "json" (mpcnet.common.jsonlog)
    # issue 14: fresh pool presignatures kept per key (0: no presign sessions) and per session
    max_presignatures_per_key: int = 64
    max_presign_batch: int = 16
    max_nonces_per_key: int = 256  # issue 16: fresh FROST nonce pairs per key (0: no MakeNonces)

    @property
    def protection(self) -> KeyProtection:
        """How the keystore and the store are protected (:mod:`mpcnet.common.protection`)."""
        return KeyProtection(self.passphrase_file, self.passphrase_env, self.pkcs11)

    @property
    def parties(self) -> int:
        return len(self.roster)


def load_node_config(path: Path) -> NodeConfig:
    f = load_json(path, "node config")
    f.extra_keys(_KEYS)
    admins, initial = load_governance(f)
    history, signed_roster = load_roster_history(f, admins)
    roster: dict[int, Peer] = {}
    if signed_roster is not None:
        if "roster" in f.doc:
            raise f.error("roster", "give either roster (a fixed roster) or governance.roster_history, not both")
        roster = {
            e.index: Peer(e.index, e.name, e.identity_key, e.encryption_key) for e in signed_roster.entries if e.active
        }
    for entry in f.list("roster") if signed_roster is None else ():
        entry.extra_keys({"index", "name", "identity_public", "encryption_public"})
        p = Peer(
            entry.integer("index", lo=1, hi=1024), entry.name("name"), entry.hex("identity_public", 32), entry.hex("encryption_public", 32)
        )
        if p.index in roster:
            raise entry.error("index", f"duplicate party index {p.index}")
        roster[p.index] = p
    n = len(roster)
    if signed_roster is None and sorted(roster) != list(range(1, n + 1)):
        raise f.error("roster", f"indices must be exactly 1..{n}")
    index = f.integer("index", lo=1, hi=255 if signed_roster is not None else n)
    if index not in roster and (signed_roster is None or signed_roster.entry(index) is None):
        raise f.error("index", f"node {index} is not in the roster")
    threshold = f.integer("threshold", lo=2, hi=max(2, n))
    tls: Fields = f.obj("tls")
    tls.extra_keys({"cert", "key", "ca"})
    pf, pe = f.path("passphrase_file", required=False), f.opt_str("passphrase_env")
    pkcs11 = load_pkcs11_settings(f) if f.doc.get("pkcs11") is not None else None
    if pkcs11 is not None and (pf is not None or pe is not None):
        raise f.error("pkcs11", "give either a passphrase (passphrase_file/passphrase_env) or pkcs11, not both")
    if pf is None and pe is None and pkcs11 is None:
        raise f.error("passphrase_file", "missing (give passphrase_file, passphrase_env or pkcs11)")
    tolerance = f.number("clock_tolerance_s", 5.0, lo=-1.0)
    if not 0.0 <= tolerance <= MAX_CLOCK_TOLERANCE_S:
        raise f.error("clock_tolerance_s", f"must be a number of seconds in [0, {MAX_CLOCK_TOLERANCE_S:.0f}]")
    cfg = NodeConfig(
        path=Path(path),
        index=index,
        name=f.name("name"),
        listen=f.endpoint("listen"),
        threshold=threshold,
        keystore=f.req_path("keystore"),
        store=f.req_path("store"),
        passphrase_file=pf,
        passphrase_env=pe,
        cert=CertPaths(tls.req_path("cert"), tls.req_path("key")),
        ca_cert=tls.req_path("ca"),
        roster=roster,
        session_timeout_s=f.number("session_timeout_s", 60.0),
        max_sessions=f.integer("max_sessions", 256, lo=1, hi=100_000),
        scrypt_n=f.integer("scrypt_n", 2**15, lo=2**10, hi=2**20),
        log_file=f.path("log_file", required=False),
        log_level=f.text("log_level", "INFO"),
        log_format=load_log_format(f),
        test_mode=f.flag("test_mode", False),
        workers=f.integer("workers", 16, lo=2, hi=256),
        audit_db=f.path("audit_db", required=False) or Path(path).parent / "audit.db",
        admin_set=admins,
        initial_policy=initial,
        policy_max_age_s=f.integer("policy_max_age_s", DEFAULT_POLICY_MAX_AGE_S, lo=0, hi=MAX_POLICY_MAX_AGE_S),
        clock_tolerance_s=tolerance,
        max_streams=f.integer("max_streams", 16, lo=1, hi=1024),
        roster_history=history,
        signed_roster=signed_roster,
        pkcs11=pkcs11,
        metrics=load_metrics_settings(f),
        max_presignatures_per_key=f.integer("max_presignatures_per_key", 64, lo=0, hi=100_000),
        max_presign_batch=f.integer("max_presign_batch", 16, lo=1, hi=MAX_PRESIGN_BATCH),
        max_nonces_per_key=f.integer("max_nonces_per_key", 256, lo=0, hi=100_000),
    )
    entry_name = roster[index].name if index in roster else signed_roster.entry(index).name  # type: ignore[union-attr]
    if entry_name != cfg.name:
        raise ConfigError(f"{path}: name: {cfg.name!r} differs from roster entry {index} ({entry_name!r})")
    return cfg
