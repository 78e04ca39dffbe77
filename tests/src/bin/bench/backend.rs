//! Where a benchmark's stores live: a temporary directory and, with `--pg`, a fresh PostgreSQL
//! database dropped at the end.

use std::path::PathBuf;
use std::sync::Arc;

use identity_svc::store::Store;
use sqlx::{AssertSqlSafe, Connection as _};
use uuid::Uuid;

/// Where the identity store lives: a temporary directory (always: data dir, mailbox) and, with
/// `--pg`, a fresh PostgreSQL database dropped at the end.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pg: Option<PgDatabase>,
}

#[derive(Debug)]
pub(crate) struct PgDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, params) = url
        .split_once('?')
        .map_or((url, None), |(b, p)| (b, Some(p)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = base[authority..]
        .find('/')
        .map_or(base, |s| &base[..authority + s]);
    match params {
        Some(p) => format!("{base}/{db}?{p}"),
        None => format!("{base}/{db}"),
    }
}

impl Backend {
    pub(crate) async fn new(pg: Option<&str>, prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bench-").tempdir()?;
        let pg = match pg {
            None => None,
            Some(admin_url) => {
                let name = format!("bench_{prefix}_{}", Uuid::new_v4().simple());
                let mut c = sqlx::PgConnection::connect(admin_url).await?;
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await?;
                Some(PgDatabase {
                    admin_url: admin_url.to_owned(),
                    url: with_database(admin_url, &name),
                    name,
                })
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
            Some(pg) => Arc::new(identity_svc::store::postgres::PgStore::connect(&pg.url).await?),
            None => {
                Arc::new(identity_svc::store::sqlite::SqliteStore::open(&self.sqlite_path()).await?)
            }
        })
    }
}
