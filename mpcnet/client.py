"""Typed Python client of the coordinator (mpc.v1.Coordinator over mTLS).

    with MpcClient.from_cluster("var/cluster") as c:
        key = c.create_key("treasury")
        sig = c.sign(key.key_id, hashlib.sha256(b"hello").digest(), path="m/0/1")
        print(sig.r, sig.s, sig.recovery_id, sig.der.hex())

Failures raise :class:`MpcError` with the gRPC status code and the server's message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import grpc

from crypto_core.bip32 import derive, parse_path
from crypto_core.group import Point
from mpcnet.pki import CertPaths, channel_credentials
from mpcnet.rpc import CHANNEL_OPTIONS
from proto.mpc.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc

_STATUS = {v: k for k, v in common_pb2.KeyStatus.items()}
_STATE = {v: k for k, v in coordinator_pb2.RequestState.items()}
_KIND = {v: k for k, v in coordinator_pb2.RequestKind.items()}


class MpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def ethereum_address(public_key: bytes) -> str:
    """EIP-55 checksummed address of a secp256k1 public key (33 or 65 bytes)."""
    from Crypto.Hash import keccak

    raw = Point.decode(public_key).encode_uncompressed() if len(public_key) == 33 else public_key
    digest = keccak.new(digest_bits=256, data=raw[1:]).digest()
    addr = digest[-20:].hex()
    check = keccak.new(digest_bits=256, data=addr.encode()).hexdigest()
    return "0x" + "".join(c.upper() if int(check[i], 16) >= 8 else c for i, c in enumerate(addr))


def to_path(path: str | Sequence[int] | None) -> tuple[int, ...]:
    if path is None:
        return ()
    if isinstance(path, str):
        return parse_path(path)
    return tuple(path)


@dataclass(frozen=True)
class Key:
    key_id: bytes
    label: str
    public_key: bytes  # 33 bytes compressed
    chain_code: bytes
    threshold: int
    parties: int
    status: str
    created_unix_ms: int

    @staticmethod
    def from_proto(k: common_pb2.KeyInfo) -> "Key":
        return Key(
            bytes(k.key_id), k.label, bytes(k.public_key), bytes(k.chain_code), k.threshold, k.parties,
            _STATUS.get(k.status, "KEY_STATUS_UNSPECIFIED").removeprefix("KEY_STATUS_").lower(), k.created_unix_ms,
        )

    def derive(self, path: str | Sequence[int] | None = None) -> bytes:
        """Compressed public key at a BIP32 non-hardened path (the key itself for ``None``)."""
        p = to_path(path)
        if not p:
            return self.public_key
        return derive(Point.decode(self.public_key), self.chain_code, p).public_key.encode()

    def describe(self, path: str | Sequence[int] | None = None) -> dict[str, Any]:
        pk = self.derive(path)
        return {
            "key_id": self.key_id.hex(),
            "label": self.label,
            "status": self.status,
            "threshold": self.threshold,
            "parties": self.parties,
            "path": "m" + "".join(f"/{c}" for c in to_path(path)),
            "public_key": pk.hex(),
            "public_key_uncompressed": Point.decode(pk).encode_uncompressed().hex(),
            "ethereum_address": ethereum_address(pk),
            "chain_code": self.chain_code.hex(),
            "created_unix_ms": self.created_unix_ms,
        }


@dataclass(frozen=True)
class SignatureResult:
    request_id: str
    r: int
    s: int
    recovery_id: int
    der: bytes
    public_key: bytes
    signers: tuple[int, ...]

    @staticmethod
    def from_proto(rid: str, sig: common_pb2.Signature, signers: Sequence[int]) -> "SignatureResult":
        return SignatureResult(
            rid, int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"), sig.recovery_id, bytes(sig.der),
            bytes(sig.public_key), tuple(signers),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "r": f"{self.r:064x}",
            "s": f"{self.s:064x}",
            "recovery_id": self.recovery_id,
            "der": self.der.hex(),
            "public_key": self.public_key.hex(),
            "signers": list(self.signers),
        }


@dataclass(frozen=True)
class RequestInfo:
    request_id: str
    kind: str
    state: str
    key_id: bytes
    error_code: str
    error_message: str
    signature: SignatureResult | None
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "state": self.state,
            "key_id": self.key_id.hex(),
            "error": None if self.state != "failed" else {"code": self.error_code, "message": self.error_message},
            "signature": self.signature.as_dict() if self.signature else None,
            "attempts": self.attempts,
        }


def _code_name(value: int) -> str:
    for c in grpc.StatusCode:
        if c.value[0] == value:
            return c.name
    return str(value)


class MpcClient:
    """One channel to the coordinator, reused for every call (thread-safe)."""

    def __init__(self, endpoint: str, cert: CertPaths | None, ca_cert: Path, *, timeout: float = 300.0) -> None:
        if cert is None:  # only useful to show that the server refuses it
            creds = grpc.ssl_channel_credentials(root_certificates=Path(ca_cert).read_bytes())
        else:
            creds = channel_credentials(cert, ca_cert)
        self.endpoint = endpoint
        self.timeout = timeout
        self._channel = grpc.secure_channel(endpoint, creds, options=CHANNEL_OPTIONS)
        self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)

    @staticmethod
    def from_cluster(directory: str | Path, *, identity: str = "client", timeout: float = 300.0) -> "MpcClient":
        """Connect with the certificates listed in ``DIR/cluster.json`` (written by ``mpc-cluster up``)."""
        info = json.loads((Path(directory) / "cluster.json").read_text())
        c = info["certs"][identity]
        return MpcClient(info["coordinator"]["endpoint"], CertPaths(Path(c["cert"]), Path(c["key"])), Path(info["ca_cert"]), timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "MpcClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, req: Any, timeout: float | None = None) -> Any:
        try:
            return method(req, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise MpcError(e.code(), e.details() or "") from None

    def create_key(self, label: str = "", *, request_id: str = "") -> Key:
        r = self._call(self._stub.CreateKey, coordinator_pb2.CreateKeyRequest(label=label, request_id=request_id))
        return Key.from_proto(r.key)

    def get_key(self, key_id: bytes | str) -> Key:
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        return Key.from_proto(self._call(self._stub.GetKey, coordinator_pb2.GetKeyRequest(key_id=kid)))

    def list_keys(self) -> list[Key]:
        return [Key.from_proto(k) for k in self._call(self._stub.ListKeys, coordinator_pb2.ListKeysRequest()).keys]

    def sign(
        self, key_id: bytes | str, digest: bytes, *, path: str | Sequence[int] | None = None, request_id: str = ""
    ) -> SignatureResult:
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        req = coordinator_pb2.SignRequest(key_id=kid, digest=digest, derivation_path=to_path(path), request_id=request_id)
        r = self._call(self._stub.Sign, req)
        return SignatureResult.from_proto(r.request_id, r.signature, r.signers)

    def get_request(self, request_id: str) -> RequestInfo:
        r = self._call(self._stub.GetRequest, coordinator_pb2.GetRequestRequest(request_id=request_id))
        sig = SignatureResult.from_proto(r.request_id, r.signature, r.signers) if r.HasField("signature") else None
        return RequestInfo(
            r.request_id, _KIND[r.kind].removeprefix("REQUEST_KIND_").lower(), _STATE[r.state].removeprefix("REQUEST_STATE_").lower(),
            bytes(r.key_id), _code_name(r.error_code) if r.error_code else "", r.error_message, sig, r.attempts,
        )

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        return self._call(self._stub.ClusterStatus, coordinator_pb2.ClusterStatusRequest(), timeout=10)
