//! The outbox's back-off and messages, and the worker against a real SQLite store: a failed
//! attempt, then a delivery, counted and reflected in the gauges.

use super::*;

#[test]
fn the_wait_doubles_from_the_base_up_to_the_maximum() {
    let settings = MailSettings {
        retry_base_ms: 100,
        retry_max_ms: 1000,
        ..MailSettings::default()
    };
    let waits: Vec<u64> = (1..=7)
        .map(|n| u64::try_from(backoff(&settings, n).as_millis()).unwrap())
        .collect();
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
    assert_eq!(backoff(&settings, u32::MAX), Duration::from_secs(1));
}

#[test]
fn a_message_carries_its_secret_and_a_message_id_of_its_own() {
    let (user, invitation) = (Uuid::now_v7(), Uuid::now_v7());
    let one = invitation_mail(
        "a@x.example",
        "Acme",
        user,
        invitation,
        "inv_s3cret",
        (1, 2),
    );
    let two = invitation_mail(
        "a@x.example",
        "Acme",
        user,
        invitation,
        "inv_s3cret",
        (1, 2),
    );
    let ((_, SecretOp::QueueMail(one)), (_, SecretOp::QueueMail(two))) = (one, two) else {
        panic!("not a queued message");
    };
    assert!(one.body.contains("invitation_token: inv_s3cret"));
    assert!(one.subject.contains("Acme"));
    assert_ne!(one.message_id, two.message_id);
    assert!(one.message_id.starts_with('<') && one.message_id.ends_with('>'));
    assert!(!format!("{one:?}").contains("inv_s3cret"));
}

/// An organization (no entities) in `store`, and one message for it queued by a commit, due
/// for the workers at once.
async fn queued(store: &dyn Store) -> Uuid {
    let org = Uuid::now_v7();
    let (id, op) = invitation_mail(
        "ada@x.example",
        "Acme",
        Uuid::now_v7(),
        Uuid::now_v7(),
        "inv_secret",
        (
            SystemClock.now_micros(),
            SystemClock.now_micros() + 3_600_000_000,
        ),
    );
    let SecretOp::QueueMail(mut mail) = op else {
        panic!("not a queued message");
    };
    mail.first_attempt_time = 0;
    store
        .commit(super::super::store::Commit {
            org,
            expected_seq: 0,
            create_org: true,
            actor: "test",
            request_id: None,
            time: 0,
            changes: &[],
            secrets: &[SecretOp::QueueMail(mail)],
        })
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "current_thread")]
async fn the_worker_counts_each_outcome_and_reports_the_depth_and_age() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        super::super::store::sqlite::SqliteStore::open(&dir.path().join("identity.db"))
            .await
            .unwrap(),
    );
    queued(&*store).await;
    let settings = MailSettings {
        retry_base_ms: 1,
        retry_max_ms: 1,
        ..MailSettings::default()
    };
    // A "mailbox" that is a file: the attempt fails.
    let not_a_dir = dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").unwrap();
    let broken = Outbox::new(store.clone(), Mailer::Mailbox(not_a_dir), settings.clone());
    assert_eq!(broken.deliver_due().await.unwrap(), 1);
    broken.record_gauges().await;
    let text = metrics.render();
    assert!(
        text.contains("identity_outbox_deliveries_total{outcome=\"failed\"} 1"),
        "{text}"
    );
    assert!(text.contains("identity_outbox_pending 1"), "{text}");

    let mailbox = dir.path().join("mailbox");
    let working = Outbox::new(store.clone(), Mailer::Mailbox(mailbox.clone()), settings);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while working.deliver_due().await.unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry never came"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    working.record_gauges().await;
    let text = metrics.render();
    assert!(
        text.contains("identity_outbox_deliveries_total{outcome=\"sent\"} 1"),
        "{text}"
    );
    assert!(text.contains("identity_outbox_pending 0"), "{text}");
    assert!(
        text.contains("identity_outbox_oldest_pending_seconds 0"),
        "{text}"
    );
    let files: Vec<_> = std::fs::read_dir(&mailbox).unwrap().collect();
    assert_eq!(files.len(), 1);
    let message = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(message.contains("Message-ID: <"), "{message}");
    assert!(
        message.contains("invitation_token: inv_secret"),
        "{message}"
    );
}

#[test]
fn an_outage_is_reported_when_it_starts_and_when_it_ends_not_at_every_poll() {
    use OutageChange::{Continues, Ended, None, Started};
    let mut outage = Outage::default();
    let polls = [false, true, true, true, false, false, true, false];
    let changes: Vec<OutageChange> = polls.iter().map(|&failed| outage.record(failed)).collect();
    assert_eq!(
        changes,
        [
            None,
            Started,
            Continues,
            Continues,
            Ended { failed_polls: 3 },
            None,
            Started,
            Ended { failed_polls: 1 },
        ]
    );
}
