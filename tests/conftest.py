import os
import re

from hypothesis import HealthCheck, settings

import mpc_node.storage

mpc_node.storage.GUARD_TRACKED_WRITES = True  # issue 14: a writer wrongly marked tracked fails the suite

CI_EXAMPLES = 25
"""max_examples of the default ("ci") profile; the other profiles scale :func:`scaled` against it."""

settings.register_profile(
    "ci", max_examples=CI_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def scaled(n: int, profile: str = PROFILE) -> int:
    """Example count for a property test that sets its own: ``n`` under the "ci" profile.

    Every test that fixes ``max_examples`` must use this, so that $HYPOTHESIS_PROFILE reaches it:
    ``n`` times (the profile's max_examples / CI_EXAMPLES) times $HYPOTHESIS_SCALE (default 1),
    at least 1. So "thorough" runs 8x, "dev" 0.4x of what "ci" runs.
    """
    factor = settings.get_profile(profile).max_examples / CI_EXAMPLES
    return max(1, round(n * factor * float(os.environ.get("HYPOTHESIS_SCALE", "1"))))


WORKER_PORTS = 400
"""Ports per pytest process in $MPCNET_PORT_RANGE (a cluster takes nodes + 1); fewer (down to 50)
when that many workers would not fit."""


def worker_port_range() -> str | None:
    """This pytest process's own "LO-HI" for $MPCNET_PORT_RANGE, or None if there is no room
    (then the kernel picks ports, as outside the tests).

    Ports come from 20000 up to the kernel's ephemeral range (which outgoing connections and port
    0 use). Every xdist worker gets a disjoint block of WORKER_PORTS; the run's blocks sit at an
    offset drawn from the run id (PYTEST_XDIST_TESTRUNUID, shared by its workers; the process id
    without workers), so concurrent runs on one machine most likely use different ports too (and
    free_ports skips ports in use).
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_lo = 32768
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[:2] == "gw" and worker[2:].isdigit() else 0
    pool = min(ephemeral_lo, 65536) - 20000
    per = min(WORKER_PORTS, pool // max(1, workers))
    if per < 50 or index >= workers:
        return None
    slots = pool // (per * workers)
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    slot = int(run, 16) % slots if re.fullmatch(r"[0-9a-f]{1,64}", run) else os.getpid() % slots
    lo = 20000 + (slot * workers + index) * per
    return f"{lo}-{lo + per - 1}"


PORT_RANGE_AUTO_ENV = "MPCNET_TEST_PORT_RANGE_AUTO"
"""Set to 1 beside $MPCNET_PORT_RANGE when this file chose the range: xdist workers inherit the
controller's environment, and must each choose their own, not keep the controller's."""


def choose_port_range() -> None:
    """Set $MPCNET_PORT_RANGE for this pytest process (inherited by every node, coordinator and
    CLI child it starts). A range the caller set is kept in a run without workers (-n 0)."""
    chosen_here = os.environ.get(PORT_RANGE_AUTO_ENV) == "1"
    if "MPCNET_PORT_RANGE" in os.environ and not chosen_here and "PYTEST_XDIST_WORKER" not in os.environ:
        return
    r = worker_port_range()
    if r is None:
        os.environ.pop("MPCNET_PORT_RANGE", None)
        os.environ.pop(PORT_RANGE_AUTO_ENV, None)
    else:
        os.environ["MPCNET_PORT_RANGE"] = r
        os.environ[PORT_RANGE_AUTO_ENV] = "1"


choose_port_range()
