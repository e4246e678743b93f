"""Operational-key keystore: round trip, tamper resistance, atomic no-clobber create, passphrase sources."""

from __future__ import annotations

import base64
import json
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from mpcnet.common.keystore import (
    KeystoreError,
    OperationalKeys,
    create_keystore,
    load_keystore,
    read_passphrase,
)

N = 2**10  # fast scrypt for tests
PASS = b"correct horse battery staple"


def _priv(keys: OperationalKeys) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    fmt = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return keys.identity.private_bytes(*fmt), keys.encryption.private_bytes(*fmt)


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, OperationalKeys]:
    path = tmp_path / "node.keystore"
    return path, create_keystore(path, PASS, scrypt_n=N)


def test_round_trip_and_file_properties(store: tuple[Path, OperationalKeys]) -> None:
    path, keys = store
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(keys.identity_public) == 32 and len(keys.encryption_public) == 32
    loaded = load_keystore(path, PASS)
    assert _priv(loaded) == _priv(keys)
    assert loaded.identity_public == keys.identity_public
    raw = path.read_bytes()
    for secret in _priv(keys):
        assert secret not in raw and secret.hex().encode() not in raw
        assert base64.b64encode(secret) not in raw
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_repr_shows_only_public_keys(store: tuple[Path, OperationalKeys]) -> None:
    _, keys = store
    text = repr(keys) + str(keys)
    for secret in _priv(keys):
        assert secret.hex() not in text
    assert keys.identity_public.hex() in text


def test_keys_are_independent(tmp_path: Path) -> None:
    a = create_keystore(tmp_path / "a", PASS, scrypt_n=N)
    b = create_keystore(tmp_path / "b", PASS, scrypt_n=N)
    assert a.identity_public != b.identity_public
    assert a.encryption_public != b.encryption_public


def test_refuses_to_overwrite(store: tuple[Path, OperationalKeys]) -> None:
    path, _ = store
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(path, PASS, scrypt_n=N)
    assert path.read_bytes() == before


def test_concurrent_creators_do_not_clobber(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(create_keystore(path, PASS, scrypt_n=N))
        except KeystoreError as e:
            results.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, OperationalKeys)]
    assert len(winners) == 1
    assert load_keystore(path, PASS).identity_public == winners[0].identity_public


def test_wrong_passphrase(store: tuple[Path, OperationalKeys]) -> None:
    path, _ = store
    with pytest.raises(KeystoreError) as ei:
        load_keystore(path, b"wrong")
    assert str(ei.value) == "keystore: cannot be unlocked (wrong passphrase or corrupted file)"


@pytest.mark.parametrize("field", ["ciphertext", "identity_public", "encryption_public", "kdf.salt", "cipher.nonce"])
def test_tampering_is_indistinguishable_from_wrong_passphrase(store: tuple[Path, OperationalKeys], field: str) -> None:
    path, _ = store
    doc = json.loads(path.read_text())
    holder, name = (doc, field) if "." not in field else (doc[field.split(".")[0]], field.split(".")[1])
    value = holder[name]
    if name.endswith("_public"):
        raw = bytearray(bytes.fromhex(value))
        raw[0] ^= 1
        holder[name] = raw.hex()
    else:
        raw = bytearray(base64.b64decode(value))
        raw[-1] ^= 1
        holder[name] = base64.b64encode(raw).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="cannot be unlocked"):
        load_keystore(path, PASS)


def test_changed_kdf_cost_fails_to_decrypt(store: tuple[Path, OperationalKeys]) -> None:
    path, _ = store
    doc = json.loads(path.read_text())
    doc["kdf"]["n"] = 2**11
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="cannot be unlocked"):
        load_keystore(path, PASS)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(version=2), "keystore.version"),
        (lambda d: d.update(version=True), "keystore.version"),
        (lambda d: d.update(format="other"), "keystore.format"),
        (lambda d: d["kdf"].update(n=3), "keystore.kdf.n"),
        (lambda d: d["kdf"].update(n=2**40), "keystore.kdf.n"),
        (lambda d: d["kdf"].update(r=1), "keystore.kdf"),
        (lambda d: d["kdf"].update(name="pbkdf2"), "keystore.kdf.name"),
        (lambda d: d["cipher"].update(nonce="!!"), "keystore.cipher.nonce"),
        (lambda d: d["cipher"].update(nonce=base64.b64encode(b"x" * 8).decode()), "keystore.cipher.nonce"),
        (lambda d: d.pop("ciphertext"), "keystore.ciphertext"),
        (lambda d: d.update(identity_public="zz"), "keystore.identity_public"),
        (lambda d: d.pop("kdf"), "keystore.kdf"),
    ],
)
def test_malformed_file_names_the_field(store: tuple[Path, OperationalKeys], mutate: object, field: str) -> None:
    path, _ = store
    doc = json.loads(path.read_text())
    mutate(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match=f"^{field}"):
        load_keystore(path, PASS)


@given(garbage=st.binary(max_size=300))
def test_garbage_file_is_refused(tmp_path_factory: pytest.TempPathFactory, garbage: bytes) -> None:
    path = tmp_path_factory.mktemp("g") / "ks"
    path.write_bytes(garbage)
    with pytest.raises(KeystoreError):
        load_keystore(path, PASS)


def test_missing_file_and_bad_passphrase_argument(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot read"):
        load_keystore(tmp_path / "missing", PASS)
    with pytest.raises(KeystoreError, match="^passphrase: must not be empty"):
        create_keystore(tmp_path / "x", b"", scrypt_n=N)
    with pytest.raises(KeystoreError, match="^passphrase: must be bytes"):
        create_keystore(tmp_path / "x", "text", scrypt_n=N)  # type: ignore[arg-type]
    with pytest.raises(KeystoreError, match="^scrypt_n"):
        create_keystore(tmp_path / "x", PASS, scrypt_n=1000)
    assert not (tmp_path / "x").exists()


def test_read_passphrase_from_file(tmp_path: Path) -> None:
    f = tmp_path / "pp"
    f.write_bytes(b"secret\n")
    assert read_passphrase(file=f, env=None) == b"secret"
    f.write_bytes(b"secret\r\n")
    assert read_passphrase(file=f, env=None) == b"secret"
    f.write_bytes(b"secret\n\n")
    assert read_passphrase(file=f, env=None) == b"secret\n"  # only one newline is stripped
    f.write_bytes(b" spaced ")
    assert read_passphrase(file=f, env=None) == b" spaced "
    f.write_bytes(b"\n")
    with pytest.raises(KeystoreError, match="is empty"):
        read_passphrase(file=f, env=None)
    with pytest.raises(KeystoreError, match="cannot read"):
        read_passphrase(file=tmp_path / "missing", env=None)


def test_read_passphrase_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MPCNET_TEST_PP", "from-env")
    assert read_passphrase(file=None, env="MPCNET_TEST_PP") == b"from-env"
    f = tmp_path / "pp"
    f.write_bytes(b"from-file")
    assert read_passphrase(file=f, env="MPCNET_TEST_PP") == b"from-file"
    monkeypatch.setenv("MPCNET_TEST_PP", "")
    with pytest.raises(KeystoreError, match="MPCNET_TEST_PP is not set or empty") as ei:
        read_passphrase(file=None, env="MPCNET_TEST_PP")
    monkeypatch.delenv("MPCNET_TEST_PP")
    with pytest.raises(KeystoreError, match="MPCNET_TEST_PP is not set or empty"):
        read_passphrase(file=None, env="MPCNET_TEST_PP")
    with pytest.raises(KeystoreError, match="no source"):
        read_passphrase(file=None, env=None)
    assert "from-env" not in str(ei.value)


def test_error_messages_never_contain_the_passphrase(store: tuple[Path, OperationalKeys], tmp_path: Path) -> None:
    path, _ = store
    secret = b"do-not-print-me"
    calls: list[Callable[[], object]] = [
        lambda: load_keystore(path, secret),
        lambda: create_keystore(path, secret, scrypt_n=N),
    ]
    for call in calls:
        with pytest.raises(KeystoreError) as ei:
            call()
        assert secret.decode() not in str(ei.value) and secret.decode() not in repr(ei.value)
