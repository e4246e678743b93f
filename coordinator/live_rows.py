"""Partial indexes over the *live* rows of the coordinator's tables that keep every row for ever
(issue 14: ``presigs`` and ``frost_nonces`` gain one row or more per signature; the used and
discarded ones are what proves a presignature or nonce was never offered twice, so they stay).

The periodic work (the presignature refiller's pool count at least 4 times a second, the
once-a-second housekeeping, the FROST nonce sync and refill) and the per-signature assignment
read only live rows. With indexes over every row they visited the history too (1.05 ms per
refiller pass at 8,300 rows, growing linearly). The indexes of :data:`LIVE_INDEX_MIGRATION`
hold only live rows, so those queries cost what the live rows cost, whatever the history.

SQLite uses a partial index only when the query's ``WHERE`` contains the index's condition
term as written (a constant term; a bound parameter never proves it). The queries therefore add
:data:`PRESIG_LIVE` / :data:`NONCE_LIVE` verbatim, next to a narrower state term they imply
(``state = 'ready'`` implies :data:`PRESIG_LIVE`), so the rows found are the same.

The step drops the full indexes it replaces (``presigs_by_pool``, ``frost_nonces_fresh``): no
query reads history rows by pool, and every index costs a write per row change."""

from __future__ import annotations

from mpcnet.common.stores.sqlite import Migration

# The condition of presigs_live, verbatim (a query must contain exactly this term to use it).
PRESIG_LIVE = "state IN ('ready', 'assigned')"
# The condition of frost_nonces_live, verbatim.
NONCE_LIVE = "state = 'fresh'"

LIVE_INDEX_MIGRATION: Migration = (
    "DROP INDEX IF EXISTS presigs_by_pool",
    "CREATE INDEX IF NOT EXISTS presigs_live ON presigs (key_id, epoch, path, signers, state, created_ms, presig_id)"
    f" WHERE {PRESIG_LIVE}",
    "DROP INDEX IF EXISTS frost_nonces_fresh",
    "CREATE INDEX IF NOT EXISTS frost_nonces_live ON frost_nonces (key_id, epoch, node, created_ms, nonce_id)"
    f" WHERE {NONCE_LIVE}",
)

__all__ = ["LIVE_INDEX_MIGRATION", "NONCE_LIVE", "PRESIG_LIVE"]
