//! Identity tokens at rest: sealed in the database, opened on read, re-sealed under a new
//! primary key (rotation), refused clearly when their key is gone (both backends).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use shared::sealing::{Keyring, SealingError};
use uuid::Uuid;

use super::fixtures::{T0, event, infra, seed_company};
use super::harness::with_pg_database;
use crate::domain::model::InfraKind;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{PortalStore, StoreError};

const TOKEN: &str = "idt_plain_secret_token";

/// A key ring of the given `(id, fill byte)` keys, the first one primary.
fn keys(spec: &[(&str, u8)]) -> Arc<Keyring> {
    let lines: Vec<String> = spec
        .iter()
        .map(|(id, byte)| format!("{id} {}", STANDARD.encode([*byte; 32])))
        .collect();
    let text = lines.join("\n");
    Arc::new(Keyring::parse(&text).unwrap())
}

/// The body shared by both backends: `open` opens the same database with a key ring, `raw`
/// reads an infrastructure's `identity_token` column as stored, `put_raw` overwrites it.
async fn sealed_and_rotated<S, O, R, P>(open: O, raw: R, put_raw: P)
where
    S: PortalStore,
    O: AsyncFn(Arc<Keyring>) -> S,
    R: AsyncFn(Uuid) -> String,
    P: AsyncFn(Uuid, &str),
{
    let store = open(keys(&[("k1", 1)])).await;
    let seed = seed_company(&store, "Acme").await;
    let odc = infra(seed.company.id, InfraKind::Odc, "ODC", T0 + 1);
    store
        .create_infrastructure(&odc, Some(TOKEN), &event("infra.created"), T0 + 1)
        .await
        .unwrap();
    let stored = raw(odc.id).await;
    assert!(stored.starts_with("sealed:v1:k1:"), "{stored}");
    assert!(!stored.contains(TOKEN));
    assert_eq!(
        store.identity_token(odc.id).await.unwrap().as_deref(),
        Some(TOKEN)
    );
    assert_eq!(store.reseal_identity_tokens().await.unwrap(), 0);
    drop(store);

    // Rotation: k2 first, k1 kept; start-up re-seals once.
    let rotated = open(keys(&[("k2", 2), ("k1", 1)])).await;
    assert_eq!(rotated.odc_infrastructures().await.unwrap()[0].1, TOKEN);
    assert_eq!(rotated.reseal_identity_tokens().await.unwrap(), 1);
    assert!(raw(odc.id).await.starts_with("sealed:v1:k2:"));
    assert_eq!(rotated.reseal_identity_tokens().await.unwrap(), 0);
    drop(rotated);

    // k1 can go now; a store holding only k1 cannot open what k2 sealed, and says why.
    let new_only = open(keys(&[("k2", 2)])).await;
    assert_eq!(
        new_only.identity_token(odc.id).await.unwrap().as_deref(),
        Some(TOKEN)
    );
    drop(new_only);
    let old_only = open(keys(&[("k1", 1)])).await;
    let err = old_only.identity_token(odc.id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Sealing(SealingError::UnknownKey(id)) if id == "k2"),
        "{err:?}"
    );
    assert!(!err.to_string().contains(TOKEN));

    // A sealed value moved to another row does not open there.
    let other = infra(seed.company.id, InfraKind::Odc, "ODC 2", T0 + 2);
    old_only
        .create_infrastructure(&other, Some("idt_other"), &event("infra.created"), T0 + 2)
        .await
        .unwrap();
    put_raw(other.id, &raw(odc.id).await).await;
    let moved = open(keys(&[("k2", 2)])).await;
    assert!(matches!(
        moved.identity_token(other.id).await,
        Err(StoreError::Sealing(SealingError::Damaged))
    ));

    // A token stored before sealing existed is read, then sealed at start-up.
    put_raw(other.id, "idt_legacy_plain").await;
    assert_eq!(
        moved.identity_token(other.id).await.unwrap().as_deref(),
        Some("idt_legacy_plain")
    );
    assert_eq!(moved.reseal_identity_tokens().await.unwrap(), 1);
    let stored = raw(other.id).await;
    assert!(stored.starts_with("sealed:v1:k2:") && !stored.contains("idt_legacy_plain"));
    assert_eq!(
        moved.identity_token(other.id).await.unwrap().as_deref(),
        Some("idt_legacy_plain")
    );
}

const SELECT: &str = "SELECT identity_token FROM infrastructures WHERE id = $1";
const UPDATE: &str = "UPDATE infrastructures SET identity_token = $1 WHERE id = $2";

#[tokio::test]
async fn sqlite_identity_tokens_are_sealed_at_rest_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    let pool = || async {
        let url = format!("sqlite:{}", path.display());
        sqlx::SqlitePool::connect(&url).await.unwrap()
    };
    sealed_and_rotated(
        async |keyring| SqliteStore::open(&path, keyring).await.unwrap(),
        async |id: Uuid| {
            let (token,): (String,) = sqlx::query_as(SELECT)
                .bind(id.to_string())
                .fetch_one(&pool().await)
                .await
                .unwrap();
            token
        },
        async |id: Uuid, value: &str| {
            sqlx::query(UPDATE)
                .bind(value)
                .bind(id.to_string())
                .execute(&pool().await)
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_identity_tokens_are_sealed_at_rest_and_rotated() {
    with_pg_database(|url| async move {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sealed_and_rotated(
            async |keyring| PgStore::connect(&url, keyring).await.unwrap(),
            async |id: Uuid| {
                let (token,): (String,) = sqlx::query_as(SELECT)
                    .bind(id.to_string())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                token
            },
            async |id: Uuid, value: &str| {
                sqlx::query(UPDATE)
                    .bind(value)
                    .bind(id.to_string())
                    .execute(&pool)
                    .await
                    .unwrap();
            },
        )
        .await;
    })
    .await;
}
