"""mpcnet.common.urgent: wait_idle returns at once with no urgent section, waits for the last one
to end (not the bound), and never longer than the bound while sections keep running; sections
nest across threads and an exception still ends them."""

from __future__ import annotations

import threading

import pytest

from mpcnet.common.urgent import UrgentGate


def test_idle_gate_does_not_wait() -> None:
    g = UrgentGate()
    assert g.wait_idle(5.0) < 0.05


def test_waits_for_the_last_section_only() -> None:
    g = UrgentGate()
    inside = threading.Event()
    release = threading.Event()

    def work() -> None:
        with g.section():
            inside.set()
            release.wait(5)

    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    assert inside.wait(5)
    assert g.active >= 1
    threading.Timer(0.1, release.set).start()
    waited = g.wait_idle(5.0)
    assert 0.05 <= waited < 2.0 and g.active == 0
    for t in ts:
        t.join()


def test_bounded_while_sections_keep_running() -> None:
    g = UrgentGate()
    with g.section():
        waited = g.wait_idle(0.05)
        assert 0.04 <= waited < 1.0
        assert g.active == 1
    assert g.active == 0


def test_an_exception_ends_the_section() -> None:
    g = UrgentGate()
    with pytest.raises(RuntimeError), g.section():
        raise RuntimeError("boom")
    assert g.active == 0 and g.wait_idle(1.0) < 0.05
