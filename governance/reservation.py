"""Reservation receipts: at most ``MAX_SIGN_ATTEMPTS`` signing attempts per request, cluster-wide.

**Invariant.** A signing request yields signatures only of its approved digest and path, and at
most :data:`MAX_SIGN_ATTEMPTS` *reserved attempts* ``k = 1..MAX`` of it can release signature
shares, counted across the whole cluster. Attempt ``k`` is bound to one signer set and one
session id. A node grants (signs a receipt for) at most one ``(signers, session id)`` per
``(request, k)``, durably, and a signer releases its share for attempt ``k`` only with receipts
from a majority ``q = floor(n/2) + 1`` of *its own* roster, all for exactly this request,
attempt, signer set and session, and only once per ``(request, k)``. Two majorities intersect,
so with honest nodes no two signer groups can both hold receipts for the same attempt: a
compromised coordinator gets at most ``MAX_SIGN_ATTEMPTS`` signatures per request. With ``f``
corrupted nodes too (``f < q``), each attempt needs ``q - f`` honest grants and every honest node
grants at most one per attempt number, so at most ``MAX * floor((n - f) / (q - f))`` attempts.

A :class:`Reservation` is *what* is reserved; a :class:`ReservationReceipt` is one node's
Ed25519 signature (its identity key) over it and its own roster index. Every encoding is the
canonical governance encoding (:mod:`governance.encoding`): domain-separated, versioned,
length-prefixed fields. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import MAX_MEMBERS, SIGNATURE_LEN, check_bytes, check_int, check_private_key, ed25519_verify
from .encoding import Decoder, Encoder, domain_tag
from .errors import GovernanceError, field_prefix
from .text import REQUEST_ID_RE, REQUEST_ID_RULE

MAX_SIGN_ATTEMPTS = 3
RESERVATION_TAG = domain_tag("sign-reservation")
RECEIPT_MESSAGE_TAG = domain_tag("sign-reservation-receipt-message")
RECEIPT_TAG = domain_tag("sign-reservation-receipt")

ID_LEN = 32  # governance root, key id, request digest, session id
MAX_INDEX = 65535  # a roster index
MAX_RECEIPTS = MAX_MEMBERS


def reservation_quorum(parties: int) -> int:
    """The receipts a signer needs: a strict majority of a roster of ``parties`` nodes."""
    check_int(parties, "parties", 1, MAX_INDEX)
    return parties // 2 + 1


def _check_signers(value: object, field: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= MAX_MEMBERS:
        raise GovernanceError(field, f"must be 1..{MAX_MEMBERS} roster indices")
    out = tuple(check_int(j, f"{field}[{i}]", 1, MAX_INDEX) for i, j in enumerate(value))
    if list(out) != sorted(set(out)):
        raise GovernanceError(field, "must be distinct and in increasing order")
    return out


@dataclass(frozen=True)
class Reservation:
    """Attempt ``attempt`` of signing request ``request_id`` by ``signers`` in session ``session_id``.

    ``governance_root`` is the admin set's digest (32 bytes), so a receipt from one cluster means
    nothing in another; ``request_digest`` is ``SigningRequest.request_digest()`` (32 bytes) of
    the approved request, so the receipt covers its key, digest, path and expiry; ``signers`` is
    sorted and distinct; ``attempt`` is in ``1..MAX_SIGN_ATTEMPTS``. Raises GovernanceError.
    """

    governance_root: bytes
    key_id: bytes
    request_id: str
    request_digest: bytes
    attempt: int
    signers: tuple[int, ...]
    session_id: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "governance_root", check_bytes(self.governance_root, "governance_root", length=ID_LEN))
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        if not isinstance(self.request_id, str) or not REQUEST_ID_RE.fullmatch(self.request_id):
            raise GovernanceError("request_id", REQUEST_ID_RULE)
        object.__setattr__(self, "request_digest", check_bytes(self.request_digest, "request_digest", length=ID_LEN))
        check_int(self.attempt, "attempt", 1, MAX_SIGN_ATTEMPTS)
        object.__setattr__(self, "signers", _check_signers(self.signers, "signers"))
        object.__setattr__(self, "session_id", check_bytes(self.session_id, "session_id", length=ID_LEN))

    def encode(self) -> bytes:
        enc = Encoder(RESERVATION_TAG).raw(self.governance_root).raw(self.key_id).text(self.request_id)
        enc.raw(self.request_digest).uint(self.attempt).count(len(self.signers))
        for j in self.signers:
            enc.uint(j)
        return enc.raw(self.session_id).finish()

    @classmethod
    def decode(cls, data: bytes) -> Reservation:
        dec = Decoder(data, RESERVATION_TAG, what="reservation")
        root = dec.raw("governance_root", length=ID_LEN)
        key_id = dec.raw("key_id", length=ID_LEN)
        request_id = dec.text("request_id")
        request_digest = dec.raw("request_digest", length=ID_LEN)
        attempt = dec.uint("attempt")
        signers = tuple(dec.uint(f"signers[{i}]") for i in range(dec.count("signers", max_count=MAX_MEMBERS)))
        session_id = dec.raw("session_id", length=ID_LEN)
        dec.finish()
        return cls(root, key_id, request_id, request_digest, attempt, signers, session_id)


def _receipt_message(reservation: Reservation, reserver: int) -> bytes:
    return Encoder(RECEIPT_MESSAGE_TAG).raw(reservation.encode()).uint(reserver).finish()


@dataclass(frozen=True)
class ReservationReceipt:
    """Node ``reserver``'s signature granting ``reservation`` (64-byte Ed25519 signature)."""

    reservation: Reservation
    reserver: int
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.reservation, Reservation):
            raise GovernanceError("reservation", "must be a Reservation")
        check_int(self.reserver, "reserver", 1, MAX_INDEX)
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))

    def to_bytes(self) -> bytes:
        return Encoder(RECEIPT_TAG).raw(self.reservation.encode()).uint(self.reserver).raw(self.signature).finish()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReservationReceipt:
        dec = Decoder(data, RECEIPT_TAG, what="receipt")
        inner = dec.raw("reservation")
        reserver = dec.uint("reserver")
        signature = dec.raw("signature", length=SIGNATURE_LEN)
        dec.finish()
        with field_prefix("reservation"):
            reservation = Reservation.decode(inner)
        return cls(reservation, reserver, signature)

    def verify(self, public_key: bytes) -> bool:
        """True iff the signature verifies under ``public_key`` (the reserver's identity key)."""
        return ed25519_verify(public_key, self.signature, _receipt_message(self.reservation, self.reserver))


def sign_reservation(reservation: Reservation, reserver: int, identity: Ed25519PrivateKey) -> ReservationReceipt:
    """Node ``reserver``'s receipt for ``reservation``, signed with its identity key."""
    if not isinstance(reservation, Reservation):
        raise GovernanceError("reservation", "must be a Reservation")
    check_int(reserver, "reserver", 1, MAX_INDEX)
    key = check_private_key(identity, "identity")
    return ReservationReceipt(reservation, reserver, key.sign(_receipt_message(reservation, reserver)))


_COMPARED = ("governance_root", "key_id", "request_id", "request_digest", "attempt", "signers", "session_id")
_WHAT = {
    "governance_root": "another cluster or admin set",
    "key_id": "another key",
    "request_id": "another request",
    "request_digest": "another version of the request",
    "attempt": "another attempt",
    "signers": "another signer set",
    "session_id": "another session",
}


def verify_receipts(
    receipts: Sequence[bytes], expected: Reservation, roster: Mapping[int, bytes], quorum: int
) -> frozenset[int]:
    """Check that ``receipts`` (encoded) grant exactly ``expected`` from at least ``quorum``
    distinct nodes of ``roster`` (index -> raw Ed25519 identity public key, the verifier's own).

    Every receipt must be well formed, from a roster node not seen before, for exactly
    ``expected`` and correctly signed; otherwise GovernanceError naming
    ``reservation_receipts[i].<field>``. Returns the indices of the nodes that granted it.
    """
    if not isinstance(expected, Reservation):
        raise GovernanceError("expected", "must be a Reservation")
    check_int(quorum, "quorum", 1, MAX_INDEX)
    if len(receipts) > MAX_RECEIPTS:
        raise GovernanceError("reservation_receipts", f"more than {MAX_RECEIPTS} receipts")
    granted: set[int] = set()
    for i, data in enumerate(receipts):
        with field_prefix(f"reservation_receipts[{i}]"):
            r = ReservationReceipt.from_bytes(data)
            if r.reserver not in roster:
                raise GovernanceError("reserver", f"node {r.reserver} is not in this node's roster")
            if r.reserver in granted:
                raise GovernanceError("reserver", f"a second receipt from node {r.reserver}")
            for name in _COMPARED:
                if getattr(r.reservation, name) != getattr(expected, name):
                    raise GovernanceError(f"reservation.{name}", f"differs: the receipt is for {_WHAT[name]}")
            if not r.verify(roster[r.reserver]):
                raise GovernanceError("signature", f"does not verify under node {r.reserver}'s identity key")
        granted.add(r.reserver)
    if len(granted) < quorum:
        raise GovernanceError(
            "reservation_receipts",
            f"{len(granted)} valid receipt(s) from distinct nodes, {quorum} required (a majority of the roster)",
        )
    return frozenset(granted)
