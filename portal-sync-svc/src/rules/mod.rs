//! The portal's rules, one concern per file: each takes a typed command (domain types) and the
//! caller's admission ([`Entry`](crate::auth::proof::Entry), when the request decides what is
//! needed) or proof ([`Authorized`]), decides — the needs, the preconditions, the new state and
//! its audit event — and writes through the store.
//!
//! Only this module can write: `Rules::write` is private to it and takes the proof, which only
//! [`crate::auth::proof`] makes. Anyone may read ([`Rules::read`]). Must not import `grpc` or
//! `tonic`.
//!
//! ```compile_fail,E0624
//! // The gRPC layer cannot reach the store's writes: there is no public write access...
//! fn bypass(rules: &portal_sync_svc::rules::Rules, proof: &portal_sync_svc::auth::proof::Authorized) {
//!     let _ = rules.write(proof);
//! }
//! ```
//!
//! ```compile_fail,E0451
//! // ...and no one outside `auth` can make the proof.
//! let proof = portal_sync_svc::auth::proof::Authorized {
//!     actor: "operator".into(),
//!     person: None,
//!     company: None,
//! };
//! ```

use std::sync::Arc;

use crate::auth::proof::Authorized;
use crate::domain::model::Micros;
use crate::store::PortalStore;
use crate::sync::Syncer;

pub mod add_member;
pub mod community_accounts;
pub mod companies;
pub mod company_admins;
pub mod members;
pub mod odc_sync;
pub mod reads;
pub mod security_contact;
pub mod support;
mod writes;

use reads::Reads;
use writes::Writes;

/// The store and the syncer, behind the rules: reads for anyone, writes only for the rules and
/// only with an [`Authorized`].
#[derive(Debug, Clone)]
pub struct Rules {
    store: Arc<dyn PortalStore>,
    syncer: Arc<Syncer>,
}

impl Rules {
    /// The rules over a store and the running syncer.
    pub fn new(store: Arc<dyn PortalStore>, syncer: Arc<Syncer>) -> Self {
        Self { store, syncer }
    }

    /// Read access.
    pub fn read(&self) -> Reads<'_> {
        Reads::new(self.store.as_ref(), self.syncer.as_ref())
    }

    /// Write access, for a caller who passed the checks of the RPC.
    fn write(&self, _proof: &Authorized) -> Writes<'_> {
        Writes {
            store: self.store.as_ref(),
            syncer: self.syncer.as_ref(),
        }
    }
}

/// Now, in microseconds since the Unix epoch.
fn now() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
