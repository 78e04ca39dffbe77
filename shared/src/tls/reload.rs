//! The server's TLS configuration behind an atomic swap, and its reload.
//!
//! Every handshake takes the configuration current at that moment ([`ServerTls::acceptor`]);
//! a reload builds a whole new [`ServerConfig`] (certificate chain, key and client CA
//! together) and swaps it in with [`ArcSwap`]. Connections already open keep the session they
//! negotiated: a reload never touches them, so open streams (`WatchChanges`) go on.
//!
//! **When.** On SIGHUP (always re-read), and when the files' contents change, checked every
//! [`TlsSettings::reload_interval_ms`] (2 s by default). Polling was chosen over file-system
//! notifications (`notify`): certificate managers replace files in ways notifications report
//! poorly or not at all (Kubernetes swaps a `..data` symlink, cert-manager and certbot rename
//! into place, network file systems send no events), while reading three small files every
//! couple of seconds costs nothing measurable, needs no extra dependency, and compares
//! contents, so a copy that keeps the modification time is still seen.
//!
//! **A bad file** (unreadable, not PEM, a key of another certificate, half-written) is logged
//! as a warning and the configuration in use stays; once the files change again they are
//! tried again, so a certificate and key written one after the other are picked up together.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{ServerFiles, ServerPaths, TlsError, TlsSettings, Transport};

/// The TLS configuration of a running server (see the [module](self) docs).
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    paths: ServerPaths,
    transport: Transport,
    reload_interval: Option<Duration>,
    current: ArcSwap<ServerConfig>,
    /// The contents last tried (loaded or refused), to notice the next change.
    seen: Mutex<ServerFiles>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("paths", &self.inner.paths)
            .field("transport", &self.inner.transport)
            .finish_non_exhaustive()
    }
}

/// Why a reload was attempted (logged).
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Sighup,
    FilesChanged,
}

impl ServerTls {
    /// The configuration of `settings`: `None` for plain text; an error when the settings are
    /// incomplete or the files cannot be read or used (the server must not start then).
    pub fn load(settings: &TlsSettings) -> Result<Option<Self>, TlsError> {
        let Some(paths) = ServerPaths::from_settings(settings)? else {
            return Ok(None);
        };
        let files = paths.read()?;
        let config = paths.server_config(&files)?;
        Ok(Some(Self {
            inner: Arc::new(Inner {
                transport: settings.transport()?,
                reload_interval: settings.reload_interval(),
                paths,
                current: ArcSwap::from_pointee(config),
                seen: Mutex::new(files),
            }),
        }))
    }

    /// TLS, or mTLS when a client CA is configured.
    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    /// An acceptor with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.inner.current.load_full())
    }

    /// Re-reads the files now and swaps the new configuration in; on error the configuration
    /// in use stays. What SIGHUP does.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.inner.reload(false)
    }

    /// Reloads on SIGHUP and, if the interval is set, when the files change, until the
    /// returned guard is dropped. The SIGHUP handler is in place when this returns.
    pub fn watch(&self) -> WatchGuard {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = signal(SignalKind::hangup())
            .inspect_err(|error| {
                tracing::error!(%error, "cannot listen for SIGHUP: TLS files reload only when they change");
            })
            .ok();
        let inner = Arc::clone(&self.inner);
        WatchGuard(tokio::spawn(inner.watch(hangup)))
    }
}

impl Clone for ServerTls {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Stops [`ServerTls::watch`] when dropped.
#[derive(Debug)]
pub struct WatchGuard(JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Inner {
    async fn watch(self: Arc<Self>, mut hangup: Option<tokio::signal::unix::Signal>) {
        let mut tick = self.reload_interval.map(|every| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        loop {
            let trigger = tokio::select! {
                Some(()) = async { hangup.as_mut()?.recv().await } => Trigger::Sighup,
                Some(_) = async { Some(tick.as_mut()?.tick().await) } => Trigger::FilesChanged,
                else => return,
            };
            // Reading three small files: quick enough for the runtime's thread.
            if let Err(error) = self.reload(matches!(trigger, Trigger::FilesChanged)) {
                tracing::warn!(
                    %error, ?trigger,
                    "TLS files refused; the certificate in use stays"
                );
            }
        }
    }

    /// Reads the files; if `changed_only` and they are what was last tried, does nothing.
    /// Otherwise builds and swaps in the new configuration.
    fn reload(&self, changed_only: bool) -> Result<(), TlsError> {
        let files = self.paths.read()?;
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if changed_only && *seen == files {
                return Ok(());
            }
            *seen = files.clone();
        }
        let config = self.paths.server_config(&files)?;
        self.current.store(Arc::new(config));
        tracing::info!(
            cert_file = %self.paths.cert.display(),
            transport = %self.transport,
            "TLS certificate reloaded; new connections use it"
        );
        Ok(())
    }
}
