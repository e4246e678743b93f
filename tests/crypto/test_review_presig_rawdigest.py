"""Review (issue 14, P1 + D3): why a pool presignature must never sign a plain (v1) share.

We sign raw 32-byte digests. Whoever knows ``R`` (r = x(R)) *before* choosing the digest can
turn one honest plain signature into a signature on any digest ``h*`` it likes: pick ``a``,
``r' = x(a R)``, ``c = r' / (a r)`` and have ``h = h* r / r'`` approved (it looks like any
other digest); from the signature ``(r, s)`` on ``h``, ``(r', c s)`` is a valid signature on
``h*`` (nonce ``a k``). A pool exposes ``R`` to the coordinator before the digest exists, so a
coordinator colluding with one approver (or a client of raw-digest requests) signs anything.
The Groth-Shoup re-randomisation (``R* = R + [H(.., digest)]``) stops it: ``R*`` is unknown
until the digest is fixed. So crypto_core refuses a plain share from every presignature whose
``R`` may have been public before the digest: one revived from a stored fresh record, or made
by :class:`PresignBatch` (both only exist for pools; the full protocol signs its in-memory
presignature with the digest fixed before ``R`` was revealed).
"""

from __future__ import annotations

import hashlib

import pytest

from crypto_core.combiner import Signature, combine, verify
from crypto_core.errors import PresignatureUsed, UsageError
from crypto_core.group import HALF_Q, Point, Q, inv
from crypto_core.hazmat.presignature import load_presignature
from crypto_core.local import run
from crypto_core.rng import DeterministicRng
from crypto_core.sign import BatchConfig, Presignature, PresignBatch

from .sign_util import keygen, presign

TARGET = hashlib.sha256(b"pay 1000 BTC to the attacker").digest()  # never approved


def _cooked_digest(R: Point, a: int = 2) -> tuple[bytes, int, int]:
    """The digest to get approved, given R: (h, r', c)."""
    r = R.x % Q
    r2 = (R * a).x % Q
    h = int.from_bytes(TARGET, "big") * r * inv(r2) % Q
    return h.to_bytes(32, "big"), r2, r2 * inv(a * r % Q) % Q


def _forge(sig: Signature, r2: int, c: int) -> Signature:
    s = c * sig.s % Q
    return Signature(r2, Q - s if s > HALF_Q else s, 0, sig.public_key)


def _shares(pres: dict[int, Presignature], digest: bytes, rerandomize: bool):  # type: ignore[no-untyped-def]
    keys = keygen(2, 3)
    out = {}
    for i, p in pres.items():
        p.mark_used()
        out[i] = p.signature_share(digest, key_id=keys[i].key_id, epoch=0, rerandomize=rerandomize)
    return out


def test_the_attack_on_plain_shares_with_r_known_in_advance():
    """Documentation: in-memory presignatures (plain shares allowed) fall to the attack."""
    pres = presign(keygen(2, 3), (1, 2), seed=b"raw")
    R, pk = pres[1].R, pres[1].public_key
    h, r2, c = _cooked_digest(R)  # chosen after seeing R
    sig = combine(_shares(pres, h, rerandomize=False), h, signers=(1, 2), public_key=pk)
    assert verify(_forge(sig, r2, c), TARGET)  # a signature on a digest nobody approved


def test_rerandomized_shares_defeat_it():
    pres = presign(keygen(2, 3), (1, 2), seed=b"raw rr")
    R, pk = pres[1].R, pres[1].public_key
    h, r2, c = _cooked_digest(R)
    sig = combine(_shares(pres, h, rerandomize=True), h, signers=(1, 2), public_key=pk, derivation_path=())
    assert verify(sig, h) and not verify(_forge(sig, r2, c), TARGET)


def test_a_revived_fresh_record_signs_only_rerandomized():
    pres = presign(keygen(2, 3), (1, 3), seed=b"revived")
    revived = {i: load_presignature(p.to_bytes()) for i, p in pres.items()}
    p = revived[1]
    p.mark_used()
    with pytest.raises(UsageError, match=r"rerandomize: .*R was public before the digest"):
        p.signature_share(bytes(32), key_id=p.key_id, epoch=0)
    with pytest.raises(PresignatureUsed):  # refused, and consumed like every refusal
        p.signature_share(bytes(32), key_id=p.key_id, epoch=0, rerandomize=True)
    digest = hashlib.sha256(b"revived ok").digest()
    fresh = {i: load_presignature(q.to_bytes()) for i, q in presign(keygen(2, 3), (1, 3), seed=b"revived 2").items()}
    sig = combine(_shares(fresh, digest, rerandomize=True), digest, signers=(1, 3), public_key=fresh[1].public_key, derivation_path=())
    assert verify(sig, digest)


def test_batch_presignatures_sign_only_rerandomized():
    keys = keygen(2, 3)
    ps = {i: PresignBatch(keys[i], BatchConfig(b"Z" * 32, (2, 3), 2), DeterministicRng(b"z" + bytes([i]))) for i in (2, 3)}
    run(ps)
    res = ps[2].results
    assert res is not None
    res[0].mark_used()
    with pytest.raises(UsageError, match=r"rerandomize: "):
        res[0].signature_share(bytes(32), key_id=keys[2].key_id, epoch=0, rerandomize=False)
    revived = load_presignature(res[1].to_bytes())  # and after a store round trip
    revived.mark_used()
    with pytest.raises(UsageError, match=r"rerandomize: "):
        revived.signature_share(bytes(32), key_id=keys[2].key_id, epoch=0)


def test_a_tombstone_and_the_full_protocol_are_unaffected():
    """In memory (the full protocol: digest fixed before R is revealed) plain shares still sign."""
    keys = keygen(2, 3)
    pres = presign(keys, (2, 3), seed=b"full")
    digest = hashlib.sha256(b"full").digest()
    sig = combine(_shares(pres, digest, rerandomize=False), digest, signers=(2, 3), public_key=pres[2].public_key)
    assert verify(sig, digest) and sig.r == pres[2].r
