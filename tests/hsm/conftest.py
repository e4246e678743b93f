"""A SoftHSM2 token for the PKCS#11 tests: a temporary token directory (``SOFTHSM2_CONF``), one
token initialized with ``softhsm2-util --init-token --free`` per test process.

SoftHSM2 reads its configuration once, when the module is first loaded into a process, and does
not see tokens initialized afterwards, so the fixture is session-scoped and sets
``SOFTHSM2_CONF`` in this process's environment before anything loads the module; tests use
distinct key labels. Node processes get the same environment (:meth:`SoftHsm.env`). Skipped,
with the reason, where ``softhsm2-util`` or the module is missing (``scripts/test`` installs the
Debian package ``softhsm2``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpcnet.common.protection import Pkcs11Settings, close_tokens

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
TOKEN_LABEL = "mpcnet-test"  # noqa: S105 - a label, not a secret
PIN = "test-pin-4711"
SO_PIN = "test-so-pin-0815"


@dataclass(frozen=True)
class SoftHsm:
    """The test token: its module, label, PIN (in ``pin_file`` too) and configuration file."""

    module: Path
    conf: Path
    token_label: str
    pin: str
    pin_file: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a node process needs to see the token (plus ``extra``)."""
        return {"SOFTHSM2_CONF": str(self.conf), **extra}

    def settings(self, *, identity: bool = False, storage_label: str | None = None) -> Pkcs11Settings:
        """Settings with fresh key labels (the storage key's, and the identity's if ``identity``)."""
        tag = uuid.uuid4().hex[:12]
        return Pkcs11Settings(
            module=self.module, token_label=self.token_label, pin_file=self.pin_file,
            storage_key_label=storage_label or f"storage-{tag}", identity_key_label=f"identity-{tag}" if identity else None,
        )  # fmt: skip


def _module() -> Path | None:
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util, module = shutil.which("softhsm2-util"), _module()
    if util is None or module is None:
        pytest.skip("SoftHSM2 is not installed (Debian package softhsm2: softhsm2-util and libsofthsm2.so); scripts/test installs it")
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN_LABEL, "--pin", PIN, "--so-pin", SO_PIN],
        check=True, capture_output=True, env={**os.environ},
    )  # fmt: skip
    pin_file = d / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    try:
        yield SoftHsm(module, conf, TOKEN_LABEL, PIN, pin_file)
    finally:
        close_tokens()
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old
