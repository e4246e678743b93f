"""The PKCS#11 protection against SoftHSM2: the token's keys, the token keystore, the token store,
the refusals, concurrent signing in the token, and mpc-node rekey-store killed at every step."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pkcs11 import ObjectClass

from mpc_node import rekey as rekey_mod
from mpc_node.config import load_node_config
from mpc_node.main import main as node_main
from mpc_node.storage import NodeStore, StoreError
from mpcnet.cluster.launcher import prepare
from mpcnet.common.config import ConfigError
from mpcnet.common.keystore import KeystoreError, create_keystore, load_keystore
from mpcnet.common.pkcs11token import TokenError
from mpcnet.common.protection import (
    KeyProtection,
    Pkcs11Settings,
    close_tokens,
    create_operational_keys,
    open_operational_keys,
    open_pkcs11,
    storage_key,
)

from .conftest import SoftHsm

RAW = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())
SHARE = b"the key share record: " + os.urandom(32)


def _forms(secret: bytes) -> list[bytes]:
    """``secret`` as raw bytes, hex and base64: none may appear in a protected file."""
    return [secret, secret.hex().encode(), base64.b64encode(secret)]


def _absent(path: Path, secret: bytes) -> None:
    data = path.read_bytes()
    for wal in (path.with_name(path.name + "-wal"),):
        if wal.exists():
            data += wal.read_bytes()
    for form in _forms(secret):
        assert form not in data


def test_identity_and_storage_keys_are_non_extractable_and_sensitive(softhsm: SoftHsm, tmp_path: Path) -> None:
    s = softhsm.settings(identity=True)
    keys = create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s))
    token = open_pkcs11(s)
    assert s.identity_key_label is not None
    ident = token.attributes(s.identity_key_label, ObjectClass.PRIVATE_KEY)
    assert ident == {"extractable": False, "sensitive": True, "local": True}  # generated inside the token
    assert token.attributes(s.storage_key_label, ObjectClass.SECRET_KEY) == {"extractable": False, "sensitive": True, "local": True}
    with pytest.raises(TokenError, match="cannot be exported"):
        keys.identity.private_bytes(*RAW)
    sig = keys.identity.sign(b"message")
    keys.identity.public_key().verify(sig, b"message")
    assert "TokenIdentity" in repr(keys.identity) and softhsm.pin not in repr(keys.identity)


def test_token_keystore_holds_no_usable_key_without_the_token(softhsm: SoftHsm, tmp_path: Path) -> None:
    for identity in (False, True):
        s = softhsm.settings(identity=identity)
        ks = tmp_path / f"keystore-{identity}.json"
        keys = create_operational_keys(ks, KeyProtection(pkcs11=s))
        again = open_operational_keys(ks, KeyProtection(pkcs11=s))
        assert (again.identity_public, again.encryption_public) == (keys.identity_public, keys.encryption_public)
        assert create_operational_keys(ks, KeyProtection(pkcs11=s)).identity_public == keys.identity_public  # never overwritten
        _absent(ks, keys.encryption.private_bytes(*RAW))
        if not identity:
            _absent(ks, keys.identity.private_bytes(*RAW))
        # the passphrase path, with any passphrase (and the right file): a clear refusal
        with pytest.raises(KeystoreError, match=r"keystore\.kdf: this keystore is protected by a PKCS#11 token"):
            load_keystore(ks, b"any passphrase")
        # another storage key of the same token: refused by the token (GCM authentication)
        other = Pkcs11Settings(s.module, s.token_label, s.pin_file, None, "storage-other", s.identity_key_label)
        storage_key(other, create=True)
        with pytest.raises(KeystoreError, match="storage_key_label"):
            open_operational_keys(ks, KeyProtection(pkcs11=other))


def test_passphrase_keystore_and_store_opened_with_the_token_are_clear_errors(softhsm: SoftHsm, tmp_path: Path) -> None:
    s = softhsm.settings()
    pf = tmp_path / "passphrase"
    pf.write_text("correct horse\n")
    create_keystore(tmp_path / "keystore.json", b"correct horse", scrypt_n=2**10)
    with pytest.raises(KeystoreError, match=r"keystore\.protection: this keystore is protected by a passphrase"):
        open_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s))
    NodeStore.open(tmp_path / "node.db", b"correct horse", 1, scrypt_n=2**10).close()
    with pytest.raises(StoreError, match="protected by a passphrase, not a PKCS#11 token"):
        NodeStore.open(tmp_path / "node.db", storage_key(s, create=True), 1)


def test_token_store_round_trip_and_refusals(softhsm: SoftHsm, tmp_path: Path) -> None:
    s = softhsm.settings()
    key = storage_key(s, create=True)
    db = tmp_path / "node.db"
    kid = os.urandom(32)
    with NodeStore.open(db, key, 3) as store:
        store.put_key_share(kid, SHARE, label="k", public_key=b"\x02" + bytes(32), threshold=2, parties=3)
    with NodeStore.open(db, key, 3) as store:
        assert store.get_key_share(kid, require_active=False) == SHARE
    _absent(db, SHARE)
    with pytest.raises(StoreError, match="passphrase: this store is protected by a PKCS#11 token"):
        NodeStore.open(db, b"any passphrase", 3)
    with pytest.raises(StoreError, match="node_id"):
        NodeStore.open(db, key, 4)
    other = storage_key(softhsm.settings(), create=True)
    with pytest.raises(StoreError, match="storage_key_label"):
        NodeStore.open(db, other, 3)


def test_token_errors_name_the_field_and_never_the_pin(softhsm: SoftHsm, tmp_path: Path) -> None:
    bad_pin = tmp_path / "bad-pin"
    bad_pin.write_text("wrong-pin-1234\n")
    cases = [
        (Pkcs11Settings(softhsm.module, softhsm.token_label, pin_file=bad_pin), "pkcs11.pin_file: the token refused the PIN"),
        (Pkcs11Settings(softhsm.module, softhsm.token_label, pin_env="MPC_TEST_NO_SUCH_PIN"), "pkcs11.pin_env: "),
        (Pkcs11Settings(tmp_path / "missing.so", softhsm.token_label, pin_file=softhsm.pin_file), "pkcs11.module: no PKCS#11 module"),
        (Pkcs11Settings(softhsm.module, "no-such-token", pin_file=softhsm.pin_file), "pkcs11.token_label: no token labelled"),
    ]
    for settings, message in cases:
        close_tokens()
        with pytest.raises(TokenError) as e:
            create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=settings))
        assert str(e.value).startswith(message)
        assert "wrong-pin-1234" not in str(e.value) and softhsm.pin not in str(e.value)
    close_tokens()
    with pytest.raises(TokenError, match="pkcs11.storage_key_label: no AES key labelled"):
        storage_key(softhsm.settings(), create=False)
    with pytest.raises(TokenError, match="pkcs11.identity_key_label: no Ed25519 key pair"):
        open_pkcs11(softhsm.settings()).identity("absent-identity", create=False)


def test_token_signing_from_many_threads(softhsm: SoftHsm, tmp_path: Path) -> None:
    s = softhsm.settings(identity=True)
    ident = create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s)).identity
    public = ident.public_key()
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for j in range(40):
                msg = b"thread %d message %d" % (n, j)
                public.verify(ident.sign(msg), msg)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_signing_cost_token_vs_software(softhsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a benchmark gate: prints what one Ed25519 signature costs in the token and in software."""
    s = softhsm.settings(identity=True)
    token_id = create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s)).identity
    soft = Ed25519PrivateKey.generate()
    msg = os.urandom(512)
    figures = {}
    for name, k in (("token", token_id), ("software", soft)):
        start = time.perf_counter()
        for _ in range(200):
            k.sign(msg)
        figures[name] = (time.perf_counter() - start) / 200 * 1e6
    with capsys.disabled():
        print(f"\nEd25519 sign of 512 bytes: token {figures['token']:.0f} us, software {figures['software']:.0f} us")
    assert figures["token"] < 20_000  # 20 ms would make a protocol round visibly slower


def test_config_pkcs11_object(softhsm: SoftHsm, tmp_path: Path) -> None:
    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10)
    path = lay.node_config(1)
    doc = json.loads(path.read_text())
    base = {"module": str(softhsm.module), "token_label": softhsm.token_label, "pin_file": "hsm-pin"}
    doc["pkcs11"] = base
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="pkcs11: give either a passphrase"):
        load_node_config(path)
    doc.pop("passphrase_file")
    bads = [({"pin_env": "X"}, "pkcs11.pin_file"), ({"extra": 1}, "pkcs11.extra"),
            ({"token_label": "x" * 33}, "pkcs11.token_label"), ({"pin_env": "a b", "pin_file": None}, "pkcs11.pin_env")]
    for bad, field in bads:
        doc["pkcs11"] = {**base, **bad}
        path.write_text(json.dumps(doc))
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_node_config(path)
    doc["pkcs11"] = {**base, "identity_key_label": "id-1"}
    path.write_text(json.dumps(doc))
    cfg = load_node_config(path)
    assert cfg.protection.kind == "pkcs11" and cfg.pkcs11 is not None
    assert cfg.pkcs11.pin_file == path.parent / "hsm-pin" and cfg.pkcs11.identity_key_label == "id-1"
    assert cfg.pkcs11.storage_key_label == "mpcnet-storage-key"


def _populate(cfg_path: Path) -> tuple[bytes, bytes, bytes]:
    """A key share, a presignature and a used one (tombstone) in the passphrase store."""
    cfg = load_node_config(cfg_path)
    assert cfg.passphrase_file is not None
    kid, sig1, sig2 = os.urandom(32), os.urandom(32), os.urandom(32)
    with NodeStore.open(cfg.store, cfg.passphrase_file.read_bytes().rstrip(b"\n"), cfg.index, scrypt_n=cfg.scrypt_n) as st:
        st.put_key_share(kid, SHARE, label="k", public_key=b"\x02" + bytes(32), threshold=2, parties=2)
        st.activate_key(kid)
        st.put_presignature(sig1, kid, b"presignature one")
        st.put_presignature(sig2, kid, b"presignature two")
        st.consume_presignature(sig2, b"tombstone two")
    return kid, sig1, sig2


class Killed(Exception):
    pass


def test_rekey_store_killed_at_every_step_then_completed(softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10, test_mode=True)
    cfg_path = lay.node_config(1)
    before = load_node_config(cfg_path)
    assert before.passphrase_file is not None
    passphrase = before.passphrase_file.read_bytes().rstrip(b"\n")
    old_keys = load_keystore(before.keystore, passphrase)
    kid, sig1, sig2 = _populate(cfg_path)
    label = f"storage-rekey-{os.urandom(4).hex()}"
    args = ["rekey-store", "--config", str(cfg_path), "--pkcs11-module", str(softhsm.module),
            "--pkcs11-token", softhsm.token_label, "--pkcs11-pin-file", str(softhsm.pin_file), "--storage-key-label", label]  # fmt: skip
    for step in rekey_mod.STEPS:
        def kill(done: str, at: str = step) -> None:
            if done == at:
                raise Killed(at)

        monkeypatch.setattr(rekey_mod, "after_step", kill)
        with pytest.raises(Killed):
            rekey_mod.rekey_command.main(args[1:], standalone_mode=False)
        close_tokens()
    monkeypatch.setattr(rekey_mod, "after_step", rekey_mod._no_fault)
    assert node_main(args) == 0  # nothing left to do: the config says pkcs11
    cfg = load_node_config(cfg_path)
    assert cfg.pkcs11 is not None and cfg.passphrase_file is None and cfg.pkcs11.storage_key_label == label
    keys = open_operational_keys(cfg.keystore, cfg.protection)
    assert (keys.identity_public, keys.encryption_public) == (old_keys.identity_public, old_keys.encryption_public)
    assert not cfg.keystore.with_name("keystore.json.pkcs11").exists()
    with NodeStore.open(cfg.store, storage_key(cfg.pkcs11), cfg.index) as st:
        assert st.get_key_share(kid) == SHARE
        assert st.get_presignature(sig1) == (b"presignature one", False)
        assert st.get_presignature(sig2) == (b"tombstone two", True)
        with pytest.raises(StoreError):
            st.consume_presignature(sig2, b"again")  # the used-is-final trigger is back
    # the old passphrase opens neither any more; the raw keys are in neither file
    with pytest.raises(StoreError, match="protected by a PKCS#11 token"):
        NodeStore.open(cfg.store, passphrase, cfg.index)
    with pytest.raises(KeystoreError, match="protected by a PKCS#11 token"):
        load_keystore(cfg.keystore, passphrase)
    _absent(cfg.keystore, old_keys.encryption.private_bytes(*RAW))
    _absent(cfg.keystore, old_keys.identity.private_bytes(*RAW))
    _absent(cfg.store, SHARE)
    # exactly one audit entry, however many runs reached step 5, naming what the re-seal did (review:
    # it was appended after the re-seal, by every run reaching step 5: twice here, and a run after
    # a kill between the re-seal and the entry logged records_resealed 0)
    from mpcnet.common.stores.audit import AuditLog

    with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity) as audit:
        rekeyed = [e for e in audit.entries() if e.action == "rekey-store"]
    assert len(rekeyed) == 1, rekeyed
    assert rekeyed[0].details["records_resealed"] == 3 and rekeyed[0].details["storage_key_label"] == label
    with NodeStore.open(cfg.store, storage_key(cfg.pkcs11), cfg.index) as st:
        assert st.pending_audit() == []  # delivered and dropped from the store's outbox


def test_rekey_store_without_a_store_logs_once_across_a_kill(softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpcnet.common.stores.audit import AuditLog

    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10, test_mode=True)
    cfg_path = lay.node_config(1)
    assert not load_node_config(cfg_path).store.exists()  # a node never started
    label = f"storage-none-{os.urandom(4).hex()}"
    args = ["--config", str(cfg_path), "--pkcs11-module", str(softhsm.module), "--pkcs11-token", softhsm.token_label,
            "--pkcs11-pin-file", str(softhsm.pin_file), "--storage-key-label", label]  # fmt: skip

    def kill(done: str) -> None:
        if done == "audit":
            raise Killed(done)

    monkeypatch.setattr(rekey_mod, "after_step", kill)
    with pytest.raises(Killed):
        rekey_mod.rekey_command.main(args, standalone_mode=False)
    close_tokens()
    monkeypatch.setattr(rekey_mod, "after_step", rekey_mod._no_fault)
    assert node_main(["rekey-store", *args]) == 0
    cfg = load_node_config(cfg_path)
    assert cfg.pkcs11 is not None
    keys = open_operational_keys(cfg.keystore, cfg.protection)
    with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity) as audit:
        rekeyed = [e for e in audit.entries() if e.action == "rekey-store"]
    assert len(rekeyed) == 1 and rekeyed[0].details["records_resealed"] == 0, rekeyed


def test_key_rotation_of_a_token_node_is_refused_and_audited(softhsm: SoftHsm, tmp_path: Path) -> None:
    import threading
    from types import SimpleNamespace

    from mpc_node.rotation import KeyRotation
    from mpcnet.common.rpc import RpcError
    from mpcnet.common.stores.audit import AuditLog

    s = softhsm.settings(identity=True)
    keys = create_operational_keys(tmp_path / "keystore.json", KeyProtection(pkcs11=s))
    cfg = SimpleNamespace(name="node-1", index=1, store=tmp_path / "node.db", keystore=tmp_path / "keystore.json",
                          passphrase_file=None, passphrase_env=None, pkcs11=s, audit_db=tmp_path / "audit.db")  # fmt: skip
    with AuditLog.open(cfg.audit_db, component="node-1", signing_key=keys.identity) as audit:
        host = SimpleNamespace(cfg=cfg, audit=audit, keys=keys, keys_lock=threading.Lock(), health=None)
        with pytest.raises(RpcError) as e:
            KeyRotation(host).prepare("admin1")  # type: ignore[arg-type]
        assert e.value.code.name == "FAILED_PRECONDITION" and e.value.message.startswith("pkcs11: key rotation is not supported")
        assert [(x.action, x.outcome) for x in audit.entries()][-1] == ("key-rotation-prepared", "refused")
    assert not (tmp_path / "rotation").exists()  # nothing staged


def test_rekey_store_refusals_change_nothing(softhsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10)
    cfg_path = lay.node_config(1)
    _populate(cfg_path)
    before = {p.name: p.read_bytes() for p in (cfg_path, cfg_path.parent / "keystore.json", cfg_path.parent / "node.db")}
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong-pin-5555\n")
    base = ["rekey-store", "--config", str(cfg_path), "--pkcs11-module", str(softhsm.module), "--pkcs11-token", softhsm.token_label]
    close_tokens()
    assert node_main([*base, "--pkcs11-pin-file", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pkcs11.pin_file: the token refused the PIN" in err and "wrong-pin-5555" not in err
    assert node_main(base) == 2  # neither PIN option: a usage error
    assert node_main([*base, "--pkcs11-pin-file", str(wrong), "--pkcs11-pin-env", "X"]) == 2
    (cfg_path.parent / "rotation").mkdir()
    (cfg_path.parent / "rotation" / "staged-keystore.json").write_text("{}")
    assert node_main([*base, "--pkcs11-pin-file", str(softhsm.pin_file)]) == 1
    assert "a key rotation is staged" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (cfg_path, cfg_path.parent / "keystore.json", cfg_path.parent / "node.db")} == before


def test_a_token_failure_in_an_rpc_is_unavailable_not_internal() -> None:
    from types import SimpleNamespace

    from mpc_node.service import NodeService

    probed: list[bool] = []
    fake = SimpleNamespace(cfg=SimpleNamespace(name="node-1"), probe_store=lambda: probed.append(True) or "")
    err = NodeService.storage_failure(fake, TokenError("pkcs11.identity_key_label: the token failed (DeviceRemoved)"))  # type: ignore[arg-type]
    assert err is not None and err.code.name == "UNAVAILABLE" and err.message.startswith("pkcs11: node-1 cannot use its PKCS#11 token")
    assert probed  # health re-probed at once (NOT_SERVING while the token is unusable)


def test_a_wrong_pin_is_refused_while_the_token_is_logged_in(softhsm: SoftHsm, tmp_path: Path) -> None:
    """PKCS#11 login state is per application: once this process is logged in, the token does
    not check a second PIN. The session cache does: a wrong PIN is refused however many
    sessions are open (a regression: it used to be handed the open session)."""
    close_tokens()
    good = softhsm.settings()
    storage_key(good, create=True)  # logged in with the right PIN
    bad_pin = tmp_path / "bad-pin"
    bad_pin.write_text("wrong-pin-5678\n")
    bad = Pkcs11Settings(softhsm.module, softhsm.token_label, pin_file=bad_pin)
    with pytest.raises(TokenError, match="^pkcs11.pin_file: the token refused the PIN") as e:
        storage_key(bad, create=False)
    assert "wrong-pin-5678" not in str(e.value)
    assert storage_key(good, create=False) is not None  # the right PIN still gets the session
    close_tokens()
