import os
import re
import secrets

from hypothesis import HealthCheck, settings

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
"""Ports per pytest process in $MPCNET_PORT_RANGE (a cluster takes nodes + 1)."""


def worker_port_range() -> str | None:
    """This pytest process's own "LO-HI" for $MPCNET_PORT_RANGE, or None if there is no room.

    Ports come from 20000 up to the kernel's ephemeral range (which outgoing connections and port
    0 use). Every xdist worker gets a disjoint block of WORKER_PORTS; the run's blocks sit at an
    offset drawn from the run id (PYTEST_XDIST_TESTRUNUID, shared by its workers), so concurrent
    runs on one machine most likely use different ports too (and free_ports skips ports in use).
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_lo = 32768
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[:2] == "gw" and worker[2:].isdigit() else 0
    slots = (min(ephemeral_lo, 65536) - 20000) // (WORKER_PORTS * workers)
    if slots < 1 or index >= workers:
        return None
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    slot = int(run, 16) % slots if re.fullmatch(r"[0-9a-f]{1,64}", run) else secrets.randbelow(slots)
    lo = 20000 + (slot * workers + index) * WORKER_PORTS
    return f"{lo}-{lo + WORKER_PORTS - 1}"


if "MPCNET_PORT_RANGE" not in os.environ:
    _range = worker_port_range()
    if _range is not None:
        os.environ["MPCNET_PORT_RANGE"] = _range  # inherited by every node, coordinator and CLI child
