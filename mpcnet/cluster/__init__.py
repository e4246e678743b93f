"""Local-cluster tooling (the top layer, development and demos): the launcher that lays out and
runs a cluster of processes on 127.0.0.1 (:mod:`mpcnet.cluster.launcher`), the ``mpc-cluster``
CLI (:mod:`mpcnet.cluster.cli`) and the demo (:mod:`mpcnet.cluster.demo`). The servers never
import it (tests/test_import_contract.py)."""
