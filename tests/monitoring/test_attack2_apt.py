"""``scripts/_apt.sh`` (issue 15 review 2): installing Debian's ``prometheus`` for the tests or the
demo must not pull in its Recommends: ``prometheus-node-exporter``, whose service (on a host with
systemd) serves the host's metrics on every interface, port 9100, unauthenticated."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_apt_install_missing_installs_without_recommends(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    for tool in ("apt-get", "sudo"):
        fake = bin_dir / tool
        fake.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n[ "{tool}" = sudo ] && exec "$@"\nexit 0\n')
        fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    p = subprocess.run(["bash", "-c", 'source scripts/_apt.sh && apt_install_missing no-such-command-a2 prometheus "x"'],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    installs = [line for line in log.read_text().splitlines() if line.startswith("apt-get") and " install " in line]
    assert installs and all("--no-install-recommends" in line for line in installs), installs
