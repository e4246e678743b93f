"""Issue 11's "Done means", as CI runs it: ``scripts/demo-lifecycle`` (its Python entry, on a
fast cluster) from a fresh directory: a 3-of-5 cluster signs; node 3 is removed (3-of-4), a node
is added (3-of-5), the key is refreshed and every node's operational keys are rotated, the
cluster is stopped and started again, and the same public key signs after each step, every
signature checked with OpenSSL, all through the ``mpc`` and ``mpc-cluster`` command lines."""

from __future__ import annotations

import re
import subprocess
import sys

from mpcnet.cluster.launcher import child_env


def test_demo_lifecycle_runs_every_step_and_one_public_key_signs_throughout() -> None:
    p = subprocess.run([sys.executable, "-m", "mpcnet.cluster.demo_lifecycle", "--scrypt-n", "1024"], env=child_env(),
                       capture_output=True, text=True, timeout=600)
    out = p.stdout
    assert p.returncode == 0 and "Traceback" not in p.stderr, (out, p.stderr)
    public = re.search(r"public key (0[23][0-9a-f]{64})", out)
    assert public is not None, out
    assert f"done: 6 signatures, every one valid under {public.group(1)}" in out
    assert out.count(f"VALID under {public.group(1)} (OpenSSL)") == 6
    assert "(reshare): DONE, epoch 1, 3-of-1,2,4,5" in out  # node 3 removed
    assert "(refresh): DONE, epoch 3, 3-of-1,2,4,5,6" in out  # node 6 added at epoch 2, then refreshed
    assert "key versions {1: 2, 2: 2, 4: 2, 5: 2, 6: 2}" in out  # every active node's keys rotated
    assert "nodes [1, 2, 4, 5, 6] running; revoked, not started: ['node-3']" in out  # a restart keeps the roster
