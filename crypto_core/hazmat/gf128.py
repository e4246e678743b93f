"""GF(2^128) with the polynomial ``x^128 + x^7 + x^2 + x + 1`` (notes sections 1.3 and 4).

An element is a Python ``int`` whose bit ``i`` is the coefficient of ``x^i``. Its 16-byte block
form is little-endian: byte 0 holds the lowest coefficients, so bit ``j`` of a block is
``(b[j >> 3] >> (j & 7)) & 1``, the bit order used for every bit string of the OT extension.

Two kinds of code live here:

* :func:`mul_ref` / :func:`mul_clmul` (and :func:`fold_ref`): slow, obviously-correct
  multiplications, used by tests as the reference.
* :class:`Folder`: the check hash of the OT extension, ``fold(Y) = sum_{b<m} chi_b * Y[b] + Y[m]``
  (notes section 4 step 4), evaluated for a whole matrix of rows at once. Multiplication by a
  fixed ``chi_b`` is GF(2)-linear, so ``fold`` is one GF(2) matrix product: the 128x128 bit
  matrices of "multiply by chi_b", stacked, applied to every row. It runs on the bit-sliced
  (transposed) rows with the "four Russians" table method in plain numpy (a float32 BLAS product
  mod 2 works too, but contends for cores with its worker threads and was not faster here).
* :func:`bit_transpose`: the bit-matrix transpose used by the OT extension.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

BITS = 128
BLOCK = 16
POLY = (1 << 128) | 0x87  # x^128 + x^7 + x^2 + x + 1
MASK = (1 << 128) - 1
MASK64 = (1 << 64) - 1

U8Array = npt.NDArray[np.uint8]


def from_block(b: bytes) -> int:
    """16-byte block -> element (byte 0 = lowest coefficients)."""
    if len(b) != BLOCK:
        raise ValueError(f"GF(2^128) block must be {BLOCK} bytes, got {len(b)}")
    return int.from_bytes(b, "little")


def to_block(a: int) -> bytes:
    """Element -> 16-byte block."""
    if not 0 <= a <= MASK:
        raise ValueError("not a GF(2^128) element")
    return a.to_bytes(BLOCK, "little")


def mul_ref(a: int, b: int) -> int:
    """Reference product, shift-and-add with reduction at every step (slow, for tests)."""
    if not (0 <= a <= MASK and 0 <= b <= MASK):
        raise ValueError("not a GF(2^128) element")
    r = 0
    for i in range(BITS):
        if (b >> i) & 1:
            r ^= a
        a <<= 1
        if a >> BITS:
            a ^= POLY
    return r


def mul_clmul(a: int, b: int) -> int:
    """Second reference: carry-less product of degree < 255, then long division by POLY."""
    if not (0 <= a <= MASK and 0 <= b <= MASK):
        raise ValueError("not a GF(2^128) element")
    p = 0
    for i in range(BITS):
        if (b >> i) & 1:
            p ^= a << i
    for i in range(2 * BITS - 2, BITS - 1, -1):
        if (p >> i) & 1:
            p ^= POLY << (i - BITS)
    return p


def fold_ref(chis: Sequence[int], row: bytes) -> bytes:
    """Reference ``fold(Y) = sum_{b<m} chi_b * Y[b] + Y[m]`` of one row of ``16*(m+1)`` bytes."""
    m = len(chis)
    if len(row) != BLOCK * (m + 1):
        raise ValueError(f"row must be {BLOCK * (m + 1)} bytes")
    acc = from_block(row[BLOCK * m:])
    for b, chi in enumerate(chis):
        acc ^= mul_ref(chi, from_block(row[BLOCK * b:BLOCK * (b + 1)]))
    return to_block(acc)


def _lanes(count: int, lane_bits: int, value: int) -> int:
    """``value`` repeated in ``count`` lanes of ``lane_bits`` bits."""
    return value * sum(1 << (lane_bits * i) for i in range(count))


# One lane of 256 bits per basis element: lane i of chi * _SHIFTS is chi << i (no carries, since
# chi << i < 2^255), and _LOW keeps the low 128 bits of every lane.
_SHIFTS = sum(1 << (257 * i) for i in range(BITS))
_LANE_CACHE: dict[int, int] = {}


def _low_mask(m: int) -> int:
    mask = _LANE_CACHE.get(m)
    if mask is None:
        mask = _lanes(BITS * m, 256, MASK)
        _LANE_CACHE[m] = mask
    return mask


def _mul_x_powers(chis: Sequence[int]) -> bytes:
    """Blocks ``e_{128b+i} = chi_b * x^i`` for ``b < m``, ``i < 128``, concatenated.

    All ``128*m`` products are computed at once in 256-bit lanes of one Python integer: lane
    ``(b, i)`` starts as ``chi_b << i = hi * x^128 + lo`` and is reduced as
    ``lo + hi * (x^7 + x^2 + x + 1)``, twice (the first fold can spill 6 bits past ``x^127``).
    The tests check this against repeated multiplication by ``x`` with :data:`POLY`.
    """
    m = len(chis)
    x = 0
    for b, chi in enumerate(chis):
        if not 0 <= chi <= MASK:
            raise ValueError("not a GF(2^128) element")
        x |= (chi * _SHIFTS) << (256 * BITS * b)
    low = _low_mask(m)
    h = (x >> BITS) & low
    r = h ^ (h << 1) ^ (h << 2) ^ (h << 7)
    h2 = (r >> BITS) & low
    r2 = h2 ^ (h2 << 1) ^ (h2 << 2) ^ (h2 << 7)
    e = (x ^ r ^ r2) & low
    lanes = np.frombuffer(e.to_bytes(32 * BITS * m, "little"), dtype=np.uint8).reshape(BITS * m, 32)
    return lanes[:, :BLOCK].tobytes()


def _mul_x_powers_ref(chis: Sequence[int]) -> bytes:
    """Reference for :func:`_mul_x_powers`: repeated multiplication by ``x``."""
    out: list[bytes] = []
    for chi in chis:
        v = chi
        for _ in range(BITS):
            out.append(v.to_bytes(BLOCK, "little"))
            v <<= 1
            if v >> BITS:
                v ^= POLY
    return b"".join(out)


_U64LE = np.dtype("<u8")
_T1, _T2, _T3 = (np.array(v, dtype=_U64LE) for v in (0x00AA00AA00AA00AA, 0x0000CCCC0000CCCC, 0x00000000F0F0F0F0))
_S7, _S14, _S28 = (np.array(v, dtype=_U64LE) for v in (7, 14, 28))


def bit_transpose(rows: U8Array) -> U8Array:
    """Transpose an ``(N, W)`` uint8 bit matrix (``N`` rows of ``8*W`` bits, ``N % 8 == 0``).

    Returns ``(8*W, N/8)`` uint8: row ``c`` holds column ``c`` of the input, bit ``r`` at
    ``(out[c][r >> 3] >> (r & 7)) & 1`` (the little-endian bit order of notes 1.3).

    The 8 bytes of rows ``8n..8n+7`` in byte column ``w`` form one little-endian 64-bit word
    (bit ``8r + i`` = row ``8n + r``, column ``8w + i``); the classic three-step delta swap
    moves bit ``8r + i`` to ``8i + r``, after which byte ``i`` of the word is column ``8w + i``.
    """
    n, w = rows.shape
    if n % 8:
        raise ValueError("bit_transpose needs a multiple of 8 rows")
    blocks = np.ascontiguousarray(rows.reshape(n // 8, 8, w).transpose(0, 2, 1))
    x = blocks.view(_U64LE).reshape(n // 8, w)
    t = (x ^ (x >> _S7)) & _T1
    x = x ^ t ^ (t << _S7)
    t = (x ^ (x >> _S14)) & _T2
    x = x ^ t ^ (t << _S14)
    t = (x ^ (x >> _S28)) & _T3
    x = x ^ t ^ (t << _S28)
    out: U8Array = np.ascontiguousarray(x.view(np.uint8).reshape(n // 8, 8 * w).T)
    return out


def bit_transpose_ref(rows: U8Array) -> U8Array:
    """Reference for :func:`bit_transpose` through one byte per bit (slow, for tests)."""
    n, _ = rows.shape
    if n % 8:
        raise ValueError("bit_transpose needs a multiple of 8 rows")
    bits = np.unpackbits(rows, axis=1, bitorder="little")  # (N, 8W)
    out: U8Array = np.packbits(bits.T, axis=1, bitorder="little")
    return out


class Folder:
    """``fold(Y) = sum_{b<m} chi_b * Y[b] + Y[m]`` for fixed challenges ``chi_0..chi_{m-1}``.

    Multiplication by a fixed ``chi_b`` is GF(2)-linear: with ``e_i = chi_b * x^i`` (the "basis",
    row ``128*b + i``), ``chi_b * Y[b] = XOR_{i: bit i of Y[b]} e_i``. Two evaluation paths:

    * :meth:`fold_one` for a single row (XOR of the selected basis rows);
    * :meth:`fold_cols` for many rows given *bit-sliced* (column ``c`` of the row matrix as one
      bit string over all rows, as the OT extension has it after its transpose). Output bit ``o``
      of every row at once is the XOR of the input columns ``c`` with ``bit o of e_c = 1``: a
      GF(2) matrix product done with the "four Russians" method: for each group of 8 input
      columns, a table of all 256 XOR combinations, then one gather and one XOR reduction. Pure
      numpy, no BLAS threads, no per-row Python work.
    """

    __slots__ = ("_basis", "_idx", "m", "row_len")

    def __init__(self, chis: Sequence[int]) -> None:
        m = len(chis)
        if m < 1:
            raise ValueError("Folder needs at least one challenge")
        self.m = m
        self.row_len = BLOCK * (m + 1)
        basis = np.frombuffer(_mul_x_powers(chis), dtype=np.uint8).reshape(BITS * m, BLOCK)
        self._basis = basis.view(np.uint64)  # (128m, 2)
        groups = BLOCK * m  # groups of 8 input columns
        # sel[g, o] = the 8 bits "bit o of e_{8g+r}" for r < 8, i.e. the transposed basis
        sel = bit_transpose(basis).T  # (groups, 128)
        # flat gather index into the (256 * groups) table rows: table[v, g] at v * groups + g
        self._idx = (sel.astype(np.intp) * groups + np.arange(groups, dtype=np.intp)[:, None]).reshape(-1)

    def fold_one(self, row: bytes) -> bytes:
        """``fold`` of one row of ``16*(m+1)`` bytes."""
        if len(row) != self.row_len:
            raise ValueError(f"row must be {self.row_len} bytes")
        split = BLOCK * self.m
        arr = np.frombuffer(row, dtype=np.uint8)
        # all-ones / all-zeros word per basis row, so the work does not depend on the row's bits
        mask = np.unpackbits(arr[:split], bitorder="little").astype(np.uint64) * np.uint64(MASK64)
        acc: npt.NDArray[np.uint64] = np.bitwise_xor.reduce(self._basis & mask[:, None], axis=0)
        out: U8Array = acc.view(np.uint8) ^ arr[split:]
        return out.tobytes()

    def fold_cols(self, cols: U8Array) -> U8Array:
        """Bit-sliced ``fold``: ``cols`` is ``(128*(m+1), W)`` uint8 (column ``c`` over all rows);
        returns ``(128, W)`` uint8, row ``o`` = bit ``o`` of ``fold`` of every row."""
        m = self.m
        if cols.ndim != 2 or cols.shape[0] != BITS * (m + 1) or cols.dtype != np.uint8:
            raise ValueError(f"expected a ({BITS * (m + 1)}, W) uint8 matrix")
        c = np.ascontiguousarray(cols)
        if c.shape[1] % 8 == 0:
            c = c.view(np.uint64)
        groups = BLOCK * m
        width = c.shape[1]
        inp = np.ascontiguousarray(c[: BITS * m].reshape(groups, 8, width).transpose(1, 0, 2))
        table = np.empty((256, groups, width), dtype=c.dtype)
        table[0] = 0
        for b in range(8):
            np.bitwise_xor(table[: 1 << b], inp[b], out=table[1 << b: 2 << b])
        picked = np.take(table.reshape(256 * groups, width), self._idx, axis=0)
        acc = np.bitwise_xor.reduce(picked.reshape(groups, BITS, width), axis=0)
        out: U8Array = (acc ^ c[BITS * m:]).view(np.uint8)
        return out

    def fold_rows(self, rows: U8Array) -> U8Array:
        """``rows``: ``(N, 16*(m+1))`` uint8 with ``N % 8 == 0`` -> ``(N, 16)`` row-wise ``fold``."""
        if rows.ndim != 2 or rows.shape[1] != self.row_len or rows.dtype != np.uint8:
            raise ValueError(f"expected an (N, {self.row_len}) uint8 matrix")
        return bit_transpose(self.fold_cols(bit_transpose(rows)))
