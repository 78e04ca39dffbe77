//! The contract of the store traits ([`PortalStore`](super::PortalStore)), one suite run on
//! every backend, one file per concern.
//!
//! Each case is an `async fn(&dyn PortalStore)`; each concern's file ends with a `sqlite` and a
//! `postgres` module holding one `#[tokio::test]` per case and backend (`<concern>::sqlite::<case>`
//! on a fresh database file, `<concern>::postgres::<case>` on a fresh PostgreSQL database; see
//! [`harness`] for the PostgreSQL switch `TEST_PG_URL` / `TEST_REQUIRE_PG`).

mod batches;
mod cases;
mod community;
mod companies;
mod cursors;
mod events;
mod fixtures;
mod harness;
mod leases;
mod members;
mod reopen;
mod sealing;
