"""Issue 14 (cheaper presignature): a node keeps its freed heap (glibc ``mallopt``), so numpy
temporaries that are freed and allocated again on every presignature stop costing page faults;
``MPCNET_HEAP_TUNING=0`` leaves glibc's defaults."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from mpcnet.common.heap_tuning import ENV, keep_heap

# A workload shaped like presigning: 16 MB of temporaries in 2.4 MB arrays, all freed, again and
# again; prints the minor page faults of the repetitions after the first.
_CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from mpcnet.common.heap_tuning import keep_heap
    print(keep_heap())
    def burst():
        xs = [np.ones(300_000) for _ in range(7)]
        return sum(float(x[0]) for x in xs)
    burst()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        burst()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True, timeout=60)
    tuned, faults = out.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_kept_heap_stops_the_page_faults_of_repeated_temporaries() -> None:
    tuned, faults_tuned = _faults(None)
    default, faults_default = _faults("0")
    assert (tuned, default) == ("True", "False")
    # default: the freed top of the heap is trimmed and faulted in again, page by page, every
    # repetition (about 20 * 16 MB / 4 KiB); kept: the pages stay mapped
    assert faults_default > 2_000
    assert faults_tuned < faults_default // 20


def test_mpcnet_heap_tuning_0_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cdll(*_: object) -> None:
        raise AssertionError("mallopt must not be looked up")

    monkeypatch.setattr(ctypes, "CDLL", no_cdll)
    assert keep_heap({ENV: "0"}) is False


def test_no_mallopt_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_: object) -> None:
        raise OSError("no C library")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert keep_heap({}) is False
