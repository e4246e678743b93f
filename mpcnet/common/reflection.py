"""gRPC server reflection under both service names: ``grpc.reflection.v1`` and ``v1alpha``.

The pinned grpcio-reflection (1.85.1) ships only ``grpc.reflection.v1alpha``; current tools
(grpcurl, Postman, grpc-js's reflection clients) ask for ``grpc.reflection.v1`` first. The v1
protocol is v1alpha promoted unchanged: upstream ``grpc/reflection/v1/reflection.proto`` has
the same messages with the same field names, numbers and types, only the package differs
(grpc-go and grpc-java serve both from one implementation for that reason). Package names never
appear on the wire, so the v1alpha servicer answers v1 calls byte for byte correctly; this
module registers it under the v1 method path as well.

So that reflection can also *describe* the v1 service (``file_containing_symbol``), the v1 file
descriptor is derived from the v1alpha one (package and type references renamed, nothing else)
and added to the default descriptor pool, unless a v1 file is already there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError
from grpc_reflection.v1alpha import reflection as reflection_v1alpha, reflection_pb2 as pb

if TYPE_CHECKING:
    from mpcnet.common.streams import StreamBudget

V1ALPHA_SERVICE_NAME: str = reflection_v1alpha.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
_METHOD = "ServerReflectionInfo"


def _v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The v1alpha file with its package (and every reference to its own types) renamed to v1."""
    old = pb.DESCRIPTOR.package
    fdp = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = V1_FILE
    fdp.package = V1_PACKAGE
    fdp.ClearField("options")
    prefix = f".{old}."
    for msg in fdp.message_type:
        for f in msg.field:
            if f.type_name.startswith(prefix):
                f.type_name = f".{V1_PACKAGE}." + f.type_name.removeprefix(prefix)
    for svc in fdp.service:
        for m in svc.method:
            m.input_type = f".{V1_PACKAGE}." + m.input_type.removeprefix(prefix)
            m.output_type = f".{V1_PACKAGE}." + m.output_type.removeprefix(prefix)
    return fdp


def ensure_v1_descriptor(pool: descriptor_pool.DescriptorPool | None = None) -> None:
    """Add the v1 reflection file to ``pool`` (default: the default pool) unless it holds one."""
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    pool.Add(_v1_file_descriptor())


class _Malformed:
    """Stands for a request that did not parse (gRPC treats a deserializer's None as INTERNAL)."""


_MALFORMED = _Malformed()


def _parse(data: bytes) -> pb.ServerReflectionRequest | _Malformed:
    try:
        return pb.ServerReflectionRequest.FromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return _MALFORMED


def enable_server_reflection(service_names: Sequence[str], server: grpc.Server, streams: StreamBudget | None = None) -> None:
    """Serve reflection for ``service_names`` (plus both reflection services) on ``server``,
    under ``grpc.reflection.v1alpha.ServerReflection`` and ``grpc.reflection.v1.ServerReflection``.
    A request that is not a valid ServerReflectionRequest ends the stream with INVALID_ARGUMENT
    (gRPC's own deserializer failure would be INTERNAL). A reflection stream holds a server
    thread while it is open, so with ``streams`` it first takes a slot of that budget
    (RESOURCE_EXHAUSTED when full) and is cancelled after the budget's lifetime."""
    ensure_v1_descriptor()
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection_v1alpha.ReflectionServicer(names)

    def info(
        requests: Iterator[pb.ServerReflectionRequest | _Malformed], context: grpc.ServicerContext
    ) -> Iterator[pb.ServerReflectionResponse]:
        def checked() -> Iterator[pb.ServerReflectionRequest]:
            for r in requests:
                if isinstance(r, _Malformed):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request: not a valid ServerReflectionRequest protobuf message")
                yield r

        if streams is None:
            yield from servicer.ServerReflectionInfo(checked(), context)
            return
        from mpcnet.common.rpc import RpcError

        try:
            slot = streams.open(context, f"{V1_SERVICE_NAME}/{_METHOD}")
        except RpcError as e:
            context.abort(e.code, e.message)
        try:
            yield from servicer.ServerReflectionInfo(checked(), context)
        finally:
            slot.release()

    handler = grpc.stream_stream_rpc_method_handler(
        info,
        request_deserializer=_parse,
        response_serializer=pb.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {_METHOD: handler}),
            grpc.method_handlers_generic_handler(V1ALPHA_SERVICE_NAME, {_METHOD: handler}),
        )
    )
