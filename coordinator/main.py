"""``mpc-coordinator --config FILE``: the client-facing mpc.v1.Coordinator gRPC service over mTLS.

Clients need a certificate from the CA with one of the configured client roles. The standard
health and reflection services are enabled. SIGTERM/SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

from coordinator.config import CoordinatorConfig, load_coordinator_config
from coordinator.service import CoordinatorService
from mpcnet.config import ConfigError, setup_logging
from mpcnet.pki import PkiError, server_credentials
from mpcnet.rpc import SERVER_OPTIONS, add_standard_services, require_role, service_handler
from proto.mpc.v1 import coordinator_pb2

log = logging.getLogger("coordinator")
SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"]


def build_server(cfg: CoordinatorConfig, service: CoordinatorService) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="rpc"),
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=cfg.workers * 4,
    )

    def authorize(ctx: grpc.ServicerContext, method: str) -> None:
        require_role(ctx, cfg.client_roles, f"mpc.v1.Coordinator/{method}")

    server.add_generic_rpc_handlers((service_handler(SERVICE, coordinator_pb2, service, authorize=authorize, logger=log),))
    service.health = add_standard_services(server, (SERVICE.full_name,))
    if server.add_secure_port(cfg.listen, server_credentials(cfg.cert, cfg.ca_cert)) == 0:
        raise OSError(f"listen: cannot bind {cfg.listen}")
    return server


def run(cfg: CoordinatorConfig, stop: threading.Event | None = None) -> int:
    service = CoordinatorService(cfg)
    server = build_server(cfg, service)
    server.start()
    service.probe()
    service.start_background()
    log.info(
        "coordinator listening on %s; %d-of-%d over nodes %s",
        cfg.listen, cfg.threshold, cfg.parties, ", ".join(f"{ep.name}={ep.endpoint}" for ep in cfg.nodes.values()),
    )
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    service.health.enter_graceful_shutdown()  # load balancers see NOT_SERVING while we drain
    server.stop(grace=3).wait()
    service.stop()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mpc-coordinator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path, help="coordinator configuration (JSON)")
    args = ap.parse_args(argv)
    try:
        cfg = load_coordinator_config(args.config)
    except ConfigError as e:
        print(f"mpc-coordinator: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_file, cfg.name, cfg.log_level)
    try:
        return run(cfg)
    except (PkiError, OSError, RuntimeError) as e:
        log.error("cannot start: %s", e)
        print(f"mpc-coordinator: cannot start: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
