-- Sync leases: which portal-sync replica runs each ODC infrastructure's sync. The SQLite and
-- PostgreSQL migrations are the same text, like 0001.
--
-- A replica runs an infrastructure's sync only while it holds the row's lease: `holder` is
-- its replica id, `expire_time` (unix microseconds, the holder's clock) when the lease lapses
-- unless renewed. `token` is the fencing token: incremented on every acquisition, so a
-- replica that lost the lease (it stalled past `expire_time` and another took over) cannot
-- write any more: every sync write checks, in its transaction, that the row still holds its
-- holder and token and has not expired. A graceful release sets `expire_time` to 0.
-- `report` is the holder's view of the sync (JSON, written at each renewal), so that every
-- replica can answer GetSyncStatus for an infrastructure another replica syncs.
CREATE TABLE sync_leases (
    infrastructure TEXT PRIMARY KEY REFERENCES infrastructures (id),
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    expire_time BIGINT NOT NULL,
    report TEXT NULL
);
