"""A second coordinator whose data directory reaches the running one's database and audit log
through symlinks (as a file bind-mounted into two containers would) refuses to start, naming the
file; it used to start and serve on the same database (the directory lock sees two directories).
See tests/stores/test_datadir_store_files.py for hard links and a first start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import free_ports

from .conftest import running_cluster


def test_a_second_coordinator_on_symlinked_stores_refuses(tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_cluster(tmp_path_factory, "second-coordinator", 3, 2) as c:
        cd = c.lay.coordinator_dir
        other = c.lay.dir / "coordinator-2"
        other.mkdir(mode=0o700)
        for f in os.listdir(cd):
            src = cd / f
            if f.endswith((".db", ".db-wal", ".db-shm")):
                os.symlink(src, other / f)
            elif src.is_file() and f != "mpcnet.lock":
                shutil.copy(src, other / f)
        cfg = json.loads((other / "config.json").read_text())
        cfg = {k: v.replace(str(cd), str(other)) if isinstance(v, str) else v for k, v in cfg.items()}
        port, metrics = free_ports(2)
        cfg["listen"] = f"127.0.0.1:{port}"
        cfg["log_file"] = str(other / "coordinator.log")
        if isinstance(cfg.get("metrics"), dict):
            cfg["metrics"]["listen"] = f"127.0.0.1:{metrics}"
        (other / "config.json").write_text(json.dumps(cfg))
        p = subprocess.run([str(Path(sys.executable).parent / "mpc-coordinator"), "--config", str(other / "config.json")],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "is in use by another process (the same file through another path" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
        assert c.procs["coordinator"].poll() is None  # the first one serves on
