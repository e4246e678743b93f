"""crypto_core's public API and its hazmat layer (issue 9).

The safe protocol classes are exported from ``crypto_core`` (``__all__``); the primitives that
are dangerous on their own are reachable only by writing ``crypto_core.hazmat``; combining and
verifying signatures (what the untrusted coordinator needs) loads no module that holds key or
presignature secrets.
"""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import crypto_core
from crypto_core import hazmat

ROOT = Path(__file__).resolve().parents[2]
HAZMAT = ("base_ot", "ec_raw", "gf128", "ot_ext", "pairwise", "presignature", "rvole")
# modules that hold (or revive) key shares, OT seeds or presignature secrets
SECRET_STATE = (
    "crypto_core.dkg",
    "crypto_core.sign",
    "crypto_core.keyshare",
    "crypto_core.hazmat.base_ot",
    "crypto_core.hazmat.ot_ext",
    "crypto_core.hazmat.pairwise",
    "crypto_core.hazmat.presignature",
    "crypto_core.hazmat.rvole",
)


def _loaded_after(code: str) -> set[str]:
    """The crypto_core modules a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport sys\nprint('\\n'.join(m for m in sys.modules if m.startswith('crypto_core')))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


def test_every_public_name_resolves_to_its_defining_module():
    assert len(set(crypto_core.__all__)) == len(crypto_core.__all__)
    assert set(crypto_core.__all__) == set(crypto_core._EXPORTS)
    for name in crypto_core.__all__:
        module = importlib.import_module(f"crypto_core.{crypto_core._EXPORTS[name]}")
        assert getattr(crypto_core, name) is getattr(module, name), name
    assert set(crypto_core.__all__) <= set(dir(crypto_core))
    star: dict[str, object] = {}
    exec("from crypto_core import *", star)  # noqa: S102 (a constant: what a star import binds)
    assert {k for k in star if k != "__builtins__"} == set(crypto_core.__all__)
    with pytest.raises(AttributeError, match="no attribute 'RvoleBob'"):
        crypto_core.RvoleBob  # noqa: B018


def test_the_public_api_exports_no_hazmat_primitive():
    for name in crypto_core.__all__:
        assert crypto_core._EXPORTS[name] != "hazmat" and not crypto_core._EXPORTS[name].startswith("hazmat.")
        defined_in = getattr(getattr(crypto_core, name), "__module__", "crypto_core")
        assert not defined_in.startswith("crypto_core.hazmat"), f"crypto_core.{name} comes from {defined_in}"


@pytest.mark.parametrize("name", HAZMAT)
def test_hazmat_modules_live_only_under_hazmat(name):
    """No compatibility shim: reaching a primitive means writing ``hazmat``."""
    assert importlib.import_module(f"crypto_core.hazmat.{name}").__name__ == f"crypto_core.hazmat.{name}"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"crypto_core.{name}")
    assert name not in crypto_core.__all__


def test_hazmat_package_imports_nothing():
    assert _loaded_after("import crypto_core.hazmat") == {"crypto_core", "crypto_core.hazmat"}
    assert hazmat.__doc__ and "hazmat" in hazmat.__name__


def test_a_presignature_is_revived_only_through_hazmat():
    assert not hasattr(crypto_core.Presignature, "from_bytes")
    from crypto_core.hazmat.presignature import load_presignature

    assert load_presignature.__module__ == "crypto_core.hazmat.presignature"


def test_combining_loads_no_module_with_secret_state():
    loaded = _loaded_after(
        "import crypto_core.combiner\n"
        "from crypto_core import DIGEST_LEN, MAX_LABEL, Point, ProtocolAbort, SignatureShare, combine, derive, verify\n"
    )
    assert "crypto_core.combiner" in loaded and "crypto_core.bip32" in loaded
    assert loaded.isdisjoint(SECRET_STATE), sorted(loaded & set(SECRET_STATE))


def test_the_coordinator_process_loads_no_module_with_secret_state():
    """The coordinator combines and verifies; it must not even load signer-side code."""
    loaded = _loaded_after("import coordinator.main\nimport coordinator.service\n")
    assert "crypto_core.combiner" in loaded
    assert loaded.isdisjoint(SECRET_STATE), sorted(loaded & set(SECRET_STATE))


def test_combining_lives_apart_from_presignature_secrets():
    import crypto_core.combiner as combiner
    import crypto_core.sign as sign

    for name in ("combine", "verify", "recover", "digest_of", "Signature"):
        assert not hasattr(sign, name), f"crypto_core.sign.{name}"
        assert getattr(combiner, name).__module__ == "crypto_core.combiner"
    assert sign.SignatureShare is combiner.SignatureShare  # what signature_share() returns
