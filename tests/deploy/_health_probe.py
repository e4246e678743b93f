"""A stand-in server and client for the namespace harness's own test (run as scripts in a namespace).

``python -m tests.deploy._health_probe serve CERT KEY CA PORT``: a TLS gRPC server (client
certificates required) with only the standard health service, until killed.
``python -m tests.deploy._health_probe check|try CERT KEY CA HOST:PORT``: one health Check over
TLS, the server's certificate checked against HOST (``check`` waits up to 10 s for the server,
``try`` fails at once); prints the status name, exit 0 when SERVING.
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mpcnet.common.pki import CertPaths, channel_credentials, server_credentials
from mpcnet.common.rpc import add_standard_services


def main(argv: list[str]) -> int:
    what, cert, key, ca, where = argv
    paths = CertPaths(Path(cert), Path(key))
    if what == "serve":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        add_standard_services(server, ())
        server.add_secure_port(f"0.0.0.0:{int(where)}", server_credentials(paths, Path(ca)))
        server.start()
        print("serving", flush=True)
        threading.Event().wait()
        return 0
    with grpc.secure_channel(where, channel_credentials(paths, Path(ca))) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=what == "check")
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
    print(name)
    return 0 if name == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
