"""``mpc-node join`` SIGKILLed (a real process) at random moments and re-run, and join while the
node holds its data directory (issue 13, R2): the config is whole or absent, the re-run writes
it, a running node's directory is refused and left as it was."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpc_node.config import load_node_config
from tests.deploy.crashkit import ROOT, run, run_killed
from tests.deploy.test_enrolment import World, enrol_world, signed
from tests.test_suite_settings import scaled

NODE = "mpc_node.main:main"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> World:
    return signed(enrol_world(tmp_path_factory.mktemp("crash-join")))


def _join_args(w: World, i: int) -> list[str]:
    return ["join", "--dir", str(w.host(f"node-{i}")), "--genesis", str(w.ex / "genesis.json"),
            "--cert", str(w.cert(f"node-{i}")), "--ca", str(w.ex / "ca.pem")]  # fmt: skip


def test_join_killed_at_random_then_re_run(built: World, tmp_path: Path) -> None:
    for k in range(scaled(4)):
        shutil.copytree(built.root, tmp_path / f"w{k}", symlinks=True)
        w = World(tmp_path / f"w{k}")
        cfg = w.host("node-1") / "config.json"
        run_killed(NODE, "mpcnet.common.hostenrol:plan_join", 0.0, 0.15, _join_args(w, 1))
        if cfg.exists():
            load_node_config(cfg)  # whole, never torn
        done = run(NODE, _join_args(w, 1))
        assert done.returncode == 0, done.stderr
        c = load_node_config(cfg)
        assert c.index == 1 and c.name == "node-1"
        assert (w.host("node-1") / "tls.pem").read_bytes() == w.cert("node-1").read_bytes()


HOLD = "import sys; from pathlib import Path; from mpcnet.common.datadir import hold_data_dirs\n" \
       "with hold_data_dirs((Path(sys.argv[1]),)):\n    print('held', flush=True); sys.stdin.read()"


def test_join_while_the_node_holds_its_directory_is_refused_and_changes_nothing(built: World, tmp_path: Path) -> None:
    shutil.copytree(built.root, tmp_path / "w", symlinks=True)
    w = World(tmp_path / "w")
    assert run(NODE, _join_args(w, 1)).returncode == 0
    d = w.host("node-1")
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != "mpcnet.lock"}
    # the running node's lock (mpc_node.main holds DIR/mpcnet.lock from start to exit)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = run(NODE, _join_args(w, 1))
        assert r.returncode == 1 and "stop it before joining again" in r.stderr and "Traceback" not in r.stderr, r.stderr
    finally:
        holder.communicate(input="", timeout=30)
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != "mpcnet.lock"}
    assert after == before
