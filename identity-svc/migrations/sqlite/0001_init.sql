-- Initial schema. The SQLite and PostgreSQL migrations are the same text on purpose: ids, keys
-- and JSON documents are TEXT, times (unix microseconds) and counters are BIGINT.

-- One row per organization: the sequence of its last change event. Every commit writes this
-- row first (compare-and-set), which serializes the commits of an organization.
CREATE TABLE org_sequences (
    org_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);

-- The current entities of each organization: `data` is the JSON of `Entity`.
CREATE TABLE entities (
    org_id TEXT NOT NULL REFERENCES org_sequences (org_id),
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (org_id, kind, key)
);

-- The gap-free change events of each organization, from seq 1.
CREATE TABLE events (
    org_id TEXT NOT NULL REFERENCES org_sequences (org_id),
    seq BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT NULL,
    after TEXT NULL,
    affected_users TEXT NOT NULL, -- JSON array of user ids
    request_id TEXT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE INDEX events_target ON events (org_id, target, seq);
CREATE INDEX events_actor ON events (org_id, actor, seq);
CREATE INDEX events_time ON events (org_id, time);

-- Idempotency keys: the target of the first change of the request's commit.
CREATE TABLE request_ids (
    org_id TEXT NOT NULL REFERENCES org_sequences (org_id),
    request_id TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (org_id, request_id)
);

-- Bearer tokens, by the SHA-256 hex of their secret; `principal` is `user:<uuid>` or
-- `service_account:<uuid>`.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    org_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL,
    revoke_time BIGINT NULL
);

CREATE INDEX tokens_principal ON tokens (org_id, principal);

-- Invitation tokens, by the SHA-256 hex of their secret.
CREATE TABLE invitation_tokens (
    hash TEXT PRIMARY KEY,
    invitation_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    expire_time BIGINT NOT NULL
);

CREATE INDEX invitation_tokens_user ON invitation_tokens (org_id, user_id);

-- Password hashes (PHC strings) and login-failure counters.
CREATE TABLE credentials (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    password_hash TEXT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NULL,
    PRIMARY KEY (org_id, user_id)
);
