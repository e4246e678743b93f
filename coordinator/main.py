"""``mpc-coordinator --config FILE``: the client-facing mpc.v1.Coordinator gRPC service over mTLS.

Clients need a certificate from the CA; every RPC requires a role (the certificate's OU) from
``coordinator.roles`` (and one of the configured client roles), else PERMISSION_DENIED naming the
role that was needed. Denials are audited. The standard health and reflection services are
enabled. SIGTERM/SIGINT stop it gracefully.

Off-line subcommands (the coordinator stopped; see README "Deploying"):

\b
    mpc-coordinator init --dir DIR --endpoint HOST:PORT ...          make this host's keys and enrolment request
    mpc-coordinator join --dir DIR --genesis FILE --cert FILE --ca FILE   write DIR/config.json once enrolled
    mpc-coordinator rotate-audit-key --config FILE                     replace the audit (identity) key
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from concurrent import futures
from pathlib import Path

import click
import grpc

from coordinator import decide_wait
from coordinator.audit_key import finish_pending_rotation, rotate_audit_key, staged_path
from coordinator.config import CoordinatorConfig, load_coordinator_config
from coordinator.roles import allowed
from coordinator.service import CoordinatorService
from governance.errors import GovernanceError
from mpcnet.common import cliutil
from mpcnet.common.config import ConfigError
from mpcnet.common.datadir import DataDirBusy, hold_data_dirs
from mpcnet.common.datadir_check import check_data_dirs, start_failure
from mpcnet.common.gc_tuning import tune_for_server
from mpcnet.common.keystore import KeystoreError, load_keystore, read_passphrase
from mpcnet.common.keystore_lock import hold_keystore
from mpcnet.common.listen import bind_listen
from mpcnet.common.metrics import serve_metrics
from mpcnet.common.pki import PkiError, server_credentials
from mpcnet.common.rpc import SERVER_OPTIONS, add_standard_services, audited_role_check, service_handler, wait_until_stopped
from mpcnet.common.tempsweep import sweep_stale_temps
from mpcnet.wire.mpc.v1 import coordinator_pb2

log = logging.getLogger("coordinator")
SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"]


def build_server(cfg: CoordinatorConfig, service: CoordinatorService) -> grpc.Server:
    """The server: ``workers`` threads for unary calls, plus ``max_streams`` for long-lived
    streams (each takes a slot of ``service.streams`` first: :mod:`mpcnet.common.streams`) and
    ``max_requests`` for key creations (a DKG holds its call's thread for up to ``dkg_timeout_s``,
    and more than ``max_requests`` at once are refused), plus ``max_waiting_decisions`` for
    deciding approvals whose answers wait for the end of the signing (issue 14: at most that many
    at once, :func:`coordinator.decide_wait.configure`; the others are answered at once), so
    neither watchers, key creations nor waiting answers can hold the threads that serve other calls."""
    streams = service.streams
    decide_wait.configure(cfg.max_waiting_decisions)
    long_lived = streams.limit + cfg.max_requests + cfg.max_waiting_decisions
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.workers + long_lived, thread_name_prefix="rpc"),
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=cfg.workers * 4 + long_lived,
    )

    authorize = audited_role_check(
        SERVICE.full_name, lambda method: [r for r in allowed(method) if r in cfg.client_roles],
        service.anomaly.watching_denials(service.audit),  # a denial is also an anomaly event (issue 15)
        refused=service.rosters.refused_fingerprints, on_denied=service.metrics.denied,
    )

    server.add_generic_rpc_handlers(
        (service_handler(
            SERVICE, coordinator_pb2, service, authorize=authorize, logger=log, translate=service.storage_failure,
            streams=streams,
        ),)
    )
    service.health = add_standard_services(server, (SERVICE.full_name,), streams)
    bind_listen(server, cfg.listen, server_credentials(cfg.cert, cfg.ca_cert))
    return server


def run(cfg: CoordinatorConfig, stop: threading.Event | None = None, ready: threading.Event | None = None) -> int:
    """Serve until stopped; first lock the data directories, so a second coordinator started with
    this configuration fails (:class:`DataDirBusy`, naming the holder's pid) before it writes anything."""
    dirs = (cfg.db.parent, cfg.audit_db.parent)
    check_data_dirs(dirs)  # a full, read-only or dangling data dir: one line naming it (DataDirUnusable)
    try:
        with hold_data_dirs(dirs, files=(cfg.db, cfg.audit_db)), hold_keystore(cfg.keystore):  # then one process per keystore (exit 2)
            return _serve(cfg, stop, ready)
    except Exception as e:
        unusable = start_failure(dirs, e)
        if unusable is None:
            raise
        raise unusable from None


def own_files(cfg: CoordinatorConfig) -> tuple[Path, ...]:
    """The files this coordinator (and its offline commands) replace atomically: their temporary
    files a kill left are swept at start (:func:`mpcnet.common.tempsweep.sweep_stale_temps`)."""
    return (Path(cfg.keystore), staged_path(cfg.keystore), Path(cfg.path), Path(cfg.cert.cert), Path(cfg.cert.key))


def _serve(cfg: CoordinatorConfig, stop: threading.Event | None, ready: threading.Event | None) -> int:
    sweep_stale_temps(own_files(cfg))  # under the data-dir and keystore locks: no writer of ours is running
    passphrase = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    finish_pending_rotation(cfg, passphrase)  # an audit key rotation a kill interrupted (coordinator/audit_key.py)
    identity = load_keystore(cfg.keystore, passphrase).identity
    del passphrase
    service = CoordinatorService(cfg, identity)
    server = build_server(cfg, service)
    serve_metrics(cfg.metrics, service.metrics, log)  # first: a metrics port in use stops the start here
    if stop is None:  # a process of its own (tests serve in-process with a stop event)
        tune_for_server()  # issue 14: fewer, cheaper GC passes per request (mpcnet/common/gc_tuning.py)
    server.start()
    service.probe()
    service.start_background()
    log.info(
        "coordinator listening on %s; %d-of-%d over nodes %s",
        cfg.listen, cfg.threshold, cfg.parties, ", ".join(f"{ep.name}={ep.endpoint}" for ep in cfg.nodes.values()),
    )
    wait_until_stopped(stop, ready)  # sets ready: serving from here on
    service.health.enter_graceful_shutdown()  # load balancers see NOT_SERVING while we drain
    service.requests.stop()  # open watches end now (their clients resume elsewhere or after the restart)
    server.stop(grace=3).wait()
    service.metrics.stop()
    service.stop()
    log.info("stopped")
    return 0


_command = cliutil.server_command(
    "mpc-coordinator", __doc__ or "", "coordinator", load_coordinator_config, lambda cfg, serving: run(cfg, None, serving),
    (PkiError, OSError, RuntimeError, KeystoreError, GovernanceError), log,
)


@click.command(
    name="rotate-audit-key", context_settings={"help_option_names": ["-h", "--help"]},
    help="Replace the coordinator's audit (identity) key, offline (coordinator stopped): the old key signs an "
    "audit-key-rotated entry naming the new one, then the keystore is replaced atomically.",
)
@click.option("--config", required=True, type=cliutil.PathArg("FILE"), help="coordinator configuration (JSON)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
def _rotate_audit_key(config: Path, as_json: bool) -> int:
    try:
        cfg = load_coordinator_config(config)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    try:
        done = rotate_audit_key(cfg)
    except (KeystoreError, GovernanceError, DataDirBusy, OSError) as e:
        unusable = start_failure((cfg.db.parent, cfg.audit_db.parent), e)  # a full, read-only or failing data dir
        raise cliutil.Failed(f"cannot rotate the audit key: {unusable or e}") from None
    if as_json:
        click.echo(json.dumps({"old_public_key": done.old_public.hex(), "new_public_key": done.new_public.hex(), "seq": done.seq}))
    else:
        click.echo(f"audit key rotated: entry {done.seq} hands the log over to {done.new_public.hex()}")
    return 0


# off-line subcommands of a production deployment (README "Deploying"): "module:attribute" of a click command
SUBCOMMANDS = {
    "init": "coordinator.enrol:init_command",  # this host's keys and enrolment request
    "join": "coordinator.enrol:join_command",  # DIR/config.json from the admin-signed genesis
}


def main(argv: list[str] | None = None) -> int:
    """``mpc-coordinator``: returns the exit code; errors are one line on stderr, never a traceback.
    ``mpc-coordinator rotate-audit-key --config FILE`` rotates the audit key (coordinator/audit_key.py)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["rotate-audit-key"]:
        return cliutil.run(_rotate_audit_key, args[1:], "mpc-coordinator rotate-audit-key")
    if args[:1] and args[0] in SUBCOMMANDS:
        return cliutil.run(cliutil.lazy_command(SUBCOMMANDS[args[0]]), args[1:], f"mpc-coordinator {args[0]}")
    return cliutil.run(_command, args, "mpc-coordinator")


if __name__ == "__main__":
    sys.exit(main())
