"""Officers' age keys and age files (mpcnet.common.agekeys): the standard text forms, identity files
as age-keygen writes them, real age encryption (pyrage), the structure check, and errors that
never show a private key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pyrage
import pytest

from mpcnet.common import agekeys
from mpcnet.common.agekeys import AgeKeyError

P = 2**255 - 19


def assert_no_key(text: str, private: bytes) -> None:
    ident = agekeys.identity_text(private)
    for form in (ident, ident.lower(), ident[16:40], private.hex()):
        assert form not in text, text


def test_text_forms_are_ages_own() -> None:
    ident = pyrage.x25519.Identity.generate()
    private = agekeys.parse_identity(str(ident))
    assert agekeys.identity_text(private) == str(ident)
    assert agekeys.recipient_text(agekeys.public_key(private)) == str(ident.to_public())
    assert agekeys.parse_recipient(str(ident.to_public())) == agekeys.public_key(private)
    private2, public2 = agekeys.generate()
    assert len(private2) == len(public2) == 32 and private2 != private
    assert str(pyrage.x25519.Identity.from_str(agekeys.identity_text(private2)).to_public()) == agekeys.recipient_text(public2)


def test_encrypt_decrypt_round_trip_and_refusals() -> None:
    private, public = agekeys.generate()
    other, _ = agekeys.generate()
    data = agekeys.encrypt(public, b"piece" * 20)
    agekeys.check_age_file(data)
    assert agekeys.decrypt(private, data) == b"piece" * 20
    with pytest.raises(AgeKeyError, match="not decryptable"):
        agekeys.decrypt(other, data)
    corrupted = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(AgeKeyError, match="not decryptable"):
        agekeys.decrypt(private, corrupted)
    with pytest.raises(AgeKeyError, match="more than"):
        agekeys.decrypt(private, agekeys.encrypt(public, bytes(4000)))
    assert agekeys.decrypt(private, agekeys.encrypt(public, bytes(4000)), max_len=8192) == bytes(4000)


def _stanza(kind: bytes, arg: bytes, body: bytes) -> bytes:
    b64 = base64.b64encode(body).rstrip(b"=")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"-> " + kind + b" " + arg + b"\n" + b"\n".join(lines) + b"\n"


def _file(*stanzas: bytes, payload: bytes = bytes(48)) -> bytes:
    return b"age-encryption.org/v1\n" + b"".join(stanzas) + b"--- " + b"A" * 43 + b"\n" + payload


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not age", "header"),
        (_file(), "exactly one X25519"),
        (_file(_stanza(b"X25519", b"A" * 43, bytes(32)), _stanza(b"X25519", b"A" * 43, bytes(32))), "exactly one X25519"),
        (_file(_stanza(b"scrypt", b"A" * 22 + b" 18", bytes(32))), "unexpected stanza type"),
        (_file(_stanza(b"X25519", b"A" * 42, bytes(32))), "malformed X25519"),
        (_file(_stanza(b"X25519", b"A" * 43, bytes(31))), "malformed X25519"),
        (_file(_stanza(b"X25519", b"A" * 43, bytes(32)), payload=bytes(20)), "payload truncated"),
        (_file(_stanza(b"X25519", b"A" * 43, bytes(32)))[:60], "truncated header"),
        (_file(_stanza(b"X25519", b"A" * 43, bytes(32)), payload=bytes(3000)), "more than"),
        (_file(_stanza(b"X25519", b"A" * 43, bytes(32))).replace(b"--- " + b"A" * 43, b"--- short"), "MAC line"),
    ],
)
def test_check_age_file_refuses_malformed_files(data: bytes, why: str) -> None:
    with pytest.raises(AgeKeyError, match=why):
        agekeys.check_age_file(data)


def test_check_age_file_accepts_a_hand_built_file_and_grease() -> None:
    agekeys.check_age_file(_file(_stanza(b"X25519", b"A" * 43, bytes(32))))
    agekeys.check_age_file(_file(_stanza(b"ab-grease", b"x y", bytes(70)), _stanza(b"X25519", b"A" * 43, bytes(32))))


@pytest.mark.parametrize(
    "text",
    ["age1", "age1qqqq", "AGE1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS2HF6TQ", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
     "x" * 200, "age1\n", "\u0430ge1abc"],
)
def test_bad_recipients_are_refused(text: str) -> None:
    with pytest.raises(AgeKeyError, match="recipient"):
        agekeys.parse_recipient(text)


def test_low_order_and_non_canonical_recipients_are_refused() -> None:
    for u in (0, 1, P - 1, P + 3):
        key = u.to_bytes(32, "little")
        with pytest.raises(AgeKeyError):
            agekeys.recipient_text(key)
        with pytest.raises(AgeKeyError):
            agekeys.encrypt(key, b"x")
        text = agekeys._encode("age", key)
        with pytest.raises(AgeKeyError):
            agekeys.parse_recipient(text)


def test_an_identity_given_as_recipient_is_not_echoed() -> None:
    private, _ = agekeys.generate()
    for text in (agekeys.identity_text(private), agekeys.identity_text(private).lower()):
        with pytest.raises(AgeKeyError) as e:
            agekeys.parse_recipient(text)
        assert_no_key(str(e.value), private)


def test_bad_identities_are_refused_without_echo() -> None:
    private, public = agekeys.generate()
    ident = agekeys.identity_text(private)
    flipped = ident[:-1] + ("Q" if ident[-1] != "Q" else "P")
    for text in (flipped, ident.lower(), ident[:-3], agekeys.recipient_text(public).upper(), ""):
        with pytest.raises(AgeKeyError) as e:
            agekeys.parse_identity(text)
        assert_no_key(str(e.value), private)


def test_identity_file_is_written_like_age_keygen(tmp_path: Path) -> None:
    private, public = agekeys.generate()
    path = tmp_path / "officer1.key"
    agekeys.write_identity_file(path, private)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# created: 20") and lines[0].endswith("Z")
    assert lines[1] == f"# public key: {agekeys.recipient_text(public)}"
    assert lines[2] == agekeys.identity_text(private) and len(lines) == 3
    assert agekeys.read_identity_file(path) == private
    other, _ = agekeys.generate()
    with pytest.raises(AgeKeyError, match="already exists"):
        agekeys.write_identity_file(path, other)
    assert agekeys.read_identity_file(path) == private
    assert [p.name for p in tmp_path.iterdir()] == ["officer1.key"]  # no temporary file left


def test_identity_file_from_pyrage_form_with_blank_lines(tmp_path: Path) -> None:
    ident = pyrage.x25519.Identity.generate()
    path = tmp_path / "k.txt"
    path.write_text(f"\n# some comment\n\n{ident}\n\n")
    assert agekeys.identity_text(agekeys.read_identity_file(path)) == str(ident)


def test_identity_file_errors_name_the_file_never_the_key(tmp_path: Path) -> None:
    private, _ = agekeys.generate()
    ident = agekeys.identity_text(private)
    cases = {
        "two.key": f"{ident}\n{ident}\n",
        "none.key": "# nothing\n",
        "bad.key": ident[:-1] + ("C" if ident.endswith("A") else "A") + "\n",  # another last character: a bad checksum
        "lower.key": ident.lower() + "\n",
        "bin.key": "\xff\xfe",
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_bytes(text.encode("latin-1"))
        with pytest.raises(AgeKeyError) as e:
            agekeys.read_identity_file(p)
        assert name in str(e.value)
        assert_no_key(str(e.value), private)
    with pytest.raises(AgeKeyError, match="cannot read"):
        agekeys.read_identity_file(tmp_path / "missing\x1b[31m.key")
    big = tmp_path / "big.key"
    big.write_bytes(b"#" * (agekeys.MAX_IDENTITY_FILE + 1))
    with pytest.raises(AgeKeyError, match="larger than"):
        agekeys.read_identity_file(big)


def test_escape_of_a_hostile_path(tmp_path: Path) -> None:
    with pytest.raises(AgeKeyError) as e:
        agekeys.read_identity_file(tmp_path / "evil\x1b]0;x\x07.key")
    assert "\x1b" not in str(e.value) and "\x07" not in str(e.value)


def test_generated_keys_are_distinct() -> None:
    keys = {agekeys.generate()[0] for _ in range(20)}
    assert len(keys) == 20
    assert os.urandom  # the OS CSPRNG is what generate() uses
