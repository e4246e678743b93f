from __future__ import annotations

from crypto_core.combiner import Signature, combine
from crypto_core.keyshare import KeyShare
from crypto_core.local import Tamper, run
from crypto_core.rng import DeterministicRng
from crypto_core.sign import Presignature, PresignParty, SignConfig

from .dkg_util import keygen


def presign(
    keys: dict[int, KeyShare], signers, session=b"P" * 32, path=(), seed=b"ps", tamper: Tamper | None = None
) -> dict[int, Presignature]:
    ps = {i: PresignParty(keys[i], SignConfig(session, tuple(signers), tuple(path)), DeterministicRng(seed + bytes([i]))) for i in signers}
    run(ps, tamper)
    return {i: p.result for i, p in ps.items()}


def sign(keys, signers, digest: bytes, path=(), seed=b"ps", session=b"P" * 32) -> Signature:
    pres = presign(keys, signers, session=session, path=path, seed=seed)
    shares = {}
    for i, pre in pres.items():
        pre.mark_used()
        shares[i] = pre.signature_share(digest, key_id=keys[i].key_id, epoch=keys[i].epoch, derivation_path=path)
    return combine(shares, digest, signers=signers, public_key=next(iter(pres.values())).public_key)


__all__ = ["keygen", "presign", "sign"]
