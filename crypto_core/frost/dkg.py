"""Distributed key generation for FROST keys (issue 16): Feldman VSS with proofs of knowledge,
generic over the key's :class:`~crypto_core.frost.group.Group`.

The DKG of :mod:`crypto_core.dkg` (RFC 9591 appendix C's sharing, Pedersen/Feldman with a proof of
knowledge of every coefficient against rogue keys) without the DKLs23 parts: no base OTs, no zero
seeds, no chain code. Rounds (``B`` broadcast, ``D`` direct, confidential):

1. B: digest of the parameters (scheme, t, n, label) the party was asked to run with, its fresh
   contribution ``sid_i``, a hash commitment to its Feldman vector ``F_i``.
2. B: echo of round 1 (one digest per party), ``F_i`` (exactly t elements, none the identity), a
   Schnorr proof of knowledge per coefficient, the commitment's opening. D to j: ``f_i(j)``.
3. B: echo of round 2, a proof of knowledge of the share ``s_i`` behind ``S_i``.
4. B: echo of round 3 and a digest of the resulting key (``sid_dkg``, key, every public share).
   A party outputs its :class:`FrostKeyShare` only after every peer's confirmation matched its own
   (FROST needs agreement that the DKG succeeded before anyone signs).

``sid_dkg`` hashes every round-1 message (so it binds scheme, t, n, label and every party's fresh
contribution); the proofs' contexts bind ``sid_dkg``, the prover's index and the coefficient (or
"share"), under versioned tags. Every check failure raises :class:`ProtocolAbort` naming a party
only when the evidence proves it at fault (its own message is malformed, contradicts its earlier
message, or fails a check only it controls); contradictions between two parties' messages (an echo
that disagrees with our copy of a third party's broadcast, two peers with the same contribution,
a peer reporting other parameters) abort with ``party=None``. An honest party is never named.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..codec import BROADCAST, DIRECT, SESSION_LEN, Protocol, Reader, Writer
from ..commitment import commit, opens
from ..errors import DecodeError, ProtocolAbort, UsageError
from ..params import MAX_LABEL, MAX_PARTIES
from ..rng import SYSTEM_RNG, Rng
from ..session import Delivery, Handler, RoundOutput, RoundParty, blame_malformed, check_echoes, check_inbox
from ..tags import Tag
from ..transcript import frame, hash32, list_of, u16
from . import pok
from .group import Element, Group
from .keyshare import FrostKeyShare
from .poly import evaluate, feldman_commit, feldman_evaluate, random_polynomial
from .scheme import FROST_SCHEMES, group_for

ECHO_LEN = 32


@dataclass(frozen=True)
class FrostDkgConfig:
    """What every party must agree on before the DKG starts.

    ``session``: the caller's 32-byte session id; ``threshold``/``parties``: 2 <= t <= n <=
    MAX_PARTIES; ``index``: this party's committee position 1..n; ``scheme``: one of
    ``FROST_SCHEMES``; ``key_label``: at most MAX_LABEL bytes. Raises :class:`UsageError`.
    """

    session: bytes
    threshold: int
    parties: int
    index: int
    scheme: str
    key_label: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.session, bytes) or len(self.session) != SESSION_LEN:
            raise UsageError(f"session: must be {SESSION_LEN} bytes")
        if not 2 <= self.threshold <= self.parties <= MAX_PARTIES:
            raise UsageError(f"threshold/parties: need 2 <= t <= n <= {MAX_PARTIES}")
        if not 1 <= self.index <= self.parties:
            raise UsageError("index: must be in 1..n")
        if self.scheme not in FROST_SCHEMES:
            raise UsageError(f"scheme: must be one of {', '.join(FROST_SCHEMES)}")
        if not isinstance(self.key_label, bytes) or len(self.key_label) > MAX_LABEL:
            raise UsageError(f"key_label: at most {MAX_LABEL} bytes")


@dataclass(frozen=True)
class _Round2:
    echo: list[bytes]
    F: list[Element]
    proofs: list[pok.Proof]
    rho_f: bytes
    share: int = field(repr=False)  # f_j(me): secret


class FrostDkgParty(RoundParty):
    """One party's FROST DKG state machine: ``start()``, then ``receive()`` once per round.

    ``receive`` returns the next :class:`RoundOutput`, or ``None`` after round 4's confirmations,
    when :attr:`result` holds the :class:`FrostKeyShare`. After any error the party is dead.
    """

    PROTOCOL = Protocol.FROST_DKG
    SECRETS = ("_coeffs", "_share")

    def __init__(self, config: FrostDkgConfig, rng: Rng = SYSTEM_RNG) -> None:
        super().__init__(config.session, config.index)
        self.cfg = config
        self.group: Group = group_for(config.scheme)
        self._rng = rng
        self.peers = tuple(m for m in range(1, config.parties + 1) if m != config.index)
        self.result: FrostKeyShare | None = None

    def _first(self) -> RoundOutput:
        return self._round1()

    def _rounds(self) -> tuple[Handler, ...]:
        return (self._round2, self._round3, self._round4, self._finish)

    def _check_echoes(self, round: int, echoes: Mapping[int, list[bytes]], mine: Mapping[int, bytes]) -> None:
        check_echoes(round, self.cfg.index, range(1, self.cfg.parties + 1), echoes, mine)

    def _read_echoes(self, r: Reader) -> list[bytes]:
        return [r.take(ECHO_LEN, f"echo[{m}]") for m in range(1, self.cfg.parties + 1)]

    def _element(self, r: Reader, field: str) -> Element:
        return self.group.decode(r.take(self.group.element_len, field), field)

    def _scalar(self, r: Reader, field: str) -> int:
        return self.group.decode_scalar(r.take(self.group.scalar_len, field), field)

    def _proof(self, r: Reader, field: str) -> pok.Proof:
        return pok.Proof(self._element(r, field + ".T"), self._scalar(r, field + ".z"))

    # round 1 ------------------------------------------------------------------------------
    def _round1(self) -> RoundOutput:
        cfg, rng = self.cfg, self._rng
        self._coeffs = random_polynomial(self.group, cfg.threshold, rng)
        self._F = feldman_commit(self.group, self._coeffs)
        self._sid_i = rng.bytes(32)
        self._c_f, self._rho_f = commit(Tag.FROST_DKG_COMMIT_F, cfg.session + self._sid_i, cfg.index,
                                        self._f_bytes(self._F), rng)
        msg = Writer(self._header(1, BROADCAST, 0)).raw(self._config_digest()).raw(self._sid_i).raw(self._c_f)
        self._r1_self = msg.getvalue()
        return RoundOutput(1, broadcast=self._r1_self)

    def _config_digest(self) -> bytes:
        c = self.cfg
        return hash32(Tag.FROST_DKG_CONFIG, c.session, c.scheme.encode("ascii"), u16(c.threshold), u16(c.parties),
                      c.key_label)

    def _check_config(self, configs: Mapping[int, bytes]) -> None:
        """A peer reporting other parameters lies or was given other inputs by the untrusted
        relay: nobody can tell which, so nobody is named."""
        mine = self._config_digest()
        for j in sorted(configs):
            if not hmac.compare_digest(configs[j], mine):
                raise ProtocolAbort(
                    None,
                    f"round 1: party {j} runs the DKG with other parameters (scheme, t, n or label): "
                    "it misbehaves or was given other inputs; cannot tell which",
                )

    def _check_fresh(self, r1: Mapping[int, tuple[bytes, bytes]]) -> None:
        """Our contribution is fresh, so a peer repeating it copied it (its fault); two peers with
        the same one cannot be told apart (``party=None``)."""
        me = self.cfg.index
        for j in sorted(r1):
            if j != me and r1[j][0] == r1[me][0]:
                raise ProtocolAbort(j, "round 1: session contribution repeats ours")
        seen: dict[bytes, int] = {}
        for j in sorted(r1):
            first = seen.setdefault(r1[j][0], j)
            if first != j:
                raise ProtocolAbort(
                    None, f"round 1: parties {first} and {j} sent the same session contribution (cannot tell which copied)"
                )

    def _f_bytes(self, F: list[Element]) -> bytes:
        return u16(self.cfg.threshold) + u16(self.cfg.parties) + b"".join(self.group.encode(p) for p in F)

    # round 2 ------------------------------------------------------------------------------
    def _round2(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, rng, me, group = self.cfg, self._rng, self.cfg.index, self.group
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=False, round=1)
        r1: dict[int, tuple[bytes, bytes]] = {me: (self._sid_i, self._c_f)}
        configs: dict[int, bytes] = {}
        self._echo1 = {me: hash32(Tag.FROST_DKG_ECHO1, self._r1_self)}
        for j in self.peers:
            raw = inbox[j].broadcast
            assert raw is not None

            def dec(raw: bytes = raw, j: int = j) -> tuple[tuple[bytes, bytes], bytes]:
                r = self._reader(raw, 1, BROADCAST, j)
                config = r.take(32, "config_digest")
                out = (r.take(32, "sid"), r.take(32, "commit_feldman"))
                r.finish("round-1 broadcast")
                return out, config

            r1[j], configs[j] = blame_malformed(j, 1, dec, "broadcast")
            self._echo1[j] = hash32(Tag.FROST_DKG_ECHO1, raw)
        self._check_config(configs)
        self._check_fresh(r1)
        self._r1 = r1
        self._sid_dkg = hash32(
            Tag.FROST_DKG_SID,
            cfg.session,
            cfg.scheme.encode("ascii"),
            u16(cfg.threshold),
            u16(cfg.parties),
            cfg.key_label,
            list_of([u16(j) + b"".join(r1[j]) for j in sorted(r1)]),
        )
        w = Writer(self._header(2, BROADCAST, 0))
        w.raw(b"".join(self._echo1[m] for m in range(1, cfg.parties + 1)))
        w.raw(b"".join(group.encode(p) for p in self._F))
        for k, (a, A) in enumerate(zip(self._coeffs, self._F, strict=True)):
            w.raw(pok.prove(group, a, A, self._coef_ctx(me, k), rng).encode(group))
        w.raw(self._rho_f)
        self._r2_self = w.getvalue()
        direct = {
            j: Writer(self._header(2, DIRECT, j)).raw(group.encode_scalar(evaluate(group, self._coeffs, j))).getvalue()
            for j in self.peers
        }
        return RoundOutput(2, broadcast=self._r2_self, direct=direct)

    def _coef_ctx(self, party: int, k: int) -> bytes:
        return frame((Tag.FROST_DKG_COEF_POK.bytes, self._sid_dkg, u16(party), u16(k)))

    def _share_ctx(self, party: int) -> bytes:
        return frame((Tag.FROST_DKG_SHARE_POK.bytes, self._sid_dkg, u16(party)))

    # round 3 ------------------------------------------------------------------------------
    def _round3(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, rng, me, group = self.cfg, self._rng, self.cfg.index, self.group
        n, t, q = cfg.parties, cfg.threshold, group.order
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=True, round=2)
        msgs: dict[int, _Round2] = {}
        self._echo2 = {me: hash32(Tag.FROST_DKG_ECHO2, self._r2_self)}
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None and d is not None

            def dec(b: bytes = b, d: bytes = d, j: int = j) -> _Round2:
                r = self._reader(b, 2, BROADCAST, j)
                echo = self._read_echoes(r)
                F = [self._element(r, f"feldman[{k}]") for k in range(t)]
                proofs = [self._proof(r, f"proof[{k}]") for k in range(t)]
                rho_f = r.take(32, "salt_feldman")
                r.finish("round-2 broadcast")
                rd = self._reader(d, 2, DIRECT, j)
                share = self._scalar(rd, "share")
                rd.finish("round-2 direct")
                return _Round2(echo, F, proofs, rho_f, share)

            msgs[j] = blame_malformed(j, 2, dec, "round-2")
            self._echo2[j] = hash32(Tag.FROST_DKG_ECHO2, b)

        self._check_echoes(2, {j: msgs[j].echo for j in self.peers}, self._echo1)  # before any blame
        for j in self.peers:
            m = msgs[j]
            if not opens(Tag.FROST_DKG_COMMIT_F, cfg.session + self._r1[j][0], j, self._f_bytes(m.F), m.rho_f,
                         self._r1[j][1]):
                raise ProtocolAbort(j, "round 2: Feldman vector does not open the round-1 commitment")
            for k, (A, proof) in enumerate(zip(m.F, m.proofs, strict=True)):
                if not pok.verify(group, proof, A, self._coef_ctx(j, k)):
                    raise ProtocolAbort(j, f"round 2: invalid proof of knowledge of coefficient {k}")
            if group.base_mul(m.share) != feldman_evaluate(group, m.F, me):
                raise ProtocolAbort(j, "round 2: share does not match the Feldman commitment")

        F_all = {me: self._F, **{j: msgs[j].F for j in self.peers}}
        agg = []
        for k in range(t):
            acc = group.identity()
            for j in sorted(F_all):
                acc = group.add(acc, F_all[j][k])
            agg.append(acc)
        if group.is_identity(agg[0]):
            raise ProtocolAbort(None, "round 2: the aggregate public key is the identity")
        if group.is_identity(agg[-1]):  # degree below t-1 (probability 1/q: the vectors were committed first)
            raise ProtocolAbort(None, "round 2: the aggregate sharing polynomial has degree below t-1")
        self._public_key = group.encode(agg[0])
        shares = [feldman_evaluate(group, agg, m) for m in range(1, n + 1)]
        for pos, s in enumerate(shares, 1):
            if group.is_identity(s):  # probability ~n/q unless someone cancels: unattributable
                raise ProtocolAbort(None, f"round 2: public share of party {pos} is the identity")
        self._public_shares = tuple(group.encode(s) for s in shares)
        self._share = (evaluate(group, self._coeffs, me) + sum(msgs[j].share for j in self.peers)) % q
        if group.base_mul(self._share) != shares[me - 1]:
            raise ProtocolAbort(None, "round 2: own share inconsistent with the aggregate commitment")
        self._shares = shares
        del self._coeffs

        w = Writer(self._header(3, BROADCAST, 0))
        w.raw(b"".join(self._echo2[m] for m in range(1, n + 1)))
        w.raw(pok.prove(group, self._share, shares[me - 1], self._share_ctx(me), rng).encode(group))
        self._r3_self = w.getvalue()
        return RoundOutput(3, broadcast=self._r3_self)

    # round 4 ------------------------------------------------------------------------------
    def _round4(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        me, n, group = self.cfg.index, self.cfg.parties, self.group
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=False, round=3)
        parsed: dict[int, tuple[list[bytes], pok.Proof]] = {}
        self._echo3 = {me: hash32(Tag.FROST_DKG_ECHO3, self._r3_self)}
        for j in self.peers:
            b = inbox[j].broadcast
            assert b is not None

            def dec(b: bytes = b, j: int = j) -> tuple[list[bytes], pok.Proof]:
                r = self._reader(b, 3, BROADCAST, j)
                echo = self._read_echoes(r)
                proof = self._proof(r, "share_proof")
                r.finish("round-3 broadcast")
                return echo, proof

            parsed[j] = blame_malformed(j, 3, dec, "round-3")
            self._echo3[j] = hash32(Tag.FROST_DKG_ECHO3, b)
        self._check_echoes(3, {j: parsed[j][0] for j in self.peers}, self._echo2)
        for j in self.peers:
            if not pok.verify(group, parsed[j][1], self._shares[j - 1], self._share_ctx(j)):
                raise ProtocolAbort(j, "round 3: invalid proof of knowledge of its key share")
        w = Writer(self._header(4, BROADCAST, 0))
        w.raw(b"".join(self._echo3[m] for m in range(1, n + 1))).raw(self._key_digest())
        return RoundOutput(4, broadcast=w.getvalue())

    def _key_digest(self) -> bytes:
        return hash32(Tag.FROST_DKG_CONFIRM, self._sid_dkg, self.cfg.scheme.encode("ascii"), self._public_key,
                      list_of(list(self._public_shares)))

    # output -------------------------------------------------------------------------------
    def _finish(self, inbox: Mapping[int, Delivery]) -> None:
        cfg, me = self.cfg, self.cfg.index
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=False, round=4)
        parsed: dict[int, tuple[list[bytes], bytes]] = {}
        for j in self.peers:
            b = inbox[j].broadcast
            assert b is not None

            def dec(b: bytes = b, j: int = j) -> tuple[list[bytes], bytes]:
                r = self._reader(b, 4, BROADCAST, j)
                echo = self._read_echoes(r)
                key = r.take(32, "key_digest")
                r.finish("round-4 broadcast")
                return echo, key

            parsed[j] = blame_malformed(j, 4, dec, "round-4")
        self._check_echoes(4, {j: parsed[j][0] for j in self.peers}, self._echo3)
        mine = self._key_digest()
        for j in self.peers:
            if not hmac.compare_digest(parsed[j][1], mine):
                raise ProtocolAbort(j, "round 4: confirmed a different key")
        result = FrostKeyShare(
            scheme=cfg.scheme,
            threshold=cfg.threshold,
            parties=cfg.parties,
            index=me,
            secret_share=self._share,
            public_key=self._public_key,
            public_shares=self._public_shares,
            sid_dkg=self._sid_dkg,
            key_label=cfg.key_label,
        )
        try:
            result.validate()
        except DecodeError as e:  # cannot happen after the checks above; fail closed if it does
            raise ProtocolAbort(None, f"finish: inconsistent key share: {e}") from None
        self.result = result
        self._wipe()


__all__ = ["FrostDkgConfig", "FrostDkgParty"]
