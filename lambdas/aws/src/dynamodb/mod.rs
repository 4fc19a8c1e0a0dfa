//! DynamoDB as the [`ConnectionStore`] and the [`AuditLog`].
//!
//! Both tables have a string partition key `pk`, a string sort key `sk` and the TTL attribute
//! `expiresAt` (epoch seconds). Every read is a Query: never a Scan.
//!
//! Connections table:
//! | pk | sk | what |
//! |---|---|---|
//! | `CONN#<id>` | `META` | the connection: `connectionId`, `user`, `connectedAt` |
//! | `CONN#<id>` | `ROOM#<room>` | a room the connection is in (for `whoami` and clean-up) |
//! | `ROOM#<room>` | `CONN#<id>` | a member of the room (for fan-out) |
//!
//! | `CONN#<id>` | `RATE` | the rate limiter's state: `tat`, epoch ms when its bucket is full |
//!
//! Audit table: room messages under `ROOM#<room>` (what `history` reads), everything else
//! under `CONN#<id>`; the sort key is `<ISO-8601 time>#<id>`, so a Query reads them in order.
//!
//! DynamoDB throttles and conflicts that the SDK does not retry (a cancelled transaction,
//! unprocessed batch items) are retried here with jittered backoff within the SDK timeout.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use realtime_core::ports::StoreError;
use realtime_core::{ConnectionId, Room};
use tokio::time::Instant;

mod audit;
mod connections;

pub use audit::DynamoAudit;
pub use connections::DynamoStore;

pub(super) type Item = HashMap<String, AttributeValue>;

/// BatchWriteItem takes at most this many requests.
pub(super) const BATCH_LIMIT: usize = 25;
/// The sort key of a connection's rate-limit state.
pub(super) const RATE_SK: &str = "RATE";
/// The first backoff ceiling of a retried throttle; doubled each time, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Full-jitter backoff until a deadline: how long to keep retrying what DynamoDB throttled.
pub(crate) struct Backoff {
    until: Instant,
    retry: u32,
}

impl Backoff {
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            until: Instant::now() + budget,
            retry: 0,
        }
    }

    /// Sleeps before the next attempt; false (without sleeping) when it would end past the
    /// deadline.
    pub(crate) async fn wait(&mut self) -> bool {
        self.retry += 1;
        let pause = realtime_core::random::full_jitter(FIRST_BACKOFF, MAX_BACKOFF, self.retry);
        if Instant::now() + pause >= self.until {
            return false;
        }
        tokio::time::sleep(pause).await;
        true
    }
}

/// Whether a cancelled transaction failed only for throttling or a conflict with another
/// transaction (worth retrying), not for a condition or a bad request.
pub(super) fn is_retryable_cancellation(error: &TransactWriteItemsError) -> bool {
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = error else {
        return false;
    };
    let codes: Vec<&str> = cancelled
        .cancellation_reasons()
        .iter()
        .filter_map(|reason| reason.code())
        .filter(|code| *code != "None")
        .collect();
    !codes.is_empty()
        && codes.iter().all(|code| {
            matches!(
                *code,
                "ThrottlingError" | "TransactionConflict" | "ProvisionedThroughputExceeded"
            )
        })
}

pub(super) fn conn_key(id: &ConnectionId) -> String {
    format!("CONN#{id}")
}

pub(super) fn room_key(room: &Room) -> String {
    format!("ROOM#{room}")
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(super) fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A whole-number attribute of an item, if it has one.
pub(super) fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// The `#name` placeholders of a projection such as `#sk, #connectedAt`, each with the
/// attribute it stands for.
pub(super) fn projection_names(projection: &str) -> impl Iterator<Item = (&str, &str)> {
    projection
        .split(", ")
        .filter_map(|placeholder| Some((placeholder, placeholder.strip_prefix('#')?)))
}

pub(super) fn put(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(|e| StoreError::new("build put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

pub(super) fn delete(table: &str, key: Item) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .build()
        .map_err(|e| StoreError::new("build delete", e))?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}
