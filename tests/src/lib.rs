//! Cross-service tests live in `tests/e2e`: they start identity-svc and portal-sync-svc for
//! real (in-process servers on `127.0.0.1:0`, real gRPC, SQLite or PostgreSQL) and drive them
//! only through their public APIs. This library holds what those tests and the benchmark
//! binary's chaos soak both check (`feed_checks`).

pub mod feed_checks;
