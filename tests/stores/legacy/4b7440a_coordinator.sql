-- the coordinator store as commit 4b7440a made it; regenerate with make_4b7440a.py
BEGIN TRANSACTION;
CREATE TABLE approvals (
    request_id TEXT NOT NULL,
    approver   TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    signature  BLOB NOT NULL,
    decided_ms INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
);
INSERT INTO "approvals" VALUES('req-1','bob','approve',X'73737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373',1700000001000,0);
CREATE TABLE keys (
    key_id      BLOB PRIMARY KEY CHECK (length(key_id) = 32),
    label       TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    chain_code  BLOB NOT NULL,
    threshold   INTEGER NOT NULL,
    parties     INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'active', 'discarded')),
    created_ms  INTEGER NOT NULL,
    request_id  TEXT NOT NULL
);
INSERT INTO "keys" VALUES(X'0707070707070707070707070707070707070707070707070707070707070707','treasury',X'020202020202020202020202020202020202020202020202020202020202020202',X'0000000000000000000000000000000000000000000000000000000000000000',2,3,'active',1700000000000,'keygen-1');
CREATE TABLE policy_changes (
    scope         BLOB NOT NULL,
    version       INTEGER NOT NULL,
    signed_change BLOB NOT NULL,
    applied_ms    INTEGER NOT NULL,
    PRIMARY KEY (scope, version)
);
INSERT INTO "policy_changes" VALUES(X'64656661756C74',1,X'6368616E67652D31',1795989406728);
CREATE TABLE proposals (
    proposal_id   TEXT PRIMARY KEY,
    scope         BLOB NOT NULL,
    signed_change BLOB NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'superseded')),
    proposer      TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
INSERT INTO "proposals" VALUES('prop-1',X'64656661756C74',X'6368616E67652D32','pending','carol',1700000002000,1700000002000);
CREATE TABLE requests (
    request_id    TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('keygen', 'sign')),
    state         TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    key_id        BLOB,
    digest        BLOB,
    path          TEXT NOT NULL DEFAULT '',
    label         TEXT NOT NULL DEFAULT '',
    signature     BLOB,
    signers       TEXT NOT NULL DEFAULT '',
    error_code    INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
INSERT INTO "requests" VALUES('keygen-1','keygen','succeeded',NULL,NULL,'','treasury',NULL,'1,2,3',0,'',0,1795989406727,1795989406727);
CREATE TABLE sign_requests (
    request_id    TEXT PRIMARY KEY,
    key_id        BLOB NOT NULL,
    digest        BLOB NOT NULL,
    requester     TEXT NOT NULL,
    request       BLOB NOT NULL,
    scope         BLOB NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending_approval', 'signing', 'done', 'rejected', 'expired', 'failed')),
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    signature     BLOB,
    signers       TEXT NOT NULL DEFAULT '',
    error_code    INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    updated_ms    INTEGER NOT NULL
);
INSERT INTO "sign_requests" VALUES('req-1',X'0707070707070707070707070707070707070707070707070707070707070707',X'0909090909090909090909090909090909090909090909090909090909090909','alice',X'63616E6F6E6963616C2072657175657374',X'64656661756C74','pending_approval',1700000000000,1700000600000,NULL,'',0,'',0,1700000000000);
CREATE INDEX sign_requests_by_key ON sign_requests (key_id, created_ms);
CREATE INDEX sign_requests_by_state ON sign_requests (state, expires_ms);
COMMIT;
