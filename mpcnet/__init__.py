"""mpcnet's Python packages beside the servers, one subpackage per layer: :mod:`mpcnet.common`
(the shared transport/config layer both servers use), :mod:`mpcnet.wire` (the generated
protobuf/gRPC code), :mod:`mpcnet.client` (client SDK, ``mpc`` CLI, audit verification) and
:mod:`mpcnet.cluster` (local-cluster tooling, ``mpc-cluster``, demo)."""
