"""What a client verified before, kept across processes: a high-water mark per governance chain.

Every ``mpc`` invocation is a fresh process, so the in-memory "does it extend what I verified
before" checks of :meth:`mpcnet.client.lifecycle.LifecycleMixin.roster` and
:meth:`mpcnet.client.backup.BackupMixin.recovery_config` protect nothing between two commands:
a coordinator could show an officer an older, still admin-signed recovery configuration (a lower
export quorum, an officer since removed) or roster (a replaced node's old encryption key), and
an export needs no node that would refuse it. :class:`SeenChains` records, in a small JSON file
next to the identity (``DIR/identities/NAME/seen-chains.json``, mode 0600, written atomically),
for each chain the number of changes verified and the SHA-256 of the last one; a chain shown
later must have at least that many changes, the same one at that position.

File format: ``{"version": 1, "root": 64 hex, "chains": {"roster" | "recovery-config":
{"changes": int >= 1, "last": 64 hex}}}``; ``root`` is the governance root (the digest of the
client's own admin set): marks of another root (a cluster re-created in the same directory) are
not this cluster's and are replaced. An unreadable or malformed file is refused (DATA_LOSS
naming it), never silently reset: delete it to start over. The first chain an identity sees is
trusted as shown (as before).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc

from mpcnet.client.errors import MpcError
from mpcnet.common.fsutil import write_atomic

FILE_NAME = "seen-chains.json"
CHAINS = ("roster", "recovery-config")
MAX_FILE = 64 * 1024


def _data_loss(msg: str) -> MpcError:
    return MpcError(grpc.StatusCode.DATA_LOSS, msg)


class SeenChains:
    """The high-water marks in ``path`` (thread-safe within a process; two processes recording
    at once may keep the lower of their marks, never a chain that was not verified)."""

    def __init__(self, path: Path, root: bytes) -> None:
        self.path = Path(path)
        self.root = bytes(root)
        self._lock = threading.Lock()

    def _load(self) -> dict[str, tuple[int, bytes]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise _data_loss(f"{self.path}: cannot read ({e.strerror or type(e).__name__})") from None
        try:
            doc = json.loads(data) if len(data) <= MAX_FILE else None
            chains = doc.get("chains") if isinstance(doc, dict) and doc.get("version") == 1 else None
            root = doc.get("root") if isinstance(doc, dict) else None
            if not isinstance(chains, dict) or not isinstance(root, str) or not re.fullmatch(r"[0-9a-f]{64}", root):
                raise ValueError("chains")
            if not hmac.compare_digest(bytes.fromhex(root), self.root):
                return {}  # another cluster's marks
            out: dict[str, tuple[int, bytes]] = {}
            for name, v in chains.items():
                n, last = v["changes"], v["last"]
                if name not in CHAINS or type(n) is not int or n < 1 or not re.fullmatch(r"[0-9a-f]{64}", last):
                    raise ValueError(name)
                out[name] = (n, bytes.fromhex(last))
            return out
        except (ValueError, TypeError, KeyError, AttributeError):
            raise _data_loss(f"{self.path}: not a seen-chains file (delete it to start over)") from None

    def check(self, chain: str, raw: Sequence[bytes], what: str) -> None:
        """``raw`` (the canonical changes, first first) must extend what was recorded for
        ``chain``; then record it if it is longer. DATA_LOSS naming ``what`` otherwise."""
        if chain not in CHAINS:
            raise ValueError(f"unknown chain {chain!r}")
        with self._lock:
            marks = self._load()
            seen = marks.get(chain)
            if seen is not None:
                n, last = seen
                if len(raw) < n or not hmac.compare_digest(hashlib.sha256(raw[n - 1]).digest(), last):
                    raise _data_loss(
                        f"{what}: the coordinator shows {len(raw)} change(s), which does not extend the {n} this identity "
                        f"verified before (a rolled-back or forked chain; recorded in {self.path})"
                    )
                if len(raw) == n:
                    return
            if not raw:
                return
            marks[chain] = (len(raw), hashlib.sha256(raw[-1]).digest())
            chains = {k: {"changes": v[0], "last": v[1].hex()} for k, v in sorted(marks.items())}
            doc = {"version": 1, "root": self.root.hex(), "chains": chains}
            try:
                write_atomic(self.path, json.dumps(doc, indent=1).encode())
            except OSError as e:
                raise MpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"{self.path}: cannot record the verified {chain} ({e.strerror or type(e).__name__})") from None
