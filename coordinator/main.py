"""``mpc-coordinator --config FILE``: the client-facing mpc.v1.Coordinator gRPC service over mTLS.

Clients need a certificate from the CA; every RPC requires a role (the certificate's OU) from
``coordinator.roles`` (and one of the configured client roles), else PERMISSION_DENIED naming the
role that was needed. Denials are audited. The standard health and reflection services are
enabled. SIGTERM/SIGINT stop it gracefully.
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent import futures
from pathlib import Path

import click
import grpc

from coordinator.config import CoordinatorConfig, load_coordinator_config
from coordinator.roles import allowed
from coordinator.service import CoordinatorService
from governance.errors import GovernanceError
from mpcnet.common import cliutil
from mpcnet.common.cliutil import PathArg
from mpcnet.common.config import ConfigError, setup_logging
from mpcnet.common.datadir import hold_data_dirs
from mpcnet.common.keystore import KeystoreError, load_keystore, read_passphrase
from mpcnet.common.pki import PkiError, server_credentials
from mpcnet.common.rpc import (
    SERVER_OPTIONS,
    RpcError,
    add_standard_services,
    caller_identity,
    require_role,
    service_handler,
    wait_until_stopped,
)
from mpcnet.wire.mpc.v1 import coordinator_pb2

log = logging.getLogger("coordinator")
SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"]


def build_server(cfg: CoordinatorConfig, service: CoordinatorService) -> grpc.Server:
    """The server: ``workers`` threads for unary calls, plus ``max_streams`` for long-lived
    streams (each takes a slot of ``service.streams`` first: :mod:`mpcnet.common.streams`) and
    ``max_requests`` for key creations (a DKG holds its call's thread for up to ``dkg_timeout_s``,
    and more than ``max_requests`` at once are refused), so neither watchers nor key creations
    can hold the threads that serve decisions."""
    streams = service.streams
    long_lived = streams.limit + cfg.max_requests
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.workers + long_lived, thread_name_prefix="rpc"),
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=cfg.workers * 4 + long_lived,
    )

    def authorize(ctx: grpc.ServicerContext, method: str) -> None:
        roles = tuple(r for r in allowed(method) if r in cfg.client_roles)
        try:
            require_role(ctx, roles, f"mpc.v1.Coordinator/{method}")
        except RpcError:
            ident = caller_identity(ctx)
            if ident is not None:
                service.audit.append(
                    ident.name, "rpc-denied", outcome="denied",
                    details={"method": method, "role": ident.role, "needed": ",".join(roles)},
                )
            raise

    server.add_generic_rpc_handlers(
        (service_handler(
            SERVICE, coordinator_pb2, service, authorize=authorize, logger=log, translate=service.storage_failure,
            streams=streams,
        ),)
    )
    service.health = add_standard_services(server, (SERVICE.full_name,), streams)
    if server.add_secure_port(cfg.listen, server_credentials(cfg.cert, cfg.ca_cert)) == 0:
        raise OSError(f"listen: cannot bind {cfg.listen}")
    return server


def run(cfg: CoordinatorConfig, stop: threading.Event | None = None) -> int:
    """Serve until stopped; first lock the data directories, so a second coordinator started with
    this configuration fails (:class:`DataDirBusy`, naming the holder's pid) before it writes anything."""
    with hold_data_dirs((cfg.db.parent, cfg.audit_db.parent)):
        return _serve(cfg, stop)


def _serve(cfg: CoordinatorConfig, stop: threading.Event | None) -> int:
    passphrase = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    identity = load_keystore(cfg.keystore, passphrase).identity
    del passphrase
    service = CoordinatorService(cfg, identity)
    server = build_server(cfg, service)
    server.start()
    service.probe()
    service.start_background()
    log.info(
        "coordinator listening on %s; %d-of-%d over nodes %s",
        cfg.listen, cfg.threshold, cfg.parties, ", ".join(f"{ep.name}={ep.endpoint}" for ep in cfg.nodes.values()),
    )
    wait_until_stopped(stop)
    service.health.enter_graceful_shutdown()  # load balancers see NOT_SERVING while we drain
    service.requests.stop()  # open watches end now (their clients resume elsewhere or after the restart)
    server.stop(grace=3).wait()
    service.stop()
    log.info("stopped")
    return 0


class _Failed(click.ClickException):
    exit_code = 1


@click.command(name="mpc-coordinator", help=__doc__, context_settings={"help_option_names": ["-h", "--help"]},
               epilog="\b\nExit codes: 0 stopped cleanly, 1 cannot start (see the log), 2 usage error or bad config, 130 interrupted.")
@click.option("--config", required=True, type=PathArg("FILE"), help="coordinator configuration (JSON)")
def _command(config: Path) -> int:
    try:
        cfg = load_coordinator_config(config)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    setup_logging(cfg.log_file, cfg.name, cfg.log_level)
    try:
        return run(cfg)
    except (PkiError, OSError, RuntimeError, KeystoreError, GovernanceError) as e:
        log.error("cannot start: %s", e)
        raise _Failed(f"cannot start: {e}") from None
    except Exception:
        log.exception("crashed")
        raise


def main(argv: list[str] | None = None) -> int:
    """``mpc-coordinator``: returns the exit code; errors are one line on stderr, never a traceback."""
    return cliutil.run(_command, argv, "mpc-coordinator")


if __name__ == "__main__":
    sys.exit(main())
