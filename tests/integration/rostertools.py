"""Roster changes for tests: the dev cluster's genesis roster and admin-signed next links."""

from __future__ import annotations

import hashlib
import json

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from governance.roster import Roster, RosterChange, SignedRosterChange, sign_roster_change
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout


def history(lay: Layout) -> list[SignedRosterChange]:
    """The roster chain the launcher wrote into every config (version 1 only)."""
    return [SignedRosterChange.from_dict(d) for d in json.loads(lay.roster_path.read_text())]


def signed_next(
    lay: Layout, prev: Roster | None, new: Roster, *admins: str, governance_root: bytes | None = None
) -> SignedRosterChange:
    """``new`` as the link after ``prev``, signed by ``admins`` (default admin1 and admin2)."""
    root = lay.governance()[0].digest() if governance_root is None else governance_root
    change = RosterChange(new, None if prev is None else prev.digest(), root)
    names = admins or ("admin1", "admin2")
    return SignedRosterChange(change, tuple(sign_roster_change(change, n, load_identity(lay.dir, n).signing_key) for n in names))


def cert_fingerprint(lay: Layout, name: str) -> bytes:
    """SHA-256 of the DER certificate of ``name`` (a roster entry's ``tls_fingerprint``)."""
    pem = lay.cert(name).cert.read_bytes()
    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).digest()
