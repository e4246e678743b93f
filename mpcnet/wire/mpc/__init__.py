"""Generated code of the protobuf package ``mpc`` (see :mod:`mpcnet.wire`)."""
