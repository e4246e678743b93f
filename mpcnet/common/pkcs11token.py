"""A narrow view of a PKCS#11 token (python-pkcs11): the node's storage key and identity key.

Only what the node needs, each call behind one lock per token (a PKCS#11 session must not be
used by two threads at once; the node signs protocol messages from many):

* :func:`open_token` ``(module, token_label, pin)`` loads the module (a ``.so`` path), finds the
  token by label and logs in with the user PIN, read-write.
* :meth:`Token.storage_key` finds (or creates) the AES-256 *storage key* by label: generated in
  the token, ``CKA_TOKEN``, ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``. :class:`StorageKey`
  wraps and unwraps a 32-byte *data key* with ``CKM_AES_GCM`` inside the token (a fresh 12-byte
  nonce per wrap, associated data bound by the caller): ``wrap -> nonce(12) || ct(32) || tag(16)``.
* :meth:`Token.identity` finds (or creates) the Ed25519 identity key pair by label
  (``CKK_EC_EDWARDS``, curve 1.3.101.112, private half sensitive and not extractable) and returns a
  :class:`TokenIdentity`: an ``Ed25519PrivateKey`` whose :meth:`~TokenIdentity.sign` runs
  ``CKM_EDDSA`` in the token and whose private bytes cannot be had.

Errors are :class:`TokenError` whose message starts with the config field it concerns
(``pkcs11.module``, ``pkcs11.token_label``, ``pkcs11.pin_file``/``pkcs11.pin_env``,
``pkcs11.storage_key_label``, ``pkcs11.identity_key_label``); the PIN is never in a message,
a repr or a log line.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pkcs11
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, exceptions as px
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters

DATA_KEY_LEN = 32
WRAP_NONCE_LEN = 12
WRAPPED_LEN = WRAP_NONCE_LEN + DATA_KEY_LEN + 16
WRAP_MECHANISM = "CKM_AES_GCM"
ED25519_OID = "1.3.101.112"
MAX_LABEL = 32  # PKCS#11 token labels are 32 bytes; object labels kept as short

_libs: dict[str, Any] = {}
_libs_lock = threading.Lock()


class TokenError(Exception):
    """The token cannot be used: the message names the config field (never the PIN)."""


# a session or object handle the token no longer knows (the token's storage went away and came
# back, the session was closed under us, a network HSM reconnected): re-find the objects by label,
# re-open the session if needed, and retry the operation once (:meth:`Token.call`)
_LOST = (px.ObjectHandleInvalid, px.SessionHandleInvalid, px.SessionClosed, px.DeviceRemoved, px.TokenNotPresent,
         px.UserNotLoggedIn, px.DeviceError)


def _label(text: str, field_name: str) -> str:
    if not isinstance(text, str) or not 1 <= len(text.encode()) <= MAX_LABEL or not text.isprintable():
        raise TokenError(f"{field_name}: must be 1..{MAX_LABEL} bytes of printable text")
    return text


def _check_module_file(real: Path, module: Path) -> None:
    """Refuse (TokenError naming ``pkcs11.module``) to load a library someone else could have
    written: code in it runs in this process, next to the PIN and the keys. The file must be owned
    by root or this user and not writable by others; its directory not writable by others unless
    sticky (like /tmp, where only a file's owner may replace it)."""
    st, dst = real.stat(), real.parent.stat()
    if st.st_uid not in (0, os.geteuid()):
        raise TokenError(f"pkcs11.module: {os.fspath(module)!r} is owned by uid {st.st_uid}, not by root or this user")
    if st.st_mode & 0o022:
        raise TokenError(f"pkcs11.module: {os.fspath(module)!r} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")
    if dst.st_mode & 0o002 and not dst.st_mode & stat.S_ISVTX:
        raise TokenError(f"pkcs11.module: the directory of {os.fspath(module)!r} is writable by everyone")


def _load(module: Path) -> Any:
    key = os.path.realpath(module)  # one load per library file, however it is named (symlinks)
    with _libs_lock:
        if key not in _libs:
            if not Path(key).is_file():
                raise TokenError(f"pkcs11.module: no PKCS#11 module at {os.fspath(module)!r}")
            _check_module_file(Path(key), module)
            try:
                _libs[key] = pkcs11.lib(key)
            except px.PKCS11Error as e:
                raise TokenError(f"pkcs11.module: cannot load {os.fspath(module)!r} ({type(e).__name__})") from None
        return _libs[key]


def reinitialize(module: Path) -> None:
    """C_Finalize and C_Initialize the loaded library ``module`` (every session of this process
    on it is gone): the last resort when a token the library lost track of must be found again.
    Raises :class:`TokenError` naming ``pkcs11.module``."""
    with _libs_lock:
        lib = _libs.get(os.path.realpath(module))
        if lib is None:
            return
        try:
            lib.reinitialize()
        except px.PKCS11Error as e:
            raise TokenError(f"pkcs11.module: cannot re-initialize {os.fspath(module)!r} ({type(e).__name__})") from None


def open_token(module: Path, token_label: str, pin: bytes, *, pin_field: str = "pkcs11.pin_file") -> Token:
    """Log in (user PIN ``pin``, read-write session) to the token labelled ``token_label`` of the
    PKCS#11 library ``module``. Raises :class:`TokenError` naming ``pkcs11.module``,
    ``pkcs11.token_label`` or ``pin_field`` ("the token refused the PIN")."""
    _label(token_label, "pkcs11.token_label")
    if not isinstance(pin, bytes) or not pin:
        raise TokenError(f"{pin_field}: the PIN is empty")
    try:
        pin_text = pin.decode()
    except UnicodeDecodeError:
        raise TokenError(f"{pin_field}: the PIN is not UTF-8 text") from None
    lib = _load(module)
    try:
        token = lib.get_token(token_label=token_label)
    except px.NoSuchToken:
        raise TokenError(f"pkcs11.token_label: no token labelled {token_label!r} in {os.fspath(module)!r}") from None
    except px.MultipleTokensReturned:
        raise TokenError(f"pkcs11.token_label: more than one token labelled {token_label!r}") from None
    except px.PKCS11Error as e:
        raise TokenError(f"pkcs11.token_label: cannot list the tokens ({type(e).__name__})") from None
    try:
        session = token.open(user_pin=pin_text, rw=True)
    except (px.PinIncorrect, px.PinInvalid, px.PinLenRange, px.PinExpired, px.PinLocked) as e:
        raise TokenError(f"{pin_field}: the token refused the PIN ({type(e).__name__})") from None
    except px.PKCS11Error as e:
        raise TokenError(f"pkcs11.token_label: cannot open a session on {token_label!r} ({type(e).__name__})") from None
    return Token(token_label, session)


@dataclass(eq=False)
class Token:
    """A logged-in session on one token; every call holds :attr:`lock`. Close with :meth:`close`."""

    label: str
    _session: Any = field(repr=False)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _reopen: Callable[[], Any] | None = field(default=None, repr=False)  # a new logged-in session (re-reads the PIN)
    _handles: dict[tuple[Any, str], Any] = field(default_factory=dict, repr=False)
    _closed: bool = field(default=False, repr=False)

    def __repr__(self) -> str:
        return f"Token(label={self.label!r})"

    def close(self) -> None:
        """Log out and close the session (idempotent)."""
        with self.lock:
            self._closed = True
            self._drop_session()

    def _drop_session(self) -> None:
        self._handles.clear()
        if self._session is not None:
            try:
                self._session.close()
            except px.PKCS11Error:
                pass
        self._session = None

    def _live(self) -> Any:
        if self._session is None and not self._closed and self._reopen is not None:
            self._session = self._reopen()  # TokenError naming the field (a PIN file gone, the token absent)
        if self._session is None:
            raise TokenError("pkcs11: the token session is closed")
        return self._session

    def call(self, cls: ObjectClass, label: str, field_name: str, op: Callable[[Any], Any]) -> Any:
        """``op(object)`` on the object of class ``cls`` labelled ``label``, under the lock. A
        session or handle the token lost is recovered once (the object found again by label,
        the session re-opened if it is gone) and ``op`` retried; other PKCS#11 errors propagate.
        Raises :class:`TokenError` naming ``field_name`` when the token stays unusable."""
        with self.lock:
            for attempt in (0, 1):
                try:
                    handle = self._handles.get((cls, label))
                    if handle is None:
                        handle = self._find(cls, label, field_name)
                        if handle is None:
                            raise TokenError(f"{field_name}: no object labelled {label!r} in token {self.label!r}")
                        self._handles[(cls, label)] = handle
                    return op(handle)
                except _LOST as e:
                    if attempt or self._closed or self._reopen is None:
                        _fail(field_name, e)
                    self._drop_session()  # a new session (and the objects found again) on the retry
        raise AssertionError("unreachable")

    def _find(self, cls: ObjectClass, label: str, field_name: str) -> Any | None:
        found = list(self._live().get_objects({Attribute.CLASS: cls, Attribute.LABEL: label}))
        if len(found) > 1:
            raise TokenError(f"{field_name}: more than one object labelled {label!r} in the token")
        return found[0] if found else None

    def storage_key(self, label: str, *, create: bool) -> StorageKey:
        """The AES-256 storage key labelled ``label`` (created, non-extractable, when missing and
        ``create``). Raises :class:`TokenError` naming ``pkcs11.storage_key_label``."""
        fname = "pkcs11.storage_key_label"
        _label(label, fname)
        with self.lock:
            try:
                key = self._find(ObjectClass.SECRET_KEY, label, fname)
                if key is None:
                    if not create:
                        raise TokenError(f"{fname}: no AES key labelled {label!r} in token {self.label!r}")
                    key = self._live().generate_key(
                        KeyType.AES, 256, store=True, label=label,
                        template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True,
                                  Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
                    )  # fmt: skip
                if key.key_type != KeyType.AES or key[Attribute.VALUE_LEN] != DATA_KEY_LEN:
                    raise TokenError(f"{fname}: {label!r} is not an AES-256 key")
                _require_never_exported(key, fname, label)
            except px.PKCS11Error as e:
                _fail(fname, e)
            self._handles[(ObjectClass.SECRET_KEY, label)] = key
        return StorageKey(self, label, key)

    def identity(self, label: str, *, create: bool) -> TokenIdentity:
        """The Ed25519 identity key pair labelled ``label`` (generated in the token when missing
        and ``create``; with ``create``, a public half left alone by a generation killed midway is
        destroyed and the pair generated anew). Raises :class:`TokenError` naming
        ``pkcs11.identity_key_label``."""
        fname = "pkcs11.identity_key_label"
        _label(label, fname)
        with self.lock:
            try:
                priv = self._find(ObjectClass.PRIVATE_KEY, label, fname)
                pub = self._find(ObjectClass.PUBLIC_KEY, label, fname)
                if priv is None and pub is not None and create:
                    # a generation killed between its two objects (SoftHSM2 stores the public
                    # half first): a public key with no private half has signed nothing; replace it
                    pub.destroy()
                    pub = None
                if priv is None and pub is None and create:
                    params = self._live().create_domain_parameters(
                        KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)}, local=True
                    )
                    pub, priv = params.generate_keypair(
                        store=True, label=label,
                        private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.SIGN: True},
                    )  # fmt: skip
                if priv is None or pub is None:
                    raise TokenError(f"{fname}: no Ed25519 key pair labelled {label!r} in token {self.label!r}")
                if priv.key_type != KeyType.EC_EDWARDS:
                    raise TokenError(f"{fname}: {label!r} is not an Ed25519 key")
                _require_never_exported(priv, fname, label)
                point = bytes(pub[Attribute.EC_POINT])
            except px.PKCS11Error as e:
                _fail(fname, e)
            self._handles[(ObjectClass.PRIVATE_KEY, label)] = priv
        if len(point) == 34 and point[:2] == b"\x04\x20":  # DER OCTET STRING (SoftHSM2)
            point = point[2:]
        if len(point) != 32:
            raise TokenError(f"{fname}: {label!r} has a malformed public key")
        return TokenIdentity(self, label, priv, Ed25519PublicKey.from_public_bytes(point))

    def attributes(self, label: str, cls: ObjectClass) -> dict[str, bool]:
        """``{"extractable", "sensitive", "local"}`` as the token reports them for the object of
        class ``cls`` labelled ``label`` (for checks and operators)."""
        with self.lock:
            obj = self._find(cls, label, "pkcs11")
            if obj is None:
                raise TokenError(f"pkcs11: no object labelled {label!r}")
            return {
                "extractable": bool(obj[Attribute.EXTRACTABLE]),
                "sensitive": bool(obj[Attribute.SENSITIVE]),
                "local": bool(obj[Attribute.LOCAL]),
            }


def _require_never_exported(key: Any, field_name: str, label: str) -> None:
    """Refuse (TokenError naming ``field_name``) a key the token does not report as sensitive and
    non-extractable *ever since it exists* (``CKA_ALWAYS_SENSITIVE``, ``CKA_NEVER_EXTRACTABLE``):
    a key imported from known bytes, or generated extractable and locked later, under the node's
    label is known to whoever planted it. A token that cannot report these attributes fails as
    :func:`_fail` does."""
    checks = (
        (Attribute.SENSITIVE, True, "not sensitive"), (Attribute.EXTRACTABLE, False, "extractable"),
        (Attribute.ALWAYS_SENSITIVE, True, "not always sensitive (imported, or sensitive only later)"),
        (Attribute.NEVER_EXTRACTABLE, True, "once extractable (imported, or extractable before)"),
    )
    for attribute, wanted, what in checks:
        if bool(key[attribute]) is not wanted:
            raise TokenError(
                f"{field_name}: {label!r} is {what}: refused, its value may be known outside the token "
                "(delete it, or choose another label, and let the node generate the key)"
            )


def _fail(field_name: str, e: px.PKCS11Error) -> NoReturn:
    raise TokenError(f"{field_name}: the token failed ({type(e).__name__})") from None


@dataclass(frozen=True, eq=False)
class StorageKey:
    """The token's AES-256 storage key: wraps/unwraps 32-byte data keys with CKM_AES_GCM."""

    token: Token
    label: str
    _key: Any = field(repr=False)
    mechanism: str = WRAP_MECHANISM

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        """``nonce(12) || AES-GCM ciphertext(32) || tag(16)`` of ``data_key`` (32 bytes) under the
        storage key, ``aad`` bound. Raises :class:`TokenError`."""
        if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_LEN:
            raise TokenError(f"data key: must be {DATA_KEY_LEN} bytes")
        nonce = os.urandom(WRAP_NONCE_LEN)
        fname = "pkcs11.storage_key_label"
        try:
            ct = self.token.call(ObjectClass.SECRET_KEY, self.label, fname, lambda key: key.encrypt(
                data_key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128)))
        except px.PKCS11Error as e:
            _fail(fname, e)
        return nonce + bytes(ct)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """The data key in ``wrapped`` (:meth:`wrap`'s output). Raises :class:`TokenError` when
        the token does not authenticate it (another key, other ``aad``, or altered bytes)."""
        if not isinstance(wrapped, bytes) or len(wrapped) != WRAPPED_LEN:
            raise TokenError(f"wrapped data key: must be {WRAPPED_LEN} bytes")
        try:
            plain = self.token.call(ObjectClass.SECRET_KEY, self.label, "pkcs11.storage_key_label", lambda key: key.decrypt(
                wrapped[WRAP_NONCE_LEN:], mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(wrapped[:WRAP_NONCE_LEN], aad, 128),
            ))  # fmt: skip
        except px.PKCS11Error:  # the token answered: the data key is not this key's (or not for this aad)
            raise TokenError(f"pkcs11.storage_key_label: the token's key {self.label!r} does not unwrap this data key") from None
        if len(plain) != DATA_KEY_LEN:
            raise TokenError("wrapped data key: malformed")
        return bytes(plain)


class TokenIdentity(Ed25519PrivateKey):
    """An Ed25519 private key held by the token: :meth:`sign` runs CKM_EDDSA inside it (under the
    token's lock, so any number of threads may sign); the private bytes never leave it."""

    def __init__(self, token: Token, label: str, key: Any, public: Ed25519PublicKey) -> None:
        self._token = token
        self.label = label
        self._key = key
        self._public = public

    def __repr__(self) -> str:
        return f"TokenIdentity(token={self._token.label!r}, label={self.label!r})"

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, data: bytes | bytearray | memoryview) -> bytes:
        """The 64-byte Ed25519 signature of ``data``, made in the token. Raises :class:`TokenError`."""
        fname = "pkcs11.identity_key_label"
        try:
            sig = bytes(self._token.call(ObjectClass.PRIVATE_KEY, self.label, fname,
                                         lambda key: key.sign(bytes(data), mechanism=Mechanism.EDDSA)))
        except px.PKCS11Error as e:
            _fail(fname, e)
        if len(sig) != 64:
            raise TokenError("pkcs11.identity_key_label: the token returned a malformed signature")
        return sig

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        raise TokenError("pkcs11.identity_key_label: the identity key is in the token and cannot be exported")

    def private_bytes_raw(self) -> bytes:
        raise TokenError("pkcs11.identity_key_label: the identity key is in the token and cannot be exported")

    def __copy__(self) -> TokenIdentity:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenIdentity:
        return self
