"""Client-side verification of every component's audit log (what ``mpc audit verify`` runs).

The coordinator hands out its own log and proxies each node's; the client recomputes every
chain and checks every signature against the public keys in *its own* copy of cluster.json, so
a coordinator can neither forge, alter, drop, insert nor reorder entries (of its log or of a
node's) without the report naming the entry. Dropping entries at the end of a log is the one
thing a chain cannot show by itself: the client remembers the last entry it verified of each
component (``audit-heads.json`` next to the identity's keys) and checks on the next run that the
log still contains exactly that entry.

**Completeness.** Intact chains are not enough: a log can be intact and still lack an entry that
was never written. So the client also checks, across the logs it verified, that every DONE
request (listed by the coordinator, or named by a ``sign-done`` entry) has its ``sign-request``,
``sign-approved`` and ``sign-done`` entries in the coordinator's log, and that every
``sign-share`` entry with outcome ``released`` in a node's log names a request for which the
coordinator's log has a ``sign-request`` entry: a node released a signature share for a request
the coordinator never recorded. The request id alone does not tie the two: a compromised
coordinator could record another request under the id the node released a share for. So the
released share's ``request_sha256`` (the SHA-256 of the canonical request every approval
signs, which the node records) must also equal the one in the coordinator's ``sign-request``
entry of that id, and one id's ``sign-request`` entries must not name different requests, nor
its ``sign-approved`` / ``sign-done`` entries another request than its ``sign-request`` entry. A
gap fails the component like a broken chain, naming the entry (where there is one) and the
request. (Entries without a request id, and released shares without a ``request_sha256``, as
older versions wrote, are not checked that way; a coordinator entry lacking the hash that a
node's entry has is a gap.) Request ids and other text that came from the coordinator are
quoted / escaped in every message (:func:`governance.text.quote`), never printed raw.

The coordinator appends its entries in the background, a
flush after the state change (``coordinator/audit_flush.py``), and flushes before it serves
its log; so the DONE requests are listed first and the coordinator's log is fetched last, and
nothing that happened before the check is reported missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from governance.audit import AuditReport, verify_entries
from governance.text import escape, quote
from mpcnet.client.sdk import MpcClient, MpcError
from mpcnet.common.fsutil import write_atomic

HEADS_FILE = "audit-heads.json"
COORDINATOR = "coordinator"  # the coordinator's component name in cluster.json
DONE_NEEDS = ("sign-request", "sign-approved", "sign-done")
MAX_DONE_LISTED = 1000  # the coordinator's ListSignRequests page limit
Row = Sequence[object]  # the stored columns of an entry, as governance.audit.verify_entries takes them
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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


class HeadsError(Exception):
    """The remembered heads file cannot be read (the message names the file)."""


def load_heads(path: Path | None) -> dict[str, tuple[int, bytes]]:
    """The heads remembered in ``path``; ``{}`` if there is no such file (a first run). A file
    that cannot be read or parsed raises :class:`HeadsError`: treating it as a first run would
    stop noticing a log whose newest entries were dropped."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise HeadsError(f"audit heads: cannot read {path} ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise TypeError("not an object")
        heads: dict[str, tuple[int, bytes]] = {}
        for c, h in doc.items():
            seq, digest = h["seq"], bytes.fromhex(h["entry_hash"])
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or len(digest) != 32:
                raise ValueError("bad head")
            heads[c] = (seq, digest)
        return heads
    except (ValueError, KeyError, TypeError):
        raise HeadsError(
            f"audit heads: {path} is not a valid heads file (left as it is: restore it, or move it away to start over)"
        ) from None


def save_heads(path: Path, heads: dict[str, tuple[int, bytes]]) -> None:
    """Remember ``heads`` in ``path``, atomically and durably."""
    doc = {c: {"seq": s, "entry_hash": h.hex()} for c, (s, h) in sorted(heads.items())}
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"), mode=0o600)


def verify_component(client: MpcClient, component: str, public_key: bytes, expected_head: tuple[int, bytes] | None) -> ComponentReport:
    return _verify_component(client, component, public_key, expected_head)[0]


def _verify_component(
    client: MpcClient, component: str, public_key: bytes, expected_head: tuple[int, bytes] | None
) -> tuple[ComponentReport, list[tuple[object, ...]]]:
    """The report and the fetched rows (only worth reading if the report is ok)."""
    try:
        copy = client.fetch_audit(component)
    except MpcError as e:
        return ComponentReport(component, False, 0, None, f"cannot fetch the log: {e.code.name}: {escape(e.message)}", None), []
    rows = copy.rows()
    report: AuditReport = verify_entries(component, public_key, rows, expected_head=expected_head)
    head = None
    if report.ok and rows:
        last = rows[-1]
        head = (int(last[0]), bytes(last[8]).hex())  # type: ignore[call-overload]
    if report.ok and expected_head is not None and not rows:
        report = AuditReport(False, 0, expected_head[0], f"truncated: the log is empty, entry {expected_head[0]} was verified before")
    return ComponentReport(component, report.ok, report.entries, report.first_broken, report.reason, head), rows


@dataclass(frozen=True)
class Gap:
    """An entry that should be in ``component``'s log and is not; ``seq`` is the entry that
    shows it (None if the log has nothing for the request)."""

    component: str
    seq: int | None
    request_id: str
    reason: str


def _request_sha256(row: Row) -> str | None:
    """The ``request_sha256`` detail of an entry (its details are canonical JSON text), if any."""
    try:
        details = json.loads(row[6]) if isinstance(row[6], (str, bytes)) else None
    except ValueError:
        return None
    value = details.get("request_sha256") if isinstance(details, dict) else None
    return value if isinstance(value, str) else None


def _hash_text(value: str) -> str:
    """A recorded ``request_sha256`` for a message: its first 16 hex digits, or quoted if it is not hex."""
    return value[:16] + "..." if _SHA256_HEX.fullmatch(value) else quote(value)


def completeness_gaps(coordinator_rows: Iterable[Row], node_rows: Mapping[str, Iterable[Row]], done: Iterable[str]) -> list[Gap]:
    """Every gap in verified logs (see the module docstring): DONE requests (``done`` plus
    those with a ``sign-done`` entry) lacking a coordinator entry, released shares of requests
    without a coordinator ``sign-request`` entry, or whose ``request_sha256`` differs from (or
    is missing in) that entry's, and one request id's ``sign-request`` entries naming different
    requests, or its ``sign-approved`` / ``sign-done`` entry naming another request than its
    ``sign-request`` entry (an entry without the hash is tied by id only). Rows as
    :func:`verify_entries` takes them (seq, timestamp, actor, action, request id, outcome,
    details, ...), already verified. Every message quotes the request id."""
    seen: dict[str, dict[str, int]] = {}  # request id -> action -> seq of its first entry
    hashes: dict[str, str | None] = {}  # request id -> request_sha256 of its first sign-request entry
    ends: list[tuple[int, str, str, str]] = []  # (seq, request id, action, request_sha256) of sign-approved / sign-done
    gaps = []
    coordinator_rows = list(coordinator_rows)
    for r in coordinator_rows:
        seq, action, rid, outcome = r[0], r[3], r[4], r[5]
        if not isinstance(seq, int) or not isinstance(rid, str) or not rid:
            continue
        if action == "sign-request" and outcome != "pending":
            continue  # a refused submission: the request was never recorded
        if action == "sign-request":
            h = _request_sha256(r)
            if rid not in hashes:
                hashes[rid] = h
            elif h != hashes[rid]:
                first = "none" if hashes[rid] is None else _hash_text(str(hashes[rid]))
                gaps.append(Gap(
                    COORDINATOR, seq, rid,
                    f"request {quote(rid)} has a second sign-request entry naming another request (request_sha256 "
                    f"{'none' if h is None else _hash_text(h)}, the first named {first})",
                ))
        if action in DONE_NEEDS[1:] and (h := _request_sha256(r)) is not None:
            ends.append((seq, rid, str(action), h))
        seen.setdefault(rid, {}).setdefault(str(action), seq)
    for seq, rid, action, h in ends:  # the DONE check ties these to the id's sign-request: the same request
        if rid in hashes and hashes[rid] != h:
            first = "none" if hashes[rid] is None else _hash_text(str(hashes[rid]))
            gaps.append(Gap(
                COORDINATOR, seq, rid,
                f"request {quote(rid)}: its {action} entry names another request (request_sha256 {_hash_text(h)}) than its"
                f" sign-request entry (request_sha256 {first})",
            ))
    for rid in sorted(set(done) | {rid for rid, acts in seen.items() if "sign-done" in acts}):
        acts = seen.get(rid, {})
        missing = [a for a in DONE_NEEDS if a not in acts]
        if missing:
            seq = acts.get("sign-done", min(acts.values(), default=None))
            gaps.append(Gap(
                COORDINATOR, seq, rid, f"request {quote(rid)} is DONE but the log has no {', '.join(missing)} entry for it (incomplete)"
            ))
    for component in sorted(node_rows):
        for r in node_rows[component]:
            seq, action, rid, outcome = r[0], r[3], r[4], r[5]
            if action != "sign-share" or outcome != "released" or not isinstance(rid, str) or not rid or not isinstance(seq, int):
                continue
            if "sign-request" not in seen.get(rid, {}):
                gaps.append(Gap(
                    component, seq, rid,
                    f"released a signature share for request {quote(rid)}, which the coordinator's log never recorded"
                    " (no sign-request entry)",
                ))
                continue
            mine, theirs = _request_sha256(r), hashes.get(rid)
            if mine is None or mine == theirs:
                continue  # an older node's entry without the hash: matched by request id only
            recorded = "no request_sha256" if theirs is None else f"request_sha256 {_hash_text(theirs)}"
            gaps.append(Gap(
                component, seq, rid,
                f"released a signature share for request {quote(rid)} with request_sha256 {_hash_text(mine)}, but the "
                f"coordinator's sign-request entry of that id records {recorded} (another request under the same id)",
            ))
    return gaps


def _with_gaps(reports: list[ComponentReport], gaps: list[Gap]) -> list[ComponentReport]:
    out = []
    for r in reports:
        mine = [g for g in gaps if g.component == r.component]
        if r.ok and mine:
            more = f" (and {len(mine) - 1} more gap(s))" if len(mine) > 1 else ""
            r = replace(r, ok=False, first_broken=mine[0].seq, reason=mine[0].reason + more)
        out.append(r)
    return out


def _done_requests(client: MpcClient) -> tuple[list[str], str]:
    try:
        return [r.request_id for r in client.list_sign_requests(state="done", limit=MAX_DONE_LISTED)], ""
    except MpcError as e:
        return [], f"cannot list the DONE requests to check completeness: {e.code.name}: {escape(e.message)}"


def verify_cluster(client: MpcClient, info: dict[str, Any], heads_path: Path | None) -> list[ComponentReport]:
    """Verify every component's log and the trail's completeness (:func:`completeness_gaps`);
    remember the heads of the intact chains in ``heads_path``."""
    heads = load_heads(heads_path)
    # the DONE requests first and the coordinator's log last: the coordinator appends its
    # queued entries in the background and flushes them before it serves its log, so every
    # request listed here, and every request a node served before, has its entries in the
    # coordinator's log (the other order could report a request that moved on in between)
    done, problem = _done_requests(client)
    keys = components(info)
    order = sorted(keys, key=lambda c: c == COORDINATOR)  # stable: the nodes, then the coordinator
    fetched_any = {c: _verify_component(client, c, keys[c], heads.get(c)) for c in order}
    fetched = {c: fetched_any[c] for c in keys}  # reported in cluster.json order
    reports = [report for report, _ in fetched.values()]
    if heads_path is not None:
        for r in reports:
            if r.ok and r.head is not None:
                heads[r.component] = (r.head[0], bytes.fromhex(r.head[1]))
        save_heads(heads_path, heads)
    coordinator = fetched.get(COORDINATOR)
    if coordinator is None or not coordinator[0].ok:
        return reports  # nothing trustworthy to check completeness against (already reported)
    gaps = completeness_gaps(
        coordinator[1], {c: rows for c, (r, rows) in fetched.items() if c != COORDINATOR and r.ok}, done
    )
    if problem:
        gaps.insert(0, Gap(COORDINATOR, None, "", problem))
    return _with_gaps(reports, gaps)
