//! Write access to the store and the syncer: only the rules get one ([`super::Rules::write`]),
//! and only against the proof of authorization.

use crate::store::PortalStore;
use crate::sync::Syncer;

/// Write access, obtained with an [`Authorized`](crate::auth::proof::Authorized).
#[derive(Debug, Clone, Copy)]
pub(super) struct Writes<'a> {
    pub(super) store: &'a dyn PortalStore,
    pub(super) syncer: &'a Syncer,
}
