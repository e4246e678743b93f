"""The ``WHERE`` term that finds a request's rows in a table whose ``request_id`` column has a
partial index ``... (request_id) WHERE request_id != ''`` (the coordinator's ``presigs`` and
``frost_nonces``: rows without a request are most of them, and every row is kept for ever).

SQLite uses a partial index only when the query's ``WHERE`` implies the index's condition, and a
plan cannot prove that a bound parameter is not ``''``: ``request_id = ?`` alone scans the whole
table (issue 14: ~0.5 ms per lookup at 6,000 rows, several lookups per signature, and the table
only grows). :func:`by_request` adds ``request_id != ''``, which ``request_id = ?`` already implies
for a non-empty id, so the rows found are the same and the index is used."""

from __future__ import annotations


def by_request(request_id: str, column: str = "request_id") -> str:
    """``column = ? AND column != ''`` for a non-empty ``request_id`` (one ``?`` parameter, the
    id), else the plain ``column = ?`` (the same rows as before, without the index). ``column``
    is a name chosen by the caller's code, never caller text."""
    if not column.isidentifier():
        raise ValueError(f"column: not an identifier: {column!r}")
    return f"{column} = ? AND {column} != ''" if request_id else f"{column} = ?"


__all__ = ["by_request"]
