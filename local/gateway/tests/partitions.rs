//! DynamoDB's per-partition throughput through the gateway: one partition key takes at most
//! 1,000 write units a second. Writes of 350 KB items (351 units each) pass that on one key in
//! three calls; past it, the key is reported over its limit, or, with
//! `--throttle-hot-partitions`, refused as DynamoDB refuses it. The same writes spread over
//! keys stay under. Calls are the handlers' own SDK calls, signed with the developer key.

mod support;

use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, ReturnConsumedCapacity, TransactWriteItem, WriteRequest,
};
use local_gateway::services::partitions::HotPartitions;
use support::*;

const TABLE: &str = "realtime-dev-audit";
const TABLE_ARN: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/realtime-dev-audit";
/// The size of the items written: 351 write units with their keys.
const ITEM_BYTES: usize = 350 * 1024;

/// A client of the gateway's DynamoDB, signing with the developer key, retrying as `retry`.
fn dynamodb(gateway: &local_gateway::Gateway, retry: RetryConfig) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "partitions"))
        .endpoint_url(gateway.secrets_manager_endpoint())
        .http_client(realtime_aws::clients::http_client())
        .retry_config(retry)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn item(pk: &str, sk: &str, bytes: usize) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk", s(pk)),
        ("sk", s(sk)),
        ("data", s(&"x".repeat(bytes))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn put(
    client: &aws_sdk_dynamodb::Client,
    pk: &str,
    sk: &str,
    bytes: usize,
) -> Result<PutItemOutput, SdkError<PutItemError>> {
    client
        .put_item()
        .table_name(TABLE)
        .set_item(Some(item(pk, sk, bytes)))
        .send()
        .await
}

fn is_throttled(result: &Result<PutItemOutput, SdkError<PutItemError>>) -> bool {
    matches!(result, Err(SdkError::ServiceError(e)) if e.err().is_throttling_exception())
}

fn peak<'a>(
    report: &'a HotPartitions,
    key: &str,
) -> &'a local_gateway::services::partitions::PartitionPeak {
    report
        .get(TABLE, key)
        .unwrap_or_else(|| panic!("{key} is in the report: {report:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_key_is_reported_over_its_limit_and_spread_writes_stay_under() {
    let gateway = start_real().await;
    let client = dynamodb(&gateway, RetryConfig::disabled());
    for i in 0..10 {
        let written = put(&client, "ROOM#hot", &i.to_string(), ITEM_BYTES).await;
        let written = written.expect("without the flag, nothing is throttled");
        // The gateway asked DynamoDB Local for the consumed capacity, and took it out again.
        assert!(written.consumed_capacity().is_none());
    }
    for i in 0..10 {
        put(&client, &format!("ROOM#spread-{i}"), "0", ITEM_BYTES)
            .await
            .expect("a spread write");
    }
    // Asked for, the consumed capacity comes back: DynamoDB Local's own count.
    let asked = client
        .put_item()
        .table_name(TABLE)
        .set_item(Some(item("ROOM#asked", "0", 3000)))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .expect("a small write");
    let units = asked.consumed_capacity().and_then(|c| c.capacity_units());
    assert_eq!(units, Some(3.0));
    // Strongly consistent Queries read the hot key's 10 items, 1 MB a page: 3.5 MB, 876 units.
    let pages: Vec<_> = client
        .query()
        .table_name(TABLE)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", "pk")
        .expression_attribute_values(":pk", s("ROOM#hot"))
        .consistent_read(true)
        .into_paginator()
        .send()
        .collect::<Result<_, _>>()
        .await
        .expect("the pages");
    assert_eq!(pages.iter().map(|p| p.count()).sum::<i32>(), 10);
    assert!(pages.iter().all(|p| p.consumed_capacity().is_none()));

    let report = gateway.hot_partitions();
    println!("{}", report.summary().unwrap_or_default());
    let hot = peak(&report, "ROOM#hot");
    assert!(hot.write_units > 1000.0, "{hot:?}");
    assert!(report.over_limit(hot), "{hot:?}");
    assert_eq!(hot.throttled, 0);
    // 3,584,170 bytes in 4 KB units, page by page, strongly consistent (DynamoDB Local's
    // count of the sizes).
    assert!((875.0..=880.0).contains(&hot.read_units), "{hot:?}");
    assert_eq!(report.hottest(), Some(hot));
    for i in 0..10 {
        let spread = peak(&report, &format!("ROOM#spread-{i}"));
        assert!((350.0..=352.0).contains(&spread.write_units), "{spread:?}");
        assert!(!report.over_limit(spread));
    }
    assert!(report
        .summary()
        .is_some_and(|line| line.contains("ROOM#hot")));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_flag_a_hot_key_is_throttled_as_dynamodb_throttles_it() {
    let gateway = start(real_template_copy(), |o| o.partitions.throttle = true).await;
    let client = dynamodb(&gateway, RetryConfig::disabled());
    let mut results = Vec::new();
    for i in 0..10 {
        let result = put(&client, "ROOM#hot", &i.to_string(), ITEM_BYTES).await;
        let throttled = is_throttled(&result);
        results.push(result);
        if throttled {
            break;
        }
    }
    let written = results.iter().filter(|r| r.is_ok()).count();
    assert!(
        written >= 2,
        "two writes of 351 units fit in 1,000: {results:?}"
    );
    let Some(Err(SdkError::ServiceError(refused))) = results.last() else {
        panic!("the hot key is throttled: {results:?}");
    };
    let PutItemError::ThrottlingException(throttling) = refused.err() else {
        panic!(
            "a ThrottlingException for an on-demand table: {:?}",
            refused.err()
        );
    };
    let reasons: Vec<_> = throttling
        .throttling_reasons()
        .iter()
        .map(|r| {
            (
                r.reason().unwrap_or_default(),
                r.resource().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [("TableWriteKeyRangeThroughputExceeded", TABLE_ARN)]
    );

    // The SDK takes it for a throttle and retries it (three attempts, here within the second,
    // so each is refused and counted).
    let retrying = dynamodb(
        &gateway,
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1))
            .with_max_backoff(Duration::from_millis(2)),
    );
    let before = peak(&gateway.hot_partitions(), "ROOM#hot").throttled;
    let result = put(&retrying, "ROOM#hot", "retried", ITEM_BYTES).await;
    assert!(is_throttled(&result), "{result:?}");
    assert_eq!(
        peak(&gateway.hot_partitions(), "ROOM#hot").throttled,
        before + 3
    );

    // A transaction touching the hot key is cancelled with a throttling reason on that item,
    // what the store retries (`is_retryable_cancellation`).
    let transact_put = |pk: &str| {
        let put = Put::builder()
            .table_name(TABLE)
            .set_item(Some(item(pk, "tx", ITEM_BYTES)))
            .build()
            .expect("a put");
        TransactWriteItem::builder().put(put).build()
    };
    let cancelled = client
        .transact_write_items()
        .transact_items(transact_put("ROOM#hot"))
        .transact_items(transact_put("ROOM#cold"))
        .send()
        .await
        .expect_err("the transaction is cancelled");
    let SdkError::ServiceError(cancelled) = cancelled else {
        panic!("a service error: {cancelled:?}");
    };
    let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled) =
        cancelled.err()
    else {
        panic!("a TransactionCanceledException: {:?}", cancelled.err());
    };
    let codes: Vec<_> = cancelled
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["ThrottlingError", "None"]);

    // A batch runs what it can: the cold key is written, the hot one handed back unprocessed.
    let request = |pk: &str, bytes: usize| {
        let put = PutRequest::builder()
            .set_item(Some(item(pk, "batch", bytes)))
            .build()
            .expect("a put request");
        WriteRequest::builder().put_request(put).build()
    };
    let batch = client
        .batch_write_item()
        .request_items(
            TABLE,
            vec![request("ROOM#hot", ITEM_BYTES), request("ROOM#cold", 10)],
        )
        .send()
        .await
        .expect("a batch with a cold key goes through");
    let unprocessed = batch
        .unprocessed_items()
        .and_then(|items| items.get(TABLE))
        .map(Vec::len);
    assert_eq!(unprocessed, Some(1));
    assert!(batch.consumed_capacity().is_empty());
    let cold = client
        .get_item()
        .table_name(TABLE)
        .key("pk", s("ROOM#cold"))
        .key("sk", s("batch"))
        .send()
        .await
        .expect("a read");
    assert!(cold.item().is_some(), "the cold key's item was written");

    // Spread over keys, the same writes all pass.
    for i in 0..10 {
        put(&client, &format!("ROOM#spread-{i}"), "0", ITEM_BYTES)
            .await
            .expect("a spread write is not throttled");
    }

    let report = gateway.hot_partitions();
    let hot = peak(&report, "ROOM#hot");
    // Refused calls take nothing: the key stays at its limit.
    assert!(hot.write_units <= 1000.0, "{hot:?}");
    assert!(
        hot.throttled >= 6,
        "1 put, 3 attempts, the transaction, the batch: {hot:?}"
    );
    assert_eq!(
        peak(&report, "ROOM#cold").throttled,
        0,
        "the transaction was refused for the hot key"
    );
    for i in 0..10 {
        assert_eq!(peak(&report, &format!("ROOM#spread-{i}")).throttled, 0);
    }
    gateway.shutdown().await;
}
