"""``mpc-node rekey-store``: move a stopped node's store and keystore from its passphrase into a PKCS#11 token.

    mpc-node rekey-store --config FILE --pkcs11-module SO --pkcs11-token LABEL
                         (--pkcs11-pin-file F | --pkcs11-pin-env VAR) [--storage-key-label L]

Holds the node's data-directory lock (the node must be stopped) and runs these steps, each
atomic; re-running the command after a kill at any point completes the move:

1. the token's AES-256 storage key (created, non-extractable, when missing);
2. ``KEYSTORE.pkcs11`` next to the keystore: the same operational keys under a fresh data key
   wrapped by the token (reused if a previous run wrote it and it opens);
3. the store: every sealed blob re-sealed under a fresh data key wrapped by the token, and the
   passphrase's salt and check replaced, in ONE transaction (:mod:`mpc_node.store_rekey`) with
   the ``rekey-store`` audit entry (how many blobs it re-sealed) queued in the store's audit outbox;
4. ``KEYSTORE.pkcs11`` renamed over the keystore;
5. the store's audit outbox appended to the audit log (signed by the node's identity, like every
   entry; each entry once, whatever run delivers it: :func:`~mpc_node.store_rekey.deliver_outbox`).
   Without a store (a node never started) the entry is appended with a once-only event of the
   node's identity key (a rerun appends it once);
6. the config rewritten (atomic): ``passphrase_file``/``passphrase_env`` replaced by ``pkcs11``.

The identity key stays the node's (in the keystore, now token-protected): moving it into the
token would change the node's identity, which only a roster change can (``mpc node replace``).
The passphrase is no longer used afterwards; the command says to destroy its file.
A node started between steps refuses to start with an error naming the protection its store or
keystore now has (finish with this command). Errors: one line, exit 1; the PIN is never printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import click

from governance.errors import GovernanceError
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.config import NodeConfig, load_node_config
from mpc_node.rotation import StagingPaths
from mpc_node.storage import StoreError
from mpc_node.store_rekey import deliver_outbox, reseal_store, store_kind
from mpcnet.common.cliutil import Failed, PathArg
from mpcnet.common.config import ConfigError
from mpcnet.common.datadir import DataDirBusy, hold_data_dirs
from mpcnet.common.datadir_check import start_failure
from mpcnet.common.fsutil import fsync_dir, read_small_file, write_atomic
from mpcnet.common.keystore import KeystoreError, OperationalKeys, load_keystore, read_passphrase
from mpcnet.common.keystore_lock import hold_keystore
from mpcnet.common.pkcs11token import TokenError
from mpcnet.common.protection import (
    DEFAULT_STORAGE_KEY_LABEL,
    KeyProtection,
    Pkcs11Settings,
    load_token_keystore,
    seal_token_keystore,
    storage_key,
)
from mpcnet.common.stores.audit import AuditLog

STEPS = ("storage-key", "staged-keystore", "store", "keystore", "audit", "config")


def _no_fault(step: str) -> None:
    """Tests replace this to kill the command after ``step`` (one of :data:`STEPS`)."""


after_step: Callable[[str], None] = _no_fault


def _is_token_keystore(path: Path) -> bool:
    try:
        doc = json.loads(read_small_file(path))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "protection" in doc and "kdf" not in doc


def rekey(cfg: NodeConfig, settings: Pkcs11Settings, say: Callable[[str], None] = lambda m: None) -> int:
    """Run the steps above for node config ``cfg`` (its protection a passphrase) into the token of
    ``settings`` (identity stays in the keystore). Returns the number of store blobs re-sealed.
    Raises :class:`Failed` naming what is wrong, or the store/keystore/token errors."""
    if settings.identity_key_label is not None:
        raise Failed("--identity-in-token: rekey-store keeps the node's identity key (moving it changes the identity)")
    staging = StagingPaths.for_config(cfg)
    if staging.keystore.exists() or staging.marker.exists():
        raise Failed(f"a key rotation is staged in {staging.directory}: finish or abandon it first (its keys are sealed "
                     "with the passphrase)")
    staged = cfg.keystore.with_name(cfg.keystore.name + ".pkcs11")
    passphrase = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    # 1. the storage key
    key = storage_key(settings, create=True)
    after_step("storage-key")
    # 2. the keystore under the token, staged next to the live one
    keys: OperationalKeys
    if _is_token_keystore(cfg.keystore):  # step 4 done by an earlier run
        keys = load_token_keystore(cfg.keystore, key, settings)
    else:
        keys = load_keystore(cfg.keystore, passphrase)
        reuse = False
        if staged.exists():
            try:
                old = load_token_keystore(staged, key, settings)
                reuse = old.identity_public == keys.identity_public and old.encryption_public == keys.encryption_public
            except (KeystoreError, TokenError):
                reuse = False
        if not reuse:
            write_atomic(staged, seal_token_keystore(keys, key, settings), 0o600)
    after_step("staged-keystore")
    # 3. the store, in one transaction
    count = 0
    kind = store_kind(cfg.store)

    def entry(resealed: int) -> OutboxEntry:
        return OutboxEntry(cfg.name, "rekey-store", "", "ok", {
            "protection": "pkcs11", "token_label": settings.token_label,
            "storage_key_label": settings.storage_key_label, "records_resealed": resealed,
        })  # fmt: skip

    if kind == "passphrase":
        count = reseal_store(cfg.store, passphrase, cfg.index, key, audit=entry)
        say(f"store {cfg.store}: {count} sealed records re-sealed under a data key wrapped by the token")
    elif kind == "pkcs11":
        say(f"store {cfg.store}: already under the token")
    del passphrase
    after_step("store")
    # 4. the keystore
    if staged.exists():
        os.replace(staged, cfg.keystore)
        fsync_dir(cfg.keystore.parent)
    after_step("keystore")
    # 5. the audit entry (the trail is signed by the identity, which has not changed)
    try:
        with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity) as audit:
            if kind == "none":  # no store to carry the entry: a once-only event of this node's identity
                e = entry(0)
                audit.append_once(e.actor, e.action, event=f"rekey-store-{keys.identity_public.hex()[:32]}",
                                  outcome=e.outcome, details=e.details)  # fmt: skip
            else:  # the entry the re-seal queued (this run's or an earlier one's)
                deliver_outbox(cfg.store, audit)
    except GovernanceError as e:
        raise Failed(f"audit log {cfg.audit_db}: {e}") from None
    after_step("audit")
    # 6. the config
    doc = json.loads(cfg.path.read_bytes())
    doc.pop("passphrase_file", None)
    doc.pop("passphrase_env", None)
    doc.update(KeyProtection(pkcs11=settings).config_fields())
    write_atomic(cfg.path, (json.dumps(doc, indent=2) + "\n").encode(), cfg.path.stat().st_mode & 0o777)
    after_step("config")
    return count


@click.command(name="rekey-store", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=PathArg("FILE"), required=True, help="the node's config file")
@click.option("--pkcs11-module", "module", type=PathArg("SO"), required=True, help="the PKCS#11 library (.so)")
@click.option("--pkcs11-token", "token_label", required=True, help="the token's label")
@click.option("--pkcs11-pin-file", "pin_file", type=PathArg("FILE", resolve=True), default=None, help="a file holding the user PIN")
@click.option("--pkcs11-pin-env", "pin_env", default=None, help="an environment variable holding the user PIN")
@click.option("--storage-key-label", default=DEFAULT_STORAGE_KEY_LABEL, show_default=True, help="the token's AES storage key")
def rekey_command(config: Path, module: Path, token_label: str, pin_file: Path | None, pin_env: str | None, storage_key_label: str) -> int:
    """Move the node's store and keystore from its passphrase into a PKCS#11 token (the node stopped)."""
    if (pin_file is None) == (pin_env is None):
        raise click.UsageError("give exactly one of --pkcs11-pin-file and --pkcs11-pin-env")
    for value, option in ((token_label, "--pkcs11-token"), (storage_key_label, "--storage-key-label")):
        if not value or len(value.encode()) > 32 or not value.isprintable():
            raise click.BadParameter("must be 1..32 bytes of printable text", param_hint=f"'{option}'")
    module = Path(os.path.abspath(module))  # as named (a distribution's symlink stays a symlink)
    settings = Pkcs11Settings(module, token_label, pin_file, pin_env, storage_key_label)
    loaded: NodeConfig | None = None
    try:
        cfg = loaded = load_node_config(config)
        if cfg.pkcs11 is not None:
            click.echo(f"{cfg.name}: already protected by the PKCS#11 token {cfg.pkcs11.token_label!r}; nothing to do")
            return 0
        with hold_data_dirs((cfg.store.parent, cfg.audit_db.parent), files=(cfg.store, cfg.audit_db)), \
                hold_keystore(cfg.keystore):  # no running process may use the keystore it replaces
            rekey(cfg, settings, click.echo)
    except ConfigError as e:  # the config is missing, unreadable, not UTF-8/JSON, or of another kind: exit 2, one line
        raise click.UsageError(str(e)) from None
    except (KeystoreError, StoreError, TokenError, DataDirBusy, OSError) as e:
        # a full, read-only or failing data dir: one line naming it and what to do
        unusable = start_failure((loaded.store.parent, loaded.audit_db.parent), e) if loaded is not None else None
        raise Failed(str(unusable or e)) from None
    where = cfg.passphrase_file if cfg.passphrase_file is not None else f"the environment variable {cfg.passphrase_env}"
    click.echo(f"{cfg.name}: store and keystore now protected by the PKCS#11 token {token_label!r}; config {config} rewritten")
    click.echo(f"the passphrase ({where}) is no longer used: destroy it")
    return 0
