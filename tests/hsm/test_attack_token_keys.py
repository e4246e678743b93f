"""Attacks on the token's keys (issue 13, R1): a key planted under the node's label by someone
who knows it, or could once export it, must be refused, not used to wrap the data key.

A storage key or identity private key is used only if the token reports it sensitive and
non-extractable *and always was* (``CKA_ALWAYS_SENSITIVE``, ``CKA_NEVER_EXTRACTABLE``): a key
created from outside bytes (``C_CreateObject``) or generated extractable and later locked is
known to whoever planted it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from mpcnet.common.pkcs11token import TokenError
from mpcnet.common.protection import KeyProtection, create_operational_keys, open_pkcs11, storage_key

from .conftest import SoftHsm


def test_a_planted_extractable_storage_key_is_refused(softhsm: SoftHsm) -> None:
    s = softhsm.settings()
    token = open_pkcs11(s)
    with token.lock:
        token._live().generate_key(
            KeyType.AES, 256, store=True, label=s.storage_key_label,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
        )  # fmt: skip
    with pytest.raises(TokenError, match=r"pkcs11.storage_key_label: .*(extractable|sensitive)"):
        storage_key(s, create=True)


def test_a_storage_key_imported_from_known_bytes_is_refused(softhsm: SoftHsm) -> None:
    s = softhsm.settings()
    token = open_pkcs11(s)
    with token.lock:
        token._live().create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: os.urandom(32),
            Attribute.LABEL: s.storage_key_label, Attribute.TOKEN: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
        })
    with pytest.raises(TokenError, match=r"pkcs11.storage_key_label: .*(extractable|sensitive)"):
        storage_key(s, create=True)


def test_a_storage_key_once_extractable_then_locked_is_refused(softhsm: SoftHsm) -> None:
    s = softhsm.settings()
    token = open_pkcs11(s)
    with token.lock:
        key = token._live().generate_key(
            KeyType.AES, 256, store=True, label=s.storage_key_label,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
        )  # fmt: skip
        key[Attribute.SENSITIVE] = True
        key[Attribute.EXTRACTABLE] = False
    with pytest.raises(TokenError, match=r"pkcs11.storage_key_label: .*(extractable|sensitive)"):
        storage_key(s, create=True)


def test_a_planted_extractable_identity_key_is_refused(softhsm: SoftHsm, tmp_path: Path) -> None:
    from pkcs11.util.ec import encode_named_curve_parameters

    s = softhsm.settings(identity=True)
    assert s.identity_key_label is not None
    token = open_pkcs11(s)
    with token.lock:
        params = token._live().create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")}, local=True,
        )
        params.generate_keypair(
            store=True, label=s.identity_key_label,
            private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False, Attribute.SIGN: True},
        )
    with pytest.raises(TokenError, match=r"pkcs11.identity_key_label: .*(extractable|sensitive)"):
        create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s))
    assert not (tmp_path / "keystore.json").exists()


def test_keys_the_node_generates_still_work(softhsm: SoftHsm, tmp_path: Path) -> None:
    s = softhsm.settings(identity=True)
    keys = create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s))
    keys.identity.public_key().verify(keys.identity.sign(b"m"), b"m")
    storage_key(s, create=False)


def test_two_keys_of_one_label_are_refused(softhsm: SoftHsm) -> None:
    """Someone adds a second key under the node's label: which one wraps the data key must not
    depend on the token's listing order."""
    s = softhsm.settings()
    storage_key(s, create=True)
    token = open_pkcs11(s)
    with token.lock:
        token._live().generate_key(
            KeyType.AES, 256, store=True, label=s.storage_key_label,
            template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
        )  # fmt: skip
    with pytest.raises(TokenError, match="pkcs11.storage_key_label: more than one object"):
        storage_key(s, create=True)


def test_the_pin_is_in_no_repr_error_or_option(softhsm: SoftHsm, tmp_path: Path) -> None:
    import click

    from mpc_node.enrol import init_command
    from mpc_node.rekey import rekey_command

    s = softhsm.settings(identity=True)
    keys = create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s))
    token = open_pkcs11(s)
    for text in (repr(s), repr(KeyProtection(pkcs11=s)), repr(keys.identity), repr(token), repr(storage_key(s))):
        assert softhsm.pin not in text
    for command in (init_command, rekey_command):
        names = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}
        assert not any(n in names for n in ("--pin", "--pkcs11-pin")), names  # a PIN never travels in argv


@pytest.mark.parametrize("how", ["writable", "other-owner", "open-dir"])
def test_a_module_someone_else_could_write_is_not_loaded(softhsm: SoftHsm, tmp_path: Path, how: str) -> None:
    """The PKCS#11 module runs in the node's process with its PIN and keys."""
    import shutil
    from dataclasses import replace

    d = tmp_path / "lib"
    d.mkdir()
    copy = d / "libsofthsm2.so"
    shutil.copy(softhsm.module, copy)
    os.chmod(copy, 0o700)
    if how == "writable":
        os.chmod(copy, 0o777)  # noqa: S103 (the attack)
    elif how == "other-owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to chown")
        os.chown(copy, 4242, 4242)
    else:
        os.chmod(d, 0o777)  # noqa: S103 (the attack)
    s = replace(softhsm.settings(), module=copy)
    with pytest.raises(TokenError, match="pkcs11.module: .*(writable|owned by uid 4242)"):
        storage_key(s, create=True)
