"""The container health check (deploy/Dockerfile ``HEALTHCHECK``): standard gRPC health over mTLS.

Reads the node's or the coordinator's config file named by ``MPC_HEALTH_CONFIG`` (JSON: ``listen``
``"host:port"`` and ``tls`` ``{"cert", "key", "ca"}``, paths relative to the file, as
``mpc_node/config.py`` and ``coordinator/config.py`` define them), dials ``127.0.0.1:PORT`` with the
component's own certificate as client certificate, checks the server's certificate for a host
name of that certificate's subjectAltName (the endpoint host the others dial), and asks
``grpc.health.v1.Health/Check`` for the overall service (``""``).

Exit codes: 0 SERVING, or ``MPC_HEALTH_CONFIG`` unset (an image run as ``mpc ...`` or the
bootstrap has no server to check); 1 anything else (not serving, unreachable, a config not yet
written by ``join``), with one escaped line on stderr. Never prints key material.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TIMEOUT_S = 4.0


def _fail(reason: str) -> int:
    print(f"healthcheck: {reason!r}", file=sys.stderr)
    return 1


def check(config_path: Path, timeout_s: float = TIMEOUT_S) -> tuple[bool, str]:
    """(serving, reason) for the component configured in ``config_path``; raises nothing."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mpcnet.common.pki import CertPaths, cert_hosts, channel_credentials

    try:
        doc = json.loads(config_path.read_text(encoding="utf-8"))
        listen, tls = doc["listen"], doc["tls"]
        port = int(str(listen).rsplit(":", 1)[1])
        base = config_path.parent
        cert = CertPaths(cert=base / str(tls["cert"]), key=base / str(tls["key"]))
        ca = base / str(tls["ca"])
        hosts = sorted(cert_hosts(cert.cert))
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        return False, f"{config_path}: {type(e).__name__}"
    if not 0 < port < 65536:
        return False, f"{config_path}: listen port {port} out of range"
    options = [("grpc.ssl_target_name_override", hosts[0])] if hosts else []
    try:
        with grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(cert, ca), options=options) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            # types-grpcio-health-checking declares HealthStub without its methods
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)  # type: ignore[attr-defined]
    except grpc.RpcError as e:
        return False, f"health check failed: {e.code().name}"
    except Exception as e:  # a bad key or certificate file: one line, no traceback
        return False, f"health check failed: {type(e).__name__}"
    status = int(reply.status)
    return status == health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def main() -> int:
    """The command: see the module docstring for the exit codes."""
    name = os.environ.get("MPC_HEALTH_CONFIG", "")
    if not name:
        return 0
    ok, reason = check(Path(name))
    return 0 if ok else _fail(reason)


if __name__ == "__main__":
    sys.exit(main())
