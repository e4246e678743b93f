"""``mpc-coordinator rotate-audit-key --config FILE``: replace the coordinator's audit key.

The coordinator's identity key (its keystore, :mod:`mpcnet.common.keystore`) signs its audit
log. Rotating it keeps the log one chain (:mod:`governance.audit`, the key rotation rule): the
old key signs an ``audit-key-rotated`` entry naming the new public key, and every entry after
it verifies only with the new key. Clients keep verifying from the key in their cluster.json
(the key that started the log).

Run it with the coordinator stopped (the data directories are locked, so a running coordinator
makes it fail naming its pid). Crash-safe, in this order:

1. the new keystore is written next to the live one as ``<keystore>.next`` (sealed with the
   same passphrase, atomically, 0600);
2. the audit log gets the ``audit-key-rotated`` entry, signed by the old key (the commit point);
3. ``<keystore>.next`` replaces the keystore (atomic rename, the old private key's file is gone).

:func:`finish_pending_rotation` (run by this command and at every coordinator start) looks at a
``<keystore>.next`` left by a kill: if the log was already handed over to its key, step 3 is
done now; otherwise the rotation never happened and the file is deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from coordinator.config import CoordinatorConfig
from governance.errors import GovernanceError
from mpcnet.common.datadir import hold_data_dirs
from mpcnet.common.fsutil import fsync_dir, write_atomic
from mpcnet.common.keystore import SCRYPT_N, generate_keys, load_keystore, read_passphrase, seal_keystore
from mpcnet.common.keystore_lock import hold_keystore, replace_keystore
from mpcnet.common.stores.audit import AuditLog

log = logging.getLogger("coordinator.audit_key")


@dataclass(frozen=True)
class AuditKeyRotation:
    """The outcome: the raw Ed25519 public keys before and after (32 bytes each) and the seq of
    the ``audit-key-rotated`` entry."""

    old_public: bytes
    new_public: bytes
    seq: int


def staged_path(keystore: Path) -> Path:
    """Where the next keystore waits between steps 1 and 3."""
    return Path(keystore).with_name(Path(keystore).name + ".next")


def _log_wants(cfg: CoordinatorConfig, passphrase: bytes) -> bool:
    """Whether the audit log's current signing key is the identity key of the staged keystore."""
    keys = load_keystore(staged_path(cfg.keystore), passphrase)
    try:
        with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity):
            return True
    except GovernanceError as e:
        if e.field == "signing_key":
            return False
        raise


def finish_pending_rotation(cfg: CoordinatorConfig, passphrase: bytes) -> bool:
    """Complete or drop a rotation a kill interrupted (see the module docstring). Returns True
    when it completed one (the keystore now holds the new key)."""
    staged = staged_path(cfg.keystore)
    if not staged.exists():
        return False
    data = staged.read_bytes()
    if _log_wants(cfg, passphrase):
        replace_keystore(cfg.keystore, data, 0o600)  # a starting coordinator's lock moves to the new file, never unlocked
        staged.unlink()
        fsync_dir(staged.parent)
        log.warning("audit key rotation: finished one a restart interrupted")
        return True
    staged.unlink()  # the log never named it: the rotation did not happen
    fsync_dir(staged.parent)
    return False


def _replace_keystore(staged: Path, keystore: Path) -> None:
    """Step 3: the staged keystore takes the live one's name (atomic rename, directory fsynced)."""
    os.replace(staged, keystore)
    fsync_dir(keystore.parent)


def _scrypt_n(keystore: Path) -> int:
    """The live keystore's scrypt cost (the next one costs the same); the default if unreadable."""
    try:
        n = json.loads(Path(keystore).read_bytes())["kdf"]["n"]
    except (OSError, ValueError, KeyError, TypeError):
        return SCRYPT_N
    return n if isinstance(n, int) and not isinstance(n, bool) else SCRYPT_N


def rotate_audit_key(cfg: CoordinatorConfig, *, scrypt_n: int | None = None) -> AuditKeyRotation:
    """Steps 1-3 of the module docstring, holding the data directories' locks; the new keystore
    costs ``scrypt_n`` (default: what the live one costs).

    Raises :class:`mpcnet.common.keystore.KeystoreError` (passphrase, keystore),
    :class:`GovernanceError` (audit log) or :class:`mpcnet.common.datadir.DataDirBusy`
    (the coordinator is running; :class:`mpcnet.common.keystore_lock.KeystoreBusy` when another
    process holds the keystore)."""
    with hold_data_dirs((cfg.db.parent, cfg.audit_db.parent), files=(cfg.db, cfg.audit_db)), hold_keystore(cfg.keystore):
        passphrase = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
        finish_pending_rotation(cfg, passphrase)
        current = load_keystore(cfg.keystore, passphrase)
        new = generate_keys()
        staged = staged_path(cfg.keystore)
        cost = scrypt_n if scrypt_n is not None else _scrypt_n(cfg.keystore)
        write_atomic(staged, seal_keystore(new, passphrase, scrypt_n=cost), 0o600)
        del passphrase
        try:
            with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=current.identity) as audit:
                entry = audit.rotate_key(cfg.name, new.identity)
        except BaseException:
            with contextlib.suppress(OSError):
                staged.unlink()
            raise
        _replace_keystore(staged, Path(cfg.keystore))
        log.warning("audit key rotated: entry %d hands the log over to %s", entry.seq, new.identity_public.hex()[:16])
        return AuditKeyRotation(current.identity_public, new.identity_public, entry.seq)
