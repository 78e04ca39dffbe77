-- Initial schema. The SQLite and PostgreSQL migrations are the same text on purpose: ids,
-- emails and JSON documents are TEXT, times (unix microseconds), revisions and sequences are
-- BIGINT.

-- Customer companies.
CREATE TABLE companies (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    create_time BIGINT NOT NULL
);

-- The sequence of the last audit event of each company. Every write transaction of a company
-- updates this row first: it allocates the gap-free event sequence and serializes the
-- company's writers (on SQLite the first write takes the database's write lock at once).
CREATE TABLE company_seq (
    company TEXT PRIMARY KEY REFERENCES companies (id),
    seq BIGINT NOT NULL
);

-- Infrastructures; `kind` is the snake_case name of `InfraKind`. ODC ones carry the identity
-- organization and the token the sync uses to read it.
CREATE TABLE infrastructures (
    id TEXT PRIMARY KEY,
    company TEXT NOT NULL REFERENCES companies (id),
    display_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    identity_org TEXT NULL,
    identity_token TEXT NULL,
    create_time BIGINT NOT NULL
);

CREATE INDEX infrastructures_company ON infrastructures (company, create_time);
CREATE INDEX infrastructures_kind ON infrastructures (kind);

-- Team members: `data` is the JSON of `TeamMember`; `email` and `rev` repeat its fields for
-- the unique key and the revision checks.
CREATE TABLE members (
    company TEXT NOT NULL REFERENCES companies (id),
    id TEXT NOT NULL,
    email TEXT NOT NULL,
    data TEXT NOT NULL,
    rev BIGINT NOT NULL,
    PRIMARY KEY (company, id),
    UNIQUE (company, email)
);

-- Community accounts, by normalized email.
CREATE TABLE community_accounts (
    email TEXT PRIMARY KEY,
    create_time BIGINT NOT NULL
);

-- Support cases: `data` is the JSON of `SupportCase`.
CREATE TABLE support_cases (
    id TEXT PRIMARY KEY,
    company TEXT NOT NULL REFERENCES companies (id),
    data TEXT NOT NULL,
    create_time BIGINT NOT NULL
);

CREATE INDEX support_cases_company ON support_cases (company, create_time);

-- The approved support contacts of each company.
CREATE TABLE approved_contacts (
    company TEXT NOT NULL REFERENCES companies (id),
    email TEXT NOT NULL,
    PRIMARY KEY (company, email)
);

-- The sync state of each ODC infrastructure: the identity sequence its records reflect and the
-- time of its last full snapshot.
CREATE TABLE sync_state (
    infrastructure TEXT PRIMARY KEY REFERENCES infrastructures (id),
    cursor BIGINT NOT NULL,
    snapshot_time BIGINT NULL
);

-- The gap-free audit events of each company, from seq 1.
CREATE TABLE events (
    company TEXT NOT NULL REFERENCES companies (id),
    seq BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (company, seq)
);
