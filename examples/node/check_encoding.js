#!/usr/bin/env node
'use strict';
// Checks governance.js against bytes the Python implementation produced.
//
// Usage: node check_encoding.js VECTORS.json
//
// VECTORS.json: {"requests": [{"request": {request_id, key_id (hex), digest (hex),
// derivation_path (decimal strings), requester, description, created_at_ms, expires_at_ms,
// policy_version (decimal strings), policy_digest (hex)}, "encoding": hex, "approvals":
// [{"approver", "decision", "private_key_pem", "message": hex, "signature": hex}]}],
// "invalid": [{"encoding": hex, "field": the field the error must name}]}
//
// For each request: encoding it gives exactly `encoding`, decoding `encoding` gives the
// request back, the approval message is exactly `message`, and Ed25519 (deterministic) over
// it gives exactly `signature`. Each invalid encoding must be refused naming `field`.
// Exit status 0 and "ok: ..." when everything matches; 1 and the first mismatch otherwise.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const gov = require('./governance');

function requestFromJson(j) {
  return {
    request_id: j.request_id,
    key_id: Buffer.from(j.key_id, 'hex'),
    digest: Buffer.from(j.digest, 'hex'),
    derivation_path: j.derivation_path.map((i) => BigInt(i)),
    requester: j.requester,
    description: j.description,
    created_at_ms: BigInt(j.created_at_ms),
    expires_at_ms: BigInt(j.expires_at_ms),
    policy_version: BigInt(j.policy_version),
    policy_digest: Buffer.from(j.policy_digest, 'hex'),
  };
}

function main() {
  if (process.argv.length !== 3) throw new Error('usage: node check_encoding.js VECTORS.json');
  const doc = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  let approvals = 0;
  doc.requests.forEach((v, i) => {
    const where = `requests[${i}]`;
    const request = requestFromJson(v.request);
    const encoding = Buffer.from(v.encoding, 'hex');
    assert.equal(gov.encodeSigningRequest(request).toString('hex'), v.encoding, `${where}: encoding differs`);
    assert.deepEqual(gov.decodeSigningRequest(encoding), request, `${where}: decoding differs`);
    v.approvals.forEach((a, j) => {
      const message = gov.approvalMessage(encoding, a.approver, a.decision);
      assert.equal(message.toString('hex'), a.message, `${where}.approvals[${j}]: approval message differs`);
      const signature = crypto.sign(null, message, crypto.createPrivateKey(a.private_key_pem));
      assert.equal(signature.toString('hex'), a.signature, `${where}.approvals[${j}]: signature differs`);
      approvals += 1;
    });
  });
  doc.invalid.forEach((v, i) => {
    assert.throws(
      () => gov.decodeSigningRequest(Buffer.from(v.encoding, 'hex')),
      (e) => e instanceof gov.GovernanceError && e.field === v.field,
      `invalid[${i}]: not refused naming ${v.field}`,
    );
  });
  console.log(`ok: ${doc.requests.length} requests, ${approvals} approvals, ${doc.invalid.length} invalid encodings match Python`);
}

try {
  main();
} catch (e) {
  console.error(`error: ${e.message}`);
  process.exit(1);
}
