from hypothesis import given, strategies as st

from crypto_core import schnorr
from crypto_core.group import INFINITY, G, Point, Q
from crypto_core.rng import DeterministicRng

scalars = st.integers(min_value=1, max_value=Q - 1)


@given(scalars, st.binary(max_size=16))
def test_complete_and_sound_against_changes(x, seed):
    rng = DeterministicRng(seed)
    X = Point.base_mul(x)
    ctx = b"sid|party 1|coef 0"
    proof = schnorr.prove(x, X, ctx, rng)
    assert schnorr.verify(proof, X, ctx)
    assert not schnorr.verify(proof, X, ctx + b"!")  # other session / index / label
    assert not schnorr.verify(proof, X + G, ctx)  # other statement
    assert not schnorr.verify(schnorr.SchnorrProof(proof.commitment, (proof.response + 1) % Q), X, ctx)
    assert not schnorr.verify(schnorr.SchnorrProof(proof.commitment + G, proof.response), X, ctx)
    assert not schnorr.verify(schnorr.SchnorrProof(INFINITY, proof.response), X, ctx)
    assert not schnorr.verify(proof, INFINITY, ctx)
