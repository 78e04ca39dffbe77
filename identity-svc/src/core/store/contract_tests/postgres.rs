//! The contract cases on PostgreSQL: one test per case, named after it.

use super::{batch, commit, credentials, log, outbox, run_postgres, tokens};

#[tokio::test]
async fn commit_creates_organization() {
    run_postgres(|store| Box::pin(log::commit_creates_organization(store))).await;
}

#[tokio::test]
async fn commit_at_expected_seq_advances_and_changes_rows() {
    run_postgres(|store| {
        Box::pin(commit::commit_at_expected_seq_advances_and_changes_rows(
            store,
        ))
    })
    .await;
}

#[tokio::test]
async fn stale_commit_conflicts_and_writes_nothing() {
    run_postgres(|store| Box::pin(commit::stale_commit_conflicts_and_writes_nothing(store))).await;
}

#[tokio::test]
async fn create_org_twice_conflicts() {
    run_postgres(|store| Box::pin(commit::create_org_twice_conflicts(store))).await;
}

#[tokio::test]
async fn empty_commit_keeps_sequence() {
    run_postgres(|store| Box::pin(commit::empty_commit_keeps_sequence(store))).await;
}

#[tokio::test]
async fn events_after_is_gap_free_and_ascending() {
    run_postgres(|store| Box::pin(log::events_after_is_gap_free_and_ascending(store))).await;
}

#[tokio::test]
async fn list_events_filters_and_pages() {
    run_postgres(|store| Box::pin(log::list_events_filters_and_pages(store))).await;
}

#[tokio::test]
async fn request_id_is_remembered_once() {
    run_postgres(|store| Box::pin(log::request_id_is_remembered_once(store))).await;
}

#[tokio::test]
async fn tokens_insert_find_revoke_list() {
    run_postgres(|store| Box::pin(tokens::tokens_insert_find_revoke_list(store))).await;
}

#[tokio::test]
async fn invitation_tokens_put_find_delete() {
    run_postgres(|store| Box::pin(credentials::invitation_tokens_put_find_delete(store))).await;
}

#[tokio::test]
async fn credentials_lifecycle() {
    run_postgres(|store| Box::pin(credentials::credentials_lifecycle(store))).await;
}

#[tokio::test]
async fn concurrent_commits_exactly_one_wins() {
    run_postgres(|store| Box::pin(commit::concurrent_commits_exactly_one_wins(store))).await;
}

#[tokio::test]
async fn concurrent_create_org_exactly_one_wins() {
    run_postgres(|store| Box::pin(commit::concurrent_create_org_exactly_one_wins(store))).await;
}

#[tokio::test]
async fn sequences_follow_every_commit() {
    run_postgres(|store| Box::pin(log::sequences_follow_every_commit(store))).await;
}

#[tokio::test]
async fn batch_writes_each_commit_as_if_one_after_the_other() {
    run_postgres(|store| {
        Box::pin(batch::batch_writes_each_commit_as_if_one_after_the_other(
            store,
        ))
    })
    .await;
}

#[tokio::test]
async fn batch_net_entity_writes_match_sequential_commits() {
    run_postgres(|store| {
        Box::pin(batch::batch_net_entity_writes_match_sequential_commits(
            store,
        ))
    })
    .await;
}

#[tokio::test]
async fn stale_batch_conflicts_and_writes_nothing() {
    run_postgres(|store| Box::pin(batch::stale_batch_conflicts_and_writes_nothing(store))).await;
}

#[tokio::test]
async fn batch_with_a_used_request_id_writes_nothing() {
    run_postgres(|store| Box::pin(batch::batch_with_a_used_request_id_writes_nothing(store))).await;
}

#[tokio::test]
async fn batch_that_does_not_continue_is_refused() {
    run_postgres(|store| Box::pin(batch::batch_that_does_not_continue_is_refused(store))).await;
}

#[tokio::test]
async fn batch_of_empty_and_secret_only_commits() {
    run_postgres(|store| Box::pin(batch::batch_of_empty_and_secret_only_commits(store))).await;
}

#[tokio::test]
async fn concurrent_batches_exactly_one_wins() {
    run_postgres(|store| Box::pin(batch::concurrent_batches_exactly_one_wins(store))).await;
}

#[tokio::test]
async fn large_batch_spans_several_statements() {
    run_postgres(|store| Box::pin(batch::large_batch_spans_several_statements(store))).await;
}

#[tokio::test]
async fn every_failed_commit_leaves_the_store_writable() {
    run_postgres(|store| Box::pin(commit::every_failed_commit_leaves_the_store_writable(store)))
        .await;
}

#[tokio::test]
async fn a_cancelled_commit_leaves_the_store_writable() {
    run_postgres(|store| Box::pin(commit::a_cancelled_commit_leaves_the_store_writable(store)))
        .await;
}

#[tokio::test]
async fn streamed_load_hands_over_every_entity_once() {
    run_postgres(|store| Box::pin(log::streamed_load_hands_over_every_entity_once(store))).await;
}

#[tokio::test]
async fn a_queued_message_is_claimed_by_one_holder_until_sent() {
    run_postgres(|store| {
        Box::pin(outbox::a_queued_message_is_claimed_by_one_holder_until_sent(store))
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_retries_wait() {
    run_postgres(|store| {
        Box::pin(outbox::an_expired_lease_is_claimed_again_and_retries_wait(
            store,
        ))
    })
    .await;
}

#[tokio::test]
async fn a_resend_cancels_the_undelivered_message() {
    run_postgres(|store| Box::pin(outbox::a_resend_cancels_the_undelivered_message(store))).await;
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_message() {
    run_postgres(|store| Box::pin(outbox::concurrent_claimers_never_share_a_message(store))).await;
}

#[tokio::test]
async fn a_new_message_is_left_to_its_caller_until_its_first_attempt_time() {
    run_postgres(|store| {
        Box::pin(outbox::a_new_message_is_left_to_its_caller_until_its_first_attempt_time(store))
    })
    .await;
}
