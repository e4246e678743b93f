"""The one exception type of the client SDK (re-exported as :class:`mpcnet.client.MpcError`)."""

from __future__ import annotations

import grpc

from crypto_core.errors import UsageError


class MpcError(Exception):
    """A failed call or a refused input: ``code`` is the gRPC status code (the server's, or
    INVALID_ARGUMENT for a bad argument given to the SDK, DATA_LOSS for malformed data the
    coordinator sent), ``message`` the reason, starting with the field it concerns."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class PathError(MpcError, UsageError):
    """A refused derivation path (INVALID_ARGUMENT, naming the index: ``derivation_path[1]: ...``).
    Both an :class:`MpcError` (like every SDK failure) and a :class:`crypto_core.errors.UsageError`
    (a ValueError, what :func:`crypto_core.bip32.parse_path` raises)."""

    def __init__(self, message: str) -> None:
        MpcError.__init__(self, grpc.StatusCode.INVALID_ARGUMENT, message)
