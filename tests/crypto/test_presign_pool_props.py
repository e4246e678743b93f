"""Pool presignatures (issue 14, piece P1): record v2 binding, Groth-Shoup re-randomisation.

What a stored presignature is bound to (key, key epoch, derivation path, signer set), that a
re-randomised share (format version 2) gives a signature on ``R* = R + [delta]`` that verifies
under OpenSSL and libsecp256k1, that every ``r`` of the run is distinct, that ``combine`` refuses
tampered or mixed shares, and the test vectors of ``delta`` (tests/crypto/vectors/
presign_rerandomize_v1.json; regenerate with ``python -m tests.crypto.test_presign_pool_props``,
which only rewrites the file: review the diff, a change of ``delta`` is a wire change).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.combiner import (
    SHARE_PLAIN,
    SHARE_RERANDOMIZED,
    SignatureShare,
    combine,
    rerandomized_nonce,
    rerandomizer,
)
from crypto_core.errors import DecodeError, PresignatureUsed, ProtocolAbort, UsageError
from crypto_core.group import Point, Q
from crypto_core.hazmat.presignature import load_presignature
from crypto_core.keyshare import KeyShare
from crypto_core.sign import PRESIG_MAGIC, Presignature

from ..conftest import scaled
from .sign_util import keygen, presign
from .test_sign import check_signature

VECTORS = Path(__file__).parent / "vectors" / "presign_rerandomize_v1.json"
TAG = b"MPCNET-DKLS23/v1/sign/presign-rerandomize/v1"  # written out: a silent tag change fails here
SESSION = b"W" * 32

_R_SEEN: set[int] = set()  # every r of every signature made in this module: none may repeat
_counter = itertools.count()


def _keys() -> dict[int, KeyShare]:
    return keygen(2, 3)


def _fresh(signers: tuple[int, ...], path: tuple[int, ...] = (), keys: dict[int, KeyShare] | None = None) -> dict[int, Presignature]:
    """Fresh presignatures of ``signers`` (a new deterministic seed each call: distinct R)."""
    return presign(keys or _keys(), signers, path=path, seed=b"pool" + next(_counter).to_bytes(4, "big"))


def _shares(pres: dict[int, Presignature], digest: bytes, path: tuple[int, ...], *, rerandomize: bool = True) -> dict[int, SignatureShare]:
    keys = _keys()
    out = {}
    for i, p in pres.items():
        p.mark_used()
        out[i] = p.signature_share(digest, key_id=keys[i].key_id, epoch=p.epoch or 0, derivation_path=path, rerandomize=rerandomize)
    return out


def _sign(signers: tuple[int, ...], digest: bytes, path: tuple[int, ...] = ()):  # type: ignore[no-untyped-def]
    pres = _fresh(signers, path)
    ref = next(iter(pres.values()))
    sig = combine(_shares(pres, digest, path), digest, signers=signers, public_key=ref.public_key, derivation_path=path)
    return sig, ref


def _note_r(r: int) -> None:
    assert r not in _R_SEEN, "an r value repeated: a presignature (or its R*) was used twice"
    _R_SEEN.add(r)


pairs = st.sampled_from([(1, 2), (1, 3), (2, 3)])
paths = st.lists(st.integers(0, 2**31 - 1), max_size=2).map(tuple)
digests = st.binary(min_size=32, max_size=32)


# --- binding -------------------------------------------------------------------------------------


@settings(max_examples=scaled(6), deadline=None)
@given(pairs, paths, digests)
def test_a_presignature_for_one_path_cannot_sign_for_another(signers, path, digest):
    """Made for m/path, it refuses m/path' (the node's check) and shares forced through for
    m/path do not combine into a signature under the key of m/path'."""
    other = (*path[:-1], path[-1] ^ 1) if path else (0,)
    pres = _fresh(signers, path)
    victim = pres[signers[0]]
    victim.mark_used()
    with pytest.raises(UsageError, match="derivation_path: .*another derivation path"):
        victim.signature_share(digest, key_id=_keys()[signers[0]].key_id, epoch=0, derivation_path=other, rerandomize=True)
    with pytest.raises(PresignatureUsed):  # the refused call consumed it
        victim.signature_share(digest, key_id=_keys()[signers[0]].key_id, epoch=0, derivation_path=path)
    pres = _fresh(signers, path)
    shares = _shares(pres, digest, path)
    from crypto_core.bip32 import derive

    k = _keys()[signers[0]]
    other_pk = derive(k.public_key, k.chain_code, other).public_key
    with pytest.raises(ProtocolAbort, match="does not verify"):
        combine(shares, digest, signers=signers, public_key=other_pk, derivation_path=other)
    with pytest.raises(ProtocolAbort, match="does not verify"):  # the right key, delta of another path
        combine(shares, digest, signers=signers, public_key=next(iter(pres.values())).public_key, derivation_path=other)


@settings(max_examples=scaled(4), deadline=None)
@given(digests)
def test_a_presignature_of_one_signer_set_cannot_combine_with_another(digest):
    """{1,2} and {1,3}: party 1's share of {1,2} with party 3's share of {1,3} never combine,
    and a signer asked for another set refuses."""
    a, b = _fresh((1, 2)), _fresh((1, 3))
    keys = _keys()
    a[1].mark_used()
    b[3].mark_used()
    shares = {
        1: a[1].signature_share(digest, key_id=keys[1].key_id, epoch=0, signers=(1, 2), rerandomize=True),
        3: b[3].signature_share(digest, key_id=keys[3].key_id, epoch=0, signers=(1, 3), rerandomize=True),
    }
    with pytest.raises(ProtocolAbort, match="disagree on signing session id"):
        combine(shares, digest, signers=(1, 3), public_key=keys[1].public_key, derivation_path=())
    with pytest.raises(ProtocolAbort, match="carries another signing session id"):  # a signer's own record names the culprit
        combine(shares, digest, signers=(1, 3), public_key=keys[1].public_key, derivation_path=(), presignature=b[1])
    c = _fresh((1, 2))
    c[1].mark_used()
    with pytest.raises(UsageError, match="signers: .*another signer set"):
        c[1].signature_share(digest, key_id=keys[1].key_id, epoch=0, signers=(1, 3))


def test_a_presignature_of_another_epoch_is_refused():
    """The record carries the key epoch (and sid_dkg) it was made at; another epoch is refused,
    also after a store round trip."""
    keys = {i: dataclasses.replace(k, epoch=7) for i, k in keygen(2, 3).items()}
    pres = _fresh((1, 2), keys=keys)
    assert all(p.epoch == 7 and p.sid_dkg == keys[1].sid_dkg for p in pres.values())
    revived = load_presignature(pres[1].to_bytes())
    assert (revived.epoch, revived.sid_dkg, revived.signers, revived.derivation_path) == (7, keys[1].sid_dkg, (1, 2), ())
    for p, bad in ((pres[1], 6), (revived, 8)):
        p.mark_used()
        with pytest.raises(UsageError, match="epoch: presignature was made at key epoch 7, not 6|not 8"):
            p.signature_share(bytes(32), key_id=keys[1].key_id, epoch=bad, rerandomize=True)
    p2 = pres[2]
    p2.mark_used()
    with pytest.raises(UsageError, match="epoch"):
        p2.signature_share(bytes(32), key_id=keys[2].key_id, epoch=True)  # type: ignore[arg-type]


# --- re-randomised signatures ----------------------------------------------------------------------


@settings(max_examples=scaled(10), deadline=None)
@given(pairs, paths, digests)
def test_every_rerandomized_signature_verifies_and_r_is_fresh(signers, path, digest):
    sig, ref = _sign(signers, digest, path)
    check_signature(sig, ref.public_key, digest)  # OpenSSL (Prehashed SHA-256), libsecp256k1, recovery
    delta = rerandomizer(ref.sigid, ref.R, ref.public_key, path, digest)
    assert sig.r == rerandomized_nonce(ref.R, delta).x % Q
    assert sig.r != ref.r  # the signature's nonce is R*, not the R the coordinator saw early
    _note_r(sig.r)
    _note_r(ref.r)


def test_three_of_four_rerandomized_signs():
    keys = keygen(3, 4)
    pres = presign(keys, (1, 2, 4), path=(5,), seed=b"three")
    digest = hashlib.sha256(b"three of four").digest()
    shares = {}
    for i, p in pres.items():
        p.mark_used()
        shares[i] = p.signature_share(digest, key_id=keys[i].key_id, epoch=0, derivation_path=(5,), rerandomize=True)
    pk = pres[1].public_key
    sig = combine(shares, digest, signers=(1, 2, 4), public_key=pk, derivation_path=(5,))
    check_signature(sig, pk, digest)
    _note_r(sig.r)


def test_the_plain_share_format_is_unchanged():
    """Without re-randomisation: version 1, 201 bytes, r = x(R) (the full protocol's shares)."""
    pres = _fresh((1, 3))
    digest = bytes(range(32))
    shares = _shares(pres, digest, (), rerandomize=False)
    assert {len(s.to_bytes(SESSION)) for s in shares.values()} == {201}
    assert all(s.version == SHARE_PLAIN for s in shares.values())
    sig = combine(shares, digest, signers=(1, 3), public_key=pres[1].public_key)
    assert sig.r == pres[1].r
    _note_r(sig.r)


# --- tampering and the wire ------------------------------------------------------------------------


def _rr_shares(digest: bytes) -> tuple[dict[int, SignatureShare], Point]:
    pres = _fresh((2, 3))
    return _shares(pres, digest, ()), pres[2].public_key


@pytest.mark.parametrize("field", ["u", "w", "R", "digest", "sigid"])
def test_combine_refuses_a_tampered_rerandomized_share(field):
    digest = hashlib.sha256(field.encode()).digest()
    shares, pk = _rr_shares(digest)
    sh = shares[3]
    bad = {
        "u": lambda: dataclasses.replace(sh, u=(sh.u + 1) % Q),
        "w": lambda: dataclasses.replace(sh, w=(sh.w + 1) % Q),
        "R": lambda: dataclasses.replace(sh, R=sh.R + Point.base_mul(1)),
        "digest": lambda: dataclasses.replace(sh, digest=bytes(32)),
        "sigid": lambda: dataclasses.replace(sh, sigid=bytes(32)),
    }[field]()
    with pytest.raises(ProtocolAbort):
        combine({2: shares[2], 3: bad}, digest, signers=(2, 3), public_key=pk, derivation_path=())


def test_combine_refuses_an_unrandomized_share_among_rerandomized_ones():
    """A signer that sends the plain w (or skips delta*phi in u) gives no signature: mixed
    versions are refused, and a version-2 share computed on R fails verification."""
    digest = hashlib.sha256(b"mixed").digest()
    pres = _fresh((1, 2))
    keys = _keys()
    pres[1].mark_used()
    pres[2].mark_used()
    s1 = pres[1].signature_share(digest, key_id=keys[1].key_id, epoch=0, rerandomize=True)
    s2 = pres[2].signature_share(digest, key_id=keys[2].key_id, epoch=0, rerandomize=False)
    pk = pres[1].public_key
    with pytest.raises(ProtocolAbort, match="share format version"):
        combine({1: s1, 2: s2}, digest, signers=(1, 2), public_key=pk, derivation_path=())
    relabelled = dataclasses.replace(s2, version=SHARE_RERANDOMIZED)
    with pytest.raises(ProtocolAbort, match="does not verify"):
        combine({1: s1, 2: relabelled}, digest, signers=(1, 2), public_key=pk, derivation_path=())
    with pytest.raises(UsageError, match="derivation_path: required"):
        combine({1: s1, 2: relabelled}, digest, signers=(1, 2), public_key=pk)


def test_rerandomized_share_wire_round_trip_and_strict_decoding():
    digest = hashlib.sha256(b"wire").digest()
    shares, pk = _rr_shares(digest)
    wire = {i: s.to_bytes(SESSION) for i, s in shares.items()}
    assert {len(b) for b in wire.values()} == {202}
    back = {i: SignatureShare.from_bytes(b, SESSION, i) for i, b in wire.items()}
    assert back == shares
    sig = combine(back, digest, signers=(2, 3), public_key=pk, derivation_path=())
    check_signature(sig, pk, digest)
    _note_r(sig.r)
    raw = bytearray(wire[2])
    raw[40] = 3  # the version byte after the 40-byte header
    with pytest.raises(ProtocolAbort) as e:
        SignatureShare.from_bytes(bytes(raw), SESSION, 2)
    assert e.value.party == 2
    with pytest.raises(ProtocolAbort):  # a trailing byte
        SignatureShare.from_bytes(wire[2] + b"\0", SESSION, 2)
    with pytest.raises(UsageError, match="version"):
        SignatureShare(1, bytes(32), pk, digest, 1, 1, 9)


# --- records ------------------------------------------------------------------------------------


def _v1_record(v2: bytes) -> bytes:
    """The version-1 layout of a v2 record: no epoch, no sid_dkg (as issue 13 wrote them)."""
    head = len(PRESIG_MAGIC)
    body = v2[head + 2 :]
    fixed = 1 + 2 + 32 + 32  # status, index, sigid, key_id
    return PRESIG_MAGIC + (1).to_bytes(2, "big") + body[:fixed] + body[fixed + 4 + 32 :]


def test_record_v1_still_decodes_and_never_signs():
    pre = _fresh((1, 2))[1]
    record = pre.to_bytes()
    assert record[len(PRESIG_MAGIC) : len(PRESIG_MAGIC) + 2] == (2).to_bytes(2, "big")
    old = load_presignature(_v1_record(record))
    assert (old.version, old.epoch, old.sid_dkg, old.sigid, old.R) == (1, None, None, pre.sigid, pre.R)
    tomb = old.mark_used()
    assert load_presignature(tomb).used and tomb[len(PRESIG_MAGIC) + 1] == 1  # a v1 tombstone stays v1
    with pytest.raises(UsageError, match="version-1 record carries no key epoch"):
        old.signature_share(bytes(32), key_id=pre.key_id, epoch=0)
    with pytest.raises(DecodeError, match="version"):
        load_presignature(PRESIG_MAGIC + (3).to_bytes(2, "big") + record[len(PRESIG_MAGIC) + 2 :])
    with pytest.raises(DecodeError):  # a v2 record cut short where epoch and sid_dkg belong
        load_presignature(record[: len(PRESIG_MAGIC) + 2 + 67 + 10])


def test_presignature_constructor_checks_epoch_and_sid_dkg():
    pre = _fresh((1, 2))[1]
    base = dict(
        index=1, sigid=pre.sigid, key_id=pre.key_id, public_key=pre.public_key, derivation_path=(), signers=(1, 2), R=pre.R,
        _secret=None,
    )
    bads = (
        {"epoch": 1, "sid_dkg": None},
        {"epoch": None, "sid_dkg": bytes(32)},
        {"epoch": 1, "sid_dkg": bytes(31)},
        {"epoch": -1, "sid_dkg": bytes(32)},
    )
    for bad in bads:
        with pytest.raises(UsageError):
            Presignature(**base, **bad)  # type: ignore[arg-type]


# --- vectors ------------------------------------------------------------------------------------


def _independent_delta(sigid: bytes, R: bytes, pk: bytes, path: list[int], digest: bytes) -> int:
    """delta from the spec text alone: SHAKE-256 (64 bytes) over u64-length-framed parts, mod q."""

    def frame(*parts: bytes) -> bytes:
        return b"".join(len(p).to_bytes(8, "big") + p for p in parts)

    path_part = len(path).to_bytes(4, "big") + frame(*(c.to_bytes(4, "big") for c in path))
    return int.from_bytes(hashlib.shake_256(frame(TAG, sigid, R, pk, path_part, digest)).digest(64), "big") % Q


def _vector_cases() -> list[dict[str, object]]:
    cases = []
    for n, path in enumerate([[], [0], [1], [0, 7], [2**31 - 1, 5, 9]]):
        sigid = hashlib.sha256(b"vector sigid %d" % n).digest()
        k = int.from_bytes(hashlib.sha256(b"vector k %d" % n).digest(), "big") % Q
        x = int.from_bytes(hashlib.sha256(b"vector pk %d" % n).digest(), "big") % Q
        digest = hashlib.sha256(b"vector digest %d" % n).digest()
        R, pk = Point.base_mul(k), Point.base_mul(x)
        delta = rerandomizer(sigid, R, pk, path, digest)
        R_star = rerandomized_nonce(R, delta)
        cases.append({
            "sigid": sigid.hex(), "R": R.encode().hex(), "public_key": pk.encode().hex(), "derivation_path": path,
            "digest": digest.hex(), "delta": f"{delta:064x}", "R_star": R_star.encode().hex(), "r_star": f"{R_star.x % Q:064x}",
        })
    return cases


def test_rerandomization_vectors():
    doc = json.loads(VECTORS.read_text())
    assert doc["tag"] == TAG.decode()
    assert doc["vectors"] == _vector_cases()
    for v in doc["vectors"]:
        sigid, R, pk, digest = (bytes.fromhex(v[f]) for f in ("sigid", "R", "public_key", "digest"))
        delta = _independent_delta(sigid, R, pk, v["derivation_path"], digest)
        assert f"{delta:064x}" == v["delta"]
        R_star = Point.decode(R) + Point.base_mul(delta)
        assert R_star.encode().hex() == v["R_star"] and f"{R_star.x % Q:064x}" == v["r_star"]


def _write_vectors() -> None:
    doc = {
        "description": "Groth-Shoup re-randomisation of pool presignatures (crypto_core.combiner.rerandomizer): "
        "delta = Hq(tag; sigid, R, PK', path, digest), R* = R + delta*G, r* = x(R*) mod q",
        "generator": "python -m tests.crypto.test_presign_pool_props",
        "tag": TAG.decode(),
        "vectors": _vector_cases(),
    }
    VECTORS.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    _write_vectors()
    sys.exit(0)
