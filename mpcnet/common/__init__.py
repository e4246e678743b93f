"""The shared transport/config layer both servers (``mpc_node``, ``coordinator``) and the clients
use: RPC helpers (``rpc``), dev PKI and mTLS (``pki``), config loading (``config``), the
operational-key keystore (``keystore``), atomic file writes (``fsutil``), data-directory locks
(``datadir``), clock-skew measurement (``clockskew``), governance objects on the wire
(``govwire``), gRPC reflection (``reflection``) and the SQLite stores (``stores/``).

It imports neither :mod:`mpcnet.client` nor :mod:`mpcnet.cluster` (tests/test_import_contract.py);
the generated wire code is :mod:`mpcnet.wire`."""
