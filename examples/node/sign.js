#!/usr/bin/env node
'use strict';
// mpcnet from Node.js, end to end against a running cluster (`mpc-cluster up`):
//
//   1. as requester1: SubmitSignRequest for SHA-256(message) with a key (--key-id, or the first
//      active key);
//   2. as approver1 and approver2: GetSignRequest, decode the canonical request bytes strictly
//      (never the convenience fields), check they are for the expected key and digest, sign the
//      governance Approval with the approver's own Ed25519 key, DecideSignRequest;
//   3. as requester1: WatchSignRequest until DONE;
//   4. verify the ECDSA (secp256k1) signature with Node's crypto against the key's public key
//      (from GetKey, not from the signature message) and print r, s and the recovery id.
//
// Usage: node sign.js --cluster DIR [--key-id HEX] [--message TEXT] [--proto-dir DIR] [--json]
// Exit status 0 on a verified signature, 1 otherwise (the reason on stderr).

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const gov = require('./governance');

const TERMINAL = new Set(['SIGN_REQUEST_STATE_DONE', 'SIGN_REQUEST_STATE_REJECTED', 'SIGN_REQUEST_STATE_EXPIRED', 'SIGN_REQUEST_STATE_FAILED']);
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

class ExampleError extends Error {}

function fail(reason) {
  throw new ExampleError(reason);
}

function loadCoordinatorService(protoDir) {
  const def = protoLoader.loadSync('mpc/v1/coordinator.proto', {
    includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(def).mpc.v1.Coordinator;
}

/** One mTLS client of the coordinator acting as `name` (certificate from cluster.json). */
function clientFor(Coordinator, info, name) {
  const ident = info.identities[name];
  if (!ident) fail(`identity: no identity ${JSON.stringify(name)} in cluster.json`);
  const creds = grpc.credentials.createSsl(
    fs.readFileSync(info.ca_cert), fs.readFileSync(ident.key), fs.readFileSync(ident.cert),
  );
  return new Coordinator(info.coordinator.endpoint, creds);
}

function unary(client, method, request, timeoutMs) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + timeoutMs }, (err, response) => {
      if (err) reject(new ExampleError(`${method}: ${grpc.status[err.code] ?? err.code}: ${JSON.stringify(err.details ?? '')}`));
      else resolve(response);
    });
  });
}

/**
 * The final state of a request: WatchSignRequest until a terminal state. The coordinator ends a
 * watch stream after its stream_lifetime_s (60 s by default) with the state already sent, and a
 * restarting coordinator is briefly UNAVAILABLE: watch again (after 200 ms) until `timeoutMs`.
 */
function waitTerminal(client, requestId, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  const RESUME = new Set([grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.RESOURCE_EXHAUSTED]);
  return new Promise((resolve, reject) => {
    let last = null;
    let settled = false;
    const again = (why) => {
      if (Date.now() + 200 >= deadline) {
        settled = true;
        reject(new ExampleError(`WatchSignRequest: request ${requestId} still ${last ? last.state : 'unknown'} after ${timeoutMs / 1000} s (${why})`));
      } else {
        setTimeout(watch, 200);
      }
    };
    const watch = () => {
      let over = false; // this stream was handled (one of data-terminal, error, end)
      const stream = client.WatchSignRequest({ request_id: requestId }, { deadline });
      stream.on('data', (info) => {
        last = info;
        if (TERMINAL.has(info.state) && !settled) {
          settled = over = true;
          stream.cancel();
          resolve(info);
        }
      });
      stream.on('error', (err) => {
        if (settled || over) return;
        over = true;
        if (last && RESUME.has(err.code)) {
          again(grpc.status[err.code]);
          return;
        }
        settled = true;
        reject(new ExampleError(`WatchSignRequest: ${grpc.status[err.code] ?? err.code}: ${JSON.stringify(err.details ?? '')}`));
      });
      stream.on('end', () => {
        if (settled || over) return;
        over = true;
        again('the stream ended'); // the server's stream lifetime: watch again
      });
    };
    watch();
  });
}

/**
 * Decode the request the coordinator sent (its canonical bytes, strictly) and check it is the
 * one we expect; nothing is signed otherwise.
 */
function checkedRequest(info, expect) {
  let r;
  try {
    r = gov.decodeSigningRequest(Buffer.from(info.request));
  } catch (e) {
    if (e instanceof gov.GovernanceError) fail(`request.${e.message} (the coordinator sent a malformed request)`);
    throw e;
  }
  if (r.request_id !== info.request_id) fail(`request: the coordinator sent request ${JSON.stringify(r.request_id)} for ${JSON.stringify(info.request_id)}`);
  if (!r.digest.equals(expect.digest)) fail(`digest: request is for ${r.digest.toString('hex')}, not the expected ${expect.digest.toString('hex')}; nothing was signed`);
  if (!r.key_id.equals(expect.keyId)) fail(`key_id: request is for key ${r.key_id.toString('hex')}, not ${expect.keyId.toString('hex')}; nothing was signed`);
  if (r.derivation_path.length !== 0) fail('derivation_path: expected the master key (no path); nothing was signed');
  if (r.requester !== expect.requester) fail(`requester: ${JSON.stringify(r.requester)}, expected ${JSON.stringify(expect.requester)}`);
  if (r.description !== expect.description) fail(`description: ${JSON.stringify(r.description)}, not what was requested`);
  return r;
}

function ed25519PublicKey(hex) {
  const raw = Buffer.from(hex, 'hex');
  if (raw.length !== 32) fail('identities.public_key: must be 32 bytes of hex');
  return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** The approver's governance Approval signature over the request's canonical encoding. */
function signApproval(info, name, requestBytes) {
  const ident = info.identities[name];
  const key = crypto.createPrivateKey(fs.readFileSync(ident.signing_key));
  if (key.asymmetricKeyType !== 'ed25519') fail(`identity ${name}: signing key is not Ed25519`);
  const message = gov.approvalMessage(requestBytes, name, 'approve');
  const signature = crypto.sign(null, message, key);
  if (!crypto.verify(null, message, ed25519PublicKey(ident.public_key), signature)) {
    fail(`identity ${name}: signing key does not match its public key in cluster.json`);
  }
  return signature;
}

function secp256k1PublicKey(compressed) {
  if (compressed.length !== 33) fail('public_key: must be a 33-byte compressed point');
  const point = crypto.ECDH.convertKey(compressed, 'secp256k1', undefined, undefined, 'uncompressed');
  const jwk = {
    kty: 'EC', crv: 'secp256k1',
    x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33, 65).toString('base64url'),
  };
  return crypto.createPublicKey({ key: jwk, format: 'jwk' });
}

/** Verify the signature over SHA-256(message) in both its encodings (r||s and DER). */
function verifyEcdsa(publicKey, message, sig) {
  const r = Buffer.from(sig.r);
  const s = Buffer.from(sig.s);
  if (r.length !== 32 || s.length !== 32) fail('signature: r and s must be 32 bytes each');
  const key = secp256k1PublicKey(publicKey);
  const p1363 = crypto.verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, Buffer.concat([r, s]));
  const der = crypto.verify('sha256', message, { key, dsaEncoding: 'der' }, Buffer.from(sig.der));
  if (!p1363) fail('signature: (r, s) does not verify against the key');
  if (!der) fail('signature: the DER encoding does not verify against the key');
  return { r, s, lowS: BigInt('0x' + s.toString('hex')) <= SECP256K1_N / 2n };
}

async function main() {
  const { values } = parseArgs({
    options: {
      cluster: { type: 'string' },
      'key-id': { type: 'string' },
      message: { type: 'string' },
      'proto-dir': { type: 'string', default: path.join(__dirname, '..', '..', 'proto') },
      requester: { type: 'string', default: 'requester1' },
      approvers: { type: 'string', default: 'approver1,approver2' },
      'timeout-s': { type: 'string', default: '120' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.cluster) fail('--cluster: the cluster directory (with cluster.json) is required');
  const timeoutMs = Number(values['timeout-s']) * 1000;
  if (!(timeoutMs > 0)) fail('--timeout-s: must be a positive number');
  const info = JSON.parse(fs.readFileSync(path.join(values.cluster, 'cluster.json'), 'utf8'));
  const Coordinator = loadCoordinatorService(values['proto-dir']);
  const message = Buffer.from(values.message ?? `hello from Node.js ${new Date().toISOString()}`, 'utf8');
  const digest = crypto.createHash('sha256').update(message).digest();
  const log = (line) => { if (!values.json) console.log(line); };

  const requester = clientFor(Coordinator, info, values.requester);
  let key;
  if (values['key-id']) {
    if (!/^[0-9a-f]{64}$/.test(values['key-id'])) fail('--key-id: must be 64 lowercase hex digits');
    key = await unary(requester, 'GetKey', { key_id: Buffer.from(values['key-id'], 'hex') }, timeoutMs);
  } else {
    const keys = (await unary(requester, 'ListKeys', {}, timeoutMs)).keys.filter((k) => k.status === 'KEY_STATUS_ACTIVE');
    if (keys.length === 0) fail('keys: the cluster has no active key (create one: mpc key create)');
    key = keys[0];
  }
  const keyId = Buffer.from(key.key_id);
  log(`key ${keyId.toString('hex')} (${JSON.stringify(key.label)}), public key ${Buffer.from(key.public_key).toString('hex')}`);

  const description = 'Node.js example: sign SHA-256 of a message';
  const submitted = await unary(requester, 'SubmitSignRequest', { key_id: keyId, digest, description }, timeoutMs);
  const expect = { digest, keyId, requester: values.requester, description };
  checkedRequest(submitted, expect);
  log(`${values.requester}: submitted request ${submitted.request_id} for digest ${digest.toString('hex')}`);

  for (const name of values.approvers.split(',')) {
    const approver = clientFor(Coordinator, info, name);
    try {
      const current = await unary(approver, 'GetSignRequest', { request_id: submitted.request_id }, timeoutMs);
      if (current.state !== 'SIGN_REQUEST_STATE_PENDING_APPROVAL') break;
      const request = checkedRequest(current, expect);
      const signature = signApproval(info, name, gov.encodeSigningRequest(request));
      const after = await unary(approver, 'DecideSignRequest', {
        request_id: submitted.request_id, approver: name, decision: 'DECISION_APPROVE', signature,
      }, timeoutMs);
      log(`${name}: approved (request now ${after.state})`);
    } finally {
      approver.close();
    }
  }

  const done = await waitTerminal(requester, submitted.request_id, timeoutMs);
  requester.close();
  if (done.state !== 'SIGN_REQUEST_STATE_DONE') {
    fail(`request ${submitted.request_id} ended ${done.state}: ${JSON.stringify(done.error_message)}`);
  }
  const sig = done.signature;
  const publicKey = Buffer.from(key.public_key);
  if (!Buffer.from(sig.public_key).equals(publicKey)) fail('signature.public_key: not the key we asked to sign with');
  const { r, s, lowS } = verifyEcdsa(publicKey, message, sig);
  const result = {
    request_id: done.request_id,
    key_id: keyId.toString('hex'),
    public_key: publicKey.toString('hex'),
    message_hex: message.toString('hex'),
    digest: digest.toString('hex'),
    r: r.toString('hex'),
    s: s.toString('hex'),
    recovery_id: sig.recovery_id,
    der: Buffer.from(sig.der).toString('hex'),
    low_s: lowS,
    signers: done.signers,
    verified: true,
  };
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(`signature verified (Node.js crypto, secp256k1) by nodes ${done.signers.join(', ')}`);
    console.log(`  r           ${result.r}`);
    console.log(`  s           ${result.s}${lowS ? ' (low-s)' : ''}`);
    console.log(`  recovery id ${result.recovery_id}`);
  }
}

main().catch((e) => {
  console.error(`error: ${e instanceof ExampleError ? e.message : e.stack}`);
  process.exit(1);
});
