"""Generated code of the protobuf package ``mpc.v1`` (``proto/mpc/v1/*.proto``); see scripts/gen_proto.py."""
