//! Where a benchmark's stores live: a temporary directory and, with `--pg`, a fresh PostgreSQL
//! database dropped at the end (the test kit's [`TestDatabase`]).

use std::path::PathBuf;
use std::sync::Arc;

use identity_svc::store::Store;
use shared::testkit::pg::TestDatabase;

/// Where the identity store lives: a temporary directory (always: data dir, mailbox) and, with
/// `--pg`, a fresh PostgreSQL database dropped at the end.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pg: Option<TestDatabase>,
}

impl Backend {
    pub(crate) async fn new(pg: Option<&str>, prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bench-").tempdir()?;
        let pg = match pg {
            None => None,
            Some(admin_url) => {
                Some(TestDatabase::try_create(admin_url, &format!("bench_{prefix}")).await?)
            }
        };
        Ok(Self { dir, pg })
    }

    pub(crate) fn name(&self) -> &'static str {
        if self.pg.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub(crate) fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join(identity_svc::config::SQLITE_FILE)
    }

    /// Opens the identity store the server will use.
    pub(crate) async fn identity_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match &self.pg {
            Some(pg) => Arc::new(identity_svc::store::postgres::PgStore::connect(pg.url()).await?),
            None => {
                Arc::new(identity_svc::store::sqlite::SqliteStore::open(&self.sqlite_path()).await?)
            }
        })
    }
}
