"""Vectorised exact arithmetic mod q on many 256-bit values at once (numpy limbs, no Python ints).

The RVOLE (notes section 5) reduces thousands of values mod q per run: ``a~`` (``3 * XI``
differences of pads) and the ``mu`` inputs (``XI`` linear combinations with the 256-bit
``theta``). Per-element Python integers cost about a microsecond each; here every value is a
column of a limb matrix and every step is one numpy call over all of them. The results are the
canonical 32-byte big-endian encodings in ``[0, q)``, byte for byte what
``(v % Q).to_bytes(32, "big")`` gives (the tests check it against Python integers).

Two limb forms:

* *16-bit limbs, float64, most significant first*, shape ``(N, 16 * k)`` (:func:`limbs16`): the
  input of float64 matrix products. A product of two such limbs is below ``2^32`` and a sum of
  fewer than ``2^21`` of them is an integer below ``2^53``, so float64 is exact.
* *32-bit limbs, int64, least significant first*, shape ``(K, N)`` (column ``n`` is one value
  ``sum_i x[i, n] * 2^(32 i)``): carries and the reduction. Limbs may be negative or exceed
  ``2^32`` between steps (int64 shifts are arithmetic, so a carry pass is exact for any limbs
  whose total is non-negative and below ``2^(32 K)``).

Reduction uses ``q = 2^256 - c`` with ``c < 2^129``: the part above ``2^256`` is replaced by
its residues ``2^(256 + 16 m) mod q`` (one float64 product), three times, which brings any value
below ``2^(256 + 32 * 8)`` under ``2^256``; then one conditional subtraction of ``q`` (add ``c``
and keep the sum where it carries past ``2^256``). The number of numpy steps depends only on the
shapes, never on the values.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from ..errors import UsageError
from ..group import SCALAR_LEN, Q

F64Array = npt.NDArray[np.float64]
I64Array = npt.NDArray[np.int64]

LIMBS16 = SCALAR_LEN // 2  # 16-bit limbs per 256-bit value
LIMBS32 = SCALAR_LEN // 4  # 32-bit limbs per 256-bit value
_M32 = np.int64(0xFFFFFFFF)
_M16 = np.int64(0xFFFF)
_C = (1 << 256) - Q  # q = 2^256 - c
_MAX_LIMBS32 = 2 * LIMBS32 + 1  # inputs below 2^544 at most (see reduce)
assert _C < 1 << 129


def _split32(v: int, count: int) -> list[int]:
    """``v`` as ``count`` 32-bit limbs, least significant first."""
    return [(v >> (32 * i)) & 0xFFFFFFFF for i in range(count)]


@functools.cache
def _residues(count: int) -> F64Array:
    """``(LIMBS32, count)`` float64: column ``m`` = 32-bit limbs of ``2^(256 + 16 m) mod q``."""
    cols = [_split32(pow(2, 256 + 16 * m, Q), LIMBS32) for m in range(count)]
    return np.array(cols, dtype=np.float64).T.copy()


_C_LIMBS = np.array(_split32(_C, LIMBS32), dtype=np.int64).reshape(LIMBS32, 1)


def limbs16(buf: bytes, count: int, per: int, slots: int) -> F64Array:
    """``count`` records of ``per`` 32-byte big-endian values -> ``(count, 16 * slots)`` float64
    16-bit limbs of the first ``slots`` values of every record, slot after slot, most significant
    limb first. Raises ``UsageError`` when ``buf`` is shorter than ``count * per * 32`` bytes."""
    if len(buf) < count * per * SCALAR_LEN:
        raise UsageError(f"modq: need {count * per * SCALAR_LEN} bytes, got {len(buf)}")
    arr = np.frombuffer(buf, dtype=">u2", count=count * per * LIMBS16).reshape(count, per, LIMBS16)
    return arr[:, :slots, :].reshape(count, LIMBS16 * slots).astype(np.float64)


def limbs32(buf: bytes, count: int, per: int, slot: int) -> I64Array:
    """Slot ``slot`` of ``count`` records of ``per`` 32-byte big-endian values -> ``(8, count)``
    int64 32-bit limbs, least significant first. Raises ``UsageError`` for a short ``buf``."""
    if len(buf) < count * per * SCALAR_LEN or not 0 <= slot < per:
        raise UsageError(f"modq: need {count * per * SCALAR_LEN} bytes and a slot below {per}")
    arr = np.frombuffer(buf, dtype=">u4", count=count * per * LIMBS32).astype(np.int64).reshape(count, per, LIMBS32)
    out: I64Array = np.ascontiguousarray(arr[:, slot, ::-1].T)
    return out


def constant32(v: int, limbs: int = LIMBS32 + 1) -> I64Array:
    """Non-negative ``v < 2^(32 limbs)`` as a ``(limbs, 1)`` int64 column (broadcasts over values)."""
    if not 0 <= v < 1 << (32 * limbs):
        raise UsageError("modq: constant out of range")
    return np.array(_split32(v, limbs), dtype=np.int64).reshape(limbs, 1)


_ROWS, _COLS = np.meshgrid(np.arange(LIMBS16), np.arange(LIMBS16), indexing="ij")


def times_scalar(s: int) -> F64Array:
    """``(16, 31)`` float64: ``X @ times_scalar(s)`` gives, for 16 most-significant-first limbs
    ``X`` of a value ``x``, the 31 limb sums (most significant first) of ``x * s``; ``0 <= s < 2^256``."""
    if not 0 <= s < 1 << 256:
        raise UsageError("modq: scalar out of range")
    sl = [(s >> (16 * (LIMBS16 - 1 - b))) & 0xFFFF for b in range(LIMBS16)]  # most significant first
    out = np.zeros((LIMBS16, 2 * LIMBS16 - 1), dtype=np.float64)
    out[_ROWS, _ROWS + _COLS] = np.array(sl, dtype=np.float64)[_COLS]  # M[a, a + b] = s_b
    return out


def identity_sums() -> F64Array:
    """``(16, 31)`` float64: ``X @ identity_sums()`` places a value's 16 limbs as the low 16 of
    31 limb sums (the same shape as :func:`times_scalar`)."""
    out = np.zeros((LIMBS16, 2 * LIMBS16 - 1), dtype=np.float64)
    out[np.arange(LIMBS16), np.arange(LIMBS16 - 1, 2 * LIMBS16 - 1)] = 1.0
    return out


def sums_to_limbs32(sums: F64Array) -> I64Array:
    """``(N, W)`` float64 16-bit limb sums, most significant first (each below ``2^38``) ->
    ``(ceil(W / 2) + 1, N)`` int64 32-bit limb sums, least significant first (not carried; the
    top limb is a zero of headroom, so the total is below ``2^(32 K)`` for :func:`reduce`)."""
    n, w = sums.shape
    rev = np.zeros((n, w + (w & 1) + 2), dtype=np.int64)
    rev[:, :w] = sums[:, ::-1]
    out: I64Array = np.ascontiguousarray((rev[:, 0::2] + (rev[:, 1::2] << 16)).T)
    return out


def _passes(x: I64Array, count: int = 2) -> None:
    """``count`` parallel carry passes in place (3 numpy calls each, whatever the values).

    For non-negative limbs below ``2^55``, two passes leave limbs ``0..K-2`` in ``[0, 2^32]``
    (redundant: a limb may equal ``2^32``) and the top limb with everything else.
    """
    for _ in range(count):
        c = x[:-1] >> 32
        x[:-1] &= _M32
        x[1:] += c


def _fold(x: I64Array) -> I64Array:
    """``(K, N)`` limbs after :func:`_passes`, ``K > 8`` -> ``(9, N)`` limbs (after two passes)
    of a congruent value: the low 256 bits plus the residues of the 16-bit pieces above
    ``2^256``. The float64 product has at most 8 * 18 * N <= 2^18 multiply-adds for N <= 1820:
    below OpenBLAS's threading threshold, so it runs on the calling thread only."""
    hi = x[LIMBS32:]
    hi16 = np.empty((2 * hi.shape[0], hi.shape[1]), dtype=np.float64)
    hi16[0::2] = hi & _M16
    hi16[1::2] = hi >> 16
    out = np.zeros((LIMBS32 + 1, x.shape[1]), dtype=np.int64)
    out[:LIMBS32] = x[:LIMBS32]
    out[:LIMBS32] += (_residues(hi16.shape[0]) @ hi16).astype(np.int64)
    _passes(out)
    return out


def reduce(x: I64Array) -> bytes:
    """``(K, N)`` int64 32-bit limbs, least significant first, of ``N`` values ``v_n`` with
    ``0 <= v_n < 2^(32 K)``, ``9 <= K <= 17``, every limb in ``[0, 2^55)`` ->
    the ``N`` canonical 32-byte big-endian encodings of ``v_n mod q``, concatenated.

    ``x`` is modified. Raises ``UsageError`` for another shape.
    """
    if x.ndim != 2 or not LIMBS32 < x.shape[0] <= _MAX_LIMBS32 or x.dtype != np.int64:
        raise UsageError(f"modq: expected (K, N) int64 limbs with 8 < K <= {_MAX_LIMBS32}")
    _passes(x)
    # Bounds (every limb but the top one in [0, 2^32] after the passes, the top one below 2^33):
    # fold 1: at most 18 16-bit pieces above 2^256, each below 2^17, residue limbs below 2^32:
    #   every float64 sum is below 18 * 2^49 < 2^53, exact; v < 2^256 + 2^225 + 18 * 2^17 q, so
    #   the top limb is below 2^24 (K = 9: the pieces are the top limb's, v < 2^256 + 2^225 + 2^163).
    # fold 2 (K > 9 only): v < (2^256 + 2^225) + 2^16 c + 2^8 * 2^16 c < 2^257.
    x = _fold(x) if x.shape[0] == LIMBS32 + 1 else _fold(_fold(x))
    # exact: carry v and v + c limb by limb (side by side: columns n and N + n); v mod q is
    # (v + c) - 2^256 when v + c >= 2^256 (v >= q, or v >= 2^256: then v - 2^256 + c < 2^226 < q),
    # else v
    n = x.shape[1]
    vw = np.concatenate((x, x), axis=1)
    vw[:LIMBS32, n:] += _C_LIMBS
    for i in range(LIMBS32):
        c = vw[i] >> 32
        vw[i] &= _M32
        vw[i + 1] += c
    res = np.where(vw[LIMBS32, n:] != 0, vw[:LIMBS32, n:], vw[:LIMBS32, :n])
    return res[::-1].T.astype(">u4").tobytes()


def lincomb(terms: list[tuple[F64Array, F64Array]]) -> bytes:
    """``sum_t X_t @ M_t`` (16-bit limb matrices ``X_t`` of shape ``(N, 16)`` and coefficient
    matrices ``M_t`` from :func:`times_scalar` / :func:`identity_sums`), reduced mod q: ``N``
    canonical 32-byte big-endian values, concatenated. At most 64 terms (sums stay below 2^38)."""
    if not 0 < len(terms) <= 64:
        raise UsageError("modq: between 1 and 64 terms")
    # one product per term: (N, 16) @ (16, 31) stays below OpenBLAS's threading threshold
    # (2^18 multiply-adds) for N <= 528, so no worker threads spin for these small products
    sums = terms[0][0] @ terms[0][1]
    for lhs, rhs in terms[1:]:
        sums += lhs @ rhs
    return reduce(sums_to_limbs32(sums))
