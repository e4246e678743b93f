"""free_ports: the kernel's choice by default; with $MPCNET_PORT_RANGE only ports of that range,
distinct, never one that is in use."""

from __future__ import annotations

import socket

import pytest

from mpcnet.cluster.launcher import PORT_RANGE_ENV, ClusterError, free_ports, port_range


def _bound_range(width: int) -> tuple[list[socket.socket], int]:
    """``width`` consecutive free ports below 32768, the first of them bound (held by the caller)."""
    for lo in range(29000, 32000, 97):
        socks = []
        try:
            for p in range(lo, lo + width):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            for s in socks:
                s.close()
            continue
        for s in socks[1:]:
            s.close()
        return socks[:1], lo
    raise AssertionError("no free block of ports")


def test_without_the_variable_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PORT_RANGE_ENV, raising=False)
    assert port_range() is None
    ports = free_ports(6)
    assert len(set(ports)) == 6


def test_ports_come_from_the_range_distinct_and_skip_ports_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    held, lo = _bound_range(4)
    try:
        monkeypatch.setenv(PORT_RANGE_ENV, f"{lo}-{lo + 3}")
        for _ in range(10):
            ports = free_ports(3)
            assert sorted(ports) == [lo + 1, lo + 2, lo + 3]
        with pytest.raises(ClusterError, match=r"fewer than 4 free ports"):
            free_ports(4)
    finally:
        held[0].close()


@pytest.mark.parametrize("bad", ["20000", "20000-", "30000-20000", "80-90", "20000-70000", " 20000-20010", "2e4-3e4", "x" * 100])
def test_a_bad_range_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(PORT_RANGE_ENV, bad)
    with pytest.raises(ClusterError, match=r"^\$MPCNET_PORT_RANGE: must be LO-HI") as e:
        free_ports(1)
    assert len(str(e.value)) < 150


def test_a_prepared_again_cluster_keeps_its_ports_where_they_are_free(tmp_path: object) -> None:
    # regression: every 'mpc-cluster up' of a stopped cluster gave it new ports, so a client
    # waiting across 'stop; up' (or a script with --endpoint / MPC_ENDPOINT) never reached it again
    import json
    from pathlib import Path

    from mpcnet.cluster.launcher import LISTEN_HOST, prepare

    d = Path(str(tmp_path)) / "c"

    def ports() -> list[int]:
        lay = prepare(d, 2, 2, scrypt_n=1024)
        paths = [lay.coordinator_config, lay.node_config(1), lay.node_config(2)]
        return [int(json.loads(p.read_text())["listen"].rpartition(":")[2]) for p in paths]

    first = ports()
    assert ports() == first and len(set(first)) == 3
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # the coordinator's port is taken meanwhile
        s.bind((LISTEN_HOST, first[0]))
        s.listen()
        again = ports()
    assert again[0] != first[0] and again[1:] == first[1:] and len(set(again)) == 3
