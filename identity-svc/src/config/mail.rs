//! The `[mail]` settings: how the delivery worker drains the invitation mail outbox (how often it
//! looks, how long a claim lasts, how it backs off after a failed attempt). Where mail goes is
//! `[smtp]` or `mailbox_dir`. Environment: `IDENTITY_MAIL__<FIELD>`, e.g.
//! `IDENTITY_MAIL__RETRY_MAX_MS=60000`.

use serde::{Deserialize, Serialize};

/// See the module documentation; README's configuration section lists the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailSettings {
    /// How often (milliseconds) the worker looks for mail that is due (a message queued
    /// through this replica is attempted at once).
    pub poll_interval_ms: u64,
    /// The wait (milliseconds) after the first failed attempt; each further failure doubles it.
    pub retry_base_ms: u64,
    /// The longest wait (milliseconds) between two attempts.
    pub retry_max_ms: u64,
    /// How long (milliseconds) a replica's claim on a message lasts: if the replica dies
    /// mid-delivery, another one attempts the message once it expires. Longer than an SMTP
    /// attempt takes (at least 60000: each SMTP command times out after 30 s).
    pub lease_ms: u64,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            retry_base_ms: 5000,
            retry_max_ms: 15 * 60 * 1000,
            lease_ms: 120_000,
        }
    }
}
