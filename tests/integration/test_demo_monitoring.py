"""Issue 15's "Done means", as CI runs it: ``scripts/demo-monitoring`` (on a fast cluster) starts a
2-of-3 cluster and a real Prometheus with the repository's alert rules, signs a burst with the
default anomaly config, and sees ``MpcnetSigningBurst`` fire; everything it started is stopped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import child_env

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="prometheus not installed (Debian package 'prometheus'; scripts/test installs it)")
def test_demo_monitoring_sees_the_burst_alert_fire() -> None:
    p = subprocess.run([str(REPO / "scripts" / "demo-monitoring"), "--scrypt-n", "1024"], env=child_env(),
                       capture_output=True, text=True, timeout=400, cwd=REPO)
    out = p.stdout
    assert p.returncode == 0 and "Traceback" not in p.stderr, (out, p.stderr)
    assert "5. alert FIRING: MpcnetSigningBurst (severity critical, rule key_burst)" in out, out
    assert re.search(r"signatures +28 \(did 28\)", out) and re.search(r"approvals +56 \(did 56\)", out), out
    assert re.search(
        r"anomaly key_burst on key ([0-9a-f]{8})\.\.\.: observed 2[1-9] vs expected 20 in 60 s \(busy key \1\.\.\.\)", out), out
    d = re.search(r"cluster with metrics in (\S+)\n", out)
    assert d is not None and not Path(d.group(1)).exists()  # stopped and deleted
