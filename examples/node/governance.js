'use strict';
// The canonical governance encoding (governance/encoding.py) and the two objects an approver
// needs: the SigningRequest it decodes and checks, and the Approval message it signs
// (governance/approval.py). Byte for byte what the Python client produces; check_encoding.js
// compares the two.
//
// An encoding is a sequence of fields, each a big-endian u64 length followed by that many
// bytes; the first field is the ASCII domain tag "MPCNET/v1/gov/<name>". A list is a
// big-endian u32 count followed by its items. Inside a field: raw bytes; text as strict UTF-8;
// uint as 8-byte big-endian unsigned. Decoding is strict: right tag, every length within the
// input, fixed sizes for numbers, no trailing bytes, and re-encoding must give the same bytes.

const DOMAIN_PREFIX = 'MPCNET/v1/gov/';
const SIGNING_REQUEST_TAG = DOMAIN_PREFIX + 'signing-request';
const APPROVAL_TAG = DOMAIN_PREFIX + 'approval';
const DECISION_CODE = Object.freeze({ approve: 1n, reject: 2n });

const MAX_ENCODED = 1 << 20;
const U32_MAX = 2n ** 32n - 1n;
const U64_MAX = 2n ** 64n - 1n;
const MAX_TIME_MS = 2n ** 63n - 1n;
const MAX_VERSION = 2n ** 63n - 1n;
const MAX_PATH_DEPTH = 255;
const MAX_DESCRIPTION = 1024; // characters (code points)
const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CONTROL_RE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u; // governance.text.FORBIDDEN_CATEGORIES

/** A malformed or unacceptable governance object; `field` names what is wrong. */
class GovernanceError extends Error {
  constructor(field, reason) {
    super(`${field}: ${reason}`);
    this.field = field;
    this.reason = reason;
  }
}

function u64(value) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  return b;
}

function u32(value) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(Number(value));
  return b;
}

function checkUint(value, field, lo, hi) {
  if (typeof value !== 'bigint' || value < lo || value > hi) {
    throw new GovernanceError(field, `must be a BigInt in [${lo}, ${hi}]`);
  }
  return value;
}

function checkBytes(value, field, length) {
  if (!Buffer.isBuffer(value) || value.length !== length) {
    throw new GovernanceError(field, `must be ${length} bytes`);
  }
  return value;
}

/** Builds one encoding: the domain tag, then fields in the caller's fixed order. */
class Encoder {
  constructor(tag) {
    if (!tag.startsWith(DOMAIN_PREFIX)) throw new Error(`domain tag must start with ${DOMAIN_PREFIX}`);
    this.parts = [];
    this.field(Buffer.from(tag, 'ascii'));
  }

  field(data) {
    this.parts.push(u64(BigInt(data.length)), data);
    return this;
  }

  raw(value) {
    if (!Buffer.isBuffer(value)) throw new GovernanceError('encoding', 'raw field must be a Buffer');
    return this.field(value);
  }

  text(value) {
    if (typeof value !== 'string' || !value.isWellFormed()) {
      throw new GovernanceError('encoding', 'text field must be a well-formed string');
    }
    return this.field(Buffer.from(value, 'utf8'));
  }

  uint(value) {
    return this.field(u64(checkUint(value, 'encoding', 0n, U64_MAX)));
  }

  count(n) {
    this.parts.push(u32(checkUint(BigInt(n), 'encoding', 0n, U32_MAX)));
    return this;
  }

  finish() {
    return Buffer.concat(this.parts);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Reads one encoding strictly; every error names the field being read. */
class Decoder {
  constructor(data, tag) {
    if (!Buffer.isBuffer(data)) throw new GovernanceError('encoding', 'must be a Buffer');
    if (data.length > MAX_ENCODED) throw new GovernanceError('encoding', `longer than ${MAX_ENCODED} bytes`);
    this.data = data;
    this.pos = 0;
    const got = this.field('tag');
    if (!got.equals(Buffer.from(tag, 'ascii'))) {
      throw new GovernanceError('tag', `expected ${JSON.stringify(tag)}, got ${JSON.stringify(got.subarray(0, 80).toString('latin1'))}`);
    }
  }

  take(n, field) {
    if (BigInt(n) > BigInt(this.data.length - this.pos)) throw new GovernanceError(field, 'truncated encoding');
    const out = this.data.subarray(this.pos, this.pos + Number(n));
    this.pos += Number(n);
    return out;
  }

  field(field) {
    return this.take(this.take(8, field).readBigUInt64BE(), field);
  }

  raw(field, length) {
    const value = this.field(field);
    if (length !== undefined && value.length !== length) {
      throw new GovernanceError(field, `must be ${length} bytes, got ${value.length}`);
    }
    return Buffer.from(value);
  }

  text(field) {
    try {
      return utf8.decode(this.field(field));
    } catch (e) {
      if (e instanceof GovernanceError) throw e;
      throw new GovernanceError(field, 'not valid UTF-8');
    }
  }

  uint(field) {
    return this.raw(field, 8).readBigUInt64BE();
  }

  count(field, maxCount) {
    const n = this.take(4, field).readUInt32BE();
    if (n > maxCount) throw new GovernanceError(field, `more than ${maxCount} items`);
    return n;
  }

  finish() {
    if (this.pos !== this.data.length) {
      throw new GovernanceError('encoding', `${this.data.length - this.pos} trailing bytes`);
    }
  }
}

/** Checks a SigningRequest object's fields as governance.approval.SigningRequest does. */
function checkSigningRequest(r) {
  if (typeof r.request_id !== 'string' || !REQUEST_ID_RE.test(r.request_id)) {
    throw new GovernanceError('request_id', 'must be 1-64 characters of [A-Za-z0-9._-]');
  }
  checkBytes(r.key_id, 'key_id', 32);
  checkBytes(r.digest, 'digest', 32);
  if (!Array.isArray(r.derivation_path) || r.derivation_path.length > MAX_PATH_DEPTH) {
    throw new GovernanceError('derivation_path', `must be an array of at most ${MAX_PATH_DEPTH} indices`);
  }
  r.derivation_path.forEach((index, i) => checkUint(index, `derivation_path[${i}]`, 0n, U32_MAX));
  if (typeof r.requester !== 'string' || !NAME_RE.test(r.requester)) {
    throw new GovernanceError('requester', 'must be a name of [A-Za-z0-9._-], 1-64 characters');
  }
  if (typeof r.description !== 'string' || [...r.description].length > MAX_DESCRIPTION) {
    throw new GovernanceError('description', `must be a string of at most ${MAX_DESCRIPTION} characters`);
  }
  if (CONTROL_RE.test(r.description)) {
    throw new GovernanceError('description', 'contains a control/format character');
  }
  checkUint(r.created_at_ms, 'created_at_ms', 0n, MAX_TIME_MS - 1n);
  checkUint(r.expires_at_ms, 'expires_at_ms', r.created_at_ms + 1n, MAX_TIME_MS);
  checkUint(r.policy_version, 'policy_version', 1n, MAX_VERSION);
  checkBytes(r.policy_digest, 'policy_digest', 32);
  return r;
}

/**
 * The canonical SigningRequest encoding (what every approval signs). `r` has the fields of
 * governance.approval.SigningRequest: request_id, requester, description (strings); key_id,
 * digest, policy_digest (32-byte Buffers); derivation_path (BigInt[]); created_at_ms,
 * expires_at_ms (BigInt, Unix ms), policy_version (BigInt).
 */
function encodeSigningRequest(r) {
  checkSigningRequest(r);
  const enc = new Encoder(SIGNING_REQUEST_TAG).text(r.request_id).raw(r.key_id).raw(r.digest);
  enc.count(r.derivation_path.length);
  for (const index of r.derivation_path) enc.uint(index);
  enc.text(r.requester).text(r.description);
  enc.uint(r.created_at_ms).uint(r.expires_at_ms).uint(r.policy_version).raw(r.policy_digest);
  return enc.finish();
}

/** Strictly decodes a canonical SigningRequest encoding (GovernanceError naming the field). */
function decodeSigningRequest(data) {
  const dec = new Decoder(data, SIGNING_REQUEST_TAG);
  const r = {};
  r.request_id = dec.text('request_id');
  r.key_id = dec.raw('key_id', 32);
  r.digest = dec.raw('digest', 32);
  const depth = dec.count('derivation_path', MAX_PATH_DEPTH);
  r.derivation_path = [];
  for (let i = 0; i < depth; i++) r.derivation_path.push(dec.uint(`derivation_path[${i}]`));
  r.requester = dec.text('requester');
  r.description = dec.text('description');
  r.created_at_ms = dec.uint('created_at_ms');
  r.expires_at_ms = dec.uint('expires_at_ms');
  r.policy_version = dec.uint('policy_version');
  r.policy_digest = dec.raw('policy_digest', 32);
  dec.finish();
  if (!encodeSigningRequest(r).equals(data)) throw new GovernanceError('encoding', 'not the canonical encoding');
  return r;
}

/**
 * What an approver signs with Ed25519: tag "MPCNET/v1/gov/approval", text(approver),
 * uint(decision code: approve 1, reject 2), raw(the request's canonical encoding).
 */
function approvalMessage(requestEncoding, approver, decision) {
  if (typeof approver !== 'string' || !NAME_RE.test(approver)) {
    throw new GovernanceError('approver', 'must be a name of [A-Za-z0-9._-], 1-64 characters');
  }
  if (!Object.hasOwn(DECISION_CODE, decision)) throw new GovernanceError('decision', "must be 'approve' or 'reject'");
  return new Encoder(APPROVAL_TAG).text(approver).uint(DECISION_CODE[decision]).raw(requestEncoding).finish();
}

module.exports = {
  APPROVAL_TAG,
  SIGNING_REQUEST_TAG,
  Decoder,
  Encoder,
  GovernanceError,
  approvalMessage,
  decodeSigningRequest,
  encodeSigningRequest,
};
