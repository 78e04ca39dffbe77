//! The follower's metrics: how far behind the store a replica was, and what it applied.

use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::auth::{Caller, Entry};
use crate::core::clock::SystemClock;
use crate::core::store::sqlite::SqliteStore;
use crate::core::{Mailer, TOKEN_CACHE_TTL};
use crate::domain::model::{Entity, Organization, Stage, StagePurpose};
use crate::domain::names::fmt;

async fn replica(store: &Arc<SqliteStore>, mailbox: &std::path::Path) -> Core {
    Core::from_store(
        store.clone(),
        Arc::new(SystemClock),
        Mailer::Mailbox(mailbox.to_owned()),
        TOKEN_CACHE_TTL,
    )
    .await
    .unwrap()
}

/// Creates stage `key` through `core`.
async fn create_stage(core: &Core, auth: &crate::auth::Authorized, org: Uuid, key: &str) {
    core.mutate(auth, org, None, |d| {
        let stage = Stage {
            key: key.to_owned(),
            display_name: key.to_uppercase(),
            order: 0,
            purpose: StagePurpose::NonProduction,
            rev: 1,
        };
        d.change(
            "stage.created",
            fmt::stage(org, key),
            None,
            Some(Entity::Stage(stage)),
            Vec::new(),
        );
        Ok(())
    })
    .await
    .unwrap();
}

/// A replica that follows another one's commits reports the events it was behind, applies
/// them, and records when its pass succeeded.
#[tokio::test(flavor = "current_thread")]
async fn the_follower_records_its_lag_and_the_events_it_applied() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("identity.db"))
            .await
            .unwrap(),
    );
    let (writer, follower) = (
        replica(&store, dir.path()).await,
        replica(&store, dir.path()).await,
    );
    let org = Uuid::new_v4();
    let auth = Entry::admit(
        "identity.v1.Organizations/CreateOrganization",
        &Caller::Operator,
        Some(org),
        None,
        0,
    )
    .unwrap()
    .authorized()
    .unwrap();
    let now = writer.now();
    let organization = Organization {
        id: org,
        display_name: "Acme".into(),
        create_time: now,
        update_time: now,
        rev: 1,
    };
    writer
        .create_org(&auth, organization, |_| Ok(()))
        .await
        .unwrap();
    // The organization created elsewhere is loaded (1 event behind), not applied event by
    // event.
    assert_eq!(follower.follow_once().await.unwrap(), 1);
    assert!(metrics.render().contains("identity_follower_lag_events 1"));

    for key in ["a", "b", "c"] {
        create_stage(&writer, &auth, org, key).await;
    }
    assert_eq!(follower.follow_once().await.unwrap(), 1);
    let text = metrics.render();
    for line in [
        "identity_follower_lag_events 3",
        "identity_follower_events_applied_total 3",
        "identity_follower_last_success_timestamp_seconds ",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert_eq!(follower.follow_once().await.unwrap(), 0);
    assert!(metrics.render().contains("identity_follower_lag_events 0"));
}
