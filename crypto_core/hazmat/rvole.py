"""Two-party random vector OLE (notes section 5; [P23] Protocol 5.2 as corrected in ToB App. F).

Bob gets a random ``chi``, Alice inputs ``a = (a_0, a_1)``; Alice outputs ``c``, Bob outputs ``d``
with ``c_i + d_i = a_i * chi (mod q)``. Bob speaks first and his message does not depend on
anything of Alice's, so it can go out in signing round 1.

* Gadget: ``g_j = Hq(RVOLE_GADGET; sid, j)`` for ``j < XI``, realised as one SHAKE-256 stream
  ``SHAKE-256(frame(RVOLE_GADGET, sid, u32(XI)))`` read in 32-byte chunks, chunk ``j`` (big-endian)
  reduced mod q: one XOF call instead of ``XI`` hash calls; the bias is about ``2^-127.7`` per
  entry since ``2^256 - q < 2^129`` (the gadget is public; ``chi`` stays statistically hidden).
* Bob (:meth:`RvoleBob.start`): random ``beta`` (``XI`` bits), ``chi = sum_j beta_j g_j``, OT-extension
  receiver with choices ``beta`` (notes section 4), pads ``gamma[j][w]`` of ``T^(j)``.
* Alice (:meth:`RvoleAlice.respond`): OT-extension sender *including its check*, pads
  ``alpha0, alpha1``; ``c_i = -sum_j g_j alpha0[j][i]`` (step 1); random ``eta`` (rho = 1, step 2);
  ``a~[j][w] = alpha0[j][w] - alpha1[j][w] + (a_0, a_1, eta)[w]`` (step 3);
  ``theta_0 || theta_1`` = 128 bytes of ``SHAKE-256(frame(RVOLE_THETA, sid, a~))``, each 64-byte half
  reduced mod q (step 4); ``eta~ = eta + theta_0 a_0 + theta_1 a_1`` (step 5);
  ``mu = H64(RVOLE_MU; sid, v_0 || .. || v_{XI-1})`` with
  ``v_j = alpha0[j][2] + theta_0 alpha0[j][0] + theta_1 alpha0[j][1]`` as 32-byte scalars (step 6).
* Bob (:meth:`RvoleBob.finish`): strict decoding, ``dbar[j][w] = gamma[j][w] + beta_j a~[j][w]``,
  ``mu'`` over ``dbar[j][2] + theta_0 dbar[j][0] + theta_1 dbar[j][1] - beta_j eta~``, constant-time
  compare (failure: abort and ban Alice, notes section 8), ``d_i = sum_j g_j dbar[j][i]``.

Wire formats (no header; the caller frames them): Bob's message is the OT-extension message
(``U`` rows, ``x~``, ``t~``: :data:`MSG1_LEN` bytes); Alice's is ``a~`` (``XI * 3`` scalars, index
``3j + w``), ``eta~`` (32 B), ``mu`` (64 B): :data:`MSG2_LEN` bytes.

**Session ids.** ``sid`` (32 bytes) is the per-pair, per-direction RVOLE session id and MUST be
unique per use. The OT extension expands long-term seeds keyed only by ``sid``, so running two
RVOLEs under one ``sid`` is a two-time pad: Alice's two messages would leak the difference of
her inputs and Bob's repeated ``U`` rows leak his choice bits. The caller guarantees uniqueness.

**Vectorised.** The per-element steps (``a~``, the ``mu`` inputs, the ``d_i`` and ``c_i`` sums)
run on numpy limb matrices (:mod:`crypto_core.hazmat.modq`, :func:`_dots`), not per-element
Python integers: the same bytes, with a number of numpy steps that depends only on the shapes.
Python integer arithmetic (the few scalars left: ``chi``, ``theta``, ``eta~``) is not constant
time; the code avoids secret-dependent branches (``beta_j`` enters as a 0/1 multiplier) and
compares check values with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from itertools import repeat

import numpy as np
import numpy.typing as npt

from ..errors import ProtocolAbort, UsageError
from ..group import SCALAR_LEN, Q
from ..params import LAMBDA_C
from ..rng import Rng, random_scalar
from ..tags import Tag
from ..transcript import frame, hash64, u32
from . import modq, ot_ext
from .ot_ext import WIDTH, XI
from .pairwise import OteReceiverSeeds, OteSenderSeeds

MU_LEN = 64
SID_LEN = 32
GADGET_CHUNK = 32
MSG1_LEN = ot_ext.msg_len(LAMBDA_C)  # for the default lambda_c; see msg1_len()
A_TILDE_LEN = XI * WIDTH * SCALAR_LEN
MSG2_LEN = A_TILDE_LEN + SCALAR_LEN + MU_LEN

_GADGET_CHUNKS = struct.Struct(f"{GADGET_CHUNK}s" * XI)
_SCALARS = struct.Struct(f"{SCALAR_LEN}s" * (XI * WIDTH + 1))
_LIMBS = SCALAR_LEN // 2  # 16-bit limbs per 256-bit value

F64Array = npt.NDArray[np.float64]


def msg1_len(lambda_c: int) -> int:
    """Byte length of Bob's message for a key whose OT extension has ``lambda_c`` rows."""
    return ot_ext.msg_len(lambda_c)


def _check_sid(sid: bytes) -> None:
    if len(sid) != SID_LEN:
        raise UsageError(f"RVOLE session id must be {SID_LEN} bytes")


def gadget_bytes(sid: bytes) -> bytes:
    """``g_0..g_{XI-1}`` as 32-byte big-endian scalars in ``[0, q)`` (see the module docstring)."""
    stream = hashlib.shake_256(frame((Tag.RVOLE_GADGET.bytes, sid, u32(XI)))).digest(GADGET_CHUNK * XI)
    # A chunk can be >= q only if its top 64 bits are all ones (probability 2^-55 for the whole
    # gadget); only then take the exact path. Public data, so branching is fine.
    if (np.frombuffer(stream, dtype=">u8")[::4] == 0xFFFFFFFFFFFFFFFF).any():
        g = map(int.from_bytes, _GADGET_CHUNKS.unpack(stream))
        stream = b"".join((v % Q).to_bytes(SCALAR_LEN, "big") for v in g)
    return stream


def gadget(sid: bytes) -> list[int]:
    """``g_0..g_{XI-1}`` as integers."""
    return list(map(int.from_bytes, _GADGET_CHUNKS.unpack(gadget_bytes(sid))))


def thetas(sid: bytes, a_tilde: bytes) -> tuple[int, int]:
    """``theta_0, theta_1`` from the session id and the encoded ``a~`` (step 4)."""
    h = hashlib.shake_256(frame((Tag.RVOLE_THETA.bytes, sid, a_tilde))).digest(128)
    return int.from_bytes(h[:64], "big") % Q, int.from_bytes(h[64:], "big") % Q


def _limbs(buf: bytes, per: int, slots: int) -> F64Array:
    """``XI`` records of ``per`` 32-byte big-endian values -> float64 16-bit limbs of the first
    ``slots`` values of every record. Row ``j`` holds, slot after slot, 16 limbs each, most
    significant first."""
    arr = np.frombuffer(buf, dtype=">u2", count=XI * per * _LIMBS).reshape(XI, per, _LIMBS)
    return arr[:, :slots, :].reshape(XI, _LIMBS * slots).astype(np.float64)


def _dots(lhs: F64Array, rhs: F64Array) -> list[int]:
    """``sum_j lhs_j * rhs_j[i]`` for each 16-limb block ``i`` of ``rhs`` (exact, not reduced).

    One float64 product ``lhs^T @ rhs`` gives every limb-by-limb partial sum (each below
    ``XI * 2^32 = 2^41``); summing anti-diagonals (below ``2^45``) and shifting recombines them.
    Every intermediate is an integer below ``2^53``, so float64 is exact.
    """
    k = rhs.shape[1] // _LIMBS
    p = (lhs.T @ rhs).reshape(_LIMBS, k, _LIMBS).transpose(1, 0, 2)  # (k, a, b)
    skew = np.zeros((k, _LIMBS, 2 * _LIMBS), dtype=np.float64)
    skew[:, :, :_LIMBS] = p
    # row a shifted right by a: column s of the result sums p[a, s - a]
    diag = skew.reshape(k, 2 * _LIMBS * _LIMBS)[:, : _LIMBS * (2 * _LIMBS - 1)]
    sums = diag.reshape(k, _LIMBS, 2 * _LIMBS - 1).sum(axis=1).astype(np.int64).tolist()
    return [_combine(row) for row in sums]


def _combine(limb_sums: list[int]) -> int:
    """``sum_s limb_sums[s] * 2^(16 * (n - 1 - s))`` (most significant first, limbs may overlap)."""
    v = 0
    for s in limb_sums:
        v = (v << 16) + s
    return v


class RvoleBob:
    """Bob's side. :meth:`start` sends message 1; :meth:`finish` consumes message 2 once."""

    __slots__ = ("_beta", "_beta_f", "_d_gamma", "_done", "_g_beta", "_gamma", "_peer", "_sid", "chi")

    def __init__(
        self,
        sid: bytes,
        peer: int,
        chi: int,
        beta: npt.NDArray[np.uint8],
        gamma: bytes,
        g_beta: F64Array,
        d_gamma: list[int],
    ) -> None:
        self.chi = chi
        self._sid = sid
        self._peer = peer
        self._beta: list[int] = beta.tolist()
        self._beta_f: F64Array = beta.astype(np.float64).reshape(XI, 1)
        self._gamma = gamma  # the pad digests of T^(j): gamma[j][w] is chunk 3j + w
        self._g_beta = g_beta
        self._d_gamma = d_gamma
        self._done = False

    def __repr__(self) -> str:  # chi, beta and the pads are secret
        return f"RvoleBob(peer={self._peer}, used={self._done})"

    @staticmethod
    def start(seeds: OteReceiverSeeds, sid: bytes, rng: Rng, *, peer: int) -> tuple[RvoleBob, bytes]:
        """Bob round 1: random ``beta``, ``chi = <g, beta>``, OT-extension receiver message."""
        _check_sid(sid)
        sid = bytes(sid)
        beta_bytes = rng.bytes(ot_ext.CHOICE_LEN)
        beta_arr = np.unpackbits(np.frombuffer(beta_bytes, dtype=np.uint8), bitorder="little")
        ext = ot_ext.receiver_extend(seeds, sid, beta_bytes, rng)
        g = _limbs(gadget_bytes(sid), 1, 1)
        g_beta = g * beta_arr.astype(np.float64)[:, None]
        chi = _combine(g_beta.sum(axis=0).astype(np.int64).tolist()) % Q  # limb sums < 2^25
        digests = ot_ext.rot_digests(sid, ext.t_cols)
        d_gamma = _dots(g, _limbs(digests, WIDTH, 2))  # sum_j g_j gamma[j][i], i = 0, 1
        bob = RvoleBob(sid, peer, chi, beta_arr, digests, g_beta, d_gamma)
        return bob, ext.msg

    def finish(self, msg2: bytes) -> tuple[int, int]:
        """Bob round 3: decode, check ``mu`` (ban on failure), output ``(d_0, d_1)``.

        The state is consumed by the first call, whatever its outcome.
        """
        if self._done:
            raise UsageError("RVOLE: Bob's state was already used")
        self._done = True
        beta_f, gamma, sid, peer = self._beta_f, self._gamma, self._sid, self._peer
        g_beta, d_gamma = self._g_beta, self._d_gamma
        self._beta, self._gamma, self._d_gamma = [], b"", []
        self._g_beta = self._beta_f = np.zeros((0, _LIMBS))
        a_tilde_bytes, eta_tilde, mu = _decode_msg2(msg2, peer)
        th0, th1 = thetas(sid, a_tilde_bytes)
        a_tilde = _limbs(a_tilde_bytes, WIDTH, WIDTH)
        # step 1: dbar[j][w] = gamma[j][w] + beta_j * a~[j][w], as 16-bit limb sums below 2^17
        dbar = _limbs(gamma, WIDTH, WIDTH) + beta_f * a_tilde
        # step 2: mu' over dbar[j][2] + theta_0 dbar[j][0] + theta_1 dbar[j][1] - beta_j eta~,
        # the last term as beta_j (q - eta~) so that every total is non-negative
        vals = modq.lincomb(
            [
                (dbar[:, :_LIMBS], modq.times_scalar(th0)),
                (dbar[:, _LIMBS : 2 * _LIMBS], modq.times_scalar(th1)),
                (dbar[:, 2 * _LIMBS :], modq.identity_sums()),
                (beta_f, modq.times_scalar((Q - eta_tilde) % Q)[_LIMBS - 1 : _LIMBS]),
            ]
        )
        mu_check = hash64(Tag.RVOLE_MU, sid, vals)
        if not hmac.compare_digest(mu_check, mu):
            raise ProtocolAbort(peer, "RVOLE: mu check failed", ban=True)
        # step 3: d_i = sum_j g_j gamma[j][i] + sum_j (beta_j g_j) a~[j][i]
        d_at = _dots(g_beta, a_tilde[:, : 2 * _LIMBS])
        return (d_gamma[0] + d_at[0]) % Q, (d_gamma[1] + d_at[1]) % Q


def _decode_msg2(msg2: bytes, peer: int) -> tuple[bytes, int, bytes]:
    """Strict decoding of Alice's message: exact size, canonical scalars.

    Returns ``(a~ bytes, eta~, mu)``. A scalar can be ``>= q`` only if its top 64 bits are all
    ones (q's are); only those candidates are compared exactly (public data: branching is fine).
    """
    if len(msg2) != MSG2_LEN:
        raise ProtocolAbort(peer, f"RVOLE message 2: {len(msg2)} bytes, expected {MSG2_LEN}")
    msg2 = bytes(msg2)
    tops = np.frombuffer(msg2, dtype=">u8", count=(XI * WIDTH + 1) * 4)[::4]
    for bad in np.flatnonzero(tops == 0xFFFFFFFFFFFFFFFF).tolist():
        if int.from_bytes(msg2[bad * SCALAR_LEN : (bad + 1) * SCALAR_LEN], "big") >= Q:
            field = "eta~" if bad == XI * WIDTH else f"a~[{bad // WIDTH}][{bad % WIDTH}]"
            raise ProtocolAbort(peer, f"RVOLE message 2: {field}: scalar not below the group order (non-canonical)")
    eta_tilde = int.from_bytes(msg2[A_TILDE_LEN : A_TILDE_LEN + SCALAR_LEN], "big")
    return msg2[:A_TILDE_LEN], eta_tilde, msg2[A_TILDE_LEN + SCALAR_LEN :]


def _a_tilde(a: tuple[int, int], eta: int, d0: bytes, d1: bytes) -> bytes:
    """Step 3 for every ``j, w``: ``(alpha0[j][w] - alpha1[j][w] + (a_0, a_1, eta)[w]) mod q``,
    encoded, index ``3j + w``. With ``~y = 2^256 - 1 - y`` limb by limb (pads are below
    ``2^256``), ``x - y + z = x + ~y + (z + 1 - 2^256 + 2q)``: every limb and the constant are
    non-negative (``2q > 2^256``), as :func:`modq.reduce` wants."""
    n = XI * WIDTH
    x = np.zeros((modq.LIMBS32 + 1, n), dtype=np.int64)
    x[: modq.LIMBS32] = modq.limbs32(d0, n, 1, 0) + (0xFFFFFFFF - modq.limbs32(d1, n, 1, 0))
    adds = np.concatenate([modq.constant32(v + 1 - (1 << 256) + 2 * Q) for v in (a[0], a[1], eta)], axis=1)
    x.reshape(modq.LIMBS32 + 1, XI, WIDTH)[...] += adds[:, None, :]  # column 3j + w gets adds[:, w]
    return modq.reduce(x)


def _alice_message(
    sid: bytes,
    a: tuple[int, int],
    eta: int,
    d0: bytes,
    d1: bytes,
    a_tilde_hook: Callable[[list[int]], None] | None = None,
) -> tuple[tuple[int, int], bytes]:
    """Alice steps 1 and 3-7 given her pad digests (branches 0 and 1, see
    :func:`ot_ext.sender_digests`) and ``eta``.

    ``a_tilde_hook`` lets tests act as a cheating Alice: it may modify ``a~`` (reduced values)
    before ``theta``, ``eta~`` and ``mu`` are derived from it.
    """
    alpha0 = _limbs(d0, WIDTH, WIDTH)
    c0, c1 = (-v % Q for v in _dots(_limbs(gadget_bytes(sid), 1, 1), alpha0[:, : 2 * _LIMBS]))  # step 1
    a0, a1 = a
    a_tilde_bytes = _a_tilde(a, eta, d0, d1)  # step 3
    if a_tilde_hook is not None:
        a_tilde = list(map(int.from_bytes, _SCALARS.unpack_from(a_tilde_bytes + bytes(SCALAR_LEN))))[:-1]
        a_tilde_hook(a_tilde)
        a_tilde_bytes = b"".join(map(int.to_bytes, a_tilde, repeat(SCALAR_LEN)))
    th0, th1 = thetas(sid, a_tilde_bytes)  # step 4
    eta_tilde = (eta + th0 * a0 + th1 * a1) % Q  # step 5
    # step 6: v_j = alpha0[j][2] + theta_0 alpha0[j][0] + theta_1 alpha0[j][1]
    vals = modq.lincomb(
        [
            (alpha0[:, :_LIMBS], modq.times_scalar(th0)),
            (alpha0[:, _LIMBS : 2 * _LIMBS], modq.times_scalar(th1)),
            (alpha0[:, 2 * _LIMBS :], modq.identity_sums()),
        ]
    )
    mu = hash64(Tag.RVOLE_MU, sid, vals)
    return (c0, c1), b"".join((a_tilde_bytes, eta_tilde.to_bytes(SCALAR_LEN, "big"), mu))  # step 7


class RvoleAlice:
    """Alice's side: one stateless call."""

    @staticmethod
    def respond(
        seeds: OteSenderSeeds, sid: bytes, a: tuple[int, int], msg1: bytes, rng: Rng, *, peer: int
    ) -> tuple[tuple[int, int], bytes]:
        """Alice round 2: OT-extension sender with its check (ban on failure), then ``(c, msg2)``.

        Raises ``ProtocolAbort(peer)`` for a malformed ``msg1`` and ``ProtocolAbort(peer, ban=True)``
        when the OT-extension consistency check fails.
        """
        return _respond(seeds, sid, a, msg1, rng, peer)


def _respond(
    seeds: OteSenderSeeds,
    sid: bytes,
    a: tuple[int, int],
    msg1: bytes,
    rng: Rng,
    peer: int,
    a_tilde_hook: Callable[[list[int]], None] | None = None,
) -> tuple[tuple[int, int], bytes]:
    _check_sid(sid)
    sid = bytes(sid)
    if len(a) != 2 or not all(isinstance(v, int) and 0 <= v < Q for v in a):
        raise UsageError("RVOLE: Alice's input must be two scalars in [0, q)")
    q_cols = ot_ext.sender_extend(seeds, sid, msg1, peer=peer)
    d0, d1 = ot_ext.sender_digests(seeds, sid, q_cols)
    eta = random_scalar(rng)  # step 2
    return _alice_message(sid, (a[0], a[1]), eta, d0, d1, a_tilde_hook)
