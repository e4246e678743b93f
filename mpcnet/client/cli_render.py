"""The ``mpc`` CLI's terminal views: rows of ``name  value``, every value on one line with every
non-printable character escaped (``governance.text.escape``), so neither a coordinator (untrusted)
nor a caller's text (labels, descriptions) can forge, hide or overwrite a row.

Invariants of the views:

- A row's value is one terminal line. The only multi-line values are ones computed here from
  verified bytes (a PEM public key): printed as an indented block, each line escaped.
- An approver's view of a request (:func:`request_lines`) prints the canonical request's id, key
  id, digest, path, requester and expiry first, in fixed rows, and the requester's description
  last, escaped, quoted and marked as the requester's text.
- Approvals: "approved by" / "rejected by" list only decisions the SDK verified (signature over the
  canonical request by an approver of the admin-signed policy the request names); every other
  decision the coordinator lists is shown on an ``UNVERIFIED`` row with the reason, never counted.
  When the policy could not be checked, the quorum is marked as the coordinator's word.
- A key's label is the last column of ``mpc keys`` and the last row of a key view.
- Signature and key views print every entry of ``SignatureResult.as_dict`` / ``Key.describe``, so
  fields added to those dicts show up without a change here.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from governance.text import escape
from mpcnet.client.schnorr import SchnorrSignature
from mpcnet.client.sdk import SignatureResult, SignRequest

Row = tuple[str, Any]


class Block(str):
    """A multi-line value computed from verified bytes (e.g. a PEM public key): shown as an indented
    block. Every other value, and always a caller's text, is shown on one line."""

USER_TEXT_MARK = "(the requester's text, not verified)"


def out(line: str = "") -> None:
    """One line on stdout (BrokenPipeError propagates to ``cli.main``)."""
    print(line)


def err(line: str) -> None:
    """One line on stderr, escaped."""
    print(escape(line), file=sys.stderr)


def value_text(value: Any) -> str:
    """A row's value as text (before escaping): lists joined with ``, ``, mappings as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def render(rows: Sequence[Row]) -> list[str]:
    """``name  value`` lines, names padded to one width; a :class:`Block` value becomes an indented
    block (each line escaped); every other value is escaped onto one line."""
    width = max((len(escape(k)) for k, _ in rows), default=0)
    lines: list[str] = []
    for k, v in rows:
        text = value_text(v)
        if isinstance(v, Block):
            lines.append(escape(k))
            lines += ["    " + escape(part) for part in text.strip("\n").split("\n")]
        else:
            lines.append(f"{escape(k):<{width}}  {escape(text)}".rstrip())
    return lines


def show(json_mode: bool, doc: Any, rows: Sequence[Row]) -> None:
    """``doc`` as one JSON document (``--json``), else ``rows`` as text."""
    if json_mode:
        out(json.dumps(doc, indent=2))
        return
    for line in render(rows):
        out(line)


def dict_rows(d: Mapping[str, Any], *, text: Iterable[str] = (), indent: str = "") -> list[Row]:
    """Every entry of ``d`` as a row; the keys in ``text`` (caller text) at the end, each on one line;
    another multi-line string value (computed locally, e.g. PEM) as a :class:`Block`."""
    tail = [k for k in text if k in d]
    head = [(indent + k, Block(v) if isinstance(v, str) and "\n" in v.strip("\n") else v) for k, v in d.items() if k not in tail]
    return head + [(indent + k, d[k]) for k in tail]


def key_rows(d: Mapping[str, Any]) -> list[Row]:
    """A key view (``Key.describe``): every field, the label (creator's text) last, on one line."""
    return dict_rows(d, text=("label",))


def key_list_line(d: Mapping[str, Any]) -> str:
    """One ``mpc keys`` row: id, status, threshold, scheme and address, epoch and committee (the roster
    indices holding shares, when reported), ready pool presignatures (``presigs N``, when
    reported: issue 14), then the label (last, escaped)."""
    held = f"  epoch {d.get('epoch', 0)} nodes {','.join(map(str, d['committee']))}" if d.get("committee") else ""
    if "presignatures_ready" in d and d.get("scheme", "ecdsa-secp256k1") == "ecdsa-secp256k1":  # Schnorr keys have no pools
        held += f"  presigs {d['presignatures_ready']}"
    # issue 16: every key shows its scheme and chain-native address (an ECDSA key: its Ethereum address)
    address = f"{d.get('scheme') or 'ecdsa-secp256k1'} {d.get('ethereum_address') or d.get('solana_address') or d.get('address')}"
    return escape(f"{d['key_id']}  {d['status']:<8} {d['threshold']}-of-{d['parties']}  {address}{held}  {d['label']}")


def signature_dict(sig: SignatureResult | SchnorrSignature, chain_id: int | None) -> dict[str, Any]:
    """``sig.as_dict(chain_id=chain_id)`` when this SDK's ``as_dict`` takes a chain id, else ``as_dict()``
    (with a note on stderr if a chain id was given)."""
    if chain_id is not None:
        if "chain_id" in inspect.signature(sig.as_dict).parameters:
            d: dict[str, Any] = sig.as_dict(chain_id=chain_id)  # type: ignore[call-arg,unused-ignore]
            return d
        err("mpc: note: --chain-id is ignored: this SDK does not produce Ethereum signatures")
    return sig.as_dict()


def request_doc(r: SignRequest, chain_id: int | None, taproot: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """``r.as_dict()`` with the signature rendered for ``chain_id``; a bip340 request's
    ``taproot_output_key`` and ``taproot_address`` when given (``cli_schnorr.taproot_outputs``)."""
    d = {**r.as_dict(), **(taproot or {})}
    if r.signature is not None:
        d["signature"] = signature_dict(r.signature, chain_id)
    return d


_SHOWN_UNVERIFIED = 8  # unverified decisions named on one line; the rest counted


def unverified_text(r: SignRequest) -> str:
    """The decisions that do not count, ``name decision (why)`` (at most 8 named, then ``and N
    more``), or "" if there are none."""
    odd = r.approvals if not r.approvals_verified else r.unverified
    parts = [f"{a.approver} {a.decision}" + ("" if not r.approvals_verified else f" ({a.why})") for a in odd[:_SHOWN_UNVERIFIED]]
    if len(odd) > _SHOWN_UNVERIFIED:
        parts.append(f"and {len(odd) - _SHOWN_UNVERIFIED} more")
    text = ", ".join(parts)
    return f"{text} (not counted: {r.approvals_note})" if text and not r.approvals_verified else text


def superseded_text(r: SignRequest) -> str:
    """The note for a request whose policy is no longer the one in force (``""`` when it is, or
    when unknown): while the request is open the nodes will not sign it, whatever its approvals."""
    if r.policy_in_force is not False:
        return ""
    whose = "the key's own policy" if r.policy_in_force_scope == "key" else "the default policy"
    by = f"v{r.policy_in_force_version} ({whose})"
    if not r.superseded_while_open:
        return f"verified under policy v{r.request.policy_version} (since SUPERSEDED by {by})"
    names = r.verified("approve")
    return (
        f"verified under policy v{r.request.policy_version}, SUPERSEDED by {by}: the nodes will not sign this request"
        + (f" (approvals by {', '.join(names)} do not count)" if names else "")
    )


def request_lines(r: SignRequest, chain_id: int | None = None, taproot: Mapping[str, str | None] | None = None) -> list[Row]:
    """The approver's view: the canonical request's fixed rows first, the description last;
    ``taproot``: a bip340 request's output key and address (``cli_schnorr.taproot_outputs``)."""
    d = {**r.as_dict(), **(taproot or {})}
    quorum = f"{r.approval_quorum} of {r.approvers} approvers" + ("" if r.approvals_verified else " (the coordinator's word, not verified)")
    rows: list[Row] = [
        ("request_id", r.request_id),
        ("key_id", d["key_id"]),
        ("digest", d["digest"]),
        *schnorr_rows(d),
        ("path", d["path"]),
        ("requester", d["requester"]),
        ("expires", f"{d['expires_unix_ms']} (unix ms)"),
        ("state", r.state.upper()),
        ("policy", f"version {d['policy_version']} ({d['policy_digest'][:16]}...), {quorum}"),
        ("approved by", r.approved_by),
    ]
    if r.rejected_by:
        rows.append(("rejected by", r.rejected_by))
    if not r.approvals_verified:
        rows.append(("approvals", f"UNVERIFIED: {r.approvals_note}"))
    if superseded_text(r):
        rows.append(("approvals", superseded_text(r)))
    if unverified_text(r):
        rows.append(("UNVERIFIED", unverified_text(r)))
    if r.error_message:
        rows.append(("error", f"{r.error_code + ': ' if r.error_code else ''}{r.error_message}"))
    if r.presigned:  # issue 14 (the coordinator's word): how it was signed, not whether it may be
        rows.append(("signed", "in one round, from a pool presignature"))
    if r.signature is not None:
        rows.append(("signature", ""))
        rows += dict_rows(signature_dict(r.signature, chain_id), indent="  ")
    rows.append(("description", f"{USER_TEXT_MARK} \"{escape(d['description'])}\""))
    return rows


def schnorr_rows(d: Mapping[str, Any]) -> list[Row]:
    """Issue 16 rows of a request's view (:meth:`SignRequest.as_dict`): its ``scheme``; an
    ed25519 request's message by size, SHA-256 (what the digest is and the approvals sign) and a
    safe preview (printable ASCII or hex, never raw bytes); a bip340 request's Taproot root and,
    when ``d`` has them, its output key (x-only hex) and mainnet P2TR address (or "unknown")."""
    rows: list[Row] = [("scheme", d.get("scheme", "ecdsa-secp256k1"))]
    if "message_size" in d:
        rows += [
            ("message", f"{d['message_size']} bytes, SHA-256 {d['message_sha256']} (= digest; the approvals sign it)"),
            ("message preview", f"{USER_TEXT_MARK} \"{escape(d['message_preview'])}\""),
        ]
    if d.get("scheme") == "schnorr-secp256k1-bip340":
        rows.append(("taproot root", d.get("taproot_root") or "none: BIP86 key-path tweak (no script tree)"))
        if "taproot_output_key" in d:  # what the signature will be valid under, computed on this client
            unknown = "unknown: the key could not be fetched to compute it"
            rows.append(("taproot output key", d["taproot_output_key"] or unknown))
            rows.append(("taproot address", d["taproot_address"] or unknown))
    return rows


def request_list_line(r: SignRequest) -> str:
    """One ``mpc requests`` row; the description (requester's text) last."""
    q = r.request
    odd = len(r.unverified)
    counted = f"{len(r.approved_by)}/{r.approval_quorum}" + ("" if r.approvals_verified else "?")
    counted += f" +{odd} UNVERIFIED" if odd else ""
    counted += " SUPERSEDED: will not sign" if r.superseded_while_open else ""
    scheme = "" if q.scheme == "ecdsa-secp256k1" else f" ({q.scheme}{f', message {len(r.message)} bytes' if r.message else ''})"
    return escape(
        f"{r.request_id:<28} {r.state.upper():<16} {counted}  "
        f"key {q.key_id.hex()[:16]}{scheme}  by {q.requester:<12} description: {q.description[:40]!r}"
    )


def watch_line(r: SignRequest) -> str:
    """One ``mpc request watch`` line per change."""
    extra = f" UNVERIFIED: {unverified_text(r)}" if unverified_text(r) else ""
    extra += f" ({r.error_message})" if r.error_message else ""
    extra += f" {superseded_text(r)}" if r.superseded_while_open else ""
    return escape(f"{r.request_id}  {r.state.upper():<16} approved by: {', '.join(r.approved_by) or '-'}{extra}")
