"""The import contract: the layer boundaries the README draws, read from the source (AST).

Every ``import`` and ``from ... import`` in the product packages is read, at any depth (function-
level and ``TYPE_CHECKING`` imports included), resolved to the module it names (relative imports
too; ``from pkg import name`` is the module ``pkg.name`` when that module exists, else ``pkg``),
and checked against these rules:

1. **Pure layers** (``crypto_core``, ``governance``) do no I/O and depend on no other project
   package. Each import is one of: the package itself; a standard-library module not in
   :data:`IO_MODULES` (files, databases, sockets, threads, processes, clocks, logging, the
   interpreter's streams, dynamic imports, a non-cryptographic RNG); or a third-party package
   on the package's own allow-list (:data:`PURE_THIRD_PARTY`: grpc, protobuf and trio are not
   on it). The one exception is randomness, which the protocols need: ``os`` may be imported
   only to call ``os.urandom`` (``crypto_core.rng.SystemRng``), and ``secrets`` is allowed;
   any other use of ``os`` (files, environment, processes) is a violation. They also call no
   I/O builtin (``open``, ``print``, ``input``, ``__import__``, ``exec``, ``eval``, ...).
2. **The coordinator** is untrusted for confidentiality: it imports nothing from ``mpc_node``,
   and from ``crypto_core`` only the public, secret-free modules of
   :data:`COORDINATOR_CRYPTO_ALLOWED` (not the ``crypto_core`` package itself, whose
   ``__init__`` exports the protocol classes that hold secret state), and makes no dynamic
   import (``importlib``, ``__import__``, ...) that this reading could not see. What the
   coordinator loads through ``mpcnet`` is checked by importing it (a fresh interpreter).
3. **No cycles** between the top-level project packages.
4. **mpcnet's layers.** ``mpcnet`` is split by layer: ``mpcnet.common`` (the shared
   transport/config layer) and ``mpcnet.wire`` (the generated protobuf/gRPC code) at the bottom,
   ``mpcnet.client`` (SDK, CLI) and ``mpcnet.cluster`` (local-cluster tooling) at the top. The
   servers (``mpc_node``, ``coordinator``) import from ``mpcnet`` only ``mpcnet.common`` and
   ``mpcnet.wire`` (:data:`SERVER_MPCNET_ALLOWED`); the bottom layer imports neither
   ``mpcnet.client`` nor ``mpcnet.cluster`` (:data:`MPCNET_TOP_LAYER`).

There is no top-level ``proto`` Python package (the name is ``proto-plus``'s), and nothing imports one.

``check_tree`` takes any source root, so the second half of this file feeds it synthetic
module trees with forbidden imports and sees every rule fail, naming the module and the rule.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("coordinator", "crypto_core", "governance", "mpc_node", "mpcnet")
"""The top-level project packages. The generated protobuf/gRPC code is ``mpcnet.wire`` (part of the
shared layer); no top-level ``proto`` package exists (the name is ``proto-plus``'s)."""

PURE_THIRD_PARTY: Mapping[str, frozenset[str]] = {
    "crypto_core": frozenset({"coincurve", "cryptography", "nacl", "numpy"}),  # nacl: PyNaCl, the Ed25519 group (issue 16)
    "governance": frozenset({"cryptography"}),
}
"""The pure packages, each with the third-party distributions (top-level names) it may use."""

_FILES = "files"
_NET = "network"
_THREADS = "threads or processes"
_CLOCK = "clocks"
IO_MODULES: Mapping[str, str] = {
    **dict.fromkeys(
        ("pathlib", "io", "shutil", "tempfile", "glob", "fileinput", "filecmp", "mmap", "fcntl", "zipfile",
         "tarfile", "gzip", "bz2", "lzma", "zlib", "csv", "pickle", "shelve", "dbm", "sqlite3", "linecache",
         "tomllib", "configparser"),
        _FILES,
    ),
    **dict.fromkeys(
        ("socket", "ssl", "select", "selectors", "asyncio", "socketserver", "http", "urllib", "ftplib",
         "smtplib", "imaplib", "poplib", "xmlrpc", "ipaddress", "webbrowser"),
        _NET,
    ),
    **dict.fromkeys(
        ("threading", "_thread", "multiprocessing", "concurrent", "queue", "sched", "subprocess", "signal",
         "pty", "resource", "pwd", "grp", "atexit"),
        _THREADS,
    ),
    **dict.fromkeys(("time", "datetime", "zoneinfo", "calendar"), _CLOCK),
    "logging": "logging (logs and terminals are the caller's business)",
    "sys": "the interpreter's streams, argv and exit",
    "os": "the operating system (only os.urandom is allowed, for randomness)",
    "importlib": "dynamic imports (they would bypass this contract)",
    "pkgutil": "dynamic imports (they would bypass this contract)",
    "runpy": "dynamic imports (they would bypass this contract)",
    "random": "a non-cryptographic RNG (inject crypto_core.rng.Rng, or use os.urandom/secrets)",
    "builtins": "the builtins module (open, __import__, exec, ... by another name)",
    "posix": "the operating system (os by its platform name)",
    "nt": "the operating system (os by its platform name)",
    "ctypes": "foreign functions (any system call)",
    "_posixsubprocess": _THREADS,
    "codecs": "files (codecs.open)",
}
"""Standard-library modules the pure packages must not import, with the reason."""

def _io_reason(top: str) -> str | None:
    """Why a pure layer must not import the standard-library module ``top`` (also the C twin
    of a listed module: ``_socket``, ``_io``, ``_random``, ...), or None."""
    return IO_MODULES.get(top) or (IO_MODULES.get(top.lstrip("_")) if top.startswith("_") and top != "__future__" else None)


DYNAMIC_IMPORT_MODULES = frozenset({"importlib", "pkgutil", "runpy", "builtins"})
"""What the coordinator must not import: a dynamic import would load any module (mpc_node,
crypto_core's secret-holding modules) without an import statement for this contract to read."""

OS_ALLOWED = frozenset({"urandom"})
IO_BUILTINS = frozenset({"open", "print", "input", "__import__", "exec", "eval", "compile", "breakpoint"})

COORDINATOR_CRYPTO_ALLOWED = frozenset(
    {
        "crypto_core.combiner", "crypto_core.bip32", "crypto_core.group", "crypto_core.errors", "crypto_core.params",
        "crypto_core.feldman", "crypto_core.frost.combiner", "crypto_core.frost.public",
    }
)
"""What the coordinator may import from crypto_core: combining and verifying signature shares,
public BIP32 derivation, public points, errors, public parameters, the public Feldman checks of
backup bundles, FROST's public half (issue 16: signing packages, share verification, aggregation;
a key's public shares). Nothing that holds or handles secret state."""

COORDINATOR_PENDING: frozenset[tuple[str, str]] = frozenset()
"""Known violations of rule 2 that are tolerated (none since the crypto_core hazmat split moved
combining to ``crypto_core.combiner``). Each must still occur (a stale entry fails the test),
so this list only shrinks."""

RULE_PURE_IO = "pure-no-io"
RULE_PURE_PROJECT = "pure-no-project-imports"
RULE_PURE_THIRD_PARTY = "pure-third-party-allow-list"
RULE_COORDINATOR_NODE = "coordinator-no-mpc_node"
RULE_COORDINATOR_CRYPTO = "coordinator-crypto_core-allow-list"
RULE_COORDINATOR_DYNAMIC = "coordinator-no-dynamic-imports"
RULE_CYCLE = "no-package-cycles"
RULE_SERVER_MPCNET = "servers-import-only-mpcnet-common"
RULE_MPCNET_BOTTOM = "mpcnet-common-no-top-layer"

SERVERS = frozenset({"mpc_node", "coordinator"})
SERVER_MPCNET_ALLOWED = ("mpcnet.common", "mpcnet.wire")
"""The only parts of ``mpcnet`` the servers may import (each with its submodules)."""
MPCNET_BOTTOM = ("mpcnet.common", "mpcnet.wire")
MPCNET_TOP_LAYER = ("mpcnet.client", "mpcnet.cluster")
"""The client SDK/CLI and the local-cluster tooling: neither the servers nor the bottom layer import them."""


def _within(name: str, packages: tuple[str, ...]) -> bool:
    """Whether the dotted ``name`` is one of ``packages`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in packages)


@dataclass(frozen=True)
class Import:
    """One imported module: ``importer`` (dotted) imports ``target`` (dotted) at ``line``."""

    importer: str
    target: str
    line: int


@dataclass(frozen=True)
class Violation:
    """A broken rule: ``module`` (dotted, ``path:line``) and what it imports or does."""

    rule: str
    module: str
    line: int
    what: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.module}:{self.line}: {self.what}: {self.reason}"


@dataclass(frozen=True)
class _Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, _Module]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    out: dict[str, _Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            out[name] = _Module(name, path, is_package, ast.parse(path.read_bytes(), filename=str(path)))
    return out


def _imports(module: _Module, known: Mapping[str, _Module]) -> Iterator[Import]:
    """The modules ``module`` imports, anywhere in its body, resolved to dotted names."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module.name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield Import(module.name, candidate if candidate in known else source, node.lineno)


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _os_misuse(module: _Module) -> Iterator[tuple[int, str]]:
    """Uses of ``os`` other than ``os.urandom``: ``from os import x`` and ``alias.x`` for any other x."""
    aliases: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name == "os")
            for a in node.names:
                if a.name.startswith("os."):
                    yield node.lineno, f"import {a.name}"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module and _top(node.module) == "os":
            for a in node.names:
                if node.module != "os" or a.name not in OS_ALLOWED:
                    yield node.lineno, f"from {node.module} import {a.name}"
    if not aliases:
        return
    qualified: set[int] = set()  # the Name nodes that are the ``os`` of an ``os.x``
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            qualified.add(id(node.value))
            if node.attr not in OS_ALLOWED:
                yield node.lineno, f"os.{node.attr}"
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Name) and node.id in aliases and id(node) not in qualified:
            yield node.lineno, "os used other than as os.urandom"


def _io_builtin_calls(module: _Module, names: frozenset[str] = IO_BUILTINS) -> Iterator[tuple[int, str]]:
    """Calls of the builtins in ``names`` (``calls open()``), other uses of them (``uses open``:
    ``f = open``) and any use of ``__builtins__``, unless the module defines the name itself."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    defined = {n.name for n in ast.walk(module.tree) if isinstance(n, kinds)}
    called: set[int] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in names and node.func.id not in defined:
                called.add(id(node.func))
                yield node.lineno, f"{node.func.id}()"
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Name) and id(node) not in called and node.id not in defined:
            if node.id in names or node.id == "__builtins__":
                yield node.lineno, f"{node.id}"


def _check_pure(module: _Module, imports: list[Import], package: str) -> Iterator[Violation]:
    allowed_third_party = PURE_THIRD_PARTY[package]
    for imp in imports:
        top = _top(imp.target)
        if top == package:
            continue
        if top in PROJECT_PACKAGES:
            yield Violation(RULE_PURE_PROJECT, module.name, imp.line, f"imports {imp.target}",
                            f"{package} is a pure layer and imports no other project package")
        elif top in sys.stdlib_module_names:
            why = _io_reason(top)
            if why is not None and top != "os":
                yield Violation(RULE_PURE_IO, module.name, imp.line, f"imports {imp.target}",
                                f"{package} is a pure layer: no {why}")
        elif top not in allowed_third_party:
            yield Violation(RULE_PURE_THIRD_PARTY, module.name, imp.line, f"imports {imp.target}",
                            f"{package} may use only {sorted(allowed_third_party)} outside the standard library")
    for line, what in _os_misuse(module):
        yield Violation(RULE_PURE_IO, module.name, line, what, f"{package} is a pure layer: {IO_MODULES['os']}")
    for line, what in _io_builtin_calls(module):
        verb = "calls" if what.endswith("()") else "uses"
        yield Violation(RULE_PURE_IO, module.name, line, f"{verb} {what}", f"{package} is a pure layer: no I/O builtins")


def _check_coordinator(module: _Module, imports: list[Import]) -> Iterator[Violation]:
    dynamic = "a dynamic import would bypass this contract (import the module by name)"
    for line, what in _io_builtin_calls(module, frozenset({"__import__"})):
        yield Violation(RULE_COORDINATOR_DYNAMIC, module.name, line, f"uses {what.removesuffix('()')}", dynamic)
    for imp in imports:
        top = _top(imp.target)
        if top in DYNAMIC_IMPORT_MODULES:
            yield Violation(RULE_COORDINATOR_DYNAMIC, module.name, imp.line, f"imports {imp.target}", dynamic)
        if top == "mpc_node":
            yield Violation(RULE_COORDINATOR_NODE, module.name, imp.line, f"imports {imp.target}",
                            "the coordinator imports nothing from mpc_node (put shared code in mpcnet)")
        elif top == "crypto_core" and imp.target not in COORDINATOR_CRYPTO_ALLOWED:
            yield Violation(RULE_COORDINATOR_CRYPTO, module.name, imp.line, f"imports {imp.target}",
                            f"the coordinator may import from crypto_core only {sorted(COORDINATOR_CRYPTO_ALLOWED)}")


def _check_mpcnet_layers(module: _Module, imports: list[Import]) -> Iterator[Violation]:
    """Rule 4: what a server or mpcnet's bottom layer may import from mpcnet."""
    server = _top(module.name) in SERVERS
    bottom = _within(module.name, MPCNET_BOTTOM)
    for imp in imports:
        if _top(imp.target) != "mpcnet":
            continue
        if server and not _within(imp.target, SERVER_MPCNET_ALLOWED):
            yield Violation(RULE_SERVER_MPCNET, module.name, imp.line, f"imports {imp.target}",
                            f"a server imports from mpcnet only {list(SERVER_MPCNET_ALLOWED)} (not the client SDK "
                            "or the cluster tooling)")
        if bottom and _within(imp.target, MPCNET_TOP_LAYER):
            yield Violation(RULE_MPCNET_BOTTOM, module.name, imp.line, f"imports {imp.target}",
                            f"{'/'.join(MPCNET_BOTTOM)} is the bottom layer and imports neither {' nor '.join(MPCNET_TOP_LAYER)}")


def _find_cycles(edges: Mapping[str, Mapping[str, Import]]) -> list[list[str]]:
    """Elementary cycles between packages, each once (starting at its smallest name)."""
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, {})):
            if nxt == start:
                cycles.append(path + [start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, start, [start])
    return cycles


def check_tree(root: Path, packages: tuple[str, ...] = PROJECT_PACKAGES) -> list[Violation]:
    """Every violation of the contract by the packages under ``root`` (empty: the contract holds)."""
    known = _modules(root, packages)
    violations: list[Violation] = []
    edges: dict[str, dict[str, Import]] = {}
    for module in known.values():
        imports = list(dict.fromkeys(_imports(module, known)))  # one per (target, line)
        package = _top(module.name)
        if package in PURE_THIRD_PARTY:
            violations.extend(_check_pure(module, imports, package))
        if package == "coordinator":
            violations.extend(_check_coordinator(module, imports))
        violations.extend(_check_mpcnet_layers(module, imports))
        for imp in imports:
            target = _top(imp.target)
            if target in packages and target != package:
                edges.setdefault(package, {}).setdefault(target, imp)
    for cycle in _find_cycles(edges):
        steps = [edges[a][b] for a, b in itertools.pairwise(cycle)]
        first = steps[0]
        violations.append(Violation(
            RULE_CYCLE, first.importer, first.line, " -> ".join(cycle),
            "package cycle: " + "; ".join(f"{s.importer}:{s.line} imports {s.target}" for s in steps),
        ))
    return sorted(violations, key=lambda v: (v.rule, v.module, v.line, v.what))


# --- the product tree ---------------------------------------------------------------------------


def failures(violations: list[Violation], pending: frozenset[tuple[str, str]]) -> list[str]:
    """The violations not in ``pending`` ((module, crypto_core module) pairs tolerated under
    rule 2), and every ``pending`` entry that no longer occurs (stale: remove it)."""
    crypto = {v: (v.module, v.what.removeprefix("imports ")) for v in violations if v.rule == RULE_COORDINATOR_CRYPTO}
    out = [str(v) for v in violations if crypto.get(v) not in pending]
    stale = sorted(pending - set(crypto.values()))
    out += [f"{m} no longer imports {t}: remove it from COORDINATOR_PENDING" for m, t in stale]
    return out


def test_the_product_packages_keep_the_contract() -> None:
    problems = failures(check_tree(ROOT), COORDINATOR_PENDING)
    assert not problems, "import contract broken:\n" + "\n".join(problems)


SECRET_CRYPTO_MODULES = frozenset({
    "crypto_core.dkg", "crypto_core.sign", "crypto_core.keyshare", "crypto_core.local", "crypto_core.shamir",
    "crypto_core.hazmat.base_ot", "crypto_core.hazmat.ot_ext", "crypto_core.hazmat.rvole",
    "crypto_core.hazmat.pairwise", "crypto_core.hazmat.presignature", "crypto_core.backup",
})
"""The crypto_core modules that hold or handle key shares, presignatures or OT secrets."""


def test_the_coordinator_process_loads_no_module_with_secret_state() -> None:
    """Rule 2 reads the coordinator package only; this also covers what it loads through mpcnet."""
    loaded = _loaded_by("coordinator.main", "coordinator.service")
    assert "coordinator.service" in loaded
    assert not {m for m in loaded if _top(m) == "mpc_node"}
    assert not loaded & SECRET_CRYPTO_MODULES, sorted(loaded & SECRET_CRYPTO_MODULES)
    assert SECRET_CRYPTO_MODULES <= set(_modules(ROOT, ("crypto_core",)))  # no stale name


def _loaded_by(*modules: str) -> set[str]:
    """Every module a fresh interpreter has loaded after importing ``modules``."""
    import subprocess

    code = f"import sys, {', '.join(modules)}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("server", ["coordinator", "mpc_node"])
def test_a_server_process_loads_nothing_of_mpcnet_but_the_common_layer(server: str) -> None:
    """Rule 4 reads the imports; this checks what the process loads, transitively."""
    loaded = _loaded_by(f"{server}.main", f"{server}.service")
    assert f"{server}.service" in loaded and "mpcnet.common.rpc" in loaded
    mpcnet = {m for m in loaded if _top(m) == "mpcnet" and m != "mpcnet"}
    assert {m for m in mpcnet if not _within(m, SERVER_MPCNET_ALLOWED)} == set()


def test_every_product_module_is_read() -> None:
    """The checker sees the whole product (a package it skipped would pass vacuously)."""
    modules = _modules(ROOT, PROJECT_PACKAGES)
    assert {_top(m) for m in modules} == set(PROJECT_PACKAGES)
    assert {"governance.audit", "mpcnet.common.stores.audit", "mpcnet.common.keystore", "coordinator.service"} <= set(modules)
    assert {"mpcnet.client.sdk", "mpcnet.client.cli", "mpcnet.cluster.launcher", "mpcnet.cluster.cli"} <= set(modules)
    assert {"mpcnet.wire.mpc.v1.node_pb2", "mpcnet.wire.mpc.v1.coordinator_pb2_grpc"} <= set(modules)
    assert len(modules) >= 80


def test_no_top_level_proto_package_exists_or_is_imported() -> None:
    """``proto`` is proto-plus's name (Google's client libraries): the .proto sources stay in
    ``proto/``, but no Python module is there and no product module imports ``proto``."""
    assert sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.py*") if p.suffix in {".py", ".pyi"}) == []
    assert sorted(p.name for p in (ROOT / "proto" / "mpc" / "v1").iterdir() if p.suffix == ".proto") != []
    known = _modules(ROOT, PROJECT_PACKAGES)
    found = [f"{i.importer}:{i.line}: {i.target}" for m in known.values() for i in _imports(m, known) if _top(i.target) == "proto"]
    assert found == []


# --- the checker, on synthetic trees ------------------------------------------------------------


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel in list(files):
        for parent in Path(rel).parents:
            if parent != Path(".") and not (root / parent / "__init__.py").exists():
                (root / parent / "__init__.py").write_text("")
    return root


def _only(violations: list[Violation], rule: str, module: str) -> Violation:
    found = [v for v in violations if v.rule == rule and v.module == module]
    assert len(found) == 1, "\n".join(map(str, violations))
    return found[0]


def test_a_clean_synthetic_tree_passes(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "crypto_core/rng.py": "import os\nimport secrets\n"
        "def r(n):\n    return os.urandom(n) + secrets.token_bytes(n)\n",
        "crypto_core/group.py": "from __future__ import annotations\nimport hashlib\nfrom coincurve import PublicKey\n"
        "from . import rng\n",
        "crypto_core/combiner.py": "from .group import PublicKey\n",
        "governance/policy.py": "from cryptography.hazmat.primitives import hashes\nfrom .errors import E\n",
        "governance/errors.py": "class E(Exception): ...\n",
        "coordinator/service.py": "from crypto_core.combiner import PublicKey\nfrom crypto_core import group\n"
        "from mpcnet.common import rpc\nimport grpc\nfrom mpcnet.wire.mpc.v1 import node_pb2\n",
        "mpcnet/wire/mpc/v1/node_pb2.py": "from google.protobuf import descriptor\nfrom . import common_pb2\n",
        "mpcnet/wire/mpc/v1/common_pb2.py": "from google.protobuf import descriptor\n",
        "mpc_node/service.py": "import sqlite3\nfrom crypto_core.sign import X\nfrom mpcnet.common.rpc import y\n"
        "from mpcnet.common.stores import audit\n",
        "mpcnet/common/rpc.py": "import grpc\nfrom governance.policy import hashes\nfrom mpcnet.wire.mpc.v1 import node_pb2\n",
        "mpcnet/common/stores/audit.py": "from ..fsutil import write_atomic\n",
        "mpcnet/common/fsutil.py": "import os\n",
        "mpcnet/client/sdk.py": "from mpcnet.common.rpc import y\nfrom mpcnet.wire.mpc.v1 import node_pb2\n",
        "mpcnet/cluster/launcher.py": "from mpcnet.client import sdk\nfrom mpcnet.common import fsutil\n",
    })
    assert check_tree(root) == []


_FORBIDDEN = [  # (files, rule, the module named, what the violation names)
    (
        {"governance/audit.py": "def log():\n    import sqlite3\n"},
        RULE_PURE_IO, "governance.audit", "imports sqlite3",
    ),
    (
        {"governance/audit.py": "from time import time_ns\n"},
        RULE_PURE_IO, "governance.audit", "imports time",
    ),
    (
        {"crypto_core/net.py": "import socket\n"},
        RULE_PURE_IO, "crypto_core.net", "imports socket",
    ),
    (
        {"crypto_core/rng.py": "import os\nP = os.path.join('a', 'b')\n"},
        RULE_PURE_IO, "crypto_core.rng", "os.path",
    ),
    (
        {"crypto_core/rng.py": "from os import environ\n"},
        RULE_PURE_IO, "crypto_core.rng", "from os import environ",
    ),
    (
        {"governance/x.py": "def f(p):\n    return open(p).read()\n"},
        RULE_PURE_IO, "governance.x", "calls open()",
    ),
    (
        {"crypto_core/x.py": "from importlib import import_module\n"},
        RULE_PURE_IO, "crypto_core.x", "imports importlib",
    ),
    (
        {"crypto_core/wire.py": "import grpc\n"},
        RULE_PURE_THIRD_PARTY, "crypto_core.wire", "imports grpc",
    ),
    (
        {"governance/x.py": "import numpy\n"},
        RULE_PURE_THIRD_PARTY, "governance.x", "imports numpy",
    ),
    (
        {"governance/sig.py": "from crypto_core.group import Point\n"},
        RULE_PURE_PROJECT, "governance.sig", "imports crypto_core.group",
    ),
    (
        {"crypto_core/a.py": "from mpcnet.common import fsutil\n"},
        RULE_PURE_PROJECT, "crypto_core.a", "imports mpcnet",
    ),
    (  # the generated wire code is the shared layer, not the pure one
        {"governance/w.py": "from mpcnet.wire.mpc.v1 import governance_pb2\n",
         "mpcnet/wire/mpc/v1/governance_pb2.py": ""},
        RULE_PURE_PROJECT, "governance.w", "imports mpcnet.wire.mpc.v1.governance_pb2",
    ),
    (
        {"coordinator/main.py": "def f():\n    from mpc_node.keystore import load\n"},
        RULE_COORDINATOR_NODE, "coordinator.main", "imports mpc_node.keystore",
    ),
    (
        {"coordinator/service.py": "from crypto_core.sign import combine\n"},
        RULE_COORDINATOR_CRYPTO, "coordinator.service", "imports crypto_core.sign",
    ),
    (
        {"coordinator/service.py": "from crypto_core import PresignParty\n"},
        RULE_COORDINATOR_CRYPTO, "coordinator.service", "imports crypto_core",
    ),
    (
        {"coordinator/x/y.py": "from crypto_core import hazmat\n", "crypto_core/hazmat/__init__.py": ""},
        RULE_COORDINATOR_CRYPTO, "coordinator.x.y", "imports crypto_core.hazmat",
    ),
    (
        {"crypto_core/rng.py": "import os\ndef f(g):\n    return g(os)\n"},
        RULE_PURE_IO, "crypto_core.rng", "os used",
    ),
    (  # the builtins by another name
        {"governance/x.py": "import builtins\ndef f(p):\n    return builtins.open(p).read()\n"},
        RULE_PURE_IO, "governance.x", "imports builtins",
    ),
    (  # os by its platform name
        {"crypto_core/rng.py": "import posix\nE = posix.environ\n"},
        RULE_PURE_IO, "crypto_core.rng", "imports posix",
    ),
    (  # the C twin of an I/O module
        {"crypto_core/net.py": "import _socket\n"},
        RULE_PURE_IO, "crypto_core.net", "imports _socket",
    ),
    (
        {"crypto_core/x.py": "import ctypes\n"},
        RULE_PURE_IO, "crypto_core.x", "imports ctypes",
    ),
    (  # an I/O builtin not called where it is named
        {"governance/x.py": "READ = open\n"},
        RULE_PURE_IO, "governance.x", "uses open",
    ),
    (
        {"governance/x.py": "F = __builtins__['open']\n"},
        RULE_PURE_IO, "governance.x", "uses __builtins__",
    ),
    (  # a dynamic import in the coordinator would load mpc_node behind the contract's back
        {"coordinator/service.py": "import importlib\nS = importlib.import_module('mpc_node.storage')\n"},
        RULE_COORDINATOR_DYNAMIC, "coordinator.service", "imports importlib",
    ),
    (
        {"coordinator/service.py": "S = __import__('mpc_node.storage')\n"},
        RULE_COORDINATOR_DYNAMIC, "coordinator.service", "uses __import__",
    ),
    (
        {"mpcnet/common/keystore.py": "from mpc_node.keystore import create\n",
         "mpc_node/main.py": "from mpcnet.common import keystore\n"},
        RULE_CYCLE, "mpc_node.main", "mpc_node -> mpcnet -> mpc_node",
    ),
    (  # a server reaching into the client SDK
        {"coordinator/service.py": "from mpcnet.client.sdk import MpcClient\n", "mpcnet/client/sdk.py": ""},
        RULE_SERVER_MPCNET, "coordinator.service", "imports mpcnet.client.sdk",
    ),
    (  # or into the cluster tooling, from inside a function
        {"mpc_node/main.py": "def f():\n    from mpcnet.cluster import launcher\n", "mpcnet/cluster/launcher.py": ""},
        RULE_SERVER_MPCNET, "mpc_node.main", "imports mpcnet.cluster.launcher",
    ),
    (  # the client package by its re-exports
        {"mpc_node/x.py": "from mpcnet.client import MpcClient\n", "mpcnet/client/__init__.py": ""},
        RULE_SERVER_MPCNET, "mpc_node.x", "imports mpcnet.client",
    ),
    (  # mpcnet itself, which could reach anything
        {"coordinator/x.py": "import mpcnet\n", "mpcnet/__init__.py": ""},
        RULE_SERVER_MPCNET, "coordinator.x", "imports mpcnet",
    ),
    (  # the shared layer reaching up to the client
        {"mpcnet/common/config.py": "from mpcnet.client.identities import load_identity\n",
         "mpcnet/client/identities.py": ""},
        RULE_MPCNET_BOTTOM, "mpcnet.common.config", "imports mpcnet.client.identities",
    ),
    (  # relatively, to the cluster tooling
        {"mpcnet/common/stores/audit.py": "from ...cluster import launcher\n", "mpcnet/cluster/launcher.py": ""},
        RULE_MPCNET_BOTTOM, "mpcnet.common.stores.audit", "imports mpcnet.cluster.launcher",
    ),
    (
        {"mpcnet/wire/x.py": "import mpcnet.client\n", "mpcnet/client/__init__.py": ""},
        RULE_MPCNET_BOTTOM, "mpcnet.wire.x", "imports mpcnet.client",
    ),
]


@pytest.mark.parametrize(
    ("files", "rule", "module", "needle"), _FORBIDDEN, ids=[f"{c[1]}-{c[2]}-{i}" for i, c in enumerate(_FORBIDDEN)]
)
def test_a_forbidden_import_fails_naming_the_module_and_the_rule(
    tmp_path: Path, files: dict[str, str], rule: str, module: str, needle: str
) -> None:
    violations = check_tree(_tree(tmp_path, files))
    v = _only(violations, rule, module)
    assert needle in v.what
    assert f"[{rule}] {module}:" in str(v)


def test_a_pending_exception_is_tolerated_only_while_it_occurs(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"coordinator/service.py": "from crypto_core.sign import combine\n"})
    pending = frozenset({("coordinator.service", "crypto_core.sign")})
    assert failures(check_tree(root), pending) == []
    (root / "coordinator/service.py").write_text("from crypto_core.combiner import combine\n")
    assert failures(check_tree(root), pending) == [
        "coordinator.service no longer imports crypto_core.sign: remove it from COORDINATOR_PENDING"
    ]
    (root / "coordinator/service.py").write_text("from crypto_core.keyshare import KeyShare\n")
    new, stale = failures(check_tree(root), pending)  # a pending entry covers only its own module
    assert new.startswith(f"[{RULE_COORDINATOR_CRYPTO}] coordinator.service:1: imports crypto_core.keyshare")
    assert stale.startswith("coordinator.service no longer imports crypto_core.sign")


def test_a_relative_import_resolves_to_the_module_it_names(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "governance/a/b.py": "from .. import store\nfrom ..c import d\nfrom . import e\n",
        "governance/store.py": "", "governance/c.py": "", "governance/a/e.py": "",
    })
    known = _modules(root, ("governance",))
    assert [i.target for i in _imports(known["governance.a.b"], known)] == [
        "governance.store", "governance.c", "governance.a.e",
    ]


def test_the_typed_client_and_the_console_scripts_keep_their_names() -> None:
    """Users' scripts import ``mpcnet.client.MpcClient``; ``mpc`` and ``mpc-cluster`` keep working."""
    import tomllib

    import mpcnet.client
    import mpcnet.client.sdk

    assert mpcnet.client.MpcClient is mpcnet.client.sdk.MpcClient
    assert mpcnet.client.SigningTeam is mpcnet.client.sdk.SigningTeam
    tree = ast.parse((ROOT / "mpcnet" / "client" / "sdk.py").read_text())
    defined = [n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    defined += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    defined += [n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    # explicit re-exports (``from mpcnet.client.errors import MpcError as MpcError``) are SDK names too
    defined += [a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names if a.asname == a.name]
    assert sorted(mpcnet.client.__all__) == sorted(n for n in defined if not n.startswith("_"))  # every public SDK name
    assert all(getattr(mpcnet.client, n) is getattr(mpcnet.client.sdk, n) for n in mpcnet.client.__all__)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    # the entry functions import the commands inside a try (tests/network/test_entry_interrupt.py)
    assert scripts["mpc"] == "mpcnet.entry:mpc" and scripts["mpc-cluster"] == "mpcnet.entry:mpc_cluster"
