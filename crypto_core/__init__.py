"""Sans-IO threshold ECDSA (DKLs23) over secp256k1.

Every protocol here is a pure state machine: round messages (bytes) in, round messages out.
No sockets, threads, clocks or files; randomness comes from an injectable :class:`~crypto_core.rng.Rng`.
"""
