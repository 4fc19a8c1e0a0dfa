//! The DynamoDB adapter on the answers DynamoDB Local never gives: cancelled transactions,
//! unprocessed batch items, and what each read asks for. The client is an `aws-smithy-mocks`
//! mock: each rule answers one operation.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, DeleteRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use chrono::Utc;
use realtime_aws::dynamodb::DynamoStore;
use realtime_core::ports::ConnectionStore;
use realtime_core::{ConnectionId, Room};

const TABLE: &str = "connections";

/// A transaction cancelled for these reasons, one per item.
fn cancelled(reasons: &[&str]) -> TransactWriteItemsError {
    let mut exception = TransactionCanceledException::builder().message("cancelled");
    for code in reasons {
        exception =
            exception.cancellation_reasons(CancellationReason::builder().code(*code).build());
    }
    TransactWriteItemsError::TransactionCanceledException(exception.build())
}

/// `times` cancellations for `reasons`, then success.
fn transact_rule(reasons: &'static [&'static str], times: usize) -> Rule {
    mock!(Client::transact_write_items)
        .sequence()
        .error(move || cancelled(reasons))
        .times(times)
        .output(|| TransactWriteItemsOutput::builder().build())
        .build()
}

fn store(rules: &[&Rule], budget: Duration) -> DynamoStore {
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
    DynamoStore::new(client, TABLE).with_retry_budget(budget)
}

async fn join(store: &DynamoStore) -> Result<(), realtime_core::ports::StoreError> {
    store
        .join(
            &ConnectionId::from("A"),
            &Room::lobby(),
            Utc::now() + chrono::Duration::hours(3),
        )
        .await
}

#[tokio::test]
async fn a_transaction_cancelled_by_throttling_or_conflict_is_retried() {
    for reasons in [
        &["ThrottlingError", "None"][..],
        &["None", "TransactionConflict"][..],
    ] {
        let reasons: &'static [&'static str] = Vec::leak(reasons.to_vec());
        let rule = transact_rule(reasons, 2);
        let store = store(&[&rule], Duration::from_secs(3));
        join(&store).await.expect("written on the third attempt");
        assert_eq!(rule.num_calls(), 3, "{reasons:?}");
    }
}

#[tokio::test]
async fn a_transaction_cancelled_by_a_condition_is_not_retried() {
    let rule = transact_rule(&["ConditionalCheckFailed", "ThrottlingError"], 1);
    let store = store(&[&rule], Duration::from_secs(3));
    let error = join(&store).await.expect_err("a condition failed");
    assert!(error.to_string().starts_with("join failed"), "{error}");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn throttling_is_retried_only_within_the_budget() {
    let rule = transact_rule(&["ThrottlingError"], 1000);
    let store = store(&[&rule], Duration::from_millis(300));
    let started = std::time::Instant::now();
    join(&store).await.expect_err("still throttled");
    let calls = rule.num_calls();
    assert!((2..1000).contains(&calls), "{calls} attempts");
    // The budget bounds it: no attempt starts after it (the last sleep included).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// One delete request of the table, as BatchWriteItem returns what it did not process.
fn unprocessed() -> HashMap<String, Vec<WriteRequest>> {
    let key = HashMap::from([
        ("pk".to_owned(), AttributeValue::S("CONN#A".into())),
        ("sk".to_owned(), AttributeValue::S("META".into())),
    ]);
    let request = WriteRequest::builder()
        .delete_request(
            DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .expect("key"),
        )
        .build();
    HashMap::from([(TABLE.to_owned(), vec![request])])
}

#[tokio::test]
async fn unprocessed_batch_items_are_retried_until_written() {
    let query = mock!(Client::query).then_output(|| {
        let item = HashMap::from([("sk".to_owned(), AttributeValue::S("META".into()))]);
        QueryOutput::builder().items(item).count(1).build()
    });
    // More rounds than a fixed count of retries would allow.
    let batch = mock!(Client::batch_write_item)
        .sequence()
        .output(|| {
            BatchWriteItemOutput::builder()
                .set_unprocessed_items(Some(unprocessed()))
                .build()
        })
        .times(8)
        .output(|| BatchWriteItemOutput::builder().build())
        .build();
    let store = store(&[&query, &batch], Duration::from_secs(20));
    store
        .forget(&ConnectionId::from("A"))
        .await
        .expect("written in the end");
    assert_eq!(batch.num_calls(), 9);
}

#[tokio::test]
async fn membership_and_rooms_are_read_consistently() {
    let get = mock!(Client::get_item)
        .match_requests(|request| request.consistent_read() == Some(true))
        .then_output(|| {
            let item = HashMap::from([(
                "expiresAt".to_owned(),
                AttributeValue::N((Utc::now().timestamp() + 60).to_string()),
            )]);
            GetItemOutput::builder().set_item(Some(item)).build()
        });
    let query = mock!(Client::query)
        .match_requests(|request| request.consistent_read() == Some(true))
        .then_output(|| QueryOutput::builder().count(0).build());
    let store = store(&[&get, &query], Duration::from_secs(1));
    let id = ConnectionId::from("A");
    assert!(store
        .is_member(&id, &Room::lobby(), Utc::now())
        .await
        .expect("a consistent GetItem"));
    assert!(store
        .rooms_of(&id, Utc::now())
        .await
        .expect("a consistent Query")
        .is_empty());
    assert_eq!((get.num_calls(), query.num_calls()), (1, 1));
}
