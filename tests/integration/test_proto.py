"""The committed generated protobuf/gRPC code matches proto/*.proto."""

import importlib.util
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
    from proto.mpc.v1 import coordinator_pb2, node_pb2

    assert node_pb2.DESCRIPTOR.services_by_name["Node"].full_name == "mpc.v1.Node"
    assert coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name == "mpc.v1.Coordinator"
