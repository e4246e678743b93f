"""An in-memory fake of the coordinator's key and signing-request RPCs for Schnorr keys (issue 16),
for SDK and CLI tests: ``CreateKey`` makes an ed25519 / bip340 / ecdsa key from a fixed secret,
``SubmitSignRequest`` stores the request, :meth:`FakeSchnorrCoordinator.finish` signs it with the
secret (the signature a FROST quorum would produce: ed25519 with ``cryptography``, bip340 with
the BIP341-tweaked secret through coincurve). ``evil`` hooks let a test make it lie; RPCs it does
not serve answer UNIMPLEMENTED (the SDK then reports approvals as not verified)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import grpc
from coincurve import PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto_core.frost.public import frost_key_id
from governance.approval import SCHEME_BIP340, SCHEME_ECDSA, SCHEME_ED25519, SigningRequest
from mpcnet.client.identities import Identity
from mpcnet.client.sdk import MpcClient
from mpcnet.common import addresses
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2

from .lifecycle_fake import FakeRpcError

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ST = coordinator_pb2.SignRequestState


class FakeSchnorrCoordinator:
    """Keys and signing requests of mpc.v1.Coordinator, in memory (call them like a stub)."""

    def __init__(self, *, frost: bool = False) -> None:
        self.frost = frost  # Schnorr keys dealt and signed by crypto_core.frost (2-of-3, signers 1 and 3)
        self.dealt: dict[bytes, Any] = {}
        self.auto_sign = False  # finish a request when its approvals reach the quorum (unverified: the fake's word)
        self.keys: dict[bytes, common_pb2.KeyInfo] = {}
        self.secrets: dict[bytes, bytes] = {}
        self.requests: dict[str, coordinator_pb2.SignRequestInfo] = {}
        self.calls: list[Any] = []
        self.evil: dict[str, Callable[[Any], Any]] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            impl = object.__getattribute__(self, "_" + name)
        except AttributeError:
            impl = None

        def call(req: Any, timeout: float | None = None) -> Any:
            self.calls.append((name, req))
            if impl is None:
                raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, f"{name}: not in this fake")
            out = impl(req)
            hook = self.evil.get(name)
            return hook(out) if hook else out

        return call

    # --- RPCs ---
    def _CreateKey(self, req: coordinator_pb2.CreateKeyRequest) -> coordinator_pb2.CreateKeyResponse:
        scheme = req.scheme or SCHEME_ECDSA
        secret = hashlib.sha256(b"secret" + scheme.encode() + req.label.encode()).digest()
        chain = b""
        if self.frost and scheme != SCHEME_ECDSA:
            from tests.crypto.frost.dealer import deal

            dealt = deal(scheme, 2, 3, seed=len(self.keys) + 7)
            pk = dealt.public_key
        elif scheme == SCHEME_ED25519:
            pk = Ed25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        else:
            pk = PrivateKey(secret).public_key.format(compressed=True)
            chain = hashlib.sha256(b"chain").digest() if scheme == SCHEME_ECDSA else b""
        # a FROST key's id binds its scheme and group key, as the nodes and the coordinator compute it
        kid = hashlib.sha256(scheme.encode() + pk).digest() if scheme == SCHEME_ECDSA else frost_key_id(scheme, pk)
        self.secrets[kid] = secret
        if self.frost and scheme != SCHEME_ECDSA:
            self.dealt[kid] = dealt
        self.keys[kid] = common_pb2.KeyInfo(
            key_id=kid, label=req.label, public_key=pk, chain_code=chain, threshold=2, parties=3,
            status=common_pb2.KEY_STATUS_ACTIVE, committee=[1, 2, 3], scheme="" if scheme == SCHEME_ECDSA else scheme,
        )
        return coordinator_pb2.CreateKeyResponse(key=self.keys[kid])

    def _GetKey(self, req: Any) -> common_pb2.KeyInfo:
        if bytes(req.key_id) not in self.keys:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "key_id: no such key")
        return self.keys[bytes(req.key_id)]

    def _ListKeys(self, req: Any) -> Any:
        return coordinator_pb2.ListKeysResponse(keys=list(self.keys.values()))

    def _SubmitSignRequest(self, req: coordinator_pb2.SubmitSignRequestRequest) -> coordinator_pb2.SignRequestInfo:
        key = self.keys[bytes(req.key_id)]
        if key.scheme == SCHEME_ED25519 and not req.message:  # as the coordinator (contract: B2)
            raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "message: required for an ed25519 key (1..65536 bytes)")
        rid = req.request_id or f"r{len(self.requests) + 1}"
        digest = bytes(req.digest) or hashlib.sha256(bytes(req.message)).digest()
        q = SigningRequest(
            rid, bytes(req.key_id), digest, tuple(req.derivation_path), "carol", req.description, 1_000, 10**13, 1,
            b"\x11" * 32, scheme=key.scheme or SCHEME_ECDSA, taproot_root=bytes(req.taproot_merkle_root),
        )
        self.requests[rid] = coordinator_pb2.SignRequestInfo(
            request_id=rid, state=ST.SIGN_REQUEST_STATE_PENDING_APPROVAL, request=q.to_bytes(), approval_quorum=2, approvers=3,
            scheme=q.scheme, message=bytes(req.message), taproot_merkle_root=bytes(req.taproot_merkle_root),
        )
        return self.requests[rid]

    def _GetSignRequest(self, req: Any) -> coordinator_pb2.SignRequestInfo:
        return self.requests[req.request_id]

    def _DecideSignRequest(self, req: Any) -> coordinator_pb2.SignRequestInfo:
        info = self.requests[req.request_id]
        info.approvals.add(approver=req.approver, decision=req.decision, decided_unix_ms=2_000, signature=req.signature)
        if self.auto_sign and len(info.approvals) >= info.approval_quorum:
            self.finish(req.request_id)
        return info

    def _ListSignRequests(self, req: Any) -> coordinator_pb2.ListSignRequestsResponse:
        return coordinator_pb2.ListSignRequestsResponse(requests=list(self.requests.values())[::-1])

    def _GetRequest(self, req: Any) -> coordinator_pb2.RequestStatus:
        info = self.requests[req.request_id]
        q = SigningRequest.from_bytes(bytes(info.request))
        done = info.state == ST.SIGN_REQUEST_STATE_DONE
        return coordinator_pb2.RequestStatus(
            request_id=info.request_id, kind=coordinator_pb2.REQUEST_KIND_SIGN,
            state=coordinator_pb2.REQUEST_STATE_SUCCEEDED if done else coordinator_pb2.REQUEST_STATE_RUNNING,
            key_id=q.key_id, digest=q.digest, signature=info.signature if done else None, signers=info.signers,
        )

    # --- test helpers ---
    def finish(self, rid: str) -> coordinator_pb2.SignRequestInfo:
        """Signs request ``rid`` with its key's secret (as the signers would) and marks it DONE."""
        info = self.requests[rid]
        q = SigningRequest.from_bytes(bytes(info.request))
        secret = self.secrets[q.key_id]
        if q.key_id in self.dealt:  # a real FROST signature: both rounds and the aggregation of crypto_core.frost
            from crypto_core.frost.signing import signing_key
            from tests.crypto.frost.dealer import run_signing

            signed = bytes(info.message) if q.scheme == SCHEME_ED25519 else q.digest
            _, _, sig = run_signing(self.dealt[q.key_id], [1, 3], signed, q.taproot_root)
            vk = signing_key(q.scheme, self.dealt[q.key_id].public_key, q.taproot_root)
        elif q.scheme == SCHEME_ED25519:
            sk = Ed25519PrivateKey.from_private_bytes(secret)
            sig = sk.sign(bytes(info.message))
            vk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        elif q.scheme == SCHEME_BIP340:
            d = int.from_bytes(secret, "big")
            if PrivateKey(secret).public_key.format()[0] == 3:
                d = N - d
            t = int.from_bytes(addresses.tap_tweak(PrivateKey(secret).public_key.format(), q.taproot_root), "big")
            tweaked = PrivateKey(((d + t) % N).to_bytes(32, "big"))
            sig = tweaked.sign_schnorr(q.digest, b"\x00" * 32)
            vk = addresses.taproot_output_key(PrivateKey(secret).public_key.format(), q.taproot_root)
        else:
            raise AssertionError("ECDSA signing is not in this fake")
        info.state = ST.SIGN_REQUEST_STATE_DONE
        info.signature.CopyFrom(common_pb2.Signature(schnorr=sig, public_key=vk))
        info.signers[:] = [1, 2]
        return info


def requester(fake: FakeSchnorrCoordinator) -> MpcClient:
    """An MpcClient talking to ``fake`` as requester carol (no admin set: approvals unverified)."""
    c = MpcClient.__new__(MpcClient)
    c.timeout = 5.0
    c._stub = fake  # type: ignore[assignment]
    c.identity = Identity("carol", "requester", None, Ed25519PrivateKey.from_private_bytes(b"\x05" * 32))  # type: ignore[arg-type]
    c.admin_set = None
    c.node_endpoints = {}
    return c


__all__ = ["FakeSchnorrCoordinator", "requester"]
