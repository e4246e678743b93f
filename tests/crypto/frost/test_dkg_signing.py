"""Keys from the FROST DKG sign through RFC 9591 signing (piece A1) for random signer subsets and
messages; every signature verifies under independent libraries; a record that went through
to_bytes/from_bytes signs the same way."""

from __future__ import annotations

from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings, strategies as st

from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.signing import SigningPackage, aggregate, commit, sign_share, signing_key, verify_signature
from crypto_core.rng import DeterministicRng

from ...conftest import scaled
from .frost_util import SCHEMES, keygen


@settings(max_examples=scaled(8), deadline=None)
@given(scheme=st.sampled_from(SCHEMES), tn=st.sampled_from([(2, 2), (2, 3), (3, 5)]),
       order=st.permutations(range(1, 6)), subset_seed=st.integers(0, 255), message=st.binary(min_size=0, max_size=80),
       root=st.sampled_from([b"", b"\x07" * 32]))
def test_dkg_keys_sign_and_verify_independently(scheme, tn, order, subset_seed, message, root) -> None:
    t, n = tn
    shares = keygen(scheme, t, n)
    signers = sorted([i for i in order if i <= n][:t])
    keys = {i: FrostKeyShare.from_bytes(shares[i - 1].to_bytes()) for i in signers}
    if scheme != "ed25519":
        message = (message * 32)[:32].ljust(32, b"m")  # BIP340 signs a 32-byte message here
    else:
        root = b""
    rng = DeterministicRng(b"nonces" + bytes([subset_seed]))
    nonces, commitments = {}, []
    for i in signers:
        nonces[i], c = commit(scheme, keys[i].secret_share, rng, identifier=i)
        commitments.append(c)
    package = SigningPackage(scheme, message, tuple(commitments), taproot_root=root)
    sig_shares = {i: sign_share(keys[i], nonces[i], package) for i in signers}
    public = shares[0].public()
    sig = aggregate(public, package, sig_shares)
    assert len(sig) == 64
    assert verify_signature(scheme, public.public_key, message, sig, taproot_root=root)
    vk = signing_key(scheme, public.public_key, taproot_root=root)
    if scheme == "ed25519":
        Ed25519PublicKey.from_public_bytes(vk).verify(sig, message)  # OpenSSL; raises if invalid
    else:
        assert PublicKeyXOnly(vk).verify(sig, message)
