//! The cache serves lookups from memory and forgets what this replica revokes, including a
//! revocation racing with a lookup.

use std::sync::Arc;

use shared::secrets::{TokenEncoding, hash_token, new_token};
use uuid::Uuid;

use super::*;

use crate::auth::{Caller, Entry, SESSION_PREFIX};
use crate::core::Storage;
use crate::core::store::{Commit, EventLog, Store, TokenKind};
use crate::domain::model::Principal;
use crate::domain::names;

/// A SQLite store holding one organization.
async fn store_with_org(dir: &std::path::Path, org: Uuid) -> Arc<dyn Store> {
    use crate::domain::model::{Change, Entity, Organization};
    let store = crate::core::store::sqlite::SqliteStore::open(&dir.join("identity.db"))
        .await
        .unwrap();
    let changes = [Change {
        action: "organization.created".into(),
        target: names::fmt::org(org),
        before: None,
        after: Some(Entity::Organization(Organization {
            id: org,
            display_name: "o".into(),
            create_time: 0,
            update_time: 0,
            rev: 1,
        })),
        affected_users: Vec::new(),
    }];
    store
        .commit(Commit {
            org,
            expected_seq: 0,
            create_org: true,
            actor: "operator",
            request_id: None,
            time: 0,
            changes: &changes,
            secrets: &[],
        })
        .await
        .unwrap();
    Arc::new(store)
}

/// The proof a revocation is made with.
fn operator() -> Authorized {
    Entry::admit("identity.v1.Users/Logout", &Caller::Operator, None, None, 0)
        .unwrap()
        .authorized()
        .unwrap()
}

fn token(org: Uuid, principal: Principal) -> TokenRecord {
    TokenRecord {
        id: Uuid::now_v7(),
        hash: hash_token(&new_token(SESSION_PREFIX, TokenEncoding::Base64Url)),
        kind: TokenKind::Session,
        org,
        principal,
        create_time: 0,
        expire_time: i64::MAX,
        revoke_time: None,
    }
}

fn secrets_commit(org: Uuid, seq: u64, secrets: &[SecretOp]) -> Commit<'_> {
    Commit {
        org,
        expected_seq: seq,
        create_org: false,
        actor: "operator",
        request_id: None,
        time: 1,
        changes: &[],
        secrets,
    }
}

#[tokio::test]
async fn the_token_cache_serves_lookups_and_forgets_what_this_replica_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    let inner = store_with_org(dir.path(), org).await;
    let storage = Storage {
        store: Arc::clone(&inner),
        tokens: TokenCache::with_ttl(inner.clone(), TOKEN_CACHE_TTL),
    };
    let cache = &storage.tokens;
    let alice = Principal::User(Uuid::new_v4());
    let (a1, a2, b) = (
        token(org, alice),
        token(org, alice),
        token(org, Principal::ServiceAccount(Uuid::new_v4())),
    );
    for t in [&a1, &a2, &b] {
        inner.insert_token(t).await.unwrap();
        assert_eq!(cache.find(&t.hash).await.unwrap().as_ref(), Some(t));
    }
    assert_eq!(cache.find("unknown").await.unwrap(), None);
    assert_eq!(
        cache.read_map().records.len(),
        3,
        "unknown hashes are not cached"
    );

    // Served from memory: a change made behind the cache's back (another replica) is not
    // seen until the record is read again.
    assert!(inner.revoke_token(b.id, 5).await.unwrap());
    let cached = cache.find(&b.hash).await.unwrap().unwrap();
    assert_eq!(cached.revoke_time, None);

    // Logout and RevokeServiceAccountToken through this replica: gone at once.
    cache.evict(|_| true);
    assert!(cache.revoke(&operator(), a1.id, 7).await.is_ok());
    let r = cache.find(&a1.hash).await.unwrap().unwrap();
    assert_eq!(r.revoke_time, Some(7));

    // Deactivation / deletion commit RevokeTokensOf: every token of the principal goes.
    assert_eq!(
        cache.find(&a2.hash).await.unwrap().unwrap().revoke_time,
        None
    );
    let ops = [SecretOp::RevokeTokensOf {
        principal: alice,
        at: 9,
    }];
    storage.commit(secrets_commit(org, 1, &ops)).await.unwrap();
    let r = cache.find(&a2.hash).await.unwrap().unwrap();
    assert_eq!(r.revoke_time, Some(9));
}

#[tokio::test]
async fn a_lookup_that_raced_with_a_revocation_does_not_cache_the_old_record() {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    let inner = store_with_org(dir.path(), org).await;
    let cache = TokenCache::with_ttl(inner.clone(), TOKEN_CACHE_TTL);
    let t = token(org, Principal::User(Uuid::new_v4()));
    inner.insert_token(&t).await.unwrap();
    // A lookup missed and read the store (not revoked yet)...
    let generation = cache.read_map().generation;
    let read = inner.find_token(&t.hash).await.unwrap().unwrap();
    // ...then a revocation went through this replica...
    assert!(cache.revoke(&operator(), t.id, 3).await.unwrap());
    // ...before the lookup stored what it had read: it must not be kept.
    cache.remember(&t.hash, generation, &read);
    assert!(cache.read_map().records.is_empty());
    assert_eq!(
        cache.find(&t.hash).await.unwrap().unwrap().revoke_time,
        Some(3)
    );
}

/// Lookups count as hits (from memory) and misses (read from the store, unknown hashes too).
#[tokio::test(flavor = "current_thread")]
async fn lookups_are_counted_as_hits_and_misses() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    let inner = store_with_org(dir.path(), org).await;
    let cache = TokenCache::with_ttl(inner.clone(), TOKEN_CACHE_TTL);
    let t = token(org, Principal::User(Uuid::new_v4()));
    inner.insert_token(&t).await.unwrap();
    for _ in 0..3 {
        assert_eq!(cache.find(&t.hash).await.unwrap().as_ref(), Some(&t));
    }
    assert_eq!(cache.find("unknown").await.unwrap(), None);
    let text = metrics.render();
    for line in [
        r#"identity_token_cache_lookups_total{result="hit"} 2"#,
        r#"identity_token_cache_lookups_total{result="miss"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
