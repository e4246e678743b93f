"""Signing by any t of n: independent verification, low-s, recovery id, presignature rules."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PublicKey
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from hypothesis import given, settings, strategies as st

from crypto_core import bip32
from crypto_core.combiner import recover
from crypto_core.errors import DecodeError, PresignatureUsed, UsageError
from crypto_core.group import HALF_Q, Point, Q
from crypto_core.hazmat.presignature import load_presignature
from crypto_core.shamir import interpolate_at_zero
from crypto_core.sign import PresignParty, SignConfig

from ..conftest import scaled
from .sign_util import keygen, presign, sign


def openssl_verify(pubkey: Point, der: bytes, digest: bytes) -> bool:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pubkey.encode())
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except InvalidSignature:
        return False


def check_signature(sig, pubkey: Point, digest: bytes) -> None:
    assert openssl_verify(pubkey, sig.der(), digest)
    assert PublicKey(pubkey.encode()).verify(sig.der(), digest, hasher=None)
    assert 0 < sig.s <= HALF_Q
    assert recover(sig, digest) == pubkey
    assert not openssl_verify(pubkey, sig.der(), hashlib.sha256(digest).digest())  # negative control


@st.composite
def setup(draw, max_n=5):
    n = draw(st.integers(2, max_n))
    t = draw(st.integers(2, n))
    signers = draw(st.lists(st.integers(1, n), min_size=t, max_size=t, unique=True))
    return t, n, tuple(sorted(signers))


@settings(max_examples=scaled(8))
@given(setup(), st.binary(min_size=32, max_size=32), st.binary(max_size=4))
def test_any_t_subset_signs(params, digest, seed):
    t, n, signers = params
    keys = keygen(t, n)
    sig = sign(keys, signers, digest, seed=b"s" + seed)
    check_signature(sig, keys[signers[0]].public_key, digest)


@settings(max_examples=scaled(4))
@given(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=3), st.binary(min_size=32, max_size=32))
def test_derived_key_signatures(path, digest):
    keys = keygen(2, 3)
    d = bip32.derive(keys[1].public_key, keys[1].chain_code, path)
    sig = sign(keys, (1, 2), digest, path=tuple(path))
    check_signature(sig, d.public_key, digest)
    assert d.public_key != keys[1].public_key


def test_fewer_than_t_signers_cannot_sign():
    keys = keygen(3, 4)
    with pytest.raises(UsageError, match="exactly t"):
        PresignParty(keys[1], SignConfig(b"P" * 32, (1, 2)))
    # white-box: t-1 shares do not determine the key
    sk2 = interpolate_at_zero({1: keys[1].secret_share, 2: keys[2].secret_share})
    assert Point.base_mul(sk2) != keys[1].public_key


@pytest.mark.parametrize("signers", [(1, 1), (0, 1), (1, 9), (2, 3)])
def test_bad_signer_sets(signers):
    keys = keygen(2, 3)
    with pytest.raises(UsageError):
        PresignParty(keys[1], SignConfig(b"P" * 32, signers))


def test_banned_peer_refused():
    keys = keygen(2, 3)
    with pytest.raises(UsageError, match="banned"):
        PresignParty(keys[1], SignConfig(b"P" * 32, (1, 2), banned=frozenset({2})))


def test_presignature_one_time_and_bound():
    keys = keygen(2, 3)
    pres = presign(keys, (1, 2), seed=b"once")
    pre = pres[1]
    digest = bytes(32)
    with pytest.raises(UsageError, match="mark_used"):
        pre.signature_share(digest, key_id=keys[1].key_id, epoch=keys[1].epoch)
    tomb = pre.mark_used()
    with pytest.raises(PresignatureUsed):
        pre.mark_used()
    pre.signature_share(digest, key_id=keys[1].key_id, epoch=keys[1].epoch)
    with pytest.raises(PresignatureUsed):
        pre.signature_share(digest, key_id=keys[1].key_id, epoch=keys[1].epoch)
    # bound to its key and path; a refused call discards it (fails closed, nothing to retry with)
    for bad in (
        {"key_id": keygen(2, 3, b"other")[1].key_id, "epoch": 0},
        {"key_id": keys[1].key_id, "epoch": 0, "derivation_path": (1,)},
        {"key_id": keys[1].key_id, "epoch": 1},
    ):
        other = presign(keys, (1, 2), seed=b"bound")[1]
        other.mark_used()
        with pytest.raises(UsageError, match="another key|derivation path|key epoch 0, not 1"):
            other.signature_share(digest, **bad)
        with pytest.raises(PresignatureUsed):
            other.signature_share(digest, key_id=keys[1].key_id, epoch=keys[1].epoch)
    # the tombstone is checkable from storage and refuses to sign
    dead = load_presignature(tomb)
    assert dead.used and dead.sigid == pre.sigid
    with pytest.raises(PresignatureUsed):
        dead.mark_used()
    assert pre.to_bytes() == tomb


def test_presignature_for_path_refuses_master_key():
    keys = keygen(2, 3)
    pre = presign(keys, (2, 3), path=(7,), seed=b"path")[2]
    pre.mark_used()
    with pytest.raises(UsageError, match="derivation path"):
        pre.signature_share(bytes(32), key_id=keys[2].key_id, epoch=keys[2].epoch, derivation_path=())


def test_presignature_serialization_round_trip():
    keys = keygen(2, 3)
    pre = presign(keys, (1, 3), path=(1, 2), seed=b"ser")[3]
    data = pre.to_bytes()
    again = load_presignature(data)
    assert again.to_bytes() == data and not again.used
    assert again.R == pre.R and again.derivation_path == (1, 2) and again.signers == (1, 3)
    for bad in (data[:-1], data + b"\x00", b"X" + data[1:]):
        with pytest.raises(DecodeError):
            load_presignature(bad)


def test_signature_from_restored_presignatures():
    """Presignatures survive serialization: sign from the stored records."""
    from crypto_core.combiner import combine

    keys = keygen(2, 3)
    pres = presign(keys, (1, 2), seed=b"restore")
    digest = hashlib.sha256(b"hello").digest()
    shares = {}
    for i, pre in pres.items():
        again = load_presignature(pre.to_bytes())
        again.mark_used()  # a revived record is a pool presignature: re-randomised shares only
        shares[i] = again.signature_share(digest, key_id=keys[i].key_id, epoch=keys[i].epoch, rerandomize=True)
    sig = combine(shares, digest, signers=(1, 2), public_key=keys[1].public_key, derivation_path=())
    check_signature(sig, keys[1].public_key, digest)


def test_same_presignature_twice_would_leak_the_key():
    """Documentation test: two signatures on one R reveal the key; hence the one-time rule.
    Re-randomisation does not help: the revived copy signs on R* = R + [delta], one more known
    offset in the same two linear equations."""
    from crypto_core.combiner import combine

    keys = keygen(2, 2)
    pres = presign(keys, (1, 2), seed=b"leak")
    again = {i: load_presignature(p.to_bytes()) for i, p in pres.items()}  # a restored backup
    h1, h2 = hashlib.sha256(b"m1").digest(), hashlib.sha256(b"m2").digest()
    sigs = []
    for batch, h, rr in ((pres, h1, False), (again, h2, True)):
        shares = {}
        for i, p in batch.items():
            p.mark_used()
            shares[i] = p.signature_share(h, key_id=keys[i].key_id, epoch=keys[i].epoch, rerandomize=rr)
        sigs.append(combine(shares, h, signers=(1, 2), public_key=keys[1].public_key, derivation_path=()))
    from crypto_core.combiner import rerandomizer

    d2 = rerandomizer(pres[1].sigid, pres[1].R, keys[1].public_key, (), h2)
    (s1, s2), (r1, r2) = (sigs[0].s, sigs[1].s), (sigs[0].r, sigs[1].r)
    z1, z2 = int.from_bytes(h1, "big") % Q, int.from_bytes(h2, "big") % Q
    for e1, e2 in ((1, 1), (1, -1), (-1, 1), (-1, -1)):  # low-s normalisation may have flipped either s
        # a_i k - r_i sk = b_i with a_i = +-s_i: s1 k = z1 + r1 sk, s2 (k + d2) = z2 + r2 sk
        a1, a2 = e1 * s1 % Q, e2 * s2 % Q
        b1, b2 = z1, (z2 - a2 * d2) % Q
        det = (a2 * r1 - a1 * r2) % Q
        sk = (a1 * b2 - a2 * b1) * pow(det, -1, Q) % Q
        if Point.base_mul(sk) == keys[1].public_key:
            break
    else:
        raise AssertionError("key not recovered")


# --- BIP32 against the BIP-0032 test vector 1 (public derivation from m/0H) -----------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58decode(s: str) -> bytes:
    n = 0
    for ch in s:
        n = n * 58 + _B58.index(ch)
    raw = n.to_bytes(82, "big").lstrip(b"\x00")
    raw = raw.rjust(82, b"\x00")[-82:]
    body, chk = raw[:-4], raw[-4:]
    assert hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4] == chk
    return body


def _parse_xpub(s: str) -> tuple[bytes, Point, int, bytes]:
    b = _b58decode(s)
    return b[13:45], Point.decode(b[45:78]), b[4], b[5:9]


def test_bip32_public_derivation_matches_test_vector():
    # BIP-0032 test vector 1: chain m/0H and m/0H/1
    cc, pk, depth, _ = _parse_xpub(
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw"
    )
    want_cc, want_pk, want_depth, want_parent = _parse_xpub(
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ"
    )
    d = bip32.derive(pk, cc, [1])
    assert d.public_key == want_pk and d.chain_code == want_cc
    assert d.parent_fingerprint == want_parent and want_depth == depth + 1


def test_bip32_rejects_hardened_and_bad_paths():
    with pytest.raises(UsageError, match="hardened"):
        bip32.parse_path("m/0'/1")
    with pytest.raises(UsageError):
        bip32.parse_path("m/x")
    assert bip32.parse_path("m/0/1/2") == (0, 1, 2)
    assert bip32.parse_path("m") == ()


def test_keys_with_256_base_ots_sign():
    keys = keygen(2, 3, b"lambda256", lambda_c=256)
    digest = hashlib.sha256(b"two security levels").digest()
    check_signature(sign(keys, (2, 3), digest, seed=b"l256"), keys[1].public_key, digest)


def test_combine_refuses_a_public_key_or_digest_that_is_not_one_before_blaming_the_signers():
    """The caller's expected key and digest are checked first: the point at infinity, SEC1 bytes
    instead of a Point, or a 32-character str digest ran the whole combination and ended in
    ProtocolAbort "a signer misbehaved", blaming honest signers for the caller's input."""
    from crypto_core.combiner import combine
    from crypto_core.group import INFINITY

    keys = keygen(2, 2)
    pres = presign(keys, (1, 2), seed=b"inputs")
    digest = hashlib.sha256(b"inputs").digest()
    for p in pres.values():
        p.mark_used()
    shares = {i: p.signature_share(digest, key_id=keys[i].key_id, epoch=keys[i].epoch) for i, p in pres.items()}
    for bad in (INFINITY, keys[1].public_key.encode(), None):
        with pytest.raises(UsageError, match="^public_key: "):
            combine(shares, digest, signers=(1, 2), public_key=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="^digest: "):
        combine(shares, "x" * 32, signers=(1, 2), public_key=keys[1].public_key)  # type: ignore[arg-type]
    check_signature(combine(shares, digest, signers=(1, 2), public_key=keys[1].public_key), keys[1].public_key, digest)
