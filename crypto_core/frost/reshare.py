"""Refresh and quorum change of a FROST key's Shamir sharing, same group key (issue 16 item 5).

The FROST counterpart of :mod:`crypto_core.reshare` (read its docstring first): the same roles,
four rounds, Feldman vectors with proofs of knowledge, echoes, configuration digest, blame rules
and atomicity, generic over a FROST :class:`~crypto_core.frost.group.Group` (Ed25519 or
secp256k1, chosen by the key's ``scheme``), with no pairwise material at all: FROST keys have no
OT setup, zero seeds or chain code (RFC 9591 signing needs only the Shamir share and the public
shares). Sources: DKLs23 notes section 9 (9.1 refresh as zero-constant re-sharing, 9.2 quorum
change by Lagrange-weighted re-sharing), which are Shamir-level and group-agnostic; RFC 9591
section 5 for what a FROST share must be (``s_i`` with ``PK = sum lam_i * s_i * G`` and public
shares ``S_i = s_i * G``).

Roles. Session participants are transport ids (``party``); a *dealer* holds an old-epoch share
``x_i`` at old index ``i``; a *receiver* gets a new-epoch share at new index ``j`` in ``1..n'``.

* Quorum change ``(t, n) -> (t', n')`` (``refresh=False``): at least ``t`` dealers (set ``O``);
  dealer i deals ``g_i`` of degree ``t'-1`` with ``g_i(0) = lam_i^O * x_i``, Feldman vector
  ``G_i`` of ``t'`` elements. Receiver j: ``x'_j = sum_i g_i(j)``. The constant terms must sum to
  the group key the receiver was *given* (config); with the old public shares known,
  ``G_i[0] == lam_i * S_i`` is checked per dealer, so a wrong constant term names its dealer.
* Refresh (``refresh=True``): the whole committee, same indices and threshold; every party deals
  ``delta_i`` of degree ``t-1`` with ``delta_i(0) = 0``. The constant term is the identity, which
  has no RFC 9591 encoding, so it is *not sent*: the wire vector is ``G_i[1..t-1]`` and the
  receiver sets ``G_i[0]`` to the identity itself (a dealer cannot send any other constant).
  ``x'_j = x_j + sum_i delta_i(j)``, ``S'_m = S_m + sum_i G_i(m)``.

Rounds (``B`` broadcast, ``D`` direct and confidential; every participant runs all four)::

    1 B  config digest 32 | sid_i 32 | dealer: Com(G_i) 32 | digest of its old public shares 32
    2 B  echo of round 1 (32 per participant, ascending) | dealer: G_i (t' or t'-1 elements)
         | PoK of every sent coefficient (element + scalar each) | salt of Com(G_i) 32
    2 D  dealer -> each other receiver j: g_i(j) (one scalar)
    3 B  echo of round 2 | digest of the new public state (scheme, key, t', n', epoch, S'_1..S'_n')
    4 B  echo of round 3

Elements and scalars use the group's RFC 9591 encodings (Ed25519 32/32 bytes little-endian
scalars; secp256k1 33-byte SEC1 compressed points, 32-byte big-endian scalars), decoded strictly
(no identity, canonical, in the prime-order subgroup; scalars below q, never reduced).

``sid_reshare = H(session, config digest, every (party, sid_i, Com_i))`` binds all of it; proof
contexts derive from it and commitments bind ``sid_i`` and the sender. Every hash has its own
versioned tag (``frost/reshare/*/v1``), distinct from the ECDSA reshare's, so the two protocols'
transcripts can never be confused; the ECDSA reshare is unchanged. Errors are
:class:`ProtocolAbort`; the culprit is named only when its own message proves it.

Atomicity as in :mod:`crypto_core.reshare`: the caller keeps the old share until every party of
the session finished, then replaces it with :attr:`FrostReshareParty.result` (a
:class:`FrostKeyShare` of epoch ``old_epoch + 1`` with ``sid_dkg = sid_reshare``) or erases it
when :attr:`FrostReshareParty.retired`. Epochs do not mix: a new-epoch signing package is
aggregated against the new public shares, so an old-epoch share in it fails ``verify_share``
and names its signer; old shares keep signing among themselves until they are erased, which is
why the caller's commit must replace or erase every one of them.

Backups (issue 12). A FROST share has no pairwise material, so a share restored from officers'
pieces *is* a complete :class:`FrostKeyShare` once its public part (scheme, t, n, index, public
key, public shares, label, epoch) is known: a dealer reads only those fields and the secret share
(never ``sid_dkg``), so a restored FROST share deals here directly (it could sign too; whether a
node may sign with a share that passed through a reconstruction before a refresh is the node's
policy, not this module's). A backup of a FROST share would carry the same m-of-k split of
``secret_share`` with Feldman commitments in the key's own group (``S_i`` as ``C_0``) and the
public part above in place of :class:`~crypto_core.backup.RecoveredShare`'s point and chain code;
the backup formats of :mod:`crypto_core.backup` are secp256k1-only today and are not changed here.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..codec import BROADCAST, DIRECT, SESSION_LEN, Protocol, Reader, Writer
from ..commitment import commit, opens
from ..errors import DecodeError, ProtocolAbort, UsageError
from ..params import MAX_LABEL
from ..reshare import _roles
from ..rng import SYSTEM_RNG, Rng
from ..session import Delivery, Handler, RoundOutput, RoundParty, blame_malformed, check_echoes, check_inbox
from ..tags import Tag
from ..transcript import frame, hash32, list_of, u16, u32
from . import pok
from .group import Element, Group
from .keyshare import MAX_EPOCH, FrostKeyShare
from .poly import evaluate, feldman_commit, feldman_evaluate, interpolate_elements, lagrange_at, random_polynomial
from .scheme import FROST_SCHEMES, group_for

ECHO_LEN = 32


def _decode_public(group: Group, public_key: bytes, old: Sequence[bytes] | None) -> tuple[Element, list[Element] | None]:
    """The group key and the old public shares as elements; :class:`UsageError` naming the field."""
    if not isinstance(public_key, bytes):
        raise UsageError("public_key: must be bytes (the group key's encoding)")
    if old is not None and not all(isinstance(s, bytes) for s in old):
        raise UsageError("old_public_shares: must be element encodings (bytes)")
    try:
        pk = group.decode(public_key, "public_key")
        shares = None if old is None else [group.decode(s, f"old_public_shares[{k}]") for k, s in enumerate(old)]
    except DecodeError as e:
        raise UsageError(f"{e.field}: not a valid {group.name} element ({e.reason})") from None
    return pk, shares


@dataclass(frozen=True)
class FrostReshareConfig:
    """What every participant must agree on (all of it is hashed into the config digest).

    ``dealers``/``receivers``: ``(party, old index)`` / ``(party, new index)`` pairs, ascending by
    party; new indices are exactly ``1..n'``. ``scheme`` is one of
    :data:`~crypto_core.frost.FROST_SCHEMES` and fixes the group. ``public_key`` is the group key's
    encoding (32 bytes Ed25519, 33 bytes compressed secp256k1; for BIP340 the untweaked key P, as
    in :class:`FrostKeyShare`) from the party's own trusted input. ``old_public_shares``
    (encodings of ``S_1..S_n`` of the old epoch) is optional for a new-only receiver (it enables
    per-dealer blame); a dealer's comes from its own :class:`FrostKeyShare`. The new shares have
    epoch ``old_epoch + 1``. Raises :class:`UsageError` naming the field on any inconsistency.
    """

    session: bytes
    index: int  # this party's id in the session
    dealers: tuple[tuple[int, int], ...]
    receivers: tuple[tuple[int, int], ...]
    old_threshold: int
    new_threshold: int
    scheme: str
    public_key: bytes
    old_epoch: int
    key_label: bytes = b""
    refresh: bool = False
    old_public_shares: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.session, bytes) or len(self.session) != SESSION_LEN:
            raise UsageError(f"session: must be {SESSION_LEN} bytes")
        if not isinstance(self.scheme, str) or self.scheme not in FROST_SCHEMES:
            raise UsageError(f"scheme: not a FROST scheme (one of {', '.join(FROST_SCHEMES)})")
        d = _roles(self.dealers, "dealers")
        r = _roles(self.receivers, "receivers")
        n_new = len(r)
        if sorted(r.values()) != list(range(1, n_new + 1)):
            raise UsageError("receivers: new indices must be exactly 1..n'")
        for name in ("old_threshold", "new_threshold", "old_epoch", "index"):
            if type(getattr(self, name)) is not int:
                raise UsageError(f"{name}: must be an int")
        if not 2 <= self.new_threshold <= n_new:
            raise UsageError("new_threshold: need 2 <= t' <= n'")
        if not 2 <= self.old_threshold <= len(d):
            raise UsageError("dealers: need at least old_threshold (>= 2) dealers")
        if self.index not in d and self.index not in r:
            raise UsageError("index: this party is neither a dealer nor a receiver")
        if not 0 <= self.old_epoch < MAX_EPOCH:
            raise UsageError("old_epoch: out of range")
        if not isinstance(self.key_label, bytes) or len(self.key_label) > MAX_LABEL:
            raise UsageError(f"key_label: at most {MAX_LABEL} bytes")
        if type(self.refresh) is not bool:
            raise UsageError("refresh: must be a bool")
        S = self.old_public_shares
        if S is not None and not isinstance(S, tuple):
            raise UsageError("old_public_shares: must be a tuple of encodings")
        group = self.group
        pk, shares = _decode_public(group, self.public_key, S)
        if shares is not None:
            if len(shares) < max(d.values()) or len(shares) < self.old_threshold:
                raise UsageError("old_public_shares: too few")
            first = {m: shares[m - 1] for m in range(1, self.old_threshold + 1)}
            if interpolate_elements(group, first) != pk:
                raise UsageError("old_public_shares: do not interpolate to the public key")
        if self.refresh:
            if self.dealers != self.receivers or self.old_threshold != self.new_threshold:
                raise UsageError("refresh: same committee, same indices and same threshold")
            if shares is None or len(shares) != n_new:
                raise UsageError("refresh: needs the old public shares of the whole committee")

    @property
    def group(self) -> Group:
        return group_for(self.scheme)

    @property
    def new_epoch(self) -> int:
        return self.old_epoch + 1

    @property
    def parties(self) -> tuple[int, ...]:
        return tuple(sorted({p for p, _ in self.dealers} | {p for p, _ in self.receivers}))

    def digest(self) -> bytes:
        """32-byte digest of every field but ``index`` and ``old_public_shares`` (those are
        compared through round 1's old-shares digest)."""
        return hash32(
            Tag.FROST_RESHARE_CONFIG,
            self.session,
            self.scheme.encode("ascii"),
            bytes([self.refresh]),
            u32(self.old_epoch),
            u16(self.old_threshold),
            u16(self.new_threshold),
            list_of([u16(p) + u16(i) for p, i in self.dealers]),
            list_of([u16(p) + u16(i) for p, i in self.receivers]),
            self.public_key,
            self.key_label,
        )


@dataclass(frozen=True)
class _Dealt:
    G: list[Element]  # full vector, G[0] the identity in a refresh
    proofs: list[pok.Proof]
    rho: bytes


class FrostReshareParty(RoundParty):
    """One participant's FROST refresh / quorum-change state machine (``start()``, then four
    ``receive()``). A receiver ends with :attr:`result`, its new-epoch :class:`FrostKeyShare`; an
    old-only dealer ends with ``result is None`` and :attr:`retired` set: it must then erase its
    old share. ``old_share`` is required exactly for dealers (a share restored from a backup is a
    :class:`FrostKeyShare` too; ``sid_dkg`` is not read). After any error the party is dead.
    """

    PROTOCOL = Protocol.FROST_RESHARE
    SECRETS = ("_coeffs", "_old", "_own_eval", "_share")

    def __init__(self, config: FrostReshareConfig, old_share: FrostKeyShare | None = None, rng: Rng = SYSTEM_RNG) -> None:
        super().__init__(config.session, config.index)
        self.cfg = config
        self.group = config.group
        self._rng = rng
        self._dealers = dict(config.dealers)
        self._receivers = dict(config.receivers)
        me = config.index
        self.is_dealer = me in self._dealers
        self.is_receiver = me in self._receivers
        self.all = config.parties
        self.peers = tuple(p for p in self.all if p != me)
        self.result: FrostKeyShare | None = None
        self.retired = False
        self._pk, self._old_shares = _decode_public(self.group, config.public_key, config.old_public_shares)
        if self.is_dealer:
            if not isinstance(old_share, FrostKeyShare):
                raise UsageError("old_share: a dealer needs its old-epoch FROST key share")
            ks = old_share
            try:
                ks.validate()
            except DecodeError as e:
                raise UsageError(f"old_share: invalid ({e.field})") from None
            if ks.scheme != config.scheme:
                raise UsageError("old_share: its scheme differs from the configuration's")
            if ks.index != self._dealers[me] or ks.threshold != config.old_threshold:
                raise UsageError("old_share: index or threshold differs from the configuration")
            if ks.public_key != config.public_key:
                raise UsageError("old_share: belongs to another key")
            if ks.key_label != config.key_label:
                raise UsageError("old_share: its key label differs from the configuration's")
            if ks.epoch != config.old_epoch:
                raise UsageError(f"old_share: epoch {ks.epoch}, the configuration says {config.old_epoch}")
            if max(self._dealers.values()) > ks.parties:
                raise UsageError("dealers: an old index beyond the old committee")
            if config.old_public_shares is not None and config.old_public_shares != ks.public_shares:
                raise UsageError("old_public_shares: differ from our key share's")
            self._old_shares = [self.group.decode(s, "old_public_shares") for s in ks.public_shares]
            self._old = ks.secret_share
        elif old_share is not None:
            raise UsageError("old_share: only dealers take an old share")

    def _first(self) -> RoundOutput:
        return self._round1()

    def _rounds(self) -> tuple[Handler, ...]:
        return (self._round2, self._round3, self._round4, self._finish)

    # helpers --------------------------------------------------------------------------------
    def _first_sent(self) -> int:
        """Index of the first coefficient on the wire and proved: 1 in a refresh (G[0] is the
        identity, implicit), else 0."""
        return 1 if self.cfg.refresh else 0

    def _g_bytes(self, G: Sequence[Element]) -> bytes:
        g = self.group
        return u16(self.cfg.new_threshold) + b"".join(g.encode(p) for p in G[self._first_sent():])

    def _coef_ctx(self, party: int, k: int) -> bytes:
        return frame((Tag.FROST_RESHARE_COEF_POK.bytes, self._sid, self.cfg.scheme.encode("ascii"), u16(party), u16(k)))

    def _lam(self, party: int) -> int:
        return lagrange_at(self.group, self._dealers[party], sorted(self._dealers.values()))

    def _check_inbox(self, inbox: Mapping[int, Delivery], round: int, direct_from: Sequence[int]) -> None:
        """A broadcast from every peer; a direct part from exactly ``direct_from``."""
        for j in self.peers:
            got = inbox.get(j)
            if got is not None and (got.direct is not None) != (j in direct_from):
                raise ProtocolAbort(j, f"round {round}: direct part {'missing' if j in direct_from else 'unexpected'}")
        bcasts = {j: Delivery(dl.broadcast, None) for j, dl in inbox.items()}
        check_inbox(bcasts, self.peers, want_broadcast=True, want_direct=False, round=round)

    def _old_shares_digest(self) -> bytes:
        """Digest of the old public shares a dealer sends in round 1 (every party must use the
        same vector: a stale one of an earlier epoch also interpolates to the key)."""
        assert self._old_shares is not None
        g = self.group
        return hash32(
            Tag.FROST_RESHARE_OLD_SHARES,
            self.cfg.session,
            self.cfg.scheme.encode("ascii"),
            u32(self.cfg.old_epoch),
            list_of([g.encode(s) for s in self._old_shares]),
        )

    def _element(self, r: Reader, field: str) -> Element:
        return self.group.decode(r.take(self.group.element_len, field), field)

    def _scalar(self, r: Reader, field: str) -> int:
        return self.group.decode_scalar(r.take(self.group.scalar_len, field), field)

    # round 1 --------------------------------------------------------------------------------
    def _round1(self) -> RoundOutput:
        cfg, rng, me, g = self.cfg, self._rng, self.cfg.index, self.group
        self._sid_i = rng.bytes(32)
        w = Writer(self._header(1, BROADCAST, 0)).raw(cfg.digest()).raw(self._sid_i)
        self._com = b""
        if self.is_dealer:
            constant = 0 if cfg.refresh else self._lam(me) * self._old % g.order
            self._coeffs = [constant, *random_polynomial(g, cfg.new_threshold - 1, rng)]
            self._G = feldman_commit(g, self._coeffs)
            self._com, self._rho = commit(Tag.FROST_RESHARE_COMMIT_G, cfg.session + self._sid_i, me, self._g_bytes(self._G), rng)
            w.raw(self._com).raw(self._old_shares_digest())
        msg = w.getvalue()
        self._r1_self = msg
        return RoundOutput(1, broadcast=msg)

    # round 2 --------------------------------------------------------------------------------
    def _round2(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, me, g = self.cfg, self.cfg.index, self.group
        check_inbox(inbox, self.peers, want_broadcast=True, want_direct=False, round=1)
        r1: dict[int, tuple[bytes, bytes]] = {me: (self._sid_i, self._com)}
        self._echo1 = {me: hash32(Tag.FROST_RESHARE_ECHO1, self._r1_self)}
        mine = cfg.digest()
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
            self._echo1[j] = hash32(Tag.FROST_RESHARE_ECHO1, raw)
        for j in self.peers:
            if hmac.compare_digest(r1[j][0], self._sid_i):
                raise ProtocolAbort(j, "round 1: session contribution repeats ours")
        if len({v[0] for v in r1.values()}) != len(r1):
            raise ProtocolAbort(None, "round 1: two peers sent the same session contribution (cannot tell which copied)")
        self._r1 = r1
        self._sid = hash32(
            Tag.FROST_RESHARE_SID, cfg.session, mine, list_of([u16(j) + b"".join(r1[j]) for j in sorted(r1)])
        )

        w = Writer(self._header(2, BROADCAST, 0)).raw(b"".join(self._echo1[m] for m in self.all))
        direct: dict[int, bytes] = {}
        if self.is_dealer:
            w.raw(self._g_bytes(self._G)[2:])
            for k in range(self._first_sent(), cfg.new_threshold):
                w.raw(pok.prove(g, self._coeffs[k], self._G[k], self._coef_ctx(me, k), self._rng).encode(g))
            w.raw(self._rho)
            for j in self.peers:
                if j in self._receivers:
                    share = evaluate(g, self._coeffs, self._receivers[j])
                    direct[j] = Writer(self._header(2, DIRECT, j)).raw(g.encode_scalar(share)).getvalue()
            if self.is_receiver:
                self._own_eval = evaluate(g, self._coeffs, self._receivers[me])
            del self._coeffs
        bcast = w.getvalue()
        self._r2_self = bcast
        return RoundOutput(2, broadcast=bcast, direct=direct)

    # round 3 --------------------------------------------------------------------------------
    def _round3(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        cfg, me, tn, g = self.cfg, self.cfg.index, self.cfg.new_threshold, self.group
        dealer_peers = [j for j in self.peers if j in self._dealers]
        self._check_inbox(inbox, 2, dealer_peers if self.is_receiver else [])
        echoes: dict[int, list[bytes]] = {}
        dealt: dict[int, _Dealt] = {}
        shares: dict[int, int] = {}
        self._echo2 = {me: hash32(Tag.FROST_RESHARE_ECHO2, self._r2_self)}
        first = self._first_sent()
        plen = pok.proof_len(g)
        for j in self.peers:
            b, d = inbox[j].broadcast, inbox[j].direct
            assert b is not None

            def dec(b: bytes = b, d: bytes | None = d, j: int = j) -> tuple[list[bytes], _Dealt | None, int | None]:
                r = self._reader(b, 2, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in self.all]
                out: _Dealt | None = None
                if j in self._dealers:
                    G = [g.identity()] if cfg.refresh else []
                    G += [self._element(r, f"feldman[{k}]") for k in range(first, tn)]
                    proofs = [pok.Proof.decode(g, r.take(plen, f"proof[{k}]"), f"proof[{k}]") for k in range(first, tn)]
                    out = _Dealt(G, proofs, r.take(32, "salt_feldman"))
                r.finish("round-2 broadcast")
                share: int | None = None
                if d is not None:
                    rd = self._reader(d, 2, DIRECT, j)
                    share = self._scalar(rd, "share")
                    rd.finish("round-2 direct")
                return echo, out, share

            echo, out, share = blame_malformed(j, 2, dec, "round-2")
            echoes[j] = echo
            if out is not None:
                dealt[j] = out
            if share is not None:
                shares[j] = share
            self._echo2[j] = hash32(Tag.FROST_RESHARE_ECHO2, b)
        check_echoes(2, me, self.all, echoes, self._echo1)

        for j in sorted(dealt):
            m = dealt[j]
            if not opens(Tag.FROST_RESHARE_COMMIT_G, cfg.session + self._r1[j][0], j, self._g_bytes(m.G), m.rho, self._r1[j][1]):
                raise ProtocolAbort(j, "round 2: Feldman vector does not open the round-1 commitment")
            if not cfg.refresh and self._old_shares is not None:
                if m.G[0] != g.mul(self._old_shares[self._dealers[j] - 1], self._lam(j)):
                    raise ProtocolAbort(j, "round 2: constant term is not lambda_i times its old public share")
            for k, proof in zip(range(first, tn), m.proofs, strict=True):
                if not pok.verify(g, proof, m.G[k], self._coef_ctx(j, k)):
                    raise ProtocolAbort(j, f"round 2: invalid proof of knowledge of coefficient {k}")
            if j in shares and g.base_mul(shares[j]) != feldman_evaluate(g, m.G, self._receivers[me]):
                raise ProtocolAbort(j, "round 2: share does not match its Feldman commitment")
        if self.is_dealer:
            dealt[me] = _Dealt(self._G, [], b"")

        agg = [g.sum(dealt[j].G[k] for j in sorted(dealt)) for k in range(tn)]
        n_new = len(self._receivers)
        if cfg.refresh:
            assert self._old_shares is not None
            new_pub = [g.add(self._old_shares[m - 1], feldman_evaluate(g, agg, m)) for m in range(1, n_new + 1)]
        else:
            if agg[0] != self._pk:
                raise ProtocolAbort(None, "round 2: the dealers' constant terms do not sum to the public key")
            new_pub = [feldman_evaluate(g, agg, m) for m in range(1, n_new + 1)]
        if any(g.is_identity(s) for s in new_pub):
            raise ProtocolAbort(None, "round 2: a new public share is the identity")
        self._new_pub = tuple(g.encode(s) for s in new_pub)
        if self.is_receiver:
            total = sum(shares.values()) + (self._own_eval if self.is_dealer else 0)
            if cfg.refresh:
                total += self._old
            self._share = total % g.order
            if g.base_mul(self._share) != new_pub[self._receivers[me] - 1]:
                raise ProtocolAbort(None, "round 2: own new share inconsistent with the aggregate commitment")
        self.__dict__.pop("_own_eval", None)

        w = Writer(self._header(3, BROADCAST, 0)).raw(b"".join(self._echo2[m] for m in self.all)).raw(self._confirm())
        bcast = w.getvalue()
        self._r3_self = bcast
        return RoundOutput(3, broadcast=bcast)

    def _confirm(self) -> bytes:
        c = self.cfg
        return hash32(
            Tag.FROST_RESHARE_CONFIRM,
            self._sid,
            c.scheme.encode("ascii"),
            c.public_key,
            u16(c.new_threshold),
            u16(len(self._receivers)),
            u32(c.new_epoch),
            list_of(list(self._new_pub)),
        )

    # round 4 ------------------------------------------------------------------------------
    def _round4(self, inbox: Mapping[int, Delivery]) -> RoundOutput:
        me = self.cfg.index
        self._check_inbox(inbox, 3, [])
        parsed: dict[int, tuple[list[bytes], bytes]] = {}
        self._echo3 = {me: hash32(Tag.FROST_RESHARE_ECHO3, self._r3_self)}
        for j in self.peers:
            b = inbox[j].broadcast
            assert b is not None

            def dec(b: bytes = b, j: int = j) -> tuple[list[bytes], bytes]:
                r = self._reader(b, 3, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in self.all]
                digest = r.take(32, "confirm")
                r.finish("round-3 broadcast")
                return echo, digest

            parsed[j] = blame_malformed(j, 3, dec, "round-3")
            self._echo3[j] = hash32(Tag.FROST_RESHARE_ECHO3, b)
        check_echoes(3, me, self.all, {j: parsed[j][0] for j in self.peers}, self._echo2)
        mine = self._confirm()
        for j in self.peers:
            if not hmac.compare_digest(parsed[j][1], mine):
                raise ProtocolAbort(j, "round 3: confirmed a different new sharing")
        w = Writer(self._header(4, BROADCAST, 0)).raw(b"".join(self._echo3[m] for m in self.all))
        return RoundOutput(4, broadcast=w.getvalue())

    # output ---------------------------------------------------------------------------------
    def _finish(self, inbox: Mapping[int, Delivery]) -> None:
        cfg, me = self.cfg, self.cfg.index
        self._check_inbox(inbox, 4, [])
        echoes: dict[int, list[bytes]] = {}
        for j in self.peers:
            b = inbox[j].broadcast
            assert b is not None

            def dec(b: bytes = b, j: int = j) -> list[bytes]:
                r = self._reader(b, 4, BROADCAST, j)
                echo = [r.take(ECHO_LEN, f"echo[{m}]") for m in self.all]
                r.finish("round-4 broadcast")
                return echo

            echoes[j] = blame_malformed(j, 4, dec, "round-4")
        check_echoes(4, me, self.all, echoes, self._echo3)
        if not self.is_receiver:
            self.retired = True
            self._wipe()
            return
        ks = FrostKeyShare(
            scheme=cfg.scheme,
            threshold=cfg.new_threshold,
            parties=len(self._receivers),
            index=self._receivers[me],
            secret_share=self._share,
            public_key=cfg.public_key,
            public_shares=self._new_pub,
            sid_dkg=self._sid,
            key_label=cfg.key_label,
            epoch=cfg.new_epoch,
        )
        self._wipe()
        try:
            ks.validate()
        except DecodeError as e:  # unreachable after the checks above; never a half-valid share
            raise ProtocolAbort(None, f"round 4: the new key share is inconsistent: {e.field}") from None
        self.result = ks


__all__ = ["FrostReshareConfig", "FrostReshareParty"]
