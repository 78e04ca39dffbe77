//! The service layer: authentication and authorization, the write path, the mutations and the
//! queries, in domain types. The gRPC layer only decodes, calls this, and encodes.

pub mod auth;
pub mod clock;
pub mod core;
pub mod error;
pub mod mailer;
