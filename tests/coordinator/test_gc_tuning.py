"""Issue 14 (lean path): a server process freezes its start-up objects and raises the GC's
generation-0 threshold once; ``MPCNET_GC_TUNING=0`` leaves CPython's defaults."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mpcnet.common.gc_tuning import ENV, GEN0_THRESHOLD, tune_for_server


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored")
def test_tuning_freezes_the_objects_alive_and_raises_gen0_only() -> None:
    _, gen1, gen2 = gc.get_threshold()
    kept = [object() for _ in range(10)]
    assert tune_for_server({}) is True
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)
    assert gc.get_freeze_count() >= len(kept)


@pytest.mark.usefixtures("restored")
def test_mpcnet_gc_tuning_0_changes_nothing() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert tune_for_server({ENV: "0"}) is False
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
