"""Client-side verification of every component's audit log (what ``mpc audit verify`` runs).

The coordinator hands out its own log and proxies each node's; the client recomputes every
chain and checks every signature against the public keys in *its own* copy of cluster.json, so
a coordinator can neither forge, alter, drop, insert nor reorder entries (of its log or of a
node's) without the report naming the entry. Dropping entries at the end of a log is the one
thing a chain cannot show by itself: the client remembers the last entry it verified of each
component (``audit-heads.json`` next to the identity's keys) and checks on the next run that the
log still contains exactly that entry.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governance.audit import AuditReport, verify_entries
from mpcnet.client import MpcClient, MpcError

HEADS_FILE = "audit-heads.json"


@dataclass(frozen=True)
class ComponentReport:
    component: str
    ok: bool
    entries: int
    first_broken: int | None
    reason: str
    head: tuple[int, str] | None  # (seq, entry hash hex) of the last entry verified

    def as_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "ok": self.ok,
            "entries": self.entries,
            "first_broken": self.first_broken,
            "reason": self.reason,
            "head": None if self.head is None else {"seq": self.head[0], "entry_hash": self.head[1]},
        }


def components(info: dict[str, Any]) -> dict[str, bytes]:
    """Component name -> audit public key, from cluster.json."""
    return {name: bytes.fromhex(v["public_key"]) for name, v in info["audit"].items()}


def load_heads(path: Path | None) -> dict[str, tuple[int, bytes]]:
    if path is None or not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {c: (int(h["seq"]), bytes.fromhex(h["entry_hash"])) for c, h in doc.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save_heads(path: Path, heads: dict[str, tuple[int, bytes]]) -> None:
    doc = {c: {"seq": s, "entry_hash": h.hex()} for c, (s, h) in sorted(heads.items())}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def verify_component(client: MpcClient, component: str, public_key: bytes, expected_head: tuple[int, bytes] | None) -> ComponentReport:
    try:
        copy = client.fetch_audit(component)
    except MpcError as e:
        return ComponentReport(component, False, 0, None, f"cannot fetch the log: {e.code.name}: {e.message}", None)
    rows = copy.rows()
    report: AuditReport = verify_entries(component, public_key, rows, expected_head=expected_head)
    head = None
    if report.ok and rows:
        last = rows[-1]
        head = (int(last[0]), bytes(last[8]).hex())  # type: ignore[arg-type,call-overload]
    if report.ok and expected_head is not None and not rows:
        report = AuditReport(False, 0, expected_head[0], f"truncated: the log is empty, entry {expected_head[0]} was verified before")
    return ComponentReport(component, report.ok, report.entries, report.first_broken, report.reason, head)


def verify_cluster(client: MpcClient, info: dict[str, Any], heads_path: Path | None) -> list[ComponentReport]:
    """Verify every component's log; remember the verified heads in ``heads_path``."""
    heads = load_heads(heads_path)
    reports = [verify_component(client, c, key, heads.get(c)) for c, key in components(info).items()]
    if heads_path is not None:
        for r in reports:
            if r.ok and r.head is not None:
                heads[r.component] = (r.head[0], bytes.fromhex(r.head[1]))
        save_heads(heads_path, heads)
    return reports
