"""Issue 14 (cheaper presignature): the OT extension's rewritten hot loops give byte for byte what
the code they replaced gave (kept here as the reference, on random inputs)."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings, strategies as st

from crypto_core.hazmat import base_ot, ot_ext
from crypto_core.params import SUPPORTED_LAMBDA
from crypto_core.tags import Tag
from crypto_core.transcript import frame

from ..conftest import scaled


def prg_rows_before(sid: bytes, seeds: tuple[bytes, ...]) -> bytes:
    """``ot_ext._prg_rows`` as of main 18ea169 (one ``hdr + seed`` per row in a zip loop)."""
    lay = ot_ext.layout(len(seeds))
    prefix = hashlib.shake_256(frame((Tag.OTE_PRG.bytes, sid)))
    out: list[bytes] = []
    for hdr, seed in zip(lay.row_hdr, seeds, strict=True):
        h = prefix.copy()
        h.update(hdr + seed)
        out.append(h.digest(ot_ext.ROW_LEN))
    return b"".join(out)


def _seeds(material: bytes, rows: int) -> tuple[bytes, ...]:
    """``rows`` base-OT seeds expanded from ``material`` (random-looking, any bytes)."""
    stream = hashlib.shake_256(material).digest(base_ot.KEY_LEN * rows)
    return tuple(stream[i : i + base_ot.KEY_LEN] for i in range(0, len(stream), base_ot.KEY_LEN))


@settings(max_examples=scaled(20), deadline=None)
@given(st.sampled_from(SUPPORTED_LAMBDA), st.binary(min_size=32, max_size=32), st.binary(max_size=16))
def test_prg_rows_same_bytes(rows: int, sid: bytes, material: bytes) -> None:
    seeds = _seeds(material, rows)
    assert ot_ext._prg_rows(sid, seeds) == prg_rows_before(sid, seeds)
