"""The committed generated protobuf/gRPC code (package mpcnet.wire.mpc.v1) matches proto/mpc/v1/*.proto."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_code_is_fresh():
    gen = _gen()
    assert gen.stale_files() == [], "generated code is stale: run scripts/gen_proto.py"


def test_every_generated_file_is_present():
    gen = _gen()
    present = sorted(p.name for p in gen.PACKAGE_DIR.glob("*_pb2*.py*"))
    assert present == gen.generated_names()


def test_services_are_in_package_mpc_v1():
    from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

    assert node_pb2.DESCRIPTOR.services_by_name["Node"].full_name == "mpc.v1.Node"
    assert coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name == "mpc.v1.Coordinator"


def test_generated_code_lives_in_mpcnet_wire_and_imports_its_siblings_relatively():
    gen = _gen()
    assert gen.PACKAGE_DIR == ROOT / "mpcnet" / "wire" / "mpc" / "v1"
    for path in gen.PACKAGE_DIR.glob("*_pb2*.py*"):
        absolute = re.findall(r"^\s*(?:from|import)\s+(?:proto|mpc)\b.*$", path.read_text(), re.MULTILINE)
        assert absolute == [], path.name
