"""KOS OT extension (SoftSpoken with k = 1) with the corrected consistency check (notes section 4).

One extension runs inside every RVOLE (notes section 5) and expands the long-term base-OT seeds
of one ordered pair (:mod:`crypto_core.hazmat.pairwise`) into ``XI`` random OTs carrying ``WIDTH`` scalar
pads each. Layout (all bit strings use the order of notes 1.3, bit ``j`` at
``(b[j >> 3] >> (j & 7)) & 1``):

* ``L`` rows ``k``, one per base OT (the key's lambda_c: 128 or 256); every row has ``XI_EXT = XI + 128``
  bits: ``XI = 512`` real columns (one per extended OT) and 128 random padding columns.
* Receiver (Bob, choice bits ``beta``): ``x = beta || pad``, ``T_k = PRG(K_{k,0})``,
  ``U_k = T_k ^ PRG(K_{k,1}) ^ x`` (step 1-2). Challenge ``chi_b`` from a hash of the session id and
  the whole ``U`` matrix (step 3). Sends ``U``, ``x~ = fold(x)``, ``t~_k = fold(T_k)`` (steps 4-5).
* Sender (Alice, ``Delta``, ``K_{k,Delta_k}``): ``Q_k = PRG(K_{k,Delta_k}) ^ Delta_k * U_k``
  ``= T_k ^ Delta_k * x``, checks ``fold(Q_k) == t~_k ^ Delta_k * x~`` for every ``k`` at once
  (constant-time compare, then decide) and bans the receiver on failure (step 3, notes 8).
* Columns: ``Q^(j) = T^(j) ^ beta_j * Delta``; the random-OT pads are a correlation-robust hash
  of ``(sid, j, column)``: the sender gets pads of ``Q^(j)`` (branch 0) and ``Q^(j) ^ Delta``
  (branch 1), the receiver gets those of ``T^(j)``, i.e. the ``beta_j`` branch.

``sid`` must be unique per extension: the PRG is keyed only by ``(sid, k, seed)`` with long-term
seeds, so a repeated ``sid`` reuses the PRG pads (a two-time pad that leaks ``x`` to the sender).
Everything here is sans-IO; the only randomness is the receiver's 128 padding bits, from the
injected :class:`~crypto_core.rng.Rng`.

Hash framing (all through :func:`crypto_core.transcript.frame`, indices ``u32``):

* PRG: ``SHAKE-256(frame(OTE_PRG, sid, u32(k), seed))``, ``XI_EXT / 8`` bytes.
* ``d = H(OTE_TRANSCRIPT; sid, U)`` with ``U`` the ``L * XI_EXT / 8`` bytes of the rows in order;
  ``chi_b = H(OTE_CHI; sid, d, u32(b))[:16]`` for ``b < M_BLOCKS``.
* Pads: ``SHAKE-128(frame(OTE_ROT, sid, u32(j), column)).digest(3 * 32)`` (one Keccak permutation);
  slot ``w`` is bytes ``32w .. 32w+32`` read big-endian and reduced mod q. Because
  ``2^256 - q < 2^129``, the bias is about ``2^-127.7``, the same as reducing 48 bytes, and the
  raw 256-bit value is already the pad except with probability ``2^-127.7``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ProtocolAbort, UsageError
from ..group import Q
from ..params import SUPPORTED_LAMBDA
from ..rng import Rng
from ..tags import Tag
from ..transcript import frame, hash32, u32, u64
from . import base_ot
from .gf128 import BLOCK, Folder, bit_transpose
from .pairwise import OteReceiverSeeds, OteSenderSeeds

U8Array = npt.NDArray[np.uint8]

XI = 512  # real columns = extended OTs (kappa + 2 * lambda_s)
PAD_BITS = 128  # random padding columns of the check
XI_EXT = XI + PAD_BITS
ROW_LEN = XI_EXT // 8  # bytes per row
M_BLOCKS = XI // 128  # 128-bit blocks hashed with a challenge each
CHOICE_LEN = XI // 8
WIDTH = 3  # scalar pads per extended OT (RVOLE: l + rho = 2 + 1)
PAD_CHUNK = 32  # bytes read per pad scalar (reduction bias about 2^-127.7)
DIGEST_LEN = WIDTH * PAD_CHUNK
SID_LEN = 32

assert XI % 128 == 0 and XI_EXT % 8 == 0

_PAD_CHUNKS = struct.Struct(f"{PAD_CHUNK}s" * (XI * WIDTH))


@dataclass(frozen=True)
class Layout:
    """Sizes and framing constants for ``rows`` = L base OTs (the key's lambda_c)."""

    rows: int
    col_len: int  # bytes per column (one bit per row)
    u_len: int
    msg_len: int  # U rows || x~ || t~_0..t~_{L-1}
    row_hdr: tuple[bytes, ...]  # per row: enc(u32(k)) || length prefix of the 32-byte seed
    col_hdr: U8Array  # per column: enc(u32(j)) || length prefix of the column
    col_records: struct.Struct


@functools.cache
def layout(rows: int) -> Layout:
    if rows not in SUPPORTED_LAMBDA:
        raise UsageError(f"OT extension: lambda_c must be one of {SUPPORTED_LAMBDA}, got {rows}")
    col_len = rows // 8
    u_len = rows * ROW_LEN
    col_hdr = np.frombuffer(b"".join(u64(4) + u32(j) + u64(col_len) for j in range(XI)), dtype=np.uint8).reshape(XI, 20)
    return Layout(
        rows=rows,
        col_len=col_len,
        u_len=u_len,
        msg_len=u_len + BLOCK + rows * BLOCK,
        row_hdr=tuple(u64(4) + u32(k) + u64(base_ot.KEY_LEN) for k in range(rows)),
        col_hdr=col_hdr,
        col_records=struct.Struct(f"{20 + col_len}s" * XI),
    )


def msg_len(rows: int) -> int:
    """Byte length of the receiver's message for ``rows`` = lambda_c base OTs."""
    return layout(rows).msg_len


def _check_sid(sid: bytes) -> None:
    if len(sid) != SID_LEN:
        raise UsageError(f"OT extension session id must be {SID_LEN} bytes")


def _prg_rows(sid: bytes, seeds: tuple[bytes, ...]) -> bytes:
    """``PRG(OTE_PRG; sid, k, seed_k)`` for every row ``k``, concatenated (step 2)."""
    lay = layout(len(seeds))
    if set(map(len, seeds)) != {base_ot.KEY_LEN}:
        raise UsageError(f"OT extension: expected seeds of {base_ot.KEY_LEN} bytes")
    prefix = hashlib.shake_256(frame((Tag.OTE_PRG.bytes, sid)))
    out: list[bytes] = []
    for hdr, seed in zip(lay.row_hdr, seeds, strict=True):
        h = prefix.copy()
        h.update(hdr + seed)
        out.append(h.digest(ROW_LEN))
    return b"".join(out)


def challenges(sid: bytes, u: bytes) -> list[int]:
    """Fiat-Shamir ``chi_0..chi_{m-1}`` from the session id and the whole ``U`` matrix (step 3)."""
    d = hash32(Tag.OTE_TRANSCRIPT, sid, u)
    return [int.from_bytes(hash32(Tag.OTE_CHI, sid, d, u32(b))[:BLOCK], "little") for b in range(M_BLOCKS)]


def rot_digests(sid: bytes, cols: U8Array) -> bytes:
    """Random-OT hash of every column: ``XI`` digests of ``DIGEST_LEN`` bytes, concatenated.

    ``cols`` is ``(XI, L/8)`` uint8. Digest ``j`` is
    ``SHAKE-128(frame(OTE_ROT, sid, u32(j), cols[j]))``; one prefix hasher, copied per column.
    """
    if cols.ndim != 2 or cols.shape[0] != XI:
        raise UsageError(f"OT extension: expected {XI} columns")
    lay = layout(cols.shape[1] * 8)
    recs = np.empty((XI, 20 + lay.col_len), dtype=np.uint8)
    recs[:, :20] = lay.col_hdr
    recs[:, 20:] = cols
    prefix = hashlib.shake_128(frame((Tag.OTE_ROT.bytes, sid)))
    out: list[bytes] = []
    append = out.append
    for rec in lay.col_records.unpack(recs.tobytes()):
        h = prefix.copy()
        h.update(rec)
        append(h.digest(DIGEST_LEN))
    return b"".join(out)


def pad_ints(digests: bytes) -> list[int]:
    """The ``XI * WIDTH`` pads (index ``j * WIDTH + w``) as 256-bit integers, not reduced.

    Each is congruent mod q to the pad scalar and below ``2^256`` (at least q only with
    probability ``2^-127.7`` each); callers reduce once after their own arithmetic instead of
    ``3 * XI`` separate reductions. Use :func:`pads` for reduced values.
    """
    return list(map(int.from_bytes, _PAD_CHUNKS.unpack(digests)))


def pads(digests: bytes) -> list[int]:
    """The pad scalars in ``[0, q)``, index ``j * WIDTH + w``."""
    return [v % Q for v in pad_ints(digests)]


class ReceiverOutput:
    """Bob's result of :func:`receiver_extend`: the message and his columns ``T^(j)``."""

    __slots__ = ("msg", "t_cols")

    def __init__(self, msg: bytes, t_cols: U8Array) -> None:
        self.msg = msg
        self.t_cols = t_cols  # (XI, L/8) uint8, row j = T^(j)


def receiver_extend(seeds: OteReceiverSeeds, sid: bytes, choices: bytes, rng: Rng) -> ReceiverOutput:
    """Receiver steps 1-6 with choice bits ``choices`` (``XI`` bits packed, notes section 4)."""
    _check_sid(sid)
    if len(choices) != CHOICE_LEN:
        raise UsageError(f"OT extension choices must be {CHOICE_LEN} bytes")
    rows = len(seeds.seeds0)
    x = np.frombuffer(bytes(choices) + rng.bytes(PAD_BITS // 8), dtype=np.uint8)  # step 1
    t = np.frombuffer(_prg_rows(sid, seeds.seeds0), dtype=np.uint8).reshape(rows, ROW_LEN)
    t1 = np.frombuffer(_prg_rows(sid, seeds.seeds1), dtype=np.uint8).reshape(rows, ROW_LEN)
    u = (t ^ t1 ^ x).tobytes()  # step 2
    folder = Folder(challenges(sid, u))  # step 3
    t_cols = bit_transpose(t)  # (XI_EXT, COL_LEN): step 6 and the bit-sliced check
    t_tilde = bit_transpose(folder.fold_cols(t_cols))  # (L, 16): step 4
    x_tilde = folder.fold_one(x.tobytes())
    msg = b"".join((u, x_tilde, t_tilde.tobytes()))  # step 5
    return ReceiverOutput(msg, t_cols[:XI])


def sender_extend(seeds: OteSenderSeeds, sid: bytes, msg: bytes, *, peer: int) -> U8Array:
    """Sender steps 1-4: validate, check every row, and return the columns ``Q^(j)``.

    Returns ``(XI, L/8)`` uint8. Raises ``ProtocolAbort(peer)`` for a wrong size and
    ``ProtocolAbort(peer, ban=True)`` when the consistency check fails (notes section 8).
    """
    _check_sid(sid)
    lay = layout(len(seeds.seeds))
    rows = lay.rows
    if len(msg) != lay.msg_len:  # step 1
        raise ProtocolAbort(peer, f"OT extension: message has {len(msg)} bytes, expected {lay.msg_len}")
    u_bytes = bytes(msg[: lay.u_len])
    x_tilde = np.frombuffer(msg, dtype=np.uint8, count=BLOCK, offset=lay.u_len)
    t_tilde = np.frombuffer(msg, dtype=np.uint8, offset=lay.u_len + BLOCK).reshape(rows, BLOCK)
    u = np.frombuffer(u_bytes, dtype=np.uint8).reshape(rows, ROW_LEN)
    delta = np.frombuffer(seeds.delta, dtype=np.uint8)
    delta_mask = np.unpackbits(delta, bitorder="little").reshape(rows, 1) * np.uint8(0xFF)
    p = np.frombuffer(_prg_rows(sid, seeds.seeds), dtype=np.uint8).reshape(rows, ROW_LEN)
    q_rows = p ^ (u & delta_mask)  # step 2
    folder = Folder(challenges(sid, u_bytes))  # step 3
    q_cols = bit_transpose(q_rows)
    got = folder.fold_cols(q_cols)  # (128, COL_LEN): bit o of fold(Q_k) for every k
    x_mask = np.unpackbits(x_tilde, bitorder="little").reshape(BLOCK * 8, 1) * np.uint8(0xFF)
    want = bit_transpose(t_tilde) ^ (x_mask & delta)  # t~_k ^ Delta_k * x~, bit-sliced
    if not hmac.compare_digest(got.tobytes(), want.tobytes()):
        raise ProtocolAbort(peer, "OT extension consistency check failed", ban=True)
    return q_cols[:XI]  # step 4


def sender_digests(seeds: OteSenderSeeds, sid: bytes, q_cols: U8Array) -> tuple[bytes, bytes]:
    """Pad digests of both branches: ``Q^(j)`` (branch 0) and ``Q^(j) ^ Delta`` (branch 1)."""
    delta = np.frombuffer(seeds.delta, dtype=np.uint8)
    return rot_digests(sid, q_cols), rot_digests(sid, q_cols ^ delta)
