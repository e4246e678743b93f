"""Generated protobuf/gRPC code of the wire contract (``proto/mpc/v1/*.proto``, package ``mpc.v1``
on the wire), in protoc's layout under this project-specific package: ``mpcnet.wire.mpc.v1``.
Part of the shared layer both servers use; written by scripts/gen_proto.py, never edited."""
