"""gRPC plumbing shared by the node and the coordinator.

* One set of channel/server options (explicit message size limits, no SO_REUSEPORT so two
  processes can never share a port silently, keepalive).
* :func:`service_handler` turns a servicer object into a generic handler whose request
  deserializer never raises: a malformed protobuf becomes ``INVALID_ARGUMENT`` naming the
  request type instead of gRPC's generic ``INTERNAL``. Handlers raise :class:`RpcError` with a
  precise status code; anything else becomes ``INTERNAL`` (logged, never echoed to the caller).
* :func:`add_standard_services` enables the standard health and reflection (v1 and v1alpha) services.
* :func:`require_role` authorizes a call by the role in the peer's verified certificate.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from governance.errors import GovernanceError
from governance.text import check_text, escape
from mpcnet.common.pki import CertIdentity, PkiError, identity_from_cert
from mpcnet.common.reflection import enable_server_reflection

if TYPE_CHECKING:
    from mpcnet.common.streams import StreamBudget

MAX_MESSAGE_BYTES = 32 * 1024 * 1024

_COMMON_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]
SERVER_OPTIONS: list[tuple[str, Any]] = _COMMON_OPTIONS + [
    ("grpc.so_reuseport", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]
CHANNEL_OPTIONS: list[tuple[str, Any]] = _COMMON_OPTIONS + [
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.enable_retries", 0),
]

log = logging.getLogger("mpcnet.common.rpc")


class RpcError(Exception):
    """Raised inside a handler: becomes a gRPC status with this code and message."""

    def __init__(self, code: grpc.StatusCode, message: str, *, metadata: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = tuple(metadata)


def invalid(field: str, reason: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {reason}")


def check_len(value: bytes, field: str, length: int) -> bytes:
    if len(value) != length:
        raise invalid(field, f"must be {length} bytes, got {len(value)}")
    return value


def check_label(value: str, field: str, max_chars: int = 256) -> str:
    """A one-line name shown to humans (a key label): :func:`governance.text.check_text` (no
    control, format, bidi or separator character, not even a newline or tab, so it can never
    rewrite a terminal or forge a line of output), at most ``max_chars`` characters; else
    INVALID_ARGUMENT naming ``field``."""
    try:
        return check_text(value, field, max_chars)
    except GovernanceError as e:
        raise invalid(e.field, e.reason) from None


class _Malformed:
    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def _deserializer(cls: type[Message]) -> Callable[[bytes], Message | _Malformed]:
    """A request deserializer that never raises (gRPC would answer INTERNAL "Exception
    deserializing request!"): bytes that are not a ``cls`` message (truncated, a bad wire type,
    invalid UTF-8 in a string field, nested too deep, ...) become :class:`_Malformed`, which the
    handler answers INVALID_ARGUMENT naming the request type."""

    def parse(data: bytes) -> Message | _Malformed:
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError):
            return _Malformed(cls.DESCRIPTOR.full_name)

    return parse


@functools.lru_cache(maxsize=256)
def _identity_from_pem(pem: bytes) -> CertIdentity | None:
    try:
        return identity_from_cert(pem)
    except PkiError:
        return None


def _peer_pem(context: grpc.ServicerContext) -> bytes | None:
    """The caller's verified client certificate (PEM), or None without one. ``auth_context()``
    builds a fresh dict of every property per call (~5 us): callers fetch it once per check."""
    if context.peer_identity_key() is None:
        return None
    certs = context.auth_context().get("x509_pem_cert")
    return cast("bytes", certs[0]) if certs else None


def caller_identity(context: grpc.ServicerContext) -> CertIdentity | None:
    """The verified client certificate's identity (cached per certificate)."""
    pem = _peer_pem(context)
    return None if pem is None else _identity_from_pem(pem)


@functools.lru_cache(maxsize=256)
def _fingerprint_of_pem(pem: bytes) -> bytes | None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).digest()
    except ValueError:
        return None


def caller_cert_fingerprint(context: grpc.ServicerContext) -> bytes | None:
    """SHA-256 of the caller's verified client certificate (DER), or None without one."""
    pem = _peer_pem(context)
    return None if pem is None else _fingerprint_of_pem(pem)


def roles_text(roles: Sequence[str]) -> str:
    """``admin``, ``admin or auditor``, ``admin, requester or auditor``."""
    roles = tuple(roles)
    if len(roles) <= 1:
        return "".join(roles)
    return ", ".join(roles[:-1]) + " or " + roles[-1]


def require_role(context: grpc.ServicerContext, roles: Iterable[str], service: str) -> CertIdentity:
    """The caller's identity if its certificate role is one of ``roles``; else PERMISSION_DENIED
    naming the role that was needed (UNAUTHENTICATED without a verified certificate)."""
    return _require_role_of(caller_identity(context), roles, service)


def _require_role_of(ident: CertIdentity | None, roles: Iterable[str], service: str) -> CertIdentity:
    """:func:`require_role` for an identity already read from the call."""
    allowed = tuple(roles)
    if ident is None:
        raise RpcError(grpc.StatusCode.UNAUTHENTICATED, f"{service}: a client certificate is required")
    if ident.role not in allowed:
        needed = roles_text(allowed) if allowed else "(none: no role may call it)"
        raise RpcError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{service}: certificate {ident.name!r} has role {ident.role!r}; needs role {needed}",
            metadata=[("mpc-needed-role", ",".join(allowed))],
        )
    return ident


class _Audit(Protocol):
    def append(self, actor: str, action: str, *, outcome: str, details: dict[str, Any]) -> Any: ...


def audited_role_check(
    service: str, roles_for: Callable[[str], Sequence[str]], audit: _Audit,
    refused: Callable[[], frozenset[bytes]] | None = None,
    on_denied: Callable[[str | None, str], None] | None = None,
) -> Callable[[grpc.ServicerContext, str], None]:
    """A server's ``authorize(context, method)`` for :func:`service_handler`: :func:`require_role`
    with ``roles_for(method)`` (``service`` names the service in the error, e.g. ``mpc.v1.Node``);
    a denial of a caller with a verified certificate is a security decision, appended to
    ``audit`` as ``rpc-denied`` (method, the caller's role, the roles needed) before it is raised.
    ``refused()`` gives the SHA-256 fingerprints of certificates refused whatever their role (a
    revoked node's, a certificate rotated away: the roster's): PERMISSION_DENIED, audited with
    reason ``revoked certificate``. ``on_denied(role, method)`` is told of every denial (the
    caller's certificate role, None without one; metrics: ``mpcnet_rpc_denied_total``)."""

    def authorize(ctx: grpc.ServicerContext, method: str) -> None:
        pem = _peer_pem(ctx)  # once per call: the fingerprint and the identity both come from it
        ident = None if pem is None else _identity_from_pem(pem)
        if refused is not None:
            fp = None if pem is None else _fingerprint_of_pem(pem)
            if fp is not None and fp in refused():
                who = ident.name if ident is not None else "unknown"
                if on_denied is not None:
                    on_denied(ident.role if ident is not None else None, method)
                audit.append(
                    who, "rpc-denied", outcome="denied",
                    details={"method": method, "reason": "revoked certificate", "fingerprint": fp.hex()},
                )
                raise RpcError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{service}/{method}: certificate {who!r} (sha256 {fp.hex()[:16]}...) is revoked or was rotated away",
                )
        roles = tuple(roles_for(method))
        try:
            _require_role_of(ident, roles, f"{service}/{method}")
        except RpcError:
            if on_denied is not None:
                on_denied(ident.role if ident is not None else None, method)
            if ident is not None:
                audit.append(
                    ident.name, "rpc-denied", outcome="denied", details={"method": method, "role": ident.role, "needed": ",".join(roles)}
                )
            raise

    return authorize


def service_handler(
    service_descriptor: Any,
    messages_module: Any,
    servicer: Any,
    *,
    authorize: Callable[[grpc.ServicerContext, str], None] | None = None,
    logger: logging.Logger = log,
    translate: Translate | None = None,
    streams: StreamBudget | None = None,
) -> grpc.GenericRpcHandler:
    """A generic handler for every method of ``service_descriptor`` implemented by ``servicer``
    (a method with the RPC's name taking ``(request, context)``; for a server-streaming RPC it
    returns an iterator of responses). ``messages_module`` is unused (kept for callers): the
    request classes come from the descriptors, wherever they are defined. ``translate`` may turn
    an unexpected exception into a precise RpcError (e.g. a failing store into UNAVAILABLE);
    what it returns None for is logged and answered INTERNAL. With ``streams``, every
    server-streaming method first takes a slot of that budget (RESOURCE_EXHAUSTED when full;
    see :mod:`mpcnet.common.streams`), held until the handler returns."""
    from google.protobuf import message_factory

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service_descriptor.methods:
        req_cls = message_factory.GetMessageClass(method.input_type)
        fn = getattr(servicer, method.name, None)
        if fn is None:  # not implemented (yet): grpc answers UNIMPLEMENTED
            continue
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(fn, method.name, req_cls.DESCRIPTOR.full_name, authorize, logger, translate, streams),
                request_deserializer=_deserializer(req_cls),
                response_serializer=lambda m: m.SerializeToString(),
            )
            continue
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _wrap(fn, method.name, req_cls.DESCRIPTOR.full_name, authorize, logger, translate),
            request_deserializer=_deserializer(req_cls),
            response_serializer=lambda m: m.SerializeToString(),
        )
    return grpc.method_handlers_generic_handler(service_descriptor.full_name, handlers)


Translate = Callable[[Exception], "RpcError | None"]


def _unexpected(e: Exception, name: str, logger: logging.Logger, translate: Translate | None) -> RpcError:
    """The answer to an exception a handler did not turn into an RpcError itself."""
    mapped = translate(e) if translate is not None else None
    if mapped is not None:
        return mapped
    logger.exception("%s: internal error", name)
    return RpcError(grpc.StatusCode.INTERNAL, f"{name}: internal error (see the server log)")


def _wrap_stream(
    fn: Callable[[Any, grpc.ServicerContext], Iterable[Any]],
    name: str,
    type_name: str,
    authorize: Callable[[grpc.ServicerContext, str], None] | None,
    logger: logging.Logger,
    translate: Translate | None = None,
    streams: StreamBudget | None = None,
) -> Callable[[Any, grpc.ServicerContext], Iterable[Any]]:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterable[Any]:
        err: RpcError | None = None
        slot = None
        try:
            if authorize is not None:
                authorize(context, name)
            if isinstance(request, _Malformed):
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {type_name} protobuf message")
            if streams is not None:
                slot = streams.open(context, name)
            yield from fn(request, context)
            return
        except RpcError as e:
            err = e
        except Exception as e:
            err = _unexpected(e, name, logger, translate)
        finally:
            if slot is not None:  # the handler returned (or was closed): its thread is free again
                slot.release()
        if err.metadata:
            context.set_trailing_metadata(err.metadata)
        context.abort(err.code, err.message)

    return handler


def _wrap(
    fn: Callable[[Any, grpc.ServicerContext], Any],
    name: str,
    type_name: str,
    authorize: Callable[[grpc.ServicerContext, str], None] | None,
    logger: logging.Logger,
    translate: Translate | None = None,
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        err: RpcError | None = None
        try:
            if authorize is not None:
                authorize(context, name)
            if isinstance(request, _Malformed):
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {type_name} protobuf message")
            return fn(request, context)
        except RpcError as e:
            err = e
        except Exception as e:
            err = _unexpected(e, name, logger, translate)
        if err.metadata:
            context.set_trailing_metadata(err.metadata)
        context.abort(err.code, err.message)

    return handler


class _BudgetedHealth(health.HealthServicer):
    """The standard health service whose ``Watch`` streams take a slot of a stream budget (each
    holds a pool thread, see :func:`_guarded_watch`); without a bound, idle watches would take
    every thread and fill the server's ``maximum_concurrent_rpcs``."""

    def __init__(self, streams: StreamBudget) -> None:
        super().__init__(experimental_non_blocking=False)
        self._streams = streams

    def Watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:
        try:
            slot = self._streams.open(context, f"{health.SERVICE_NAME}/Watch")
        except RpcError as e:
            context.abort(e.code, e.message)
        if not context.add_callback(slot.release):  # released when the RPC ends (no thread to wait for)
            slot.release()
        return super().Watch(request, context, send_response_callback)


def add_standard_services(
    server: grpc.Server, service_names: Sequence[str], streams: StreamBudget | None = None
) -> health.HealthServicer:
    """Standard gRPC health checking (every service SERVING) and server reflection (v1 and
    v1alpha). With ``streams``, every health ``Watch`` and reflection stream takes a slot of that
    budget first (RESOURCE_EXHAUSTED when full). The health service's requests are parsed as ours
    are (:func:`_deserializer`): bytes that are not its request type are INVALID_ARGUMENT, never
    INTERNAL."""
    hs = health.HealthServicer(experimental_non_blocking=False) if streams is None else _BudgetedHealth(streams)
    server.add_generic_rpc_handlers((_health_handler(hs),))
    for name in ("", *service_names):
        hs.set(name, health_pb2.HealthCheckResponse.SERVING)
    enable_server_reflection((*service_names, health.SERVICE_NAME), server, streams)
    return hs


def _health_handler(hs: health.HealthServicer) -> grpc.GenericRpcHandler:
    """grpc_health's own registration (``add_HealthServicer_to_server``) with request
    deserializers that never raise; Watch in its blocking form (:func:`_guarded_watch`)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in health_pb2.DESCRIPTOR.services_by_name["Health"].methods:
        req_cls = cast("type[Message]", getattr(health_pb2, method.input_type.name))
        fn = getattr(hs, method.name)
        if getattr(type(hs), method.name, None) is getattr(health_pb2_grpc.HealthServicer, method.name, None):
            continue  # not implemented by this grpc_health version (List): UNIMPLEMENTED, no traceback
        type_name = req_cls.DESCRIPTOR.full_name
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _guarded_watch(fn, type_name), request_deserializer=_deserializer(req_cls),
                response_serializer=lambda m: m.SerializeToString(),
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _guarded(fn, type_name), request_deserializer=_deserializer(req_cls),
                response_serializer=lambda m: m.SerializeToString(),
            )
    return grpc.method_handlers_generic_handler(health.SERVICE_NAME, handlers)


def _refuse_malformed(request: object, context: grpc.ServicerContext, type_name: str) -> None:
    if isinstance(request, _Malformed):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {type_name} protobuf message")


def _guarded(fn: Callable[..., Any], type_name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        _refuse_malformed(request, context, type_name)
        return fn(request, context)

    return handler


def _guarded_watch(fn: Callable[..., Any], type_name: str) -> Callable[..., Any]:
    """Health ``Watch`` in grpc_health's *blocking* form: a generator fed through a queue, on a
    pool thread (budgeted). Its non-blocking form deadlocks grpc's sync server: ``Watch`` and
    ``set`` send a response while holding the servicer's lock, a send blocks until the serving
    thread completes the write, and that thread may be running a cancelled watch's close
    callback, which waits for the same lock (seen as ``server.stop()`` hanging for ever)."""

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        _refuse_malformed(request, context, type_name)
        return fn(request, context)

    return handler


def wait_for_health(channel: grpc.Channel, service: str = "", timeout: float = 10.0) -> bool:
    """Poll the standard health service until SERVING or ``timeout`` seconds pass."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            # types-grpcio-health-checking declares HealthStub without its methods
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)  # type: ignore[attr-defined]
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def status_of(e: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """(code, details) of a failed call; the details are the remote side's free text (a
    corrupted node chooses it), so every non-printable character comes back escaped (for logs,
    stored errors and terminals: no forged log line, no terminal escape sequence)."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else str(e)) or ""
    return code, escape(details)


def trailing(e: grpc.RpcError, key: str) -> str | None:
    try:
        md = e.trailing_metadata()
    except Exception:
        return None
    # types-grpcio types the items as _Metadatum objects; grpc returns (key, value) tuples
    for k, v in cast("Iterable[tuple[str, str | bytes]]", md or ()):
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return None


def wait_until_stopped(stop: threading.Event | None, on_ready: threading.Event | None = None) -> None:
    """Block a server process until ``stop`` is set or SIGTERM/SIGINT arrives (then ``stop`` is
    set; within 0.1 s). Signal handlers are installed only on the main thread; tests run servers
    in threads and set ``stop``. The handler only records the signal: it runs between two
    arbitrary bytecodes of the main thread, and taking a lock there (``Event.set``, logging)
    deadlocks when the main thread holds it (``Event.wait`` holds the event's lock around its
    waiting), so a SIGTERM while a node starts could leave it running until SIGKILL."""
    stop = stop or threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        signals.append(signum)  # nothing else (see above)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    if on_ready is not None:
        on_ready.set()
    while not signals and not stop.wait(0.1):
        pass
    if signals:
        log.info("signal %d: shutting down", signals[0])
        stop.set()
