"""Hazardous materials: primitives that are safe only inside the protocols that use them.

Nothing here is needed to run a DKG, presign, sign or combine: use the classes exported by
:mod:`crypto_core` (and :mod:`crypto_core.combiner` for public combining and verification). These
modules are building blocks whose security rests on invariants the caller must keep, and which
they cannot check themselves (the name follows pyca/cryptography's ``hazmat`` layer):

* :mod:`~crypto_core.hazmat.ec_raw`: raw libsecp256k1 point operations on cffi handles; no
  identity, no validation beyond libsecp256k1's own.
* :mod:`~crypto_core.hazmat.gf128`: GF(2^128) arithmetic and bit transposes for the OT check.
* :mod:`~crypto_core.hazmat.base_ot`: Endemic base OT; its keys are long-term OT-extension seeds.
* :mod:`~crypto_core.hazmat.pairwise`: those seeds (OT Delta, both seeds of each base OT, zero
  seeds) as kept per peer in a key share.
* :mod:`~crypto_core.hazmat.ot_ext`: KOS OT extension; a repeated session id is a two-time pad.
* :mod:`~crypto_core.hazmat.rvole`: random vector OLE on top of it; same session-id rule.
* :mod:`~crypto_core.hazmat.presignature`: :func:`~crypto_core.hazmat.presignature.load_presignature`
  revives a stored presignature record; reviving one that was already used (an old backup, a
  copied file) and signing with it leaks the key share.

This ``__init__`` imports nothing, so writing ``crypto_core.hazmat.<module>`` is the only way in.
"""
