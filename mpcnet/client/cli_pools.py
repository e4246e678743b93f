"""Presignature pools in the ``mpc`` CLI (issue 14): the ``pools`` rows of ``mpc status``, the
pool line of ``mpc status --watch`` and the ``presigs`` column of ``mpc keys``.

Everything shown is the coordinator's word (untrusted): a pool's depth says how fast a request
will be signed, never what may be signed. Each pool is one row named by the key's id prefix,
then its path, signer set, depths and pool policy, and the key's label last (caller text,
escaped like every value by :func:`mpcnet.client.cli_render.render`). A malformed pool answer
is shown as such on the ``presign pools`` row; the rest of ``mpc status`` still prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from governance.text import escape
from mpcnet.client.errors import MpcError
from mpcnet.client.pools import PoolView, PresignStatus
from mpcnet.client.sdk import Key
from mpcnet.wire.mpc.v1 import coordinator_pb2

MAX_POOL_ROWS = 32
"""The most pool rows ``mpc status`` prints (the rest are counted; ``--json`` lists them all)."""
KEY_PREFIX = 10
"""Hex digits of a key id naming a pool row (``pool 0a1b2c3d4e``: no wider than the other row
names of ``mpc status``, so its value column stays where it is; ``--json`` has the whole id)."""
SUMMARY_ROW = "presign pools"


class KeyLister(Protocol):
    """What :func:`load` needs of an :class:`~mpcnet.client.sdk.MpcClient`."""

    def list_keys(self) -> list[Key]: ...


@dataclass(frozen=True)
class PoolsShown:
    """The pools of one ``ClusterStatus`` answer (``status`` None: malformed, ``error`` says
    why) and the labels of their keys (empty when ListKeys failed: rows then show no label)."""

    status: PresignStatus | None
    error: str = ""
    labels: Mapping[bytes, str] = field(default_factory=dict)


def load(client: KeyLister | None, st: coordinator_pb2.ClusterStatusResponse) -> PoolsShown:
    """The pools of ``st``; the key labels from ``client.list_keys()`` only when there are pools
    (and ``client`` is given). Never raises for a server's error: it is in ``error``."""
    try:
        ps = PresignStatus.from_proto(st)
    except MpcError as e:
        return PoolsShown(None, e.message)
    labels: dict[bytes, str] = {}
    if ps.pools and client is not None:
        try:
            labels = {k.key_id: k.label for k in client.list_keys()}
        except MpcError:
            labels = {}
    return PoolsShown(ps, "", labels)


def depth_text(p: PoolView) -> str:
    """``ready 5  assigned 1  filling 2  (target 8, refill at 4, cap 32)``."""
    return (f"ready {p.ready}  assigned {p.assigned}  filling {p.filling}  "
            f"(target {p.target}, refill at {p.refill_at}, cap {p.cap})")


def pool_row(p: PoolView, label: str | None) -> tuple[str, str]:
    """One ``mpc status`` row: ``pool KEYPREFIX`` and ``m/0  signers 1,3  epoch 2  <depths>  label L``
    (the key's label last, as in every view; escaped by the renderer)."""
    tail = f"  label {label}" if label else ""
    return (f"pool {p.key_id.hex()[:KEY_PREFIX]}",
            f"{p.path_text}  signers {','.join(map(str, p.signers))}  epoch {p.epoch}  {depth_text(p)}{tail}")


def summary(ps: PresignStatus) -> str:
    """``enabled: 3 pools, 21 ready (2 at target), 1 assigned, 4 filling`` or why there is none."""
    if not ps.enabled and not ps.pools:
        return "disabled (coordinator config presign.enabled; every request runs the full protocol)"
    if not ps.pools:
        return "enabled, no pools yet (no active key, or the first fill is under way)"
    full = sum(1 for p in ps.pools if p.full)
    state = "enabled" if ps.enabled else "DISABLED (pools left from before)"
    return (f"{state}: {len(ps.pools)} pool{'s' if len(ps.pools) != 1 else ''}, {ps.ready()} ready "
            f"({full} at target), {sum(p.assigned for p in ps.pools)} assigned, {sum(p.filling for p in ps.pools)} filling")


def status_rows(shown: PoolsShown) -> list[tuple[str, str]]:
    """``presign pools`` (the summary) and one row per pool, at most :data:`MAX_POOL_ROWS`."""
    if shown.status is None:
        return [(SUMMARY_ROW, f"MALFORMED ANSWER: {escape(shown.error)[:300]}")]
    ps = shown.status
    rows = [(SUMMARY_ROW, summary(ps))]
    rows += [pool_row(p, shown.labels.get(p.key_id)) for p in ps.pools[:MAX_POOL_ROWS]]
    if len(ps.pools) > MAX_POOL_ROWS:
        rows.append(("pool ...", f"{len(ps.pools) - MAX_POOL_ROWS} more (mpc --json status lists them all)"))
    return rows


def status_doc(shown: PoolsShown) -> dict[str, Any]:
    """What ``mpc status --json`` adds: ``presign_enabled`` (None when the answer was malformed),
    ``pools`` (:meth:`PoolView.as_dict` with the key's ``label``, or None when unknown) and
    ``pools_error`` (None, or why the pools could not be read)."""
    if shown.status is None:
        return {"presign_enabled": None, "pools": [], "pools_error": shown.error}
    return {
        "presign_enabled": shown.status.enabled,
        "pools": [p.as_dict() | {"label": shown.labels.get(p.key_id)} for p in shown.status.pools],
        "pools_error": None,
    }


def watch_line(st: coordinator_pb2.ClusterStatusResponse) -> str:
    """The ``presignature pools`` line of ``mpc status --watch``: the summary, or why not."""
    try:
        return summary(PresignStatus.from_proto(st))
    except MpcError as e:
        return escape(f"MALFORMED ANSWER: {e.message}")[:300]


def watch_doc(st: coordinator_pb2.ClusterStatusResponse | None) -> dict[str, Any]:
    """What ``mpc status --watch --json`` adds: ``presign_enabled``, ``presignatures_ready`` (all
    pools) and ``pools`` (:meth:`PoolView.as_dict`); None/[] without a (well-formed) answer."""
    try:
        ps = PresignStatus.from_proto(st) if st is not None else None
    except MpcError:
        ps = None
    if ps is None:
        return {"presign_enabled": None, "presignatures_ready": None, "pools": []}
    return {"presign_enabled": ps.enabled, "presignatures_ready": ps.ready(), "pools": [p.as_dict() for p in ps.pools]}


def key_doc(k: Key) -> dict[str, Any]:
    """A key of ``mpc keys``: :meth:`Key.describe` and ``presignatures_ready`` (when the key
    object has it: a duck-typed key of an older SDK or a test double need not)."""
    ready = getattr(k, "presignatures_ready", None)
    return k.describe() | ({"presignatures_ready": ready} if isinstance(ready, int) else {})
