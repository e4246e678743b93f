"""Drop gauge series of things that are gone (a node removed from the roster, a retired key).

A labelled series, once set, stays in every scrape at its last value until it is removed, so an
alert on it (``MpcnetNodeDown`` on ``mpcnet_node_up{node} == 0``, ``MpcnetBackupDrillOverdue``)
would fire for ever about a node or key that no longer exists.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Gauge


def prune(gauge: Gauge, label: str, keep: Collection[str]) -> None:
    """Remove every series of ``gauge`` (labelled by the single label ``label``) whose value is
    not in ``keep``. Reads the series through ``collect()`` (public API); thread-safe as the
    library's ``remove`` is."""
    stale = {s.labels[label] for fam in gauge.collect() for s in fam.samples if label in s.labels} - set(keep)
    for value in stale:
        try:
            gauge.remove(value)
        except KeyError:  # removed meanwhile by another thread
            pass
