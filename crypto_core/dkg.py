"""Distributed key generation with no trusted dealer, plus the DKLs23 pairwise setup.

Feldman VSS with a proof of knowledge of every coefficient (Lindell 2022/374 section 6.1 as
implemented by Silence Laboratories' dkls23; notes section 2), and in the same rounds the
one-time pairwise material of notes section 3: Endemic base OTs for both directions of every
pair (seeds of the OT extension) and a zero-share seed per pair.

Rounds (``B`` = broadcast part, ``D`` = direct part, confidential):

1. B: digest of the parameters (t, n, lambda_c, label) the party was asked to run with,
   ``sid_i``, commitment to the Feldman vector ``F_i``, commitment to the chain-code share.
2. B: echo of round 1, ``F_i`` (exactly t points, none the identity), one Schnorr proof per
   coefficient, both openings. D to j: ``f_i(j)``, a zero-seed contribution, and the base-OT
   receiver message of the pair where j is the extension receiver.
3. B: echo of round 2, proof of knowledge of the share ``s_i`` behind ``S_i``.
   D to j: the base-OT sender reply of the pair where i is the extension receiver.
4. B: echo of round 3 and a digest of the resulting key. D to j: a digest of the pair's
   base-OT transcripts (both directions) and zero seed. Each party outputs its :class:`KeyShare` only after every peer's
   round-4 confirmation matched its own, so a party never keeps a key another party disagrees
   with, and a tampered base-OT message or zero seed is caught here, not at the first signature.

``sid_dkg`` hashes every round-1 message, so it binds t, n, the label and every party's fresh
contribution; all proofs and pair ids derive from it. Every failed check raises
:class:`ProtocolAbort` naming a party only when the evidence in hand proves it at fault (its own
message is malformed, contradicts its own earlier message, or fails a check only it controls);
when two parties' messages contradict each other and either could be the liar (an echo that
disagrees with our copy of a third party's broadcast, two peers with the same round-1
contribution, a peer that reports other parameters, which an untrusted relay may have given
it), the abort names nobody (``party=None``). An honest party is never named.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import schnorr
from .codec import BROADCAST, DIRECT, SESSION_LEN, Protocol, Writer
from .commitment import commit, opens
from .errors import ProtocolAbort, UsageError
from .group import Point, Q, point_sum
from .hazmat import base_ot
from .hazmat.pairwise import OteReceiverSeeds, OteSenderSeeds, PairwiseSetup
from .keyshare import KeyShare
from .params import LAMBDA_C, MAX_LABEL, MAX_PARTIES, SUPPORTED_LAMBDA
from .rng import SYSTEM_RNG, Rng
from .session import Delivery, Handler, RoundOutput, RoundParty, blame_malformed, check_echoes, check_inbox
from .shamir import evaluate, feldman_commit, feldman_evaluate, random_polynomial
from .tags import Tag
from .transcript import frame, hash32, list_of, u16

ECHO_LEN = 32
PROOF_LEN = schnorr.PROOF_LEN


@dataclass(frozen=True)
class DkgConfig:
    """What every party must agree on before the DKG starts.

    ``session`` is the caller's 32-byte session id (routing and replay protection); freshness
    of the key does not depend on it, since every party contributes randomness to ``sid_dkg``.
    """

    session: bytes
    threshold: int
    parties: int
    index: int
    key_label: bytes = b""
    lambda_c: int = LAMBDA_C  # base OTs per ordered pair; see params.SUPPORTED_LAMBDA

    def __post_init__(self) -> None:
        if len(self.session) != SESSION_LEN:
            raise UsageError(f"session: must be {SESSION_LEN} bytes")
        if not 2 <= self.threshold <= self.parties <= MAX_PARTIES:
            raise UsageError(f"threshold/parties: need 2 <= t <= n <= {MAX_PARTIES}")
        if not 1 <= self.index <= self.parties:
            raise UsageError("index: must be in 1..n")
        if len(self.key_label) > MAX_LABEL:
            raise UsageError(f"key_label: at most {MAX_LABEL} bytes")
        if self.lambda_c not in SUPPORTED_LAMBDA:
            raise UsageError(f"lambda_c: must be one of {SUPPORTED_LAMBDA}")


@dataclass(frozen=True)
class _Round2:
    """A peer's decoded round-2 message (broadcast and direct parts)."""

    echo: list[bytes]
    F: list[Point]
    proofs: list[schnorr.SchnorrProof]
    rho_f: bytes
    cc: bytes
    rho_cc: bytes
    share: int = field(repr=False)  # f_j(me): secret
    zero: bytes = field(repr=False)  # zero-seed contribution: secret
    ot: list[Point]
    ot_raw: bytes


class DkgParty(RoundParty):
    """One party's DKG state machine: ``start()``, then ``receive()`` once per round.

    ``receive`` returns the next :class:`RoundOutput`, or ``None`` after the last round, when
    :attr:`result` holds the :class:`KeyShare`. After any error the party is dead.
    """

    PROTOCOL = Protocol.DKG
    SECRETS = ("_coeffs", "_share", "_ot_recv_state", "_zero_mine", "_bob_keys", "_alice", "_zero_seed")

    def __init__(self, config: DkgConfig, rng: Rng = SYSTEM_RNG) -> None:
        super().__init__(config.session, config.index)
        self.cfg = config
        self._rng = rng
        self.peers = tuple(m for m in range(1, config.parties + 1) if m != config.index)
        self.result: KeyShare | None = None

    def _first(self) -> RoundOutput:
        return self._round1()

    def _rounds(self) -> tuple[Handler, ...]:
        return (self._round2, self._round3, self._round4, self._finish)

    def _check_echoes(self, round: int, echoes: Mapping[int, list[bytes]], mine: Mapping[int, bytes]) -> None:
        check_echoes(round, self.cfg.index, range(1, self.cfg.parties + 1), echoes, mine)

    def _pair_sid(self, bob: int, alice: int) -> bytes:
        return hash32(Tag.OT_SETUP_SID, self._sid_dkg, u16(bob), u16(alice))

    # round 1 ------------------------------------------------------------------------------
    def _round1(self) -> RoundOutput:
        cfg, rng = self.cfg, self._rng
        self._coeffs = random_polynomial(cfg.threshold, rng)
        self._F = feldman_commit(self._coeffs)
        self._cc = rng.bytes(32)
        self._sid_i = rng.bytes(32)
        csid = cfg.session + self._sid_i
        self._c_f, self._rho_f = commit(Tag.DKG_COMMIT_F, csid, cfg.index, self._f_bytes(self._F), rng)
        self._c_cc, self._rho_cc = commit(Tag.DKG_COMMIT_CC, csid, cfg.index, self._cc, rng)
        w = Writer(self._header(1, BROADCAST, 0)).raw(self._config_digest())
        msg = w.raw(self._sid_i).raw(self._c_f).raw(self._c_cc).getvalue()
        self._r1_self = msg
        return RoundOutput(1, broadcast=msg)

    def _config_digest(self) -> bytes:
        """What this party was asked to run: t, n, lambda_c and the label, under the session."""
        c = self.cfg
        return hash32(Tag.DKG_CONFIG, c.session, u16(c.threshold), u16(c.parties), u16(c.lambda_c), c.key_label)

    def _check_config(self, configs: Mapping[int, bytes]) -> None:
        """Every peer must run with our parameters. A peer that reports others either lies or
        was given other inputs by the (untrusted) relay: nobody can tell which, so nobody is
        named, and no later check can blame an honest party for parameters it was given."""
        mine = self._config_digest()
        for j in sorted(configs):
            if not hmac.compare_digest(configs[j], mine):
                raise ProtocolAbort(
                    None,
                    f"round 1: party {j} runs the DKG with other parameters (t, n, lambda_c or label): "
                    "it misbehaves or was given other inputs; cannot tell which",
                )

    def _check_fresh(self, r1: Mapping[int, tuple[bytes, bytes, bytes]]) -> None:
        """Every party's session contribution must be distinct.

        Our own is fresh, so a peer repeating it copied it: that peer is at fault. Two peers
        with the same contribution cannot be told apart (either may have copied the other, and
        each message is validly its sender's), so that aborts with ``party=None``.
        """
        me = self.cfg.index
        for j in sorted(r1):
            if j != me and r1[j][0] == r1[me][0]:  # public values: an ordinary compare is fine
                raise ProtocolAbort(j, "round 1: session contribution repeats ours")
        seen: dict[bytes, int] = {}
        for j in sorted(r1):
            first = seen.setdefault(r1[j][0], j)
            if first != j:
                raise ProtocolAbort(
                    None, f"round 1: parties {first} and {j} sent the same session contribution (cannot tell which copied)"
                )

    def _f_bytes(self, F: list[Point]) -> bytes:
        return u16(self.cfg.threshold) + u16(self.cfg.parties) + b"".join(p.encode() for p in F)

    # round 2 ------------------------------------------------------------------------------
    def _round2(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, rng, me = self.cfg, self._rng, self.cfg.index
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=False, round=1)
        r1: dict[int, tuple[bytes, bytes, bytes]] = {me: (self._sid_i, self._c_f, self._c_cc)}
        configs: dict[int, bytes] = {}
        self._echo1 = {me: hash32(Tag.DKG_ECHO1, self._r1_self)}
        for j in self.peers:
            raw = inbox[j].broadcast
            assert raw is not None

            def dec(raw: bytes = raw, j: int = j) -> tuple[tuple[bytes, bytes, bytes], bytes]:
                r = self._reader(raw, 1, BROADCAST, j)
                config = r.take(32, "config_digest")
                out = (r.take(32, "sid"), r.take(32, "commit_feldman"), r.take(32, "commit_chaincode"))
                r.finish()
                return out, config

            r1[j], configs[j] = blame_malformed(j, 1, dec, "broadcast")
            self._echo1[j] = hash32(Tag.DKG_ECHO1, raw)
        self._check_config(configs)
        self._check_fresh(r1)
        self._r1 = r1
        self._sid_dkg = hash32(
            Tag.DKG_SID,
            cfg.session,
            u16(cfg.threshold),
            u16(cfg.parties),
            u16(cfg.lambda_c),
            cfg.key_label,
            list_of([u16(j) + b"".join(r1[j]) for j in sorted(r1)]),
        )

        # broadcast: echo, F_i, proofs, openings
        w = Writer(self._header(2, BROADCAST, 0))
        w.raw(b"".join(self._echo1[m] for m in range(1, cfg.parties + 1)))
        w.points(self._F)
        for k, (a, A) in enumerate(zip(self._coeffs, self._F, strict=True)):
            schnorr.prove(a, A, self._coef_ctx(me, k), rng).write(w)
        w.raw(self._rho_f).raw(self._cc).raw(self._rho_cc)
        bcast = w.getvalue()
        self._r2_self = bcast

        # direct: share, zero-seed contribution, base-OT receiver message (B = j, A = me)
        direct: dict[int, bytes] = {}
        self._zero_mine: dict[int, bytes] = {}
        self._ot_recv_state: dict[int, base_ot.ReceiverState] = {}
        self._ot_recv_msg: dict[int, bytes] = {}
        for j in self.peers:
            self._zero_mine[j] = rng.bytes(32)
            st, pts = base_ot.receiver_message(self._pair_sid(j, me), rng, count=cfg.lambda_c)
            self._ot_recv_state[j] = st
            ot_msg = b"".join(p.encode() for p in pts)
            self._ot_recv_msg[j] = ot_msg
            d = Writer(self._header(2, DIRECT, j)).scalar(evaluate(self._coeffs, j)).raw(self._zero_mine[j]).raw(ot_msg)
            direct[j] = d.getvalue()
        return RoundOutput(2, broadcast=bcast, direct=direct)

    def _coef_ctx(self, party: int, k: int) -> bytes:
        return frame((Tag.DKG_COEF_POK.bytes, self._sid_dkg, u16(party), u16(k)))

    def _share_ctx(self, party: int) -> bytes:
        return frame((Tag.DKG_SHARE_POK.bytes, self._sid_dkg, u16(party), self._cc_root))

    # round 3 ------------------------------------------------------------------------------
    def _round3(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, rng, me = self.cfg, self._rng, self.cfg.index
        n, t = cfg.parties, cfg.threshold
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=True, round=2)

        msgs: dict[int, _Round2] = {}
        self._echo2 = {me: hash32(Tag.DKG_ECHO2, self._r2_self)}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None and d is not None

            def dec(b: bytes = b, d: bytes = d, j: int = j) -> _Round2:
                r = self._reader(b, 2, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in range(1, n + 1)]
                F = r.points(t, "feldman")
                proofs = r.seq(t, "proof", lambda f: schnorr.SchnorrProof.read(r, f))
                rho_f, cc, rho_cc = r.take(32, "salt_feldman"), r.take(32, "chaincode"), r.take(32, "salt_chaincode")
                r.finish("round-2 broadcast")
                rd = self._reader(d, 2, DIRECT, j)
                share = rd.scalar("share")
                zero = rd.take(32, "zero_seed")
                ot_start = 40 + 64
                ot = rd.points(2 * cfg.lambda_c, "base_ot")
                rd.finish("round-2 direct")
                return _Round2(echo, F, proofs, rho_f, cc, rho_cc, share, zero, ot, d[ot_start:])

            msgs[j] = blame_malformed(j, 2, dec, "round-2")
            self._echo2[j] = hash32(Tag.DKG_ECHO2, b)

        # echoes first: a split view must not be blamed on the wrong party
        self._check_echoes(2, {j: msgs[j].echo for j in self.peers}, self._echo1)

        for j in self.peers:
            m = msgs[j]
            csid = cfg.session + self._r1[j][0]
            if not opens(Tag.DKG_COMMIT_F, csid, j, self._f_bytes(m.F), m.rho_f, self._r1[j][1]):
                raise ProtocolAbort(j, "round 2: Feldman vector does not open the round-1 commitment")
            if not opens(Tag.DKG_COMMIT_CC, csid, j, m.cc, m.rho_cc, self._r1[j][2]):
                raise ProtocolAbort(j, "round 2: chain-code share does not open the round-1 commitment")
            for k, (A, proof) in enumerate(zip(m.F, m.proofs, strict=True)):
                if not schnorr.verify(proof, A, self._coef_ctx(j, k)):
                    raise ProtocolAbort(j, f"round 2: invalid proof of knowledge of coefficient {k}")
            if Point.base_mul(m.share) != feldman_evaluate(m.F, me):
                raise ProtocolAbort(j, "round 2: share does not match the Feldman commitment")

        F_all = {me: self._F, **{j: msgs[j].F for j in self.peers}}
        agg = [point_sum([F_all[j][k] for j in sorted(F_all)]) for k in range(t)]
        self._public_key = agg[0]
        if self._public_key.is_infinity:
            raise ProtocolAbort(None, "round 2: the aggregate public key is the identity")
        self._public_shares = tuple(feldman_evaluate(agg, m) for m in range(1, n + 1))
        self._share = (evaluate(self._coeffs, me) + sum(msgs[j].share for j in self.peers)) % Q
        if Point.base_mul(self._share) != self._public_shares[me - 1]:
            raise ProtocolAbort(None, "round 2: own share inconsistent with the aggregate commitment")
        cc_all = {me: self._cc, **{j: msgs[j].cc for j in self.peers}}
        self._cc_root = hash32(Tag.DKG_CC_ROOT, self._sid_dkg, list_of([cc_all[j] for j in sorted(cc_all)]))
        del self._coeffs

        # zero seeds: both contributions, ordered by index
        self._zero_seed: dict[int, bytes] = {}
        for j in self.peers:
            lo, hi = (self._zero_mine[j], msgs[j].zero) if me < j else (msgs[j].zero, self._zero_mine[j])
            self._zero_seed[j] = hash32(Tag.ZERO_SEED, self._sid_dkg, u16(min(me, j)), u16(max(me, j)), lo, hi)
        del self._zero_mine

        # base OT as sender for the pair (B = me, A = j)
        self._bob_keys: dict[int, list[tuple[bytes, bytes]]] = {}
        self._ot_peer_msg: dict[int, bytes] = {}
        self._ot_reply: dict[int, bytes] = {}
        direct: dict[int, bytes] = {}
        for j in self.peers:
            keys, reply = base_ot.sender_reply(self._pair_sid(me, j), msgs[j].ot, rng, peer=j, count=cfg.lambda_c)
            self._bob_keys[j] = keys
            self._ot_peer_msg[j] = msgs[j].ot_raw
            reply_raw = b"".join(p.encode() for p in reply)
            self._ot_reply[j] = reply_raw
            direct[j] = Writer(self._header(3, DIRECT, j)).raw(reply_raw).getvalue()

        w = Writer(self._header(3, BROADCAST, 0))
        w.raw(b"".join(self._echo2[m] for m in range(1, n + 1)))
        schnorr.prove(self._share, self._public_shares[me - 1], self._share_ctx(me), rng).write(w)
        bcast = w.getvalue()
        self._r3_self = bcast
        return RoundOutput(3, broadcast=bcast, direct=direct)

    # round 4 ------------------------------------------------------------------------------
    def _round4(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        me, n = self.cfg.index, self.cfg.parties
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=True, round=3)
        parsed: dict[int, tuple[list[bytes], schnorr.SchnorrProof, list[Point], bytes]] = {}
        self._echo3 = {me: hash32(Tag.DKG_ECHO3, self._r3_self)}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None and d is not None

            def dec(b: bytes = b, d: bytes = d, j: int = j) -> tuple[list[bytes], schnorr.SchnorrProof, list[Point], bytes]:
                r = self._reader(b, 3, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in range(1, n + 1)]
                proof = schnorr.SchnorrProof.read(r, "share_proof")
                r.finish("round-3 broadcast")
                rd = self._reader(d, 3, DIRECT, j)
                reply = rd.points(self.cfg.lambda_c, "base_ot_reply")
                rd.finish("round-3 direct")
                return echo, proof, reply, d[40:]

            parsed[j] = blame_malformed(j, 3, dec, "round-3")
            self._echo3[j] = hash32(Tag.DKG_ECHO3, b)
        self._check_echoes(3, {j: parsed[j][0] for j in self.peers}, self._echo2)
        for j in self.peers:
            if not schnorr.verify(parsed[j][1], self._public_shares[j - 1], self._share_ctx(j)):
                raise ProtocolAbort(j, "round 3: invalid proof of knowledge of its key share")

        # finish the base OTs where we are the extension sender (B = j, A = me)
        self._alice: dict[int, OteSenderSeeds] = {}
        self._pair_digest: dict[int, bytes] = {}
        for j in self.peers:
            st = self._ot_recv_state[j]
            keys = base_ot.receiver_finish(self._pair_sid(j, me), st, parsed[j][2], peer=j)
            self._alice[j] = OteSenderSeeds(base_ot.pack_bits(st.choices), tuple(keys))
            self._pair_digest[j] = self._pair_confirm(j, peer_reply=parsed[j][3])
        del self._ot_recv_state

        w = Writer(self._header(4, BROADCAST, 0))
        w.raw(b"".join(self._echo3[m] for m in range(1, n + 1)))
        w.raw(self._key_digest())
        direct = {j: Writer(self._header(4, DIRECT, j)).raw(self._pair_digest[j]).getvalue() for j in self.peers}
        return RoundOutput(4, broadcast=w.getvalue(), direct=direct)

    def _pair_confirm(self, j: int, peer_reply: bytes) -> bytes:
        """Digest of both base-OT directions of the pair and of its zero seed, same on both sides."""
        me = self.cfg.index
        # direction (B = me, A = j): j's receiver message, our reply; (B = j, A = me): ours, j's
        mine_as_bob = hash32(Tag.DKG_PAIR_CONFIRM, u16(me), u16(j), self._ot_peer_msg[j], self._ot_reply[j])
        mine_as_alice = hash32(Tag.DKG_PAIR_CONFIRM, u16(j), u16(me), self._ot_recv_msg[j], peer_reply)
        lo_first = (mine_as_bob, mine_as_alice) if me < j else (mine_as_alice, mine_as_bob)
        return hash32(
            Tag.DKG_PAIR_CONFIRM, self._sid_dkg, u16(min(me, j)), u16(max(me, j)), *lo_first, self._zero_seed[j]
        )

    def _key_digest(self) -> bytes:
        return hash32(
            Tag.DKG_CONFIRM,
            self._sid_dkg,
            self._public_key.encode(),
            self._cc_root,
            list_of([s.encode() for s in self._public_shares]),
        )

    # output -------------------------------------------------------------------------------
    def _finish(self, inbox: Mapping[int, Delivery]) -> None:  # returns None: the last round
        cfg, me, n = self.cfg, self.cfg.index, self.cfg.parties
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=True, round=4)
        parsed: dict[int, tuple[list[bytes], bytes, bytes]] = {}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None and d is not None

            def dec(b: bytes = b, d: bytes = d, j: int = j) -> tuple[list[bytes], bytes, bytes]:
                r = self._reader(b, 4, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in range(1, n + 1)]
                key = r.take(32, "key_digest")
                r.finish("round-4 broadcast")
                rd = self._reader(d, 4, DIRECT, j)
                pair = rd.take(32, "pair_digest")
                rd.finish("round-4 direct")
                return echo, key, pair

            parsed[j] = blame_malformed(j, 4, dec, "round-4")
        self._check_echoes(4, {j: parsed[j][0] for j in self.peers}, self._echo3)
        mine = self._key_digest()
        for j in self.peers:
            if not hmac.compare_digest(parsed[j][1], mine):
                raise ProtocolAbort(j, "round 4: confirmed a different key")
            if not hmac.compare_digest(parsed[j][2], self._pair_digest[j]):
                raise ProtocolAbort(
                    j, "round 4: pairwise setup differs (tampered base-OT message or zero-seed contribution)"
                )
        pairwise = tuple(
            PairwiseSetup(
                j,
                OteReceiverSeeds(tuple(k0 for k0, _ in self._bob_keys[j]), tuple(k1 for _, k1 in self._bob_keys[j])),
                self._alice[j],
                self._zero_seed[j],
            )
            for j in self.peers
        )
        self.result = KeyShare(
            threshold=cfg.threshold,
            parties=n,
            index=me,
            secret_share=self._share,
            public_key=self._public_key,
            public_shares=self._public_shares,
            chain_code=self._cc_root,
            sid_dkg=self._sid_dkg,
            key_label=cfg.key_label,
            pairwise=pairwise,
            lambda_c=cfg.lambda_c,
        )
        self._wipe()
