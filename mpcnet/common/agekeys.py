"""Recovery officers' age keys and age files (issue 12, design section 3): X25519 identities in
the standard ``age`` text forms, and binary age files that the ``age`` command-line tool decrypts.

Forms (age-encryption.org/v1): a recipient is Bech32 with HRP ``age`` over the 32-byte X25519
public key (``age1...``, lower case); an identity is Bech32 with HRP ``AGE-SECRET-KEY-`` over the
32-byte private key, upper case (``AGE-SECRET-KEY-1...``). An identity file is what
``age-keygen`` writes: ``# created: <RFC 3339 time>``, ``# public key: age1...``, the identity
line; mode 0600. Encryption and decryption are pyrage's (the Rust ``age`` crate); text forms use
``bech32``.

Every failure is :class:`AgeKeyError`; its message names the file or the field, never a private
key, and a caller's text in it is escaped.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import os
import re
from pathlib import Path

import bech32
import pyrage  # type: ignore[import-untyped]  # no stubs; used only here (mpcnet.common.agekeys)

from governance.errors import GovernanceError
from governance.roster import check_x25519_public_key
from governance.text import escape, quote
from mpcnet.common.fsutil import write_atomic

KEY_LEN = 32
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
AGE_HEADER = b"age-encryption.org/v1\n"
MAX_AGE_FILE = 2048
"""Largest age file a backup piece or a piece delivery may be (bytes)."""
MAX_IDENTITY_FILE = 64 * 1024
_STANZA_ARG = re.compile(rb"[\x21-\x7e]+")
_B64_LINE = re.compile(rb"[A-Za-z0-9+/]{0,64}")
_MAC_LINE = re.compile(rb"--- [A-Za-z0-9+/]{43}")
_NONCE_LEN = 16
_TAG_LEN = 16


class AgeKeyError(Exception):
    """An age key, identity file or age file that cannot be used; the message says why (never
    a private key)."""


def _encode(hrp: str, data: bytes) -> str:
    five = bech32.convertbits(list(data), 8, 5, True)
    if five is None:  # pragma: no cover - 8-to-5 bit conversion with padding always succeeds
        raise AgeKeyError("cannot encode the key")
    return bech32.bech32_encode(hrp, five)


def _decode(text: str, hrp: str, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 90 or not text.isascii():
        raise AgeKeyError(f"{what}: not a Bech32 string")
    got_hrp, five = bech32.bech32_decode(text)
    if got_hrp is None or five is None:
        raise AgeKeyError(f"{what}: not a valid Bech32 string (bad character or checksum)")
    if got_hrp != hrp:
        raise AgeKeyError(f"{what}: expected the prefix {hrp!r}, got {escape(got_hrp)!r}")
    data = bech32.convertbits(five, 5, 8, False)
    if data is None or len(data) != KEY_LEN:
        raise AgeKeyError(f"{what}: expected a {KEY_LEN}-byte key")
    return bytes(data)


def _check_key(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
        raise AgeKeyError(f"{what}: must be {KEY_LEN} bytes")
    return bytes(key)


def _check_recipient(public: bytes) -> bytes:
    """A canonical X25519 public key that is not a low-order point (with one, age would derive
    a shared secret anyone knows; pyrage panics on it)."""
    key = _check_key(public, "recipient")
    try:
        return check_x25519_public_key(key, "recipient")
    except GovernanceError as e:
        raise AgeKeyError(str(e)) from None


def recipient_text(public: bytes) -> str:
    """``age1...`` for a 32-byte X25519 public key (canonical, not low-order, else AgeKeyError)."""
    return _encode(RECIPIENT_HRP, _check_recipient(public))


def parse_recipient(text: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1...`` recipient (lower case, as age writes it;
    surrounding spaces ignored). Raises AgeKeyError."""
    t = text.strip() if isinstance(text, str) else text
    if isinstance(t, str) and t.lower().startswith(IDENTITY_HRP):  # never echo a private key
        raise AgeKeyError("recipient: this is an age identity (a private key), not a recipient (age1...)")
    shown = quote(t)
    if isinstance(t, str) and t != t.lower():
        raise AgeKeyError(f"recipient {shown}: must be lower case (age1...)")
    try:
        return _check_recipient(_decode(t, RECIPIENT_HRP, "recipient"))
    except AgeKeyError as e:
        raise AgeKeyError(f"{e} (got {shown})") from None


def identity_text(private: bytes) -> str:
    """``AGE-SECRET-KEY-1...`` for a 32-byte X25519 private key (secret: never log it)."""
    return _encode(IDENTITY_HRP, _check_key(private, "identity")).upper()


def parse_identity(text: str) -> bytes:
    """The 32-byte private key of an ``AGE-SECRET-KEY-1...`` identity (upper case, as age writes
    it). Raises AgeKeyError that never quotes the text."""
    t = text.strip() if isinstance(text, str) else text
    if not isinstance(t, str) or not t.isascii() or t != t.upper():
        raise AgeKeyError("identity: must be an upper-case AGE-SECRET-KEY-1... string")
    return _decode(t.lower(), IDENTITY_HRP, "identity")


def public_key(private: bytes) -> bytes:
    """The X25519 public key (32 bytes) of a private key."""
    ident = pyrage.x25519.Identity.from_str(identity_text(private))
    return parse_recipient(str(ident.to_public()))


def generate() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair ``(private32, public32)`` from the OS CSPRNG."""
    private = os.urandom(KEY_LEN)
    return private, public_key(private)


def identity_file_text(private: bytes, created: datetime.datetime | None = None) -> str:
    """The identity file as ``age-keygen`` writes it (secret)."""
    when = (created or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    return (
        f"# created: {when.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"# public key: {recipient_text(public_key(private))}\n"
        f"{identity_text(private)}\n"
    )


def write_identity_file(path: Path | str, private: bytes) -> None:
    """Write an identity file atomically with mode 0600; refuses to overwrite an existing file
    (AgeKeyError naming the path)."""
    p = Path(path)
    try:
        write_atomic(p, identity_file_text(private).encode("ascii"), 0o600, overwrite=False)
    except FileExistsError:
        raise AgeKeyError(f"identity file {escape(str(p))}: already exists (not overwritten)") from None
    except OSError as e:
        raise AgeKeyError(f"identity file {escape(str(p))}: cannot write ({escape(e.strerror or type(e).__name__)})") from None


def read_identity_file(path: Path | str) -> bytes:
    """The private key of an identity file (``#`` comments and blank lines ignored; exactly one
    ``AGE-SECRET-KEY-1...`` line). Raises AgeKeyError naming the file, never the key."""
    p = Path(path)
    name = escape(str(p))
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_IDENTITY_FILE + 1)
    except OSError as e:
        raise AgeKeyError(f"identity file {name}: cannot read ({escape(e.strerror or type(e).__name__)})") from None
    if len(raw) > MAX_IDENTITY_FILE:
        raise AgeKeyError(f"identity file {name}: larger than {MAX_IDENTITY_FILE} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise AgeKeyError(f"identity file {name}: not an ASCII age identity file") from None
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(keys) != 1:
        raise AgeKeyError(f"identity file {name}: expected exactly one AGE-SECRET-KEY-1... line, found {len(keys)} key lines")
    try:
        return parse_identity(keys[0])
    except AgeKeyError as e:
        raise AgeKeyError(f"identity file {name}: {e}") from None


def check_age_file(data: bytes, max_len: int = MAX_AGE_FILE) -> None:
    """Structure of a binary age file, without decrypting: the ``age-encryption.org/v1`` header,
    exactly one ``X25519`` stanza (``-> X25519 <32-byte share>`` and a 32-byte body), any other
    stanza a ``*-grease`` one, the ``---`` MAC line and a payload of at least nonce + one tag;
    at most ``max_len`` bytes. Raises AgeKeyError saying what is wrong."""
    if not isinstance(data, bytes | bytearray):
        raise AgeKeyError("age file: not bytes")
    data = bytes(data)
    if len(data) > max_len:
        raise AgeKeyError(f"age file: {len(data)} bytes, more than {max_len}")
    if not data.startswith(AGE_HEADER):
        raise AgeKeyError("age file: no age-encryption.org/v1 header")
    pos = len(AGE_HEADER)
    x25519 = 0

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise AgeKeyError("age file: truncated header")
        out = data[pos:end]
        pos = end + 1
        return out

    while True:
        ln = line()
        if ln.startswith(b"--- "):
            if not _MAC_LINE.fullmatch(ln):
                raise AgeKeyError("age file: malformed header MAC line")
            break
        if not ln.startswith(b"-> "):
            raise AgeKeyError("age file: malformed stanza line")
        args = ln[3:].split(b" ")
        if not args or not all(_STANZA_ARG.fullmatch(a) for a in args):
            raise AgeKeyError("age file: malformed stanza arguments")
        body = b""
        while True:
            b = line()
            if not _B64_LINE.fullmatch(b):
                raise AgeKeyError("age file: malformed stanza body")
            body += b
            if len(b) < 64:
                break
        if args[0] == b"X25519":
            x25519 += 1
            if len(args) != 2 or _b64_len(args[1]) != 32 or _b64_len(body) != 32:
                raise AgeKeyError("age file: malformed X25519 stanza")
        elif not args[0].endswith(b"-grease"):
            raise AgeKeyError(f"age file: unexpected stanza type {quote(args[0].decode('ascii'))}")
    if x25519 != 1:
        raise AgeKeyError(f"age file: expected exactly one X25519 stanza, found {x25519}")
    if len(data) - pos < _NONCE_LEN + _TAG_LEN:
        raise AgeKeyError("age file: payload truncated")


def _b64_len(text: bytes) -> int:
    """Decoded length of unpadded canonical base64, or -1."""
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return -1
    if base64.b64encode(raw).rstrip(b"=") != text:
        return -1
    return len(raw)


def encrypt(recipient: bytes, plaintext: bytes) -> bytes:
    """A binary age file of ``plaintext`` to the 32-byte X25519 ``recipient``."""
    r = pyrage.x25519.Recipient.from_str(recipient_text(recipient))
    try:
        return bytes(pyrage.encrypt(bytes(plaintext), [r]))
    except pyrage.EncryptError:
        raise AgeKeyError("age: encryption failed") from None


def decrypt(private: bytes, data: bytes, max_len: int = MAX_AGE_FILE) -> bytes:
    """The plaintext of an age file for the 32-byte ``private`` key; AgeKeyError when the file is
    malformed, too large, not addressed to this key or corrupted."""
    check_age_file(data, max_len)
    ident = pyrage.x25519.Identity.from_str(identity_text(private))
    try:
        return bytes(pyrage.decrypt(bytes(data), [ident]))
    except pyrage.DecryptError:
        raise AgeKeyError("age file: not decryptable with this identity (other recipient, or corrupted)") from None


__all__ = [
    "KEY_LEN", "MAX_AGE_FILE", "AgeKeyError", "check_age_file", "decrypt", "encrypt", "generate", "identity_file_text",
    "identity_text", "parse_identity", "parse_recipient", "public_key", "read_identity_file", "recipient_text",
    "write_identity_file",
]
