"""A seeded RPC fuzzer for the Coordinator and Node services (tests/integration/test_rpc_fuzz.py).

Every RPC is enumerated from the proto descriptors (a new RPC is fuzzed without touching this
file). A call's request is either

* ``raw``: random bytes (sometimes a valid message with bytes flipped, cut or appended), sent
  through a raw ``channel.unary_unary``/``unary_stream`` without a serializer, or
* ``mutated``: a meaningful request (a template the test builds: a real key, an approved
  bundle, ...) with one or two fields, at any depth, replaced or bit-flipped, so that calls get
  past the first checks into the deeper ones;
* ``structured``: a valid message of the request type whose fields are filled recursively
  with random and hostile values: strings with NUL, controls, bidi overrides, lone surrogates
  impossible in protobuf strings (sent as raw bytes instead), huge strings; bytes of random and
  of the lengths the protocol uses (0, 32, 33, 64); integers at their limits (0, 1, max,
  negative where signed, unknown enum values); empty, small and huge repeated fields; nested
  messages filled the same way, and oneofs.

:func:`call` returns the status code of one call (``OK`` included); the test asserts it is
never INTERNAL or UNKNOWN. Everything is drawn from one ``random.Random``, so a seed replays a
run exactly (as far as the servers' own state allows).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor as _d, message_factory
from google.protobuf.message import Message

from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

SERVICES = (
    coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"],
    node_pb2.DESCRIPTOR.services_by_name["Node"],
)

HOSTILE_STRINGS = (
    "", "a\x00b", "\x00", "x\n", "kid-X\n", "\r\n", "\t", "\x1b[2J\x1b[31mpwned", "ops\x1b[8m\n<fake row>",
    "x\u202egnp.exe", "\u2066x\u2069", "\u200b", "\ufeff", "\u2028", "\u2029", "\x7f", "\x85", "\U000e0001",
    "\ue000", "\U0010ffff", "\u0378", "\uff11\uff12", "m/\uff11\uff12", "batch.7", "a" * 64, "a" * 65, "a" * 257, "é" * 200,
    "%s%n%x", "'; DROP TABLE requests; --", "../../etc/passwd", "default", "coordinator", "node-1", "admin1",
)
PROTOCOL_LENGTHS = (0, 1, 7, 31, 32, 33, 63, 64, 65, 100)
INT_LIMITS = {
    _d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    _d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _d.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    _d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _d.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    _d.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    _d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    _d.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
MAX_DEPTH = 4
HUGE_REPEATED = 5_000


@dataclass(frozen=True)
class Rpc:
    """One RPC of one service: its path, request class and whether it streams responses."""

    service: str  # "mpc.v1.Coordinator"
    name: str  # "CreateKey"
    request: type[Message]
    streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def rpcs(service: _d.ServiceDescriptor) -> list[Rpc]:
    """Every RPC of ``service``, from its descriptor."""
    return [
        Rpc(service.full_name, m.name, message_factory.GetMessageClass(m.input_type), m.server_streaming)
        for m in service.methods
    ]


class Fuzz:
    """Random requests from one seeded RNG; ``hints`` maps a field name to plausible values
    (e.g. ``key_id`` to the id of a real key; a callable is called with the RNG for a fresh
    value, e.g. a new session id) so that calls get past the first checks."""

    def __init__(self, seed: int, hints: dict[str, Sequence[object]] | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (a replayable test input, not a secret)
        self.hints = dict(hints or {})

    # --- scalars -------------------------------------------------------------------------------
    def text(self) -> str:
        r = self.rng
        k = r.random()
        if k < 0.35:
            return r.choice(HOSTILE_STRINGS)
        if k < 0.55:
            return "".join(r.choice("abcXYZ019._-") for _ in range(r.randint(1, 70)))
        if k < 0.65:
            return r.choice(("a", "\x00", "é", "\u202e")) * r.choice((1_000, 70_000, 300_000))
        out = []
        for _ in range(r.randint(0, 40)):
            cp = r.choice((r.randint(0, 0x7F), r.randint(0x80, 0x2FFF), r.randint(0, 0x10FFFF)))
            if 0xD800 <= cp <= 0xDFFF:  # a surrogate cannot be serialized in a protobuf string
                cp = 0xFFFD
            out.append(chr(cp))
        return "".join(out)

    def blob(self) -> bytes:
        r = self.rng
        k = r.random()
        if k < 0.5:
            return r.randbytes(r.choice(PROTOCOL_LENGTHS))
        if k < 0.8:
            return r.randbytes(r.randint(0, 600))
        if k < 0.9:
            return bytes([r.choice((0, 0xFF))]) * r.choice((32, 4096))
        return r.randbytes(r.choice((10_000, 300_000)))

    def integer(self, ftype: int) -> int:
        lo, hi = INT_LIMITS[ftype]
        r = self.rng
        k = r.random()
        if k < 0.4:
            return r.choice([v for v in (0, 1, 2, 3, 4, 5, -1, lo, hi, hi - 1, lo + 1) if lo <= v <= hi])
        if k < 0.7:
            return r.randint(max(lo, -100), min(hi, 100))
        return r.randint(lo, hi)

    # --- messages ------------------------------------------------------------------------------
    def value(self, f: _d.FieldDescriptor, depth: int) -> object:
        hints = None if f.is_repeated else self.hints.get(f.name)
        if hints and self.rng.random() < 0.35:
            hint = self.rng.choice(list(hints))
            return hint(self.rng) if callable(hint) else hint
        t = f.type
        if t == _d.FieldDescriptor.TYPE_STRING:
            return self.text()
        if t == _d.FieldDescriptor.TYPE_BYTES:
            return self.blob()
        if t == _d.FieldDescriptor.TYPE_BOOL:
            return self.rng.random() < 0.5
        if t == _d.FieldDescriptor.TYPE_ENUM:
            known = [v.number for v in f.enum_type.values]
            return self.rng.choice(known) if self.rng.random() < 0.7 else self.integer(_d.FieldDescriptor.TYPE_INT32)
        if t in (_d.FieldDescriptor.TYPE_DOUBLE, _d.FieldDescriptor.TYPE_FLOAT):
            return self.rng.choice((0.0, -1.0, 1e308, float("nan"), float("inf")))
        return self.integer(t)

    def fill(self, msg: Message, depth: int = 0) -> Message:
        """``msg`` with random values in a random subset of its fields (nested ones recursively)."""
        for f in msg.DESCRIPTOR.fields:
            if self.rng.random() >= 0.25:  # else left unset
                self.fill_field(msg, f, depth)
        return msg

    def fill_field(self, msg: Message, f: _d.FieldDescriptor, depth: int) -> None:
        """A random value for field ``f`` of ``msg`` (items for a repeated one)."""
        r = self.rng
        repeated = f.is_repeated
        nested = f.type == _d.FieldDescriptor.TYPE_MESSAGE
        if repeated:
            hint = self.hints.get(f.name)
            if hint and r.random() < 0.35:
                getattr(msg, f.name).extend(r.choice(list(hint)))  # type: ignore[arg-type]
                return
            k = r.random()
            count = 0 if k < 0.2 else r.randint(1, 6) if k < 0.9 else r.choice((100, HUGE_REPEATED))
            if nested:
                field = getattr(msg, f.name)
                for _ in range(count if depth < MAX_DEPTH else 0):
                    self.fill(field.add(), depth + 1)
            else:
                if count >= 100:  # a huge list of one value (a list of random values costs the RNG)
                    getattr(msg, f.name).extend([self.value(f, depth)] * count)
                else:
                    getattr(msg, f.name).extend([self.value(f, depth) for _ in range(count)])
        elif nested:
            if depth < MAX_DEPTH:
                self.fill(getattr(msg, f.name), depth + 1)
                if not getattr(msg, f.name).ByteSize():
                    getattr(msg, f.name).SetInParent()
        else:
            setattr(msg, f.name, self.value(f, depth))

    def mutated(self, template: Message) -> bytes:
        """``template`` (a valid, meaningful request) with one or two of its fields, at any depth,
        given a random value: cleared, refilled, or (bytes) with a byte flipped, cut or extended."""
        msg = type(template)()
        msg.CopyFrom(template)
        spots: list[tuple[Message, _d.FieldDescriptor]] = []

        def walk(m: Message, depth: int) -> None:
            for f in m.DESCRIPTOR.fields:
                spots.append((m, f))
                if f.type == _d.FieldDescriptor.TYPE_MESSAGE and not f.is_repeated and m.HasField(f.name) and depth < MAX_DEPTH:
                    walk(getattr(m, f.name), depth + 1)

        walk(msg, 0)
        r = self.rng
        for m, f in r.sample(spots, min(len(spots), r.choice((1, 1, 2)))):
            if f.is_repeated or f.type == _d.FieldDescriptor.TYPE_MESSAGE:
                m.ClearField(f.name)
                self.fill_field(m, f, 1)
            elif f.type == _d.FieldDescriptor.TYPE_BYTES and getattr(m, f.name) and r.random() < 0.5:
                data = bytearray(getattr(m, f.name))
                k = r.random()
                if k < 0.5:
                    data[r.randrange(len(data))] ^= 1 << r.randrange(8)
                elif k < 0.75:
                    del data[r.randrange(len(data)) :]
                else:
                    data += r.randbytes(r.randint(1, 64))
                setattr(m, f.name, bytes(data))
            else:
                setattr(m, f.name, self.value(f, 0))
        return msg.SerializeToString()

    def structured(self, rpc: Rpc) -> bytes:
        """A valid serialized ``rpc.request`` with random field values."""
        return self.fill(rpc.request()).SerializeToString()

    def raw(self, rpc: Rpc) -> bytes:
        """Bytes that are mostly not a valid ``rpc.request``: random, or a valid one mutated."""
        r = self.rng
        k = r.random()
        if k < 0.4:
            return r.randbytes(r.choice((1, 2, 3, 5, 8, 16, 64, 300)))
        data = bytearray(self.structured(rpc)) or bytearray(b"\x0a\x00")
        if k < 0.6:
            for _ in range(r.randint(1, 4)):
                data[r.randrange(len(data))] = r.randrange(256)
        elif k < 0.7:
            data = data[: r.randrange(len(data))]
        elif k < 0.8:
            # a string field carrying invalid UTF-8 (field 1..9, wire type 2)
            tag = (r.randint(1, 9) << 3) | 2
            bad = r.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"a\x80b", b"\xf8\x88\x80\x80\x80"))
            data += bytes([tag, len(bad)]) + bad
        elif k < 0.9:
            # absurd lengths, unknown wire types, deep nesting of field 3 (a message field in many requests)
            data += r.choice((b"\x0a\xff\xff\xff\xff\x0f", b"\x0f", b"\x0b\x0c", b"\x08" + b"\xff" * 11, b"\x1a\x7f" * 200))
        else:
            data += r.randbytes(r.randint(1, 40))
        return bytes(data)


def call(channel: grpc.Channel, rpc: Rpc, payload: bytes, timeout: float) -> tuple[grpc.StatusCode, str]:
    """Send ``payload`` as the serialized request of ``rpc``; (status code, details). A streaming
    RPC is read until it ends or the deadline passes (DEADLINE_EXCEEDED)."""
    ident: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    try:
        if rpc.streaming:
            stream = channel.unary_stream(rpc.path, request_serializer=None, response_deserializer=ident)
            for _ in stream(payload, timeout=timeout):
                pass
        else:
            channel.unary_unary(rpc.path, request_serializer=None, response_deserializer=ident)(payload, timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details() or ""  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""
