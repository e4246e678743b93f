"""No secret in a repr, a str, or the text of an exception (issue 8, item 6).

Each object that holds a long-term or per-session secret is built with known secret values;
neither ``repr()``, ``str()``, nor the text of any exception raised while using it may contain
those values as hex, as a decimal integer, or as raw bytes.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from crypto_core.dkg import _Round2
from crypto_core.errors import ProtocolError
from crypto_core.group import G
from crypto_core.hazmat import base_ot
from crypto_core.hazmat.pairwise import OteReceiverSeeds, OteSenderSeeds, PairwiseSetup
from crypto_core.hazmat.presignature import load_presignature
from crypto_core.hazmat.rvole import RvoleBob
from crypto_core.keyshare import KeyShare
from crypto_core.local import route
from crypto_core.rng import DeterministicRng
from crypto_core.sign import PresignParty, SignConfig, _Round3
from mpcnet.common.keystore import OperationalKeys

from .dkg_util import keygen, make_parties
from .sign_util import presign


def forms(secret: int | bytes) -> list[str]:
    """The ways a secret could leak into text: hex (padded or not), decimal, raw bytes."""
    if isinstance(secret, int):
        raw = secret.to_bytes(32, "big")
        return [str(secret), format(secret, "x"), format(secret, "X"), raw.hex(), repr(raw)[2:-1]]
    assert len(secret) >= 8, "too short to test for"
    return [secret.hex(), secret.hex().upper(), repr(secret)[2:-1], secret.decode("latin-1")]


def assert_hidden(text: str, secrets: list[int | bytes]) -> None:
    for s in secrets:
        for f in forms(s):
            assert f not in text, f"secret leaked into text: {text[:200]!r}"


def assert_object_hidden(obj: object, secrets: list[int | bytes]) -> None:
    assert_hidden(repr(obj), secrets)
    assert_hidden(str(obj), secrets)
    assert_hidden(f"{obj!r} {obj}", secrets)


def _pairwise_secrets(p: PairwiseSetup) -> list[int | bytes]:
    return [*p.as_bob.seeds0, *p.as_bob.seeds1, *p.as_alice.seeds, p.zero_seed]


def test_key_share_and_pairwise_material():
    ks = keygen(2, 3)[1]
    secrets: list[int | bytes] = [ks.secret_share]
    for p in ks.pairwise:
        secrets += _pairwise_secrets(p)
        for obj in (p, p.as_bob, p.as_alice):
            assert_object_hidden(obj, secrets)
        assert_object_hidden(p.as_alice, [p.as_alice.delta])  # Delta (16 bytes)
    assert_object_hidden(ks, secrets)
    assert_object_hidden(ks.pairwise, secrets)  # a tuple's repr uses its items' reprs


def test_key_share_decode_errors_do_not_echo_secrets():
    ks = keygen(2, 3)[2]
    record = ks.to_bytes()
    secrets = [ks.secret_share, *[s for p in ks.pairwise for s in _pairwise_secrets(p)]]
    off = record.index(ks.secret_share.to_bytes(32, "big"))
    bad_share = record[:off] + (ks.secret_share ^ 1).to_bytes(32, "big") + record[off + 32:]
    for data in (bad_share, record[:-1], record + b"\x00", record[:off + 5]):
        with pytest.raises(ProtocolError) as e:
            KeyShare.from_bytes(data)
        assert_hidden(str(e.value), secrets + [ks.secret_share ^ 1])


def test_seed_containers_refuse_bad_sizes_without_echoing_them():
    seed = bytes(range(32))
    with pytest.raises(ValueError) as e:
        OteReceiverSeeds((seed,) * 3, (seed,) * 3)
    assert_hidden(str(e.value), [seed])
    with pytest.raises(ValueError) as e:
        OteSenderSeeds(b"\xa5" * 15, (seed,) * 128)
    assert_hidden(str(e.value), [seed, b"\xa5" * 15])


def test_base_ot_receiver_state():
    st, _ = base_ot.receiver_message(b"s" * 32, DeterministicRng(b"bot"), count=128)
    assert_object_hidden(st, list(st.alphas) + [base_ot.pack_bits(st.choices)])
    assert str(st.choices) not in repr(st)


def test_rvole_bob():
    ks = keygen(2, 3)[1]
    bob, _ = RvoleBob.start(ks.peer(2).as_bob, b"r" * 32, DeterministicRng(b"rv"), peer=2)
    assert_object_hidden(bob, [bob.chi])


def test_decoded_peer_messages():
    r2 = _Round2(
        [], [], [], b"a" * 32, b"b" * 32, b"c" * 32, 0xDEADBEEF_12345678_9ABCDEF0_0FEDCBA9_87654321, b"z" * 8 + bytes(range(24)), [], b""
    )
    assert_object_hidden(r2, [r2.share, r2.zero])
    r3 = _Round3(G, b"s" * 32, G, G, G, 0x1234567890ABCDEF_1234567890ABCDEF, b"m" * 8 + bytes(range(56)))
    assert_object_hidden(r3, [r3.psi, r3.msg2])


def test_presignature_and_its_misuse_errors():
    keys = keygen(2, 3)
    pre = presign(keys, (1, 3), session=b"R" * 32, seed=b"red")[1]
    assert pre._secret is not None
    secrets: list[int | bytes] = list(pre._secret)
    assert_object_hidden(pre, secrets)
    record = pre.to_bytes()
    for data in (record[:-1], record + b"\x00", record[:-40]):
        with pytest.raises(ProtocolError) as e:
            load_presignature(data)
        assert_hidden(str(e.value), secrets)
    errors = []
    with pytest.raises(ProtocolError) as e:  # not marked used yet
        pre.signature_share(bytes(32), key_id=keys[1].key_id, epoch=keys[1].epoch)
    errors.append(str(e.value))
    pre.mark_used()
    assert_object_hidden(pre, secrets)
    for call in (
        lambda: pre.signature_share(bytes(32), key_id=bytes(32), epoch=keys[1].epoch),  # refused: consumes it
        lambda: pre.signature_share(bytes(32), key_id=keys[1].key_id, epoch=keys[1].epoch),
        pre.mark_used,
    ):
        with pytest.raises(ProtocolError) as e:
            call()
        errors.append(str(e.value))
    assert_hidden(" ".join(errors), secrets)
    assert_object_hidden(pre, secrets)


def test_protocol_parties_mid_run_and_after_death():
    parties = make_parties(2, 3, seed=b"rp")
    inboxes = route({i: p.start() for i, p in parties.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in parties.items()})
    p1 = parties[1]
    secrets: list[int | bytes] = [*p1._coeffs, *p1._zero_mine.values()]
    assert_object_hidden(p1, secrets)
    inboxes[1][2] = type(inboxes[1][2])(inboxes[1][2].broadcast, b"junk" * 20)
    with pytest.raises(ProtocolError) as e:
        p1.receive(inboxes[1])
    assert_hidden(str(e.value), secrets)
    assert_object_hidden(p1, secrets)

    keys = keygen(2, 3)
    ps = {i: PresignParty(keys[i], SignConfig(b"Q" * 32, (1, 2)), DeterministicRng(b"q" + bytes([i]))) for i in (1, 2)}
    inboxes = route({i: p.start() for i, p in ps.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in ps.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in ps.items()})
    q = ps[1]
    secrets = [q._r, q._phi, q._sk, keys[1].secret_share]
    assert_object_hidden(q, secrets)
    ps[1].receive(inboxes[1])
    assert_object_hidden(q.result, [*q.result._secret, keys[1].secret_share])


def test_operational_keys():
    keys = OperationalKeys(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())
    raw = [
        k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()) for k in (keys.identity, keys.encryption)
    ]
    assert_object_hidden(keys, raw)
