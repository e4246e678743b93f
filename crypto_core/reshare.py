"""Refresh and quorum change of a key's Shamir sharing, same public key (issue 11 items 1-2).

Sources: DKLs23 notes section 9 (9.1 refresh variant A, zero-constant re-sharing as in [0xC]
``refresh.rs`` and [L22] section 8; 9.2 quorum change as in Silence Laboratories' dkls23
``keygen/quorum_change.rs``), with the Feldman/PoK/echo building blocks of :mod:`crypto_core.dkg`.

Roles. Session participants are transport ids (``party``). A *dealer* holds an old-epoch share
``x_i`` at old index ``i``; a *receiver* gets a new-epoch share at new index ``j`` in ``1..n'``.
A party may be both (it keeps its own evaluation).

* Quorum change ``(t, n) -> (t', n')`` (``refresh=False``): at least ``t`` dealers, set ``O``;
  dealer i deals ``g_i`` of degree ``t'-1`` with ``g_i(0) = lam_i^O * x_i`` and Feldman vector
  ``G_i`` (``t'`` points, none the identity). Receiver j: ``x'_j = sum_i g_i(j)``. The
  constant terms must sum to the public key the receiver was *given* (config), never one taken
  from the dealers; with the old public shares known (a dealer always knows them, a new party may
  be given them), ``G_i[0] == lam_i * S_i`` is checked per dealer, so a wrong constant term is
  attributed.
* Refresh (``refresh=True``): the whole committee, same indices and threshold. Every party deals
  ``delta_i`` of degree ``t-1`` with ``delta_i(0) = 0``: ``G_i[0]`` is sent as the identity and
  checked (any other point aborts naming the sender); proofs for ``k >= 1`` only.
  ``x'_j = x_j + sum_i delta_i(j)``, ``S'_m = S_m + sum_i G_i(m)``.

Rounds (``B`` broadcast, ``D`` direct and confidential; every participant runs all four):

1. B: digest of the configuration (mode, epochs, t, t', dealers, receivers, public key, chain
   code, label, lambda_c), fresh ``sid_i``; a dealer adds ``Com(G_i)`` and a digest of its old
   public shares (every dealer's, and a receiver's given ones, must be equal, else an
   unattributed abort: a stale vector would otherwise make a receiver blame an honest dealer).
2. B: echo of round 1; a dealer adds ``G_i``, a Schnorr PoK of every coefficient (``k >= 1`` in
   a refresh) and the commitment's salt. D to every receiver j: from a dealer ``g_i(j)``; from a
   receiver i the new epoch's pairwise setup as in :mod:`crypto_core.dkg` (notes 3): a zero-seed
   contribution and the base-OT receiver message of the pair (B = j, A = i).
3. B: echo of round 2 and a digest of the new public state (key, chain code, t', n', epoch, every
   ``S'_m``). D receiver to receiver: the base-OT sender reply.
4. B: echo of round 3. D receiver to receiver: a digest of the pair's base-OT transcripts (both
   directions) and zero seed. A receiver's :attr:`ReshareParty.result` (a :class:`KeyShare` of
   epoch ``old_epoch + 1``, ``sid_dkg = sid_reshare``, fresh pairwise material by new index)
   exists only after every peer confirmed the same public state, the same echoes and, for every
   new pair, the same pairwise transcripts; an old-only dealer ends with ``retired`` set.

``sid_reshare = H(session, config digest, every (party, sid_i, Com_i))`` binds all of it; every
proof context, pair id and zero seed derives from it, and commitments bind ``sid_i`` and the
sender. Errors are :class:`ProtocolAbort`; the culprit is named only when its own message proves
it (as in :mod:`crypto_core.dkg`); an honest party is never named.

The caller keeps the old share until every party of the session finished (atomicity, notes 9.1
and pitfall 14: a half-finished reshare must not leave a mix of epochs), then replaces it with
:attr:`ReshareParty.result`, or erases it when :attr:`ReshareParty.retired`. Shares of different
epochs have different ``sid_dkg``: a signing session mixing them aborts (different ``sigid``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from . import schnorr
from .backup import RecoveredShare
from .codec import BROADCAST, DIRECT, SESSION_LEN, Protocol, Writer
from .commitment import commit, opens
from .errors import DecodeError, ProtocolAbort, UsageError
from .group import Point, Q, point_sum
from .hazmat import base_ot
from .hazmat.pairwise import OteReceiverSeeds, OteSenderSeeds, PairwiseSetup
from .keyshare import MAX_EPOCH, KeyShare
from .params import LAMBDA_C, MAX_LABEL, MAX_PARTIES, SUPPORTED_LAMBDA
from .rng import SYSTEM_RNG, Rng
from .session import Delivery, Handler, RoundOutput, RoundParty, blame_malformed, check_echoes, check_inbox
from .shamir import evaluate, feldman_commit, feldman_evaluate, interpolate_points_at_zero, lagrange_coefficient, random_polynomial
from .tags import Tag
from .transcript import frame, hash32, list_of, u16, u32

ECHO_LEN = 32
_IDENTITY = bytes(33)


def _roles(pairs: tuple[tuple[int, int], ...], what: str) -> dict[int, int]:
    if not isinstance(pairs, tuple) or not all(isinstance(x, tuple) and len(x) == 2 for x in pairs):
        raise UsageError(f"{what}: must be a tuple of (party, index) pairs")
    for p, i in pairs:  # types first: a bool is not an index, and None must not reach sorted()
        if not (type(p) is int and type(i) is int and 1 <= p <= 65535 and 1 <= i <= MAX_PARTIES):
            raise UsageError(f"{what}: party or share index out of range")
    parties = [p for p, _ in pairs]
    idx = [i for _, i in pairs]
    if list(parties) != sorted(set(parties)):
        raise UsageError(f"{what}: parties must be distinct and ascending")
    if len(set(idx)) != len(idx):
        raise UsageError(f"{what}: duplicate share index")
    return dict(pairs)


@dataclass(frozen=True)
class ReshareConfig:
    """What every participant must agree on (all of it is hashed into the config digest).

    ``dealers``/``receivers``: ``(party, old index)`` / ``(party, new index)`` pairs, ascending
    by party; new indices are exactly ``1..n'``. ``public_key`` and ``chain_code`` are the key's,
    from the party's own trusted input. ``old_public_shares`` (``S_1..S_n`` of the old epoch) is
    optional for a new-only receiver (it enables per-dealer blame); a dealer's comes from its
    own :class:`KeyShare`. The new shares have epoch ``old_epoch + 1``.
    Raises :class:`UsageError` on any inconsistency.
    """

    session: bytes
    index: int  # this party's id in the session
    dealers: tuple[tuple[int, int], ...]
    receivers: tuple[tuple[int, int], ...]
    old_threshold: int
    new_threshold: int
    public_key: Point
    chain_code: bytes
    old_epoch: int
    key_label: bytes = b""
    refresh: bool = False
    old_public_shares: tuple[Point, ...] | None = None
    lambda_c: int = LAMBDA_C

    def __post_init__(self) -> None:
        if len(self.session) != SESSION_LEN:
            raise UsageError(f"session: must be {SESSION_LEN} bytes")
        d = _roles(self.dealers, "dealers")
        r = _roles(self.receivers, "receivers")
        n_new = len(r)
        if sorted(r.values()) != list(range(1, n_new + 1)):
            raise UsageError("receivers: new indices must be exactly 1..n'")
        if not 2 <= self.new_threshold <= n_new <= MAX_PARTIES:
            raise UsageError(f"new_threshold: need 2 <= t' <= n' <= {MAX_PARTIES}")
        if not 2 <= self.old_threshold <= len(d):
            raise UsageError("dealers: need at least old_threshold (>= 2) dealers")
        if self.index not in d and self.index not in r:
            raise UsageError("index: this party is neither a dealer nor a receiver")
        if self.public_key.is_infinity:
            raise UsageError("public_key: the identity")
        if len(self.chain_code) != 32:
            raise UsageError("chain_code: must be 32 bytes")
        if not 0 <= self.old_epoch < MAX_EPOCH:
            raise UsageError("old_epoch: out of range")
        if len(self.key_label) > MAX_LABEL:
            raise UsageError(f"key_label: at most {MAX_LABEL} bytes")
        if self.lambda_c not in SUPPORTED_LAMBDA:
            raise UsageError(f"lambda_c: must be one of {SUPPORTED_LAMBDA}")
        S = self.old_public_shares
        if S is not None:
            if len(S) < max(d.values()) or len(S) < self.old_threshold or any(s.is_infinity for s in S):
                raise UsageError("old_public_shares: too few, or an identity share")
            first = {m: S[m - 1] for m in range(1, self.old_threshold + 1)}
            if interpolate_points_at_zero(first) != self.public_key:
                raise UsageError("old_public_shares: do not interpolate to the public key")
        if self.refresh:
            if self.dealers != self.receivers or self.old_threshold != self.new_threshold:
                raise UsageError("refresh: same committee, same indices and same threshold")
            if S is None or len(S) != n_new:
                raise UsageError("refresh: needs the old public shares of the whole committee")

    @property
    def new_epoch(self) -> int:
        return self.old_epoch + 1

    @property
    def parties(self) -> tuple[int, ...]:
        return tuple(sorted({p for p, _ in self.dealers} | {p for p, _ in self.receivers}))

    def digest(self) -> bytes:
        return hash32(
            Tag.RESHARE_CONFIG,
            self.session,
            bytes([self.refresh]),
            u32(self.old_epoch),
            u16(self.old_threshold),
            u16(self.new_threshold),
            list_of([u16(p) + u16(i) for p, i in self.dealers]),
            list_of([u16(p) + u16(i) for p, i in self.receivers]),
            self.public_key.encode(),
            self.chain_code,
            self.key_label,
            u16(self.lambda_c),
        )


_Pair = tuple[bytes, list[Point], bytes] | None  # a receiver peer's zero-seed part, base-OT message, raw


@dataclass(frozen=True)
class _Dealt:
    G: list[Point]
    proofs: list[schnorr.SchnorrProof]
    rho: bytes


class ReshareParty(RoundParty):
    """One participant's refresh / quorum-change state machine (``start()``, then four
    ``receive()``). A receiver ends with :attr:`result`, its new-epoch :class:`KeyShare`; an
    old-only dealer ends with ``result is None`` and :attr:`retired` set: it must then erase its
    old share. ``old_share`` is required exactly for dealers. After any error the party is dead.

    A dealer's ``old_share`` may be a :class:`~crypto_core.backup.RecoveredShare` (a share
    rebuilt from officers' backup pieces, issue 12): only its secret share, index, threshold,
    parties, public key, chain code, label, epoch and public shares are read, never pairwise
    material, so a node restored from a backup deals in the follow-up refresh or reshare and
    receives a fresh :class:`KeyShare` like every other party.
    """

    PROTOCOL = Protocol.RESHARE
    SECRETS = (
        "_coeffs", "_old", "_own_eval", "_share", "_ot_recv_state", "_zero_mine", "_bob_keys", "_alice", "_zero_seed"
    )

    def __init__(
        self, config: ReshareConfig, old_share: KeyShare | RecoveredShare | None = None, rng: Rng = SYSTEM_RNG
    ) -> None:
        super().__init__(config.session, config.index)
        self.cfg = config
        self._rng = rng
        self._dealers = dict(config.dealers)
        self._receivers = dict(config.receivers)
        me = config.index
        self.is_dealer = me in self._dealers
        self.is_receiver = me in self._receivers
        self.all = config.parties
        self.peers = tuple(p for p in self.all if p != me)
        self.result: KeyShare | None = None
        self._new_peers = [j for j in self.peers if j in self._receivers] if self.is_receiver else []
        self.retired = False
        self._old_shares = config.old_public_shares
        if self.is_dealer:
            if old_share is None:
                raise UsageError("old_share: a dealer needs its old-epoch key share")
            ks = old_share
            if ks.index != self._dealers[me] or ks.threshold != config.old_threshold:
                raise UsageError("old_share: index or threshold differs from the configuration")
            if ks.public_key != config.public_key or not hmac.compare_digest(ks.chain_code, config.chain_code):
                raise UsageError("old_share: belongs to another key")
            if ks.key_label != config.key_label:
                raise UsageError("old_share: its key label differs from the configuration's")
            if ks.epoch != config.old_epoch:
                raise UsageError(f"old_share: epoch {ks.epoch}, the configuration says {config.old_epoch}")
            if max(self._dealers.values()) > ks.parties:
                raise UsageError("dealers: an old index beyond the old committee")
            if self._old_shares is not None and self._old_shares != ks.public_shares:
                raise UsageError("old_public_shares: differ from our key share's")
            self._old_shares = ks.public_shares
            self._old = ks.secret_share
        elif old_share is not None:
            raise UsageError("old_share: only dealers take an old share")

    def _first(self) -> RoundOutput:
        return self._round1()

    def _rounds(self) -> tuple[Handler, ...]:
        return (self._round2, self._round3, self._round4, self._finish)

    # helpers --------------------------------------------------------------------------------
    def _g_bytes(self, G: list[Point]) -> bytes:
        return u16(self.cfg.new_threshold) + b"".join(p.encode() for p in G)

    def _coef_ctx(self, party: int, k: int) -> bytes:
        return frame((Tag.RESHARE_COEF_POK.bytes, self._sid, u16(party), u16(k)))

    def _first_proved(self) -> int:
        return 1 if self.cfg.refresh else 0

    def _lam(self, party: int) -> int:
        return lagrange_coefficient(self._dealers[party], sorted(self._dealers.values()))

    def _pair_sid(self, bob: int, alice: int) -> bytes:
        """Per-pair, per-direction base-OT session id, by new indices (B = bob, A = alice)."""
        return hash32(Tag.OT_SETUP_SID, self._sid, u16(self._receivers[bob]), u16(self._receivers[alice]))

    def _direct_in_round2(self, j: int) -> bool:
        """Whether peer j sends us a direct part in round 2 (a share, pairwise setup, or both)."""
        return self.is_receiver and (j in self._dealers or j in self._receivers)

    def _check_inbox(self, inbox: Mapping[int, Delivery], round: int, direct_from: list[int]) -> None:
        """A broadcast from every peer; a direct part from exactly ``direct_from``."""
        for j in self.peers:
            got = inbox.get(j)
            if got is not None and (got.direct is not None) != (j in direct_from):
                raise ProtocolAbort(j, f"round {round}: direct part {'missing' if j in direct_from else 'unexpected'}")
        bcasts = {j: Delivery(dl.broadcast, None) for j, dl in inbox.items()}
        check_inbox(bcasts, self.peers, want_broadcast=True, want_direct=False, round=round)

    def _old_shares_digest(self) -> bytes:
        """Digest of the old public shares ``S_1..S_n`` (32 bytes) a dealer sends in round 1.

        A receiver blames dealer i by ``G_i[0] != lam_i * S_i`` and a refresh builds ``S'`` from
        ``S``: both are sound only if every party uses the same ``S`` (a stale vector of an earlier
        epoch also interpolates to the public key), so a mismatch aborts in round 1, unattributed.
        """
        assert self._old_shares is not None
        return hash32(Tag.RESHARE_OLD_SHARES, self.cfg.session, u32(self.cfg.old_epoch), list_of([s.encode() for s in self._old_shares]))

    def _constant(self) -> int:
        """The dealt constant term: 0 in a refresh, ``lam_i^O * x_i`` in a quorum change."""
        return 0 if self.cfg.refresh else self._lam(self.cfg.index) * self._old % Q

    # round 1 --------------------------------------------------------------------------------
    def _round1(self) -> RoundOutput:
        cfg, rng, me = self.cfg, self._rng, self.cfg.index
        self._sid_i = rng.bytes(32)
        w = Writer(self._header(1, BROADCAST, 0)).raw(cfg.digest()).raw(self._sid_i)
        self._com = b""
        if self.is_dealer:
            self._coeffs = random_polynomial(cfg.new_threshold, rng, constant=self._constant())
            G = feldman_commit(self._coeffs)
            self._G = G
            self._com, self._rho = commit(Tag.RESHARE_COMMIT_G, cfg.session + self._sid_i, me, self._g_bytes(G), rng)
            w.raw(self._com).raw(self._old_shares_digest())
        msg = w.getvalue()
        self._r1_self = msg
        return RoundOutput(1, broadcast=msg)

    # round 2 --------------------------------------------------------------------------------
    def _round2(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, me = self.cfg, self.cfg.index
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=False, round=1)
        r1: dict[int, tuple[bytes, bytes]] = {me: (self._sid_i, self._com)}
        self._echo1 = {me: hash32(Tag.RESHARE_ECHO1, self._r1_self)}
        mine = cfg.digest()
        # every dealer's old public shares, and ours if we hold them, must be the same vector
        ref_old = None if self._old_shares is None else self._old_shares_digest()
        for j in self.peers:
            raw = inbox[j].broadcast
            assert raw is not None

            def dec(raw: bytes = raw, j: int = j) -> tuple[bytes, bytes, bytes, bytes]:
                r = self._reader(raw, 1, BROADCAST, j)
                conf, sid = r.take(32, "config_digest"), r.take(32, "sid")
                com = old_dig = b""
                if j in self._dealers:
                    com, old_dig = r.take(32, "commit_feldman"), r.take(32, "old_public_shares")
                r.finish("round-1 broadcast")
                return conf, sid, com, old_dig

            conf, sid, com, old_dig = blame_malformed(j, 1, dec, "round-1")
            if not hmac.compare_digest(conf, mine):
                raise ProtocolAbort(
                    None, f"round 1: party {j} runs the reshare with other parameters: it misbehaves or was given other inputs"
                )
            if j in self._dealers:
                if ref_old is None:
                    ref_old = old_dig
                if not hmac.compare_digest(old_dig, ref_old):
                    raise ProtocolAbort(
                        None, f"round 1: party {j} holds other old public shares: it misbehaves or was given other inputs"
                    )
            r1[j] = (sid, com)
            self._echo1[j] = hash32(Tag.RESHARE_ECHO1, raw)
        for j in self.peers:
            if r1[j][0] == self._sid_i:
                raise ProtocolAbort(j, "round 1: session contribution repeats ours")
        if len({v[0] for v in r1.values()}) != len(r1):
            raise ProtocolAbort(None, "round 1: two peers sent the same session contribution (cannot tell which copied)")
        self._r1 = r1
        self._sid = hash32(Tag.RESHARE_SID, cfg.session, mine, list_of([u16(j) + b"".join(r1[j]) for j in sorted(r1)]))

        w = Writer(self._header(2, BROADCAST, 0)).raw(b"".join(self._echo1[m] for m in self.all))
        direct: dict[int, bytes] = {}
        if self.is_dealer:
            for pt in self._G:
                w.raw(_IDENTITY if pt.is_infinity else pt.encode())
            for k in range(self._first_proved(), cfg.new_threshold):
                schnorr.prove(self._coeffs[k], self._G[k], self._coef_ctx(me, k), self._rng).write(w)
            w.raw(self._rho)
        if self.is_receiver:  # pairwise setup of the new epoch (notes 3 and 9.1): B = j, A = me
            self._zero_mine: dict[int, bytes] = {}
            self._ot_recv_state: dict[int, base_ot.ReceiverState] = {}
            self._ot_recv_msg: dict[int, bytes] = {}
            for j in self._new_peers:
                self._zero_mine[j] = self._rng.bytes(32)
                st, pts = base_ot.receiver_message(self._pair_sid(j, me), self._rng, count=cfg.lambda_c)
                self._ot_recv_state[j] = st
                self._ot_recv_msg[j] = b"".join(p.encode() for p in pts)
        for j in self.peers:
            if j not in self._receivers:  # only receivers get direct parts
                continue
            d = Writer(self._header(2, DIRECT, j))
            if self.is_dealer and j in self._receivers:
                d.scalar(evaluate(self._coeffs, self._receivers[j]))
            if self.is_receiver and j in self._receivers:
                d.raw(self._zero_mine[j]).raw(self._ot_recv_msg[j])
            direct[j] = d.getvalue()
        if self.is_dealer:
            if self.is_receiver:
                self._own_eval = evaluate(self._coeffs, self._receivers[me])
            del self._coeffs
        bcast = w.getvalue()
        self._r2_self = bcast
        return RoundOutput(2, broadcast=bcast, direct=direct)

    # round 3 --------------------------------------------------------------------------------
    def _round3(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, me, tn = self.cfg, self.cfg.index, self.cfg.new_threshold
        self._check_inbox(inbox, 2, [j for j in self.peers if self._direct_in_round2(j)])
        echoes: dict[int, list[bytes]] = {}
        dealt: dict[int, _Dealt] = {}
        shares: dict[int, int] = {}
        pair_in: dict[int, tuple[bytes, list[Point], bytes]] = {}  # zero-seed part, base-OT msg, raw
        self._echo2 = {me: hash32(Tag.RESHARE_ECHO2, self._r2_self)}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None

            def dec(b: bytes = b, d: bytes | None = d, j: int = j) -> tuple[list[bytes], _Dealt | None, int | None, _Pair]:
                r = self._reader(b, 2, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in self.all]
                out: _Dealt | None = None
                if j in self._dealers:
                    G: list[Point] = []
                    for k in range(tn):
                        G.append(r.point(f"feldman[{k}]", allow_infinity=(k == 0 and cfg.refresh)))
                    proofs = r.seq(tn - self._first_proved(), "proof", lambda f: schnorr.SchnorrProof.read(r, f))
                    out = _Dealt(G, proofs, r.take(32, "salt_feldman"))
                r.finish("round-2 broadcast")
                share: int | None = None
                pair: _Pair = None
                if d is not None:
                    rd = self._reader(d, 2, DIRECT, j)
                    if j in self._dealers:
                        share = rd.scalar("share")
                    if j in self._receivers:
                        zero = rd.take(32, "zero_seed")
                        raw_ot = d[len(d) - rd.remaining():]
                        pair = (zero, rd.points(2 * cfg.lambda_c, "base_ot"), raw_ot)
                    rd.finish("round-2 direct")
                return echo, out, share, pair

            echo, out, share, pair = blame_malformed(j, 2, dec, "round-2")
            if pair is not None:
                pair_in[j] = pair
            echoes[j] = echo
            if out is not None:
                dealt[j] = out
            if share is not None:
                shares[j] = share
            self._echo2[j] = hash32(Tag.RESHARE_ECHO2, b)
        check_echoes(2, me, self.all, echoes, self._echo1)

        if self.is_dealer:
            dealt[me] = _Dealt(self._G, [], b"")
        for j in sorted(dealt):
            if j == me:
                continue
            m = dealt[j]
            if not opens(Tag.RESHARE_COMMIT_G, cfg.session + self._r1[j][0], j, self._g_bytes(m.G), m.rho, self._r1[j][1]):
                raise ProtocolAbort(j, "round 2: Feldman vector does not open the round-1 commitment")
            if cfg.refresh and not m.G[0].is_infinity:
                raise ProtocolAbort(j, "round 2: a non-identity constant term in a refresh")
            if not cfg.refresh and self._old_shares is not None:
                if m.G[0] != self._old_shares[self._dealers[j] - 1] * self._lam(j):
                    raise ProtocolAbort(j, "round 2: constant term is not lambda_i times its old public share")
            for k, proof in zip(range(self._first_proved(), tn), m.proofs, strict=True):
                if not schnorr.verify(proof, m.G[k], self._coef_ctx(j, k)):
                    raise ProtocolAbort(j, f"round 2: invalid proof of knowledge of coefficient {k}")
            if j in shares and Point.base_mul(shares[j]) != feldman_evaluate(m.G, self._receivers[me]):
                raise ProtocolAbort(j, "round 2: share does not match its Feldman commitment")

        agg = [point_sum(dealt[j].G[k] for j in sorted(dealt)) for k in range(tn)]
        n_new = len(self._receivers)
        if cfg.refresh:
            if not agg[0].is_infinity:  # unreachable after the per-dealer checks; kept as a guard
                raise ProtocolAbort(None, "round 2: the refresh does not sum to a zero sharing")
            assert self._old_shares is not None
            new_pub = tuple(self._old_shares[m - 1] + feldman_evaluate(agg, m) for m in range(1, n_new + 1))
        else:
            if agg[0] != cfg.public_key:
                raise ProtocolAbort(None, "round 2: the dealers' constant terms do not sum to the public key")
            new_pub = tuple(feldman_evaluate(agg, m) for m in range(1, n_new + 1))
        if any(s.is_infinity for s in new_pub):
            raise ProtocolAbort(None, "round 2: a new public share is the identity")
        self._new_pub = new_pub
        if self.is_receiver:
            total = sum(shares.values()) + (self._own_eval if self.is_dealer else 0)
            if cfg.refresh:
                total += self._old
            self._share = total % Q
            if Point.base_mul(self._share) != new_pub[self._receivers[me] - 1]:
                raise ProtocolAbort(None, "round 2: own new share inconsistent with the aggregate commitment")
        self.__dict__.pop("_own_eval", None)

        direct: dict[int, bytes] = {}
        if self.is_receiver:
            mn = self._receivers[me]
            self._zero_seed: dict[int, bytes] = {}
            self._bob_keys: dict[int, list[tuple[bytes, bytes]]] = {}
            self._ot_peer_msg: dict[int, bytes] = {}
            self._ot_reply: dict[int, bytes] = {}
            for j in self._new_peers:
                zero, ot, raw_ot = pair_in[j]
                jn = self._receivers[j]
                lo, hi = (self._zero_mine[j], zero) if mn < jn else (zero, self._zero_mine[j])
                self._zero_seed[j] = hash32(Tag.ZERO_SEED, self._sid, u16(min(mn, jn)), u16(max(mn, jn)), lo, hi)
                keys, reply = base_ot.sender_reply(self._pair_sid(me, j), ot, self._rng, peer=j, count=cfg.lambda_c)
                self._bob_keys[j] = keys
                self._ot_peer_msg[j] = raw_ot
                self._ot_reply[j] = b"".join(p.encode() for p in reply)
                direct[j] = Writer(self._header(3, DIRECT, j)).raw(self._ot_reply[j]).getvalue()
            del self._zero_mine

        w = Writer(self._header(3, BROADCAST, 0)).raw(b"".join(self._echo2[m] for m in self.all))
        w.raw(self._confirm())
        bcast = w.getvalue()
        self._r3_self = bcast
        return RoundOutput(3, broadcast=bcast, direct=direct)

    def _confirm(self) -> bytes:
        c = self.cfg
        return hash32(
            Tag.RESHARE_CONFIRM,
            self._sid,
            c.public_key.encode(),
            c.chain_code,
            u16(c.new_threshold),
            u16(len(self._receivers)),
            u32(c.new_epoch),
            list_of([s.encode() for s in self._new_pub]),
        )

    # round 4 ------------------------------------------------------------------------------
    def _round4(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, me = self.cfg, self.cfg.index
        self._check_inbox(inbox, 3, self._new_peers)
        parsed: dict[int, tuple[list[bytes], bytes, list[Point] | None, bytes]] = {}
        self._echo3 = {me: hash32(Tag.RESHARE_ECHO3, self._r3_self)}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None

            def dec(b: bytes = b, d: bytes | None = d, j: int = j) -> tuple[list[bytes], bytes, list[Point] | None, bytes]:
                r = self._reader(b, 3, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in self.all]
                digest = r.take(32, "confirm")
                r.finish("round-3 broadcast")
                reply: list[Point] | None = None
                raw = b""
                if d is not None:
                    rd = self._reader(d, 3, DIRECT, j)
                    raw = d[len(d) - rd.remaining():]
                    reply = rd.points(cfg.lambda_c, "base_ot_reply")
                    rd.finish("round-3 direct")
                return echo, digest, reply, raw

            parsed[j] = blame_malformed(j, 3, dec, "round-3")
            self._echo3[j] = hash32(Tag.RESHARE_ECHO3, b)
        check_echoes(3, me, self.all, {j: parsed[j][0] for j in self.peers}, self._echo2)
        mine = self._confirm()
        for j in self.peers:
            if not hmac.compare_digest(parsed[j][1], mine):
                raise ProtocolAbort(j, "round 3: confirmed a different new sharing")

        # finish the base OTs where we are the extension sender (B = j, A = me)
        self._alice: dict[int, OteSenderSeeds] = {}
        self._pair_digest: dict[int, bytes] = {}
        direct: dict[int, bytes] = {}
        if self.is_receiver:
            for j in self._new_peers:
                st, reply = self._ot_recv_state[j], parsed[j][2]
                assert reply is not None
                keys = base_ot.receiver_finish(self._pair_sid(j, me), st, reply, peer=j)
                self._alice[j] = OteSenderSeeds(base_ot.pack_bits(st.choices), tuple(keys))
                self._pair_digest[j] = self._pair_confirm(j, parsed[j][3])
                direct[j] = Writer(self._header(4, DIRECT, j)).raw(self._pair_digest[j]).getvalue()
            del self._ot_recv_state
        w = Writer(self._header(4, BROADCAST, 0)).raw(b"".join(self._echo3[m] for m in self.all))
        return RoundOutput(4, broadcast=w.getvalue(), direct=direct)

    def _pair_confirm(self, j: int, peer_reply: bytes) -> bytes:
        """Digest of both base-OT directions of the pair and of its zero seed, same on both sides."""
        me = self.cfg.index
        mn, jn = self._receivers[me], self._receivers[j]
        mine_as_bob = hash32(Tag.RESHARE_PAIR_CONFIRM, u16(mn), u16(jn), self._ot_peer_msg[j], self._ot_reply[j])
        mine_as_alice = hash32(Tag.RESHARE_PAIR_CONFIRM, u16(jn), u16(mn), self._ot_recv_msg[j], peer_reply)
        lo_first = (mine_as_bob, mine_as_alice) if mn < jn else (mine_as_alice, mine_as_bob)
        return hash32(
            Tag.RESHARE_PAIR_CONFIRM, self._sid, u16(min(mn, jn)), u16(max(mn, jn)), *lo_first, self._zero_seed[j]
        )

    # output ---------------------------------------------------------------------------------
    def _finish(self, inbox: Mapping[int, Delivery]) -> None:
        cfg, me = self.cfg, self.cfg.index
        self._check_inbox(inbox, 4, self._new_peers)
        parsed: dict[int, tuple[list[bytes], bytes | None]] = {}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None

            def dec(b: bytes = b, d: bytes | None = d, j: int = j) -> tuple[list[bytes], bytes | None]:
                r = self._reader(b, 4, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in self.all]
                r.finish("round-4 broadcast")
                pair: bytes | None = None
                if d is not None:
                    rd = self._reader(d, 4, DIRECT, j)
                    pair = rd.take(32, "pair_digest")
                    rd.finish("round-4 direct")
                return echo, pair

            parsed[j] = blame_malformed(j, 4, dec, "round-4")
        check_echoes(4, me, self.all, {j: parsed[j][0] for j in self.peers}, self._echo3)
        if not self.is_receiver:
            self.retired = True
            self._wipe()
            return
        for j in self._new_peers:
            got = parsed[j][1]
            assert got is not None
            if not hmac.compare_digest(got, self._pair_digest[j]):
                raise ProtocolAbort(j, "round 4: pairwise setup differs (tampered base-OT message or zero-seed contribution)")
        by_new_index = sorted(self._new_peers, key=lambda j: self._receivers[j])
        pairwise = tuple(
            PairwiseSetup(
                self._receivers[j],
                OteReceiverSeeds(tuple(k0 for k0, _ in self._bob_keys[j]), tuple(k1 for _, k1 in self._bob_keys[j])),
                self._alice[j],
                self._zero_seed[j],
            )
            for j in by_new_index
        )
        ks = KeyShare(
            threshold=cfg.new_threshold,
            parties=len(self._receivers),
            index=self._receivers[me],
            secret_share=self._share,
            public_key=cfg.public_key,
            public_shares=self._new_pub,
            chain_code=cfg.chain_code,
            sid_dkg=self._sid,
            key_label=cfg.key_label,
            pairwise=pairwise,
            lambda_c=cfg.lambda_c,
            epoch=cfg.new_epoch,
        )
        self._wipe()
        try:
            ks.validate()
        except DecodeError as e:  # unreachable after the checks above; never a half-valid share
            raise ProtocolAbort(None, f"round 4: the new key share is inconsistent: {e.field}") from None
        self.result = ks


__all__ = ["ReshareConfig", "ReshareParty"]
