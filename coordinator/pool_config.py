"""The coordinator config's ``"presign"`` section: presignature pools (issue 14).

Example (every field optional; absent section: pools off)::

    "presign": {"enabled": false, "paths": [[]], "target": 16, "refill_at": 8, "cap": 32,
                "batch": 16, "max_parallel": 1}

* ``enabled``: keep pools and sign from them in one round (default false; the local cluster
  launcher turns it on).
* ``paths``: the derivation paths kept per key (lists of BIP32 non-hardened indices, ``[]`` = the
  master key), at most :data:`MAX_PATHS`, distinct.
* ``target``: refill a pool (one per key, epoch, path and signer set) up to this many
  presignatures (ready + filling) ...
* ``refill_at``: ... when ready + filling falls to this (``0 <= refill_at < target``);
* ``cap``: never more than this per pool (ready + assigned + filling; ``cap >= target``);
* ``batch``: presignatures per presign session (1..64, :data:`crypto_core.sign.MAX_PRESIGN_BATCH`;
  a node takes at most its ``max_presign_batch``, default 16). A session costs about 20 ms of CPU
  over all processes beyond its presignatures (RPCs, envelopes, commits), so the defaults make
  every refill a session of 8 to 16 (``scripts/bench_refill.py``);
* ``max_parallel``: presign sessions at once (1..16; kept for the refiller out of
  ``max_parallel_sessions`` when that is larger: coordinator/session_slots.py).

A pool changes speed, never what may be signed: every signature still needs an approved request
that each signer checks again. Errors: :class:`mpcnet.common.config.ConfigError` naming the field
(``presign.cap: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto_core.bip32 import check_path
from crypto_core.errors import UsageError
from mpcnet.common.config import ConfigError, Fields

KEY = "presign"
# crypto_core.sign.MAX_PRESIGN_BATCH (the proto's PresignParams.count bound); not imported: the
# coordinator never loads a module with secret state (tests/test_import_contract.py)
MAX_PRESIGN_BATCH = 64
MAX_PATHS = 16  # derivation paths kept per key
MAX_POOL_DEPTH = 1024  # target and cap
MAX_PARALLEL = 16
_FIELDS = {"enabled", "paths", "target", "refill_at", "cap", "batch", "max_parallel"}


@dataclass(frozen=True)
class PresignConfig:
    """The validated ``presign`` section (see the module docstring); ValueError naming the
    field for an inconsistent one."""

    enabled: bool = False
    paths: tuple[tuple[int, ...], ...] = ((),)
    target: int = 16
    refill_at: int = 8
    cap: int = 32
    batch: int = 16
    max_parallel: int = 1

    def __post_init__(self) -> None:
        if not 1 <= len(self.paths) <= MAX_PATHS:
            raise ValueError(f"paths: must list 1..{MAX_PATHS} derivation paths")
        if len(set(self.paths)) != len(self.paths):
            raise ValueError("paths: a derivation path is listed twice")
        if not 1 <= self.target <= MAX_POOL_DEPTH:
            raise ValueError(f"target: must be in 1..{MAX_POOL_DEPTH}")
        if not 0 <= self.refill_at < self.target:
            raise ValueError(f"refill_at: must be in 0..{self.target - 1} (below target)")
        if not self.target <= self.cap <= MAX_POOL_DEPTH:
            raise ValueError(f"cap: must be in {self.target}..{MAX_POOL_DEPTH} (at least target)")
        if not 1 <= self.batch <= MAX_PRESIGN_BATCH:
            raise ValueError(f"batch: must be in 1..{MAX_PRESIGN_BATCH}")
        if not 1 <= self.max_parallel <= MAX_PARALLEL:
            raise ValueError(f"max_parallel: must be in 1..{MAX_PARALLEL}")


def _path(sect: Fields, i: int, v: object) -> tuple[int, ...]:
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
        raise sect.error(f"paths[{i}]", "must be a list of integers (BIP32 non-hardened indices; [] = the master key)")
    try:
        return check_path(v)
    except UsageError as e:
        raise sect.error(f"paths[{i}]", str(e)) from None


def load_presign(f: Fields) -> PresignConfig:
    """The ``presign`` section of the coordinator config ``f`` (:class:`PresignConfig` defaults,
    pools off, when absent); ConfigError naming the field."""
    if f.doc.get(KEY) is None:
        return PresignConfig()
    sect = f.obj(KEY)
    sect.extra_keys(_FIELDS)
    d = PresignConfig()
    paths = sect.doc.get("paths", [list(p) for p in d.paths])
    if not isinstance(paths, list):
        raise sect.error("paths", "must be a list of derivation paths")
    try:
        return PresignConfig(
            enabled=sect.flag("enabled", d.enabled),
            paths=tuple(_path(sect, i, p) for i, p in enumerate(paths)),
            target=sect.integer("target", d.target),
            refill_at=sect.integer("refill_at", d.refill_at),
            cap=sect.integer("cap", d.cap),
            batch=sect.integer("batch", d.batch),
            max_parallel=sect.integer("max_parallel", d.max_parallel),
        )
    except ValueError as e:
        raise ConfigError(f"{f.where}: {KEY}.{e}") from None
