-- Replicas poll for tokens revoked through other replicas (Store::revoked_since): only the
-- revoked rows are indexed.
CREATE INDEX tokens_revoke_time ON tokens (revoke_time) WHERE revoke_time IS NOT NULL;
