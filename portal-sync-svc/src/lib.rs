//! portal-sync-svc: Customer Portal team records, derived for ODC infrastructures from the
//! identity service.

pub mod domain;
pub mod store;
pub mod sync;
