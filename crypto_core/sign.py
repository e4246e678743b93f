"""DKLs23 threshold ECDSA signing by any t of n ([P23] Protocol 3.6; notes sections 6 to 8).

Presigning is message independent and takes three rounds; its result is a
:class:`Presignature`, which can be serialized and used exactly once. The online phase is one
message: each signer turns a 32-byte digest into a :class:`~crypto_core.combiner.SignatureShare`,
and anyone holding all t shares calls :func:`crypto_core.combiner.combine` (a module without any
secret state) to get a low-s ECDSA signature with its recovery id, verified against the (derived)
public key before it is returned. Reviving a serialized presignature is hazardous (a copy of a
used one would sign twice and leak the key share), so its decoder lives apart:
:func:`crypto_core.hazmat.presignature.load_presignature`.

Rounds of :class:`PresignParty` (B = broadcast, D = direct, confidential):

1. B: a fresh 32-byte nonce and a commitment to ``R_i = [r_i]``.
2. D to j: the echo of round 1, ``sigid``, and Bob's RVOLE message toward Alice j.
   ``sigid = H(sid_dkg, key_id, PK', path, S, every (j, nonce_j, C_j))`` is fresh as long as one
   signer is honest, so the per-pair RVOLE session ids ``H(sigid, alice, bob)`` never repeat
   (a repeat would be a two-time pad on the OT extension, notes section 4).
3. B: ``R_i``, its opening, ``pk_i``. D to j: ``sigid``, ``Gamma^r``, ``Gamma^k``, ``psi`` and
   Alice's RVOLE reply with inputs ``(r_i, sk_i)``.

Then each party runs the checks of Protocol 3.6 locally (RVOLE mu check and both Gamma checks
ban the peer on failure; ``sum pk_j == PK'`` pins the key and the derivation tweak) and keeps
``(R, phi_i, u_i, v_i)``. The tweak of the derivation path enters ``sk_i`` before ``R`` exists,
so a tweak chosen later cannot be applied (Groth-Shoup, ePrint 2021/1330).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .bip32 import check_path, derive
from .codec import BROADCAST, DIRECT, SESSION_LEN, Protocol, Writer
from .combiner import DIGEST_LEN, SHARE_PLAIN, SHARE_RERANDOMIZED, SignatureShare, rerandomized_nonce, rerandomizer
from .commitment import commit, opens
from .errors import DecodeError, PresignatureUsed, ProtocolAbort, UsageError
from .group import Point, Q, point_sum
from .hazmat import rvole
from .keyshare import KeyShare
from .rng import SYSTEM_RNG, Rng, random_scalar
from .session import (
    Delivery,
    Handler,
    NoCopy,
    RoundOutput,
    RoundParty,
    blame_malformed,
    check_echoes,
    check_inbox,
    check_participants,
)
from .shamir import lagrange_coefficient
from .tags import Tag
from .transcript import hash32, hash_to_scalar, list_of, u16, u32


@dataclass(frozen=True)
class SignConfig:
    """``signers``: exactly t distinct indices including our own. ``derivation_path``: BIP32
    non-hardened indices (empty for the master key). ``banned``: peers this party refuses."""

    session: bytes
    signers: tuple[int, ...]
    derivation_path: tuple[int, ...] = ()
    banned: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if len(self.session) != SESSION_LEN:
            raise UsageError(f"session: must be {SESSION_LEN} bytes")
        check_path(self.derivation_path)


@dataclass(frozen=True)
class _Round3:
    """A peer's decoded round-3 message (broadcast and direct parts)."""

    R: Point
    salt: bytes
    pk: Point
    gamma_r: Point
    gamma_k: Point
    psi: int = field(repr=False)  # phi_j - chi: private to the pair
    msg2: bytes = field(repr=False)


def _path_bytes(path: Sequence[int]) -> bytes:
    return list_of([u32(c) for c in path])


class PresignParty(RoundParty):
    """One signer's presigning state machine: ``start()``, then ``receive()`` three times;
    the last returns ``None`` and :attr:`result` holds the :class:`Presignature`."""

    PROTOCOL = Protocol.SIGN
    SECRETS = ("_r", "_phi", "_sk", "_bobs", "_c")

    def __init__(self, key: KeyShare, config: SignConfig, rng: Rng = SYSTEM_RNG) -> None:
        if not isinstance(key, KeyShare):  # e.g. a crypto_core.backup.RecoveredShare: no pairwise material
            raise UsageError("key: only a KeyShare can sign (a share restored from a backup must first be refreshed)")
        me = key.index
        signers = check_participants(config.signers, me, key.parties)
        if len(signers) != key.threshold:
            raise UsageError(f"signers: exactly t = {key.threshold} signers are required, got {len(signers)}")
        bad = sorted(set(signers) & set(config.banned))
        if bad:
            raise UsageError(f"signers: party {bad[0]} is banned for this key")
        super().__init__(config.session, me)
        self.key = key
        self.cfg = config
        self.signers = signers
        self.peers = tuple(j for j in signers if j != me)
        self._rng = rng
        d = derive(key.public_key, key.chain_code, config.derivation_path)
        self.derived_key = d.public_key
        self._tweak = d.tweak
        self.result: Presignature | None = None

    def _first(self) -> RoundOutput:
        return self._round1()

    def _rounds(self) -> tuple[Handler, ...]:
        return (self._round2, self._round3, self._finalize)

    def _rvole_sid(self, alice: int, bob: int) -> bytes:
        return hash32(Tag.SIGN_RVOLE_SID, self._sigid, u16(alice), u16(bob))

    # round 1 ------------------------------------------------------------------------------
    def _round1(self) -> RoundOutput:
        rng, me = self._rng, self.key.index
        self._r = random_scalar(rng)
        self._phi = random_scalar(rng)
        self._R = Point.base_mul(self._r)
        self._nonce = rng.bytes(32)
        self._c_r, self._salt = commit(Tag.SIGN_COMMIT_R, self.key.sid_dkg + self._nonce, me, self._R.encode(), rng)
        msg = Writer(self._header(1, BROADCAST, 0)).raw(self._nonce).raw(self._c_r).getvalue()
        self._r1_self = msg
        return RoundOutput(1, broadcast=msg)

    # round 2 ------------------------------------------------------------------------------
    def _round2(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        me, rng = self.key.index, self._rng
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=False, round=1)
        r1 = {me: (self._nonce, self._c_r)}
        self._echo1 = {me: hash32(Tag.SIGN_ECHO, self._r1_self)}
        for j in self.peers:
            raw = inbox[j].broadcast
            assert raw is not None

            def dec(raw: bytes = raw, j: int = j) -> tuple[bytes, bytes]:
                r = self._reader(raw, 1, BROADCAST, j)
                out = (r.take(32, "nonce"), r.take(32, "commit_R"))
                r.finish()
                return out

            r1[j] = blame_malformed(j, 1, dec)
            self._echo1[j] = hash32(Tag.SIGN_ECHO, raw)
        self._r1 = r1
        self._sigid = hash32(
            Tag.SIGN_SID,
            self.key.sid_dkg,
            self.key.key_id,
            self.derived_key.encode(),
            _path_bytes(self.cfg.derivation_path),
            list_of([u16(j) + r1[j][0] + r1[j][1] for j in self.signers]),
        )
        echo = b"".join(self._echo1[m] for m in self.signers)
        self._bobs: dict[int, rvole.RvoleBob] = {}
        direct: dict[int, bytes] = {}
        for j in self.peers:  # we are Bob toward Alice j
            bob, msg1 = rvole.RvoleBob.start(self.key.peer(j).as_bob, self._rvole_sid(j, me), rng, peer=j)
            self._bobs[j] = bob
            direct[j] = Writer(self._header(2, DIRECT, j)).raw(echo).raw(self._sigid).raw(msg1).getvalue()
        return RoundOutput(2, direct=direct)

    # round 3 ------------------------------------------------------------------------------
    def _round3(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        me, rng = self.key.index, self._rng
        check_inbox(inbox, self.peers, want_broadcast=False, want_direct=True, round=2)
        parsed: dict[int, tuple[list[bytes], bytes, bytes]] = {}
        for j in self.peers:
            raw = inbox[j].direct
            assert raw is not None

            def dec(raw: bytes = raw, j: int = j) -> tuple[list[bytes], bytes, bytes]:
                r = self._reader(raw, 2, DIRECT, j)
                echo = [r.take(32, f"echo[{m}]") for m in self.signers]
                sigid = r.take(32, "sigid")
                msg1 = r.take(rvole.msg1_len(self.key.lambda_c), "rvole_msg1")
                r.finish()
                return echo, sigid, msg1

            parsed[j] = blame_malformed(j, 2, dec)
        check_echoes(2, me, self.signers, {j: parsed[j][0] for j in self.peers}, self._echo1)
        for j in self.peers:  # equal echoes imply equal sigids; checked before any ban-able step
            if not hmac.compare_digest(parsed[j][1], self._sigid):
                # the echoes agree, so j hashed other inputs: j lies, or an untrusted relay gave
                # j another key or derivation path for this session; cannot tell which
                raise ProtocolAbort(
                    None,
                    f"round 2: party {j} derived another signing session id (it misbehaves, or was given "
                    "other signing inputs: key or derivation path; cannot tell which)",
                )

        # our additive share of the (derived) key: lam_i * (s_i + delta) + zeta_i
        lam = lagrange_coefficient(me, self.signers)
        self._sk = (lam * (self.key.secret_share + self._tweak) + self._zeta()) % Q
        self._pk = Point.base_mul(self._sk)
        self._c: dict[int, tuple[int, int]] = {}
        direct: dict[int, bytes] = {}
        for j in self.peers:  # we are Alice toward Bob j, inputs (r_i, sk_i)
            (c_r, c_k), msg2 = rvole.RvoleAlice.respond(
                self.key.peer(j).as_alice, self._rvole_sid(me, j), (self._r, self._sk), parsed[j][2], rng, peer=j
            )
            self._c[j] = (c_r, c_k)
            psi = (self._phi - self._bobs[j].chi) % Q
            w = Writer(self._header(3, DIRECT, j)).raw(self._sigid)
            w.point(Point.base_mul(c_r)).point(Point.base_mul(c_k)).scalar(psi).raw(msg2)
            direct[j] = w.getvalue()
        bcast = Writer(self._header(3, BROADCAST, 0)).raw(self._sigid).point(self._R).raw(self._salt).point(self._pk).getvalue()
        return RoundOutput(3, broadcast=bcast, direct=direct)

    def _zeta(self) -> int:
        """Our share of zero among the signers (F_Zero, [P23] Functionality 3.4)."""
        me = self.key.index
        sid_zero = hash32(Tag.SIGN_ZERO_SID, self._sigid)
        z = 0
        for j in self.peers:
            v = hash_to_scalar(Tag.SIGN_ZERO, sid_zero, self.key.peer(j).zero_seed)
            z = z + v if j < me else z - v
        return z % Q

    # finalize -----------------------------------------------------------------------------
    def _finalize(self, inbox: Mapping[int, Delivery]) -> None:
        me = self.key.index
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=True, round=3)

        msgs: dict[int, _Round3] = {}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None and d is not None

            def dec(b: bytes = b, d: bytes = d, j: int = j) -> _Round3:
                r = self._reader(b, 3, BROADCAST, j)
                if not hmac.compare_digest(r.take(32, "sigid"), self._sigid):
                    raise DecodeError("sigid", "signing session id differs")
                R, salt, pk = r.point("R"), r.take(32, "salt"), r.point("pk")
                r.finish("round-3 broadcast")
                rd = self._reader(d, 3, DIRECT, j)
                if not hmac.compare_digest(rd.take(32, "sigid"), self._sigid):
                    raise DecodeError("sigid", "signing session id differs")
                gr, gk = rd.point("gamma_r"), rd.point("gamma_k")
                psi = rd.scalar("psi")
                msg2 = rd.take(rvole.MSG2_LEN, "rvole_msg2")
                rd.finish("round-3 direct")
                return _Round3(R, salt, pk, gr, gk, psi, msg2)

            msgs[j] = blame_malformed(j, 3, dec)

        for j in self.peers:
            m = msgs[j]
            if not opens(Tag.SIGN_COMMIT_R, self.key.sid_dkg + self._r1[j][0], j, m.R.encode(), m.salt, self._r1[j][1]):
                raise ProtocolAbort(j, "round 3: R does not open the round-1 commitment")

        bob_out: dict[int, tuple[int, int]] = {}
        for j in self.peers:  # Bob's side with Alice j: mu check, then both Gamma checks (ban)
            m = msgs[j]
            d_r, d_k = self._bobs[j].finish(m.msg2)
            chi = self._bobs[j].chi
            if m.R * chi != Point.base_mul(d_r) + m.gamma_r:
                raise ProtocolAbort(j, "round 3: consistency check on R failed", ban=True)
            if m.pk * chi != Point.base_mul(d_k) + m.gamma_k:
                raise ProtocolAbort(j, "round 3: consistency check on pk failed", ban=True)
            bob_out[j] = (d_r, d_k)

        if point_sum([self._pk] + [msgs[j].pk for j in self.peers]) != self.derived_key:
            raise ProtocolAbort(None, "round 3: the key shares do not add up to the (derived) public key")
        R = point_sum([self._R] + [msgs[j].R for j in self.peers])
        if R.is_infinity:
            raise ProtocolAbort(None, "round 3: R is the identity")
        if R.x % Q == 0:
            raise ProtocolAbort(None, "round 3: x(R) = 0 mod q")
        phi_hat = (self._phi + sum(msgs[j].psi for j in self.peers)) % Q
        u = (self._r * phi_hat + sum(self._c[j][0] + bob_out[j][0] for j in self.peers)) % Q
        v = (self._sk * phi_hat + sum(self._c[j][1] + bob_out[j][1] for j in self.peers)) % Q
        self.result = Presignature(
            index=me,
            sigid=self._sigid,
            key_id=self.key.key_id,
            epoch=self.key.epoch,
            sid_dkg=self.key.sid_dkg,
            public_key=self.derived_key,
            derivation_path=self.cfg.derivation_path,
            signers=self.signers,
            R=R,
            _secret=(self._phi, u, v),
        )
        self._wipe()


# --------------------------------------------------------------------------------------------
# batch presigning (issue 14): count presignatures in one three-round session

MAX_PRESIGN_BATCH = 64
"""The most presignatures one :class:`PresignBatch` makes (a node may set a lower cap)."""

_BATCH_PART_MAX = 1 << 24  # one instance's message inside a batch message (bytes)


def _nth(parts: Sequence[bytes] | None, k: int) -> bytes | None:
    return None if parts is None else parts[k]


def batch_session(session: bytes, k: int) -> bytes:
    """The session id of instance ``k`` (0-based) of the batch ``session``:
    ``H(Tag.SIGN_BATCH_SID; session, u32 k)``, 32 bytes. Distinct for distinct ``k``; each
    instance's sigid also hashes its own fresh nonces, so presignature ids never repeat."""
    if len(session) != SESSION_LEN:
        raise UsageError(f"session: must be {SESSION_LEN} bytes")
    if not 0 <= k < MAX_PRESIGN_BATCH:
        raise UsageError(f"k: must be in 0..{MAX_PRESIGN_BATCH - 1}")
    return hash32(Tag.SIGN_BATCH_SID, session, u32(k))


@dataclass(frozen=True)
class BatchConfig:
    """:class:`SignConfig` plus ``count``: how many presignatures (1..:data:`MAX_PRESIGN_BATCH`),
    all for the same key, signer set and derivation path."""

    session: bytes
    signers: tuple[int, ...]
    count: int
    derivation_path: tuple[int, ...] = ()
    banned: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if len(self.session) != SESSION_LEN:
            raise UsageError(f"session: must be {SESSION_LEN} bytes")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_PRESIGN_BATCH:
            raise UsageError(f"count: must be in 1..{MAX_PRESIGN_BATCH}, got {self.count!r}")
        check_path(self.derivation_path)


class PresignBatch(RoundParty):
    """``count`` :class:`PresignParty` instances in one round structure (three rounds, like one).

    Instance ``k`` runs with session :func:`batch_session` ``(session, k)``. Each batch message
    is ``header (the batch session) | u16 count | count x (u32 length | the instance's own
    message)``, with the broadcast and direct parts packed separately; every instance checks its
    own inner message as it would alone. Any abort of any instance (a ban included: the
    :class:`ProtocolAbort` propagates unchanged, naming the peer) kills the whole batch and wipes
    every instance's secrets. After the last ``receive()``, :attr:`results` holds the
    presignatures in instance order (each with its own sigid).
    """

    PROTOCOL = Protocol.SIGN
    SECRETS = ("_parties",)

    def __init__(self, key: KeyShare, config: BatchConfig, rng: Rng = SYSTEM_RNG) -> None:
        parties = [
            PresignParty(key, SignConfig(batch_session(config.session, k), config.signers, config.derivation_path, config.banned), rng)
            for k in range(config.count)
        ]
        super().__init__(config.session, key.index)
        self.cfg = config
        self.signers = parties[0].signers
        self.peers = parties[0].peers
        self.derived_key = parties[0].derived_key
        self._parties = parties
        self.results: tuple[Presignature, ...] | None = None

    def _first(self) -> RoundOutput:
        return self._pack(1, [p.start() for p in self._parties])

    def _rounds(self) -> tuple[Handler, ...]:
        return (self._step, self._step, self._step)

    def _pack(self, round: int, outs: Sequence[RoundOutput | None]) -> RoundOutput:
        count = len(self._parties)
        first = outs[0]
        assert first is not None and all(o is not None and o.round == round for o in outs)
        broadcast = None
        if first.broadcast is not None:
            w = Writer(self._header(round, BROADCAST, 0)).u16(count)
            for o in outs:
                assert o is not None and o.broadcast is not None
                w.var(o.broadcast)
            broadcast = w.getvalue()
        direct: dict[int, bytes] = {}
        for j in first.direct:
            w = Writer(self._header(round, DIRECT, j)).u16(count)
            for o in outs:
                assert o is not None
                w.var(o.direct[j])
            direct[j] = w.getvalue()
        return RoundOutput(round, broadcast=broadcast, direct=direct)

    def _unpack(self, raw: bytes, round: int, kind: int, sender: int) -> list[bytes]:
        count = len(self._parties)
        part = "broadcast" if kind == BROADCAST else "direct"

        def dec() -> list[bytes]:
            r = self._reader(raw, round, kind, sender)
            n = r.u16("batch.count")
            if n != count:
                raise DecodeError("batch.count", f"expected {count} presignatures, got {n}")
            out = [r.var(f"batch[{k}].{part}", _BATCH_PART_MAX) for k in range(count)]
            r.finish(f"batch {part}")
            return out

        return blame_malformed(sender, round, dec, part)

    def _step(self, inbox: Mapping[int, Delivery]) -> RoundOutput | None:
        round = self._next + 1  # the round of the messages in this inbox
        want_b, want_d = round in (1, 3), round in (2, 3)
        check_inbox(inbox, self.peers, want_broadcast=want_b, want_direct=want_d, round=round)
        count = len(self._parties)
        parts: dict[int, tuple[list[bytes] | None, list[bytes] | None]] = {}
        for j in self.peers:
            d = inbox[j]
            b = self._unpack(d.broadcast, round, BROADCAST, j) if d.broadcast is not None else None
            dr = self._unpack(d.direct, round, DIRECT, j) if d.direct is not None else None
            parts[j] = (b, dr)
        outs: list[RoundOutput | None] = []
        for k, p in enumerate(self._parties):
            sub = {j: Delivery(_nth(parts[j][0], k), _nth(parts[j][1], k)) for j in self.peers}
            outs.append(p.receive(sub))
        if round < 3:
            return self._pack(round + 1, outs)
        results = tuple(p.result for p in self._parties)
        assert all(r is not None for r in results) and len(results) == count
        self.results = tuple(r for r in results if r is not None)
        for res in self.results:  # pool presignatures: R is public before any digest exists
            res._pool = True
        self._wipe()
        return None

    def _wipe(self) -> None:
        """Wipe every instance. After an abort this includes the presignatures of instances that
        finished before the failing one (round 3 runs instance by instance): never delivered,
        so their secrets are dropped here, not left on the instance objects."""
        delivered = self.__dict__.get("results") is not None
        for p in self.__dict__.get("_parties", ()):
            p._wipe()
            res, p.result = p.result, None
            if res is not None and not delivered:
                res._secret, res._state = None, _USED
        super()._wipe()


# --------------------------------------------------------------------------------------------
# presignatures and the online phase

# The stored record (see Presignature.to_bytes); decoded only by
# crypto_core.hazmat.presignature.load_presignature.
PRESIG_MAGIC = b"MPCNET-PRESIG"
PRESIG_VERSION = 2  # written: carries the key epoch and sid_dkg (issue 14)
PRESIG_VERSION_V1 = 1  # still decoded (epoch unknown): a v1 record can be inspected, never sign
RECORD_FRESH, RECORD_USED = 0, 1  # the record's status byte
_FRESH, _USED, _CONSUMED = 0, 1, 2  # in-memory states; _CONSUMED: one signature_share() allowed


class Presignature(NoCopy):
    """A signer's presignature: public part plus the secret ``(phi_i, u_i, v_i)``.

    Public part: ``index`` (this signer's share index), ``sigid`` (32 B, also the pool's
    presignature id), ``key_id`` (32 B), ``epoch`` (the key epoch it was made at, 0..2^32-1),
    ``sid_dkg`` (32 B, the key share's session id at that epoch: changes at every refresh or
    reshare), ``public_key`` (the derived key PK'), ``derivation_path``, ``signers`` (share
    indices of that epoch, increasing) and ``R``. ``epoch`` and ``sid_dkg`` are ``None`` only for
    a version-1 record, which never signs.

    ``pool`` (read it as :attr:`pool`): ``R`` may have been public before the digest was chosen
    (a record revived from storage, or a :class:`PresignBatch` result). Such a presignature
    signs only re-randomised shares (issue 14, design D3): with raw digests, whoever knows ``R``
    in advance turns one plain signature on a digest it chose into a signature on any digest
    (tests/crypto/test_review_presig_rawdigest.py).

    One-time use: call :meth:`mark_used`, durably store the tombstone it returns over the
    stored record, and only then call :meth:`signature_share` (once). A tombstone decodes to a
    presignature that refuses to sign, so "already used" is checkable from storage.

    There is deliberately no ``from_bytes`` here (and ``copy``/``pickle`` raise
    :class:`UsageError`): reviving a stored record is
    :func:`crypto_core.hazmat.presignature.load_presignature`, whose caller must guarantee that
    the record is the only, current copy (a stale copy of a used presignature signs twice).
    """

    __slots__ = (
        "R", "_pool", "_secret", "_state", "derivation_path", "epoch", "index", "key_id", "public_key", "sid_dkg", "sigid",
        "signers",
    )

    def __init__(
        self,
        *,
        index: int,
        sigid: bytes,
        key_id: bytes,
        public_key: Point,
        derivation_path: tuple[int, ...],
        signers: tuple[int, ...],
        R: Point,
        _secret: tuple[int, int, int] | None,
        epoch: int | None,
        sid_dkg: bytes | None,
        pool: bool = False,
    ) -> None:
        if (epoch is None) != (sid_dkg is None):
            raise UsageError("epoch, sid_dkg: both or neither (neither only for a version-1 record)")
        if sid_dkg is not None and len(sid_dkg) != 32:
            raise UsageError("sid_dkg: must be 32 bytes")
        if epoch is not None and not 0 <= epoch <= 0xFFFFFFFF:
            raise UsageError("epoch: must be a u32")
        self.index = index
        self.sigid = sigid
        self.key_id = key_id
        self.epoch = epoch
        self.sid_dkg = sid_dkg
        self.public_key = public_key
        self.derivation_path = tuple(derivation_path)
        self.signers = tuple(signers)
        self.R = R
        self._secret = _secret
        self._state = _FRESH if _secret is not None else _USED
        self._pool = pool

    def __repr__(self) -> str:
        return f"Presignature(sigid={self.sigid.hex()[:16]}…, index={self.index}, epoch={self.epoch}, used={self.used})"

    @property
    def used(self) -> bool:
        return self._state != _FRESH

    @property
    def r(self) -> int:
        return self.R.x % Q

    @property
    def pool(self) -> bool:
        """Whether ``R`` may have been public before the digest (then only re-randomised shares)."""
        return self._pool

    @property
    def version(self) -> int:
        """The record version this presignature is written as (1 only if it was read as v1)."""
        return PRESIG_VERSION_V1 if self.epoch is None else PRESIG_VERSION

    def mark_used(self) -> bytes:
        """Consume the presignature in memory; returns the tombstone record to persist."""
        if self._state != _FRESH:
            raise PresignatureUsed("presignature already used")
        self._state = _CONSUMED  # exactly one signature_share() allowed
        return self._encode(with_secret=False)

    def signature_share(
        self,
        digest: bytes,
        *,
        key_id: bytes,
        epoch: int,
        derivation_path: Sequence[int] = (),
        signers: Sequence[int] | None = None,
        rerandomize: bool = False,
        sid_dkg: bytes | None = None,
    ) -> SignatureShare:
        """The online step: ``w_i = h*phi_i + r_x*v_i`` (notes section 6, online).

        ``key_id``, ``epoch``, ``derivation_path`` (and ``signers``, share indices, and
        ``sid_dkg``, the current key share's 32-byte session id, when given) are what the caller
        is signing for; a presignature made for another key, key epoch, key share (the same
        epoch number of another DKG or reshare run), derivation path (Groth-Shoup) or signer set
        is refused with :class:`UsageError` naming the field, and so is a version-1 record (it
        carries no epoch). ``rerandomize``: the
        Groth-Shoup re-randomised share (version 2, :mod:`crypto_core.combiner`): ``u_i* = u_i +
        delta*phi_i``, ``w_i* = h*phi_i + x(R*)*v_i``; required for a :attr:`pool` presignature
        (else :class:`UsageError` naming ``rerandomize``; issue 14, design D3). Fails closed:
        once :meth:`mark_used` was called, the first call consumes the secret whatever its
        outcome, so a refused call leaves nothing to retry with.
        """
        if self._state == _FRESH:
            raise UsageError("mark_used() must be called (and its record persisted) before signing")
        if self._state != _CONSUMED or self._secret is None:
            raise PresignatureUsed("presignature already used")
        phi, u, v = self._secret
        self._secret = None
        self._state = _USED
        if len(digest) != DIGEST_LEN:
            raise UsageError(f"digest: must be {DIGEST_LEN} bytes, got {len(digest)} (presignature discarded)")
        if not hmac.compare_digest(key_id, self.key_id):
            raise UsageError("key_id: presignature was made for another key (presignature discarded)")
        if self.epoch is None:
            raise UsageError("presignature.version: a version-1 record carries no key epoch and cannot sign (presignature discarded)")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch != self.epoch:
            raise UsageError(f"epoch: presignature was made at key epoch {self.epoch}, not {epoch!r} (presignature discarded)")
        if sid_dkg is not None:
            if not isinstance(sid_dkg, bytes) or len(sid_dkg) != 32:
                raise UsageError("sid_dkg: must be 32 bytes (presignature discarded)")
            assert self.sid_dkg is not None  # with the epoch (constructor)
            if not hmac.compare_digest(sid_dkg, self.sid_dkg):
                raise UsageError("sid_dkg: presignature was made for another key share of this epoch (presignature discarded)")
        if tuple(derivation_path) != self.derivation_path:
            raise UsageError("derivation_path: presignature was made for another derivation path (presignature discarded)")
        if signers is not None and tuple(signers) != self.signers:
            raise UsageError("signers: presignature was made by another signer set (presignature discarded)")
        if self._pool and not rerandomize:
            raise UsageError(
                "rerandomize: a pool presignature (R was public before the digest) signs only re-randomised shares; "
                "a plain share on a chosen raw digest would give a signature on any digest (presignature discarded)"
            )
        h = int.from_bytes(digest, "big") % Q
        if not rerandomize:
            w = (h * phi + self.r * v) % Q
            return SignatureShare(self.index, self.sigid, self.R, bytes(digest), u, w, SHARE_PLAIN)
        delta = rerandomizer(self.sigid, self.R, self.public_key, self.derivation_path, digest)
        r_star = rerandomized_nonce(self.R, delta).x % Q
        u_star = (u + delta * phi) % Q
        w_star = (h * phi + r_star * v) % Q
        return SignatureShare(self.index, self.sigid, self.R, bytes(digest), u_star, w_star, SHARE_RERANDOMIZED)

    # serialization ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The stored record: the fresh record (with the secret) while unused, else the tombstone.

        Layout (version 2): ``PRESIG_MAGIC | u16 version | u8 status (RECORD_FRESH or
        RECORD_USED) | u16 index | sigid (32 B) | key_id (32 B) | u32 epoch | sid_dkg (32 B) |
        public_key (33 B) | u16 path length, u32 each | u16 signer count, u16 each | R (33 B) |
        [phi, u, v: 3 scalars of 32 B, fresh only]``. Version 1 is the same without ``epoch``
        and ``sid_dkg``; it is written only as the tombstone of a version-1 record.
        """
        if self._state != _FRESH:
            return self._encode(with_secret=False)
        return self._encode(with_secret=True)

    def _encode(self, with_secret: bool) -> bytes:
        w = Writer().raw(PRESIG_MAGIC).u16(self.version).u8(RECORD_FRESH if with_secret else RECORD_USED)
        w.u16(self.index).raw(self.sigid).raw(self.key_id)
        if self.epoch is not None:
            assert self.sid_dkg is not None
            w.u32(self.epoch).raw(self.sid_dkg)
        w.point(self.public_key)
        w.u16(len(self.derivation_path))
        for c in self.derivation_path:
            w.u32(c)
        w.u16(len(self.signers))
        for s in self.signers:
            w.u16(s)
        w.point(self.R)
        if with_secret:
            assert self._secret is not None
            w.scalars(list(self._secret))
        return w.getvalue()
