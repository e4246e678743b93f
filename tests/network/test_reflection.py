"""Server reflection is served as grpc.reflection.v1 and v1alpha (mpcnet.common.reflection)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2

import mpcnet.wire.mpc.v1.coordinator_pb2  # noqa: F401  (registers mpc.v1.Coordinator in the default pool)
from mpcnet.common.reflection import V1_SERVICE_NAME, _v1_file_descriptor
from mpcnet.common.rpc import add_standard_services

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
SERVICE = "mpc.v1.Coordinator"


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_standard_services(server, [SERVICE])
    p = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield p
    server.stop(None)


def _v1_classes() -> tuple[type, type]:
    pool = descriptor_pool.Default()
    req = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest"))
    resp = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse"))
    return req, resp


@pytest.mark.parametrize("service", [V1_SERVICE_NAME, V1ALPHA])
def test_both_reflection_versions_list_and_describe(port: int, service: str) -> None:
    req_cls, resp_cls = _v1_classes() if service == V1_SERVICE_NAME else (
        reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        requests = [
            req_cls(list_services=""),
            req_cls(file_containing_symbol=SERVICE),
            req_cls(file_containing_symbol=V1_SERVICE_NAME),
        ]
        listed, coordinator, v1 = list(call(iter(requests), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", V1_SERVICE_NAME, V1ALPHA} <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(r.file_descriptor_response.file_descriptor_proto[0])
        for r in (coordinator, v1)
    ]
    assert [(f.name, f.package) for f in files] == [
        ("mpc/v1/coordinator.proto", "mpc.v1"), ("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1")
    ]


def test_v1_descriptor_is_v1alpha_renamed_only() -> None:
    """Same messages, field names, numbers, types and labels: the two are wire-identical."""
    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    v1 = _v1_file_descriptor()

    def shape(fdp: descriptor_pb2.FileDescriptorProto) -> list[tuple[object, ...]]:
        return [
            (m.name, f.name, f.number, f.type, f.label, f.type_name.rsplit(".", 1)[-1], f.oneof_index)
            for m in fdp.message_type for f in m.field
        ]

    assert v1.package == "grpc.reflection.v1" and shape(v1) == shape(alpha)
    assert [m.name for m in v1.service[0].method] == ["ServerReflectionInfo"]
    assert all(".v1alpha." not in f.type_name for m in v1.message_type for f in m.field)


def test_malformed_reflection_request_is_invalid_argument(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.stream_stream(f"/{V1_SERVICE_NAME}/ServerReflectionInfo")
        with pytest.raises(grpc.RpcError) as e:
            list(call(iter([b"\xff\xff\xff"]), timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ServerReflectionRequest" in (e.value.details() or "")
