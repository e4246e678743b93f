"""Review (issue 14, P1): re-randomised shares and presignature records, as an attacker.

Every caller input that reaches the Groth-Shoup ``delta`` is validated like the rest of the
API (a malformed derivation path is a :class:`UsageError` naming it, never an ``OverflowError``
or a "signer misbehaved" abort); a record bound to one key generation (``sid_dkg``) refuses to
sign for another at the same epoch number; the degenerate ``R*`` and ``delta = 0`` cases.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.combiner import SignatureShare, combine, rerandomized_nonce, rerandomizer
from crypto_core.errors import PresignatureUsed, ProtocolAbort, UsageError
from crypto_core.group import Point, Q
from crypto_core.keyshare import KeyShare
from crypto_core.sign import Presignature

from ..conftest import scaled
from .sign_util import keygen, presign
from .test_sign import check_signature

_counter = itertools.count()
BAD_PATHS = [((1 << 32),), (-1,), ((1 << 31),), (True,), ("0",)]  # too big, negative, hardened, bool, str


def _keys() -> dict[int, KeyShare]:
    return keygen(2, 3)


def _shares(
    signers: tuple[int, ...], digest: bytes, path: tuple[int, ...] = ()
) -> tuple[dict[int, SignatureShare], dict[int, Presignature]]:
    keys = _keys()
    pres = presign(keys, signers, path=path, seed=b"rev" + next(_counter).to_bytes(4, "big"))
    out = {}
    for i, p in pres.items():
        p.mark_used()
        out[i] = p.signature_share(digest, key_id=keys[i].key_id, epoch=0, derivation_path=path, rerandomize=True)
    return out, pres


@pytest.mark.parametrize("path", BAD_PATHS)
def test_rerandomizer_refuses_a_malformed_path_naming_it(path):
    R = Point.base_mul(5)
    with pytest.raises(UsageError, match=r"derivation_path"):
        rerandomizer(bytes(32), R, R, path, bytes(32))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_combine_refuses_a_malformed_path_as_the_callers_error(path):
    """Not OverflowError/TypeError (an unattributed crash) and not ProtocolAbort(None, "a signer
    misbehaved"): the path is the caller's input, like the digest and the key."""
    digest = hashlib.sha256(b"path").digest()
    shares, pres = _shares((1, 2), digest)
    with pytest.raises(UsageError, match=r"derivation_path"):
        combine(shares, digest, signers=(1, 2), public_key=pres[1].public_key, derivation_path=path)  # type: ignore[arg-type]
    sig = combine(shares, digest, signers=(1, 2), public_key=pres[1].public_key, derivation_path=())  # still combinable
    check_signature(sig, pres[1].public_key, digest)


def test_combine_with_the_signers_own_record_names_a_path_mismatch():
    """A signer that combines with its own record (PresignatureView) gets a UsageError when the
    path it passes is not the record's (the other path's delta could only fail verification)."""
    digest = hashlib.sha256(b"own record").digest()
    shares, pres = _shares((2, 3), digest, path=(7,))
    with pytest.raises(UsageError, match=r"derivation_path: not the path this presignature was made for"):
        combine(shares, digest, signers=(2, 3), public_key=pres[2].public_key, presignature=pres[2], derivation_path=(8,))
    sig = combine(shares, digest, signers=(2, 3), public_key=pres[2].public_key, presignature=pres[2], derivation_path=(7,))
    check_signature(sig, pres[2].public_key, digest)


def test_a_record_of_another_key_generation_refuses_to_sign():
    """Same key id and epoch number, another sid_dkg (a restored store, a reshare re-run at the
    same epoch number): refused naming sid_dkg, and the refusal consumes the presignature."""
    keys = _keys()
    pres = presign(keys, (1, 3), seed=b"sid_dkg")
    p = pres[1]
    p.mark_used()
    with pytest.raises(UsageError, match=r"sid_dkg: presignature was made for another key share"):
        p.signature_share(bytes(32), key_id=keys[1].key_id, epoch=0, sid_dkg=bytes(32), rerandomize=True)
    with pytest.raises(PresignatureUsed):
        p.signature_share(bytes(32), key_id=keys[1].key_id, epoch=0, sid_dkg=keys[1].sid_dkg, rerandomize=True)
    q = pres[3]
    q.mark_used()
    with pytest.raises(UsageError, match=r"sid_dkg: must be 32 bytes"):
        q.signature_share(bytes(32), key_id=keys[3].key_id, epoch=0, sid_dkg=bytes(31))
    ok = presign(keys, (1, 3), seed=b"sid_dkg ok")
    digest = hashlib.sha256(b"sid ok").digest()
    shares = {}
    for i, pre in ok.items():
        pre.mark_used()
        shares[i] = pre.signature_share(digest, key_id=keys[i].key_id, epoch=0, sid_dkg=keys[i].sid_dkg, rerandomize=True)
    check_signature(combine(shares, digest, signers=(1, 3), public_key=ok[1].public_key, derivation_path=()), ok[1].public_key, digest)


# --- held: the degenerate cases -------------------------------------------------------------------


def _record(k: int, secret: tuple[int, int, int]) -> Presignature:
    keys = _keys()
    return Presignature(
        index=1, sigid=bytes(32), key_id=keys[1].key_id, public_key=keys[1].public_key, derivation_path=(), signers=(1, 2),
        R=Point.base_mul(k), _secret=secret, epoch=0, sid_dkg=keys[1].sid_dkg,
    )


def test_r_star_at_infinity_aborts_with_nobody_to_blame(monkeypatch):
    """delta = -k (R* = O): the signer refuses (ProtocolAbort, party None) with the secret gone,
    and the combiner refuses too; delta = 0 (R* = R) is an ordinary signature."""
    import crypto_core.combiner as combiner_mod
    import crypto_core.sign as sign_mod

    k = 12345
    with pytest.raises(ProtocolAbort) as e:
        rerandomized_nonce(Point.base_mul(k), Q - k)
    assert e.value.party is None and "degenerate" in str(e.value)
    assert rerandomized_nonce(Point.base_mul(k), 0) == Point.base_mul(k)
    assert rerandomized_nonce(Point.base_mul(k), Q) == Point.base_mul(k)

    monkeypatch.setattr(sign_mod, "rerandomizer", lambda *a: Q - k)
    p = _record(k, (1, 2, 3))
    p.mark_used()
    with pytest.raises(ProtocolAbort):
        p.signature_share(bytes(32), key_id=p.key_id, epoch=0, rerandomize=True)
    with pytest.raises(PresignatureUsed):
        p.signature_share(bytes(32), key_id=p.key_id, epoch=0, rerandomize=True)
    share = SignatureShare(1, bytes(32), Point.base_mul(k), bytes(32), 1, 1, 2)
    monkeypatch.setattr(combiner_mod, "rerandomizer", lambda *a: Q - k)
    with pytest.raises(ProtocolAbort) as e:
        combine({1: share, 2: share.__class__(2, *list(share.__dict__.values())[1:])}, bytes(32), signers=(1, 2),
                public_key=p.public_key, derivation_path=())
    assert e.value.party is None


def test_delta_differs_per_digest_presignature_and_path():
    """The coordinator can compute delta once it picks (presignature, digest), never pick it:
    every input moves it, and two digests of one presignature never share a delta."""
    R, pk = Point.base_mul(3), Point.base_mul(4)
    base = rerandomizer(bytes(32), R, pk, (), bytes(32))
    others = {
        rerandomizer(b"\x01" + bytes(31), R, pk, (), bytes(32)),
        rerandomizer(bytes(32), Point.base_mul(5), pk, (), bytes(32)),
        rerandomizer(bytes(32), R, Point.base_mul(6), (), bytes(32)),
        rerandomizer(bytes(32), R, pk, (0,), bytes(32)),
        rerandomizer(bytes(32), R, pk, (), b"\x01" + bytes(31)),
        rerandomizer(bytes(32), R, pk, (), (Q).to_bytes(32, "big")[:32] if Q < 1 << 256 else bytes(32)),
        rerandomizer(bytes(32), R, pk, (1, 0), bytes(32)),
        rerandomizer(bytes(32), R, pk, (1,), bytes(32)),
    }
    assert base not in others and len(others) == 8
    # h = int(digest) mod q is the same for d and d + q, delta is not: no two digests share R*
    assert rerandomizer(bytes(32), R, pk, (), bytes(32)) != rerandomizer(bytes(32), R, pk, (), Q.to_bytes(32, "big"))


# --- held: a compromised combiner with honest re-randomised shares ------------------------------


@settings(max_examples=scaled(4), deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), st.sampled_from([(1, 2), (1, 3), (2, 3)]))
def test_honest_shares_sign_only_their_digest(d1, d2, signers):
    """The combiner holds honest shares of two presignatures for approved digests d1 and d2. It
    relabels digests, swaps R or sigid between them, mixes the shares, or plays the other signer
    with the plain (v1) formula: no combination verifies except the two approved ones."""
    if d1 == d2:
        d2 = bytes(b ^ 0xFF for b in d1)
    a, pa = _shares(signers, d1)
    b, pb = _shares(signers, d2)
    pk = pa[signers[0]].public_key
    i, j = signers
    relabel = {k: dataclasses.replace(s, digest=d2) for k, s in a.items()}
    attempts = [
        (relabel, d2),  # a's shares claimed for d2
        ({i: a[i], j: dataclasses.replace(b[j], digest=d1)}, d1),  # one share of each presignature
        ({i: a[i], j: dataclasses.replace(b[j], digest=d1, R=a[j].R, sigid=a[j].sigid)}, d1),
        ({k: dataclasses.replace(s, version=1) for k, s in a.items()}, d1),  # read as plain shares
        ({k: dataclasses.replace(s, R=pb[k].R, sigid=pb[k].sigid) for k, s in a.items()}, d1),  # R of b
    ]
    for shares, digest in attempts:
        with pytest.raises(ProtocolAbort):
            combine(shares, digest, signers=signers, public_key=pk, derivation_path=())
    for shares, digest in ((a, d1), (b, d2)):
        check_signature(combine(shares, digest, signers=signers, public_key=pk, derivation_path=()), pk, digest)
