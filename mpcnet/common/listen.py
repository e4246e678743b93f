"""Binding a server's ``listen`` address, with an error that names the config field.

grpcio returns 0 from ``add_secure_port`` on some versions and raises ``RuntimeError("Failed to
bind to address ...; set GRPC_VERBOSITY=debug ...")`` on others; either way an operator (e.g. two
nodes of a trial on one machine given the same port) should read which setting to change.
"""

from __future__ import annotations

import grpc


def bind_listen(server: grpc.Server, listen: str, credentials: grpc.ServerCredentials) -> int:
    """Add ``listen`` ("ADDR:PORT", the config's ``listen``) to ``server`` over TLS ``credentials``;
    returns the bound port (> 0). Raises OSError ``listen: cannot bind ADDR:PORT (...)`` when the
    address is in use or is not one of this host's."""
    try:
        port = server.add_secure_port(listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"listen: cannot bind {listen} (is the port in use, or the address not this host's?)")
    return port
