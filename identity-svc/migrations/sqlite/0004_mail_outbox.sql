-- The transactional outbox of invitation mail: a row is written in the same transaction as the
-- invitation it announces (InviteUser, ResendInvitation, CreateOrganization) and delivered by
-- the delivery worker of any replica (core/outbox.rs), with retries and a bounded exponential
-- back-off. A replica claims a row by setting lease_owner/lease_until; a lease that expired
-- (its replica died mid-delivery) is claimed again. `body` carries the invitation secret: it is
-- cleared once the message is sent or given up.
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    invitation_id TEXT NOT NULL,
    -- The Message-ID header, the same on every attempt: a relay or a mailbox that sees it twice
    -- (a replica died after the relay accepted it) can tell.
    message_id TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NULL,
    -- 'pending', 'sent' or 'expired' (the invitation expired before a delivery succeeded).
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    create_time BIGINT NOT NULL,
    -- When the invitation stops working: no attempt after it.
    expire_time BIGINT NOT NULL,
    next_attempt_time BIGINT NOT NULL,
    lease_owner TEXT NULL,
    lease_until BIGINT NULL,
    sent_time BIGINT NULL
);

-- The worker's claim: the pending rows that are due, oldest first.
CREATE INDEX mail_outbox_pending ON mail_outbox (next_attempt_time) WHERE state = 'pending';
-- The delivery of a user's invitation (GetUser), and cancelling it on a resend.
CREATE INDEX mail_outbox_user ON mail_outbox (org_id, user_id);
