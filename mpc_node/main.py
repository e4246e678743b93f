"""``mpc-node --config FILE``: a share-holder node serving the mpc.v1.Node gRPC service over mTLS.

Only a client whose certificate has role ``coordinator`` may call the Node service, except the
policy RPCs in :data:`ADMIN_RPCS`, which role ``admin`` may call too (admins push signed policy
changes and attestations directly, so a coordinator cannot withhold them; the node verifies the
admin signatures itself and audits who pushed). The standard health and reflection services
answer any client with a certificate from the CA.
SIGTERM/SIGINT stop the server gracefully (in-flight calls get a few seconds).

Off-line subcommands (the node stopped; see README "Deploying"):

\b
    mpc-node init --dir DIR --name NAME --endpoint HOST:PORT ...   make this host's keys and enrolment request
    mpc-node join --dir DIR --genesis FILE --cert FILE --ca FILE    write DIR/config.json once enrolled
    mpc-node rekey-store --config FILE ...                         move the store key into a PKCS#11 token
    mpc-node reset-clock-floor --config FILE                       reset the expiry floor to the wall clock now
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

from governance.errors import GovernanceError
from mpc_node.audit_outbox import problem_text
from mpc_node.clock import NodeClock
from mpc_node.config import NodeConfig, load_node_config
from mpc_node.rotation import StagingPaths, recover_switch
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore, StoreError
from mpc_node.tls import ServingCertificate
from mpcnet.common import cliutil
from mpcnet.common.datadir import hold_data_dirs
from mpcnet.common.datadir_check import check_data_dirs, start_failure
from mpcnet.common.fsutil import read_small_file
from mpcnet.common.gc_tuning import tune_for_server
from mpcnet.common.heap_tuning import keep_heap
from mpcnet.common.keystore import KeystoreError, load_keystore, read_passphrase
from mpcnet.common.keystore_lock import hold_keystore
from mpcnet.common.listen import bind_listen
from mpcnet.common.metrics import serve_metrics
from mpcnet.common.pkcs11token import TokenError
from mpcnet.common.pki import PkiError, identity_from_cert
from mpcnet.common.protection import close_tokens, open_operational_keys, storage_key
from mpcnet.common.rpc import SERVER_OPTIONS, add_standard_services, audited_role_check, service_handler, wait_until_stopped
from mpcnet.common.stores.audit import AuditLog
from mpcnet.common.streams import StreamBudget
from mpcnet.common.tempsweep import sweep_stale_temps
from mpcnet.wire.mpc.v1 import node_pb2

log = logging.getLogger("mpc_node")
NODE_SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"]
ADMIN_RPCS = frozenset({
    "InstallPolicy", "InstallPolicyAttestation", "GetPolicies", "InstallRosterChange", "GetRoster",
    "PrepareKeyRotation", "InstallStagedCertificate", "InstallRecoveryConfig", "InstallRecoveryOrder",
})


def roles_for(method: str) -> tuple[str, ...]:
    """The certificate roles that may call Node RPC ``method``: coordinator and admin for
    :data:`ADMIN_RPCS`, else the coordinator only."""
    return ("coordinator", "admin") if method in ADMIN_RPCS else ("coordinator",)


def build_server(cfg: NodeConfig, service: NodeService) -> tuple[grpc.Server, int]:
    """The server: ``workers`` threads for the (unary) node RPCs plus ``max_streams`` for
    long-lived streams (reflection), which take a slot of their own budget first, so open streams
    can never hold the threads the protocol needs (:mod:`mpcnet.common.streams`)."""
    streams = StreamBudget(cfg.max_streams)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.workers + streams.limit, thread_name_prefix="rpc"),
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=cfg.workers * 8 + streams.limit,
    )

    authorize = audited_role_check(
        NODE_SERVICE.full_name, roles_for, service.audit,
        refused=service.roster_state.refused_fingerprints, on_denied=service.metrics.denied,
    )

    server.add_generic_rpc_handlers((service_handler(
        NODE_SERVICE, node_pb2, service, authorize=authorize, logger=log, translate=service.storage_failure, streams=streams
    ),))
    service.health = add_standard_services(server, (NODE_SERVICE.full_name,), streams)
    if service.rotation.problem:  # found at start (a roster naming keys this node does not hold)
        service.rotation.publish_health()
    serving = ServingCertificate(cfg.cert, cfg.ca_cert)  # a key rotation swaps it without a restart
    service.rotation.serving = serving
    return server, bind_listen(server, cfg.listen, serving.credentials())


def check_own_certificate(cfg: NodeConfig) -> None:
    """Refuse to start (PkiError naming ``tls.cert``) with a certificate whose CN is not the
    config's name or whose OU is not ``node``: peers would know this node by another name."""
    try:
        who = identity_from_cert(read_small_file(cfg.cert.cert))
    except OSError as e:
        raise PkiError(f"tls.cert: cannot read {cfg.cert.cert} ({e.strerror or type(e).__name__})") from None
    if who.name != cfg.name or who.role != "node":
        raise PkiError(f"tls.cert: the certificate names {who.role} {who.name!r}, not node {cfg.name!r} (the config's name)")


def run(cfg: NodeConfig, ready: threading.Event | None = None, stop: threading.Event | None = None) -> int:
    """Serve until stopped; first lock the data directories, so a second node started with this
    configuration fails (:class:`DataDirBusy`, naming the holder's pid) before it writes anything."""
    dirs = (cfg.store.parent, cfg.audit_db.parent)
    check_data_dirs(dirs)  # a full, read-only or dangling data dir: one line naming it (DataDirUnusable)
    try:
        with hold_data_dirs(dirs, files=(cfg.store, cfg.audit_db)), hold_keystore(cfg.keystore):  # then one process per keystore (exit 2)
            return _serve(cfg, ready, stop)
    except Exception as e:
        unusable = start_failure(dirs, e)
        if unusable is None:
            raise
        raise unusable from None


def own_files(cfg: NodeConfig) -> tuple[Path, ...]:
    """The files this node (and its offline commands) replace atomically: their temporary files
    a kill left are swept at start (:func:`mpcnet.common.tempsweep.sweep_stale_temps`)."""
    staging = StagingPaths.for_config(cfg)
    return (
        Path(cfg.keystore), Path(cfg.keystore).with_name(Path(cfg.keystore).name + ".pkcs11"), Path(cfg.path),
        Path(cfg.cert.cert), Path(cfg.cert.key), staging.keystore, staging.tls_key, staging.tls_cert, staging.marker,
    )


def _serve(cfg: NodeConfig, ready: threading.Event | None, stop: threading.Event | None) -> int:
    sweep_stale_temps(own_files(cfg))  # under the data-dir and keystore locks: no writer of ours is running
    try:
        clock = NodeClock.from_env(cfg.test_mode)
    except ValueError as e:
        raise RuntimeError(str(e)) from None
    check_own_certificate(cfg)
    if cfg.pkcs11 is None:
        passphrase = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
        recover_switch(cfg, passphrase, clock=clock.now_ms)  # a key rotation a kill interrupted (mpc_node/rotation.py)
        keys = load_keystore(cfg.keystore, passphrase)
        store = NodeStore.open(cfg.store, passphrase, cfg.index, scrypt_n=cfg.scrypt_n)
        del passphrase
    else:  # the keys in a PKCS#11 token (key rotation refuses such a node: nothing to recover)
        keys = open_operational_keys(cfg.keystore, cfg.protection)
        store = NodeStore.open(cfg.store, storage_key(cfg.pkcs11), cfg.index)
    try:
        audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity, clock=clock.now_ms)
    except GovernanceError as e:
        store.close()
        raise RuntimeError(f"audit log {cfg.audit_db}: {e}") from None
    try:
        service = NodeService(cfg, keys, store, audit, clock)
    except BaseException:
        audit.close()
        store.close()
        raise
    try:  # before serving (after the start's own entries: the queued ones flushed, the leftovers' discards)
        audit.append(cfg.name, "node-start", outcome="ok", details={"governance_root": service.gov.governance_root.hex()})
    except BaseException:  # a node whose audit log cannot be written does not serve
        service.outbox.stop()
        service.journal.close()
        audit.close()
        store.close()
        raise
    server, _ = build_server(cfg, service)
    serve_metrics(cfg.metrics, service.metrics, log)  # first: a metrics port in use stops the start here
    if stop is None:  # a process of its own (tests serve in-process with a stop event)
        tune_for_server()  # issue 14: fewer, cheaper GC passes per request (mpcnet/common/gc_tuning.py)
        keep_heap()  # issue 14: no page faults re-growing the heap per presignature (mpcnet/common/heap_tuning.py)
    server.start()
    service.start_sweeper()
    service.warm_up()
    keys_held = store.list_keys()
    log.info(
        "node %s (index %d of %d, threshold %d) listening on %s; %d keys (%d pending)%s",
        cfg.name, cfg.index, cfg.parties, cfg.threshold, cfg.listen, len(keys_held),
        sum(1 for k in keys_held if k.status != "active"), "; TEST MODE" if cfg.test_mode else "",
    )
    wait_until_stopped(stop, ready)
    service.health.enter_graceful_shutdown()  # load balancers see NOT_SERVING while we drain
    service.stop()
    server.stop(grace=3).wait()
    try:  # entries queued by the last RPCs (else flushed at the next start)
        service.outbox.flush()
    except Exception as e:
        log.warning("audit outbox not flushed at stop (flushed at the next start): %s", problem_text(e))
    service.metrics.stop()
    service.journal.close()
    audit.close()
    store.close()
    if cfg.pkcs11 is not None:
        close_tokens()  # log out of the token
    log.info("stopped")
    return 0


_command = cliutil.server_command(
    "mpc-node", __doc__ or "", "node", load_node_config, lambda cfg, serving: run(cfg, serving),
    (KeystoreError, StoreError, PkiError, OSError, RuntimeError, GovernanceError, TokenError), log,
)


# the off-line subcommands: "module:attribute" of a click command, imported only when used
SUBCOMMANDS = {
    "init": "mpc_node.enrol:init_command",
    "join": "mpc_node.enrol:join_command",
    "rekey-store": "mpc_node.rekey:rekey_command",
    "reset-clock-floor": "mpc_node.expiry_floor:reset_clock_floor_command",
}


def main(argv: list[str] | None = None) -> int:
    """``mpc-node``: returns the exit code; errors are one line on stderr, never a traceback.
    ``mpc-node SUBCOMMAND ...`` runs one of :data:`SUBCOMMANDS`; anything else is the server."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] and args[0] in SUBCOMMANDS:
        return cliutil.run(cliutil.lazy_command(SUBCOMMANDS[args[0]]), args[1:], f"mpc-node {args[0]}")
    return cliutil.run(_command, args, "mpc-node")


if __name__ == "__main__":
    sys.exit(main())
