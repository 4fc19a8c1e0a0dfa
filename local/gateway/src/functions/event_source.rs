//! Lambda's event source mappings from SQS, run as Lambda runs them: one poller per mapping
//! takes batches of visible messages (waiting up to the batching window to fill one), invokes
//! the function through its pool with Lambda's SQS event, at most `MaximumConcurrency` batches
//! at once, and deletes what succeeded: every record after a success; with
//! `ReportBatchItemFailures`, all but the records the answer names; none after an error, a
//! timeout, a crash, or an answer that names what is not in the batch. What is not deleted
//! becomes visible again once the queue's visibility timeout passes, and the queue's redrive
//! policy moves it to the dead-letter queue after `maxReceiveCount` receives.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{FunctionPool, InvokeError};
use crate::iam::actions::Access;
use crate::iam::Guard;
use crate::services::sqs::queues::{Queue, Queues, Received, MAX_BATCH_BYTES};
use crate::template::EventSourceMappingSpec;

/// What Lambda needs its execution role to allow on the queue before it creates a mapping
/// (the `AWSLambdaSQSQueueExecutionRole` managed policy grants these).
const CONSUMER_ACTIONS: [&str; 3] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// Why a mapping cannot run: Lambda would have refused to create it.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The function's role lacks a permission the poller needs.
    #[error("event source mapping {mapping}: the execution role of {function} does not allow {action} on {queue}, so Lambda refuses the mapping (\"The provided execution role does not have permissions to call {call} on SQS\"): grant it, e.g. with queue.grantConsumeMessages(fn)")]
    Permission {
        /// The mapping's logical id.
        mapping: String,
        /// The function's logical id.
        function: String,
        /// The action missing.
        action: &'static str,
        /// The call Lambda names (the action without `sqs:`).
        call: &'static str,
        /// The queue's ARN.
        queue: String,
    },
}

/// The pollers of every enabled mapping.
#[derive(Debug, Default)]
pub struct EventSources {
    mappings: Vec<Arc<Mapping>>,
    stop: CancellationToken,
    /// The pollers and every invocation they started.
    tasks: TaskTracker,
}

#[derive(Debug)]
struct Mapping {
    spec: EventSourceMappingSpec,
    queue: Arc<Queue>,
    /// Swapped when a reload gives the function new settings.
    pool: arc_swap::ArcSwap<FunctionPool>,
    region: String,
    /// One permit per batch in flight: `MaximumConcurrency`.
    concurrency: Arc<Semaphore>,
    invocations: AtomicU64,
}

impl EventSources {
    /// Checks that Lambda would create each mapping: the function's role allows what the
    /// poller does on the queue (the roles' other grants are checked call by call).
    pub(crate) fn check(
        specs: &[EventSourceMappingSpec],
        queues: &Queues,
        guard: &Guard,
    ) -> Result<(), MappingError> {
        for spec in specs {
            let Some(queue) = queues.get(&spec.queue) else {
                continue;
            };
            let arn = &queue.spec().arn;
            for action in CONSUMER_ACTIONS {
                if guard.allows(&spec.function, &Access::new(action, arn)) == Some(false) {
                    return Err(MappingError::Permission {
                        mapping: spec.logical_id.clone(),
                        function: spec.function.clone(),
                        action,
                        call: action.trim_start_matches("sqs:"),
                        queue: arn.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Starts a poller for each enabled mapping. A mapping runs at most `MaximumConcurrency`
    /// batches at once, and never more than the function's processes (`max_processes`).
    pub(crate) fn start(
        specs: &[EventSourceMappingSpec],
        queues: &Queues,
        pools: &HashMap<String, Arc<FunctionPool>>,
        region: &str,
        max_processes: usize,
    ) -> Self {
        let sources = Self::default();
        let mut mappings = Vec::new();
        for spec in specs {
            let (Some(queue), Some(pool)) = (queues.get(&spec.queue), pools.get(&spec.function))
            else {
                // The template reader registers both for every mapping it reads.
                continue;
            };
            let limit = max_processes.max(1);
            let concurrency = match spec.max_concurrency {
                Some(wanted) if wanted > limit => {
                    info!(mapping = %spec.logical_id, "MaximumConcurrency {wanted}: at most {limit} locally, the processes one function may run (--max-processes-per-function)");
                    limit
                }
                Some(wanted) => wanted,
                None => limit,
            };
            let mapping = Arc::new(Mapping {
                spec: spec.clone(),
                queue: queue.clone(),
                pool: arc_swap::ArcSwap::new(pool.clone()),
                region: region.to_owned(),
                concurrency: Arc::new(Semaphore::new(concurrency)),
                invocations: AtomicU64::new(0),
            });
            if spec.enabled {
                info!(
                    mapping = %spec.logical_id,
                    queue = %queue.spec().name,
                    function = %spec.function,
                    batch_size = spec.batch_size,
                    concurrency,
                    "polling the queue for the function"
                );
                sources.tasks.spawn(poll(
                    mapping.clone(),
                    sources.stop.clone(),
                    sources.tasks.clone(),
                ));
            } else {
                info!(mapping = %spec.logical_id, "the event source mapping is disabled (Enabled: false): not polling");
            }
            mappings.push(mapping);
        }
        Self {
            mappings,
            ..sources
        }
    }

    /// How many batches the mapping `logical_id` has handed to its function.
    pub(crate) fn invocation_count(&self, logical_id: &str) -> Option<u64> {
        self.mappings
            .iter()
            .find(|m| m.spec.logical_id == logical_id)
            .map(|m| m.invocations.load(Ordering::Relaxed))
    }

    /// Stops taking batches; the invocations in flight go on.
    /// Hands each mapping's batches to its function's pool in `pools` (a reload's): batches in
    /// flight finish in the pool they started in.
    pub(crate) fn repoint(&self, pools: &HashMap<String, Arc<FunctionPool>>) {
        for mapping in &self.mappings {
            if let Some(pool) = pools.get(&mapping.spec.function) {
                mapping.pool.store(pool.clone());
            }
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
    }

    /// Waits until the pollers have stopped and every invocation they started has ended.
    pub(crate) async fn finished(&self) {
        self.tasks.wait().await;
    }
}

/// One mapping's poller: a batch per free permit, until stopped.
async fn poll(mapping: Arc<Mapping>, stop: CancellationToken, tasks: TaskTracker) {
    loop {
        let permit = tokio::select! {
            permit = mapping.concurrency.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let Some(batch) = mapping.next_batch(&stop).await else {
            return;
        };
        let mapping = mapping.clone();
        tasks.spawn(async move {
            mapping.deliver(batch).await;
            drop(permit);
        });
    }
}

impl Mapping {
    /// The next batch: as soon as it is full (by count, or by Lambda's payload limit), or once
    /// the batching window has passed since its first record; `None` when stopped. Waits on
    /// sends and on the next delay or visibility timeout to pass, never in a loop.
    async fn next_batch(&self, stop: &CancellationToken) -> Option<Vec<Received>> {
        let mut batch: Vec<Received> = Vec::new();
        let mut bytes = 0;
        let mut window_end = None;
        loop {
            let changed = self.queue.changed().notified();
            tokio::pin!(changed);
            // Registered before looking, so that a send in between still wakes us.
            changed.as_mut().enable();
            if window_end.is_some_and(|end| Instant::now() >= end) {
                return Some(batch);
            }
            let room = self.spec.batch_size.saturating_sub(batch.len());
            let taken = self
                .queue
                .receive(room, MAX_BATCH_BYTES.saturating_sub(bytes));
            let short = taken.len() < room;
            for received in taken {
                bytes += received.message.batch_bytes();
                // A record taken early in a long window may have become visible again and been
                // taken anew: once in the batch, with the receipt handle that is current.
                let id = &received.message.message_id;
                match batch.iter_mut().find(|r| r.message.message_id == *id) {
                    Some(earlier) => *earlier = received,
                    None => batch.push(received),
                }
            }
            if batch.len() >= self.spec.batch_size || (short && self.queue.has_visible()) {
                // Full, or what is left does not fit in the payload.
                return Some(batch);
            }
            if !batch.is_empty() {
                let end =
                    *window_end.get_or_insert_with(|| Instant::now() + self.spec.batching_window);
                if Instant::now() >= end {
                    return Some(batch);
                }
            }
            let wake = match (window_end, self.queue.next_change()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                () = &mut changed => {}
                () = sleep_until(wake) => {}
                // The records taken stay in flight: nothing outlives the gateway's queues.
                () = stop.cancelled() => return None,
            }
        }
    }

    /// Invokes the function with `batch` and deletes what it handled.
    async fn deliver(&self, batch: Vec<Received>) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let event = self.event(&batch);
        let pool = self.pool.load_full();
        // The records are the batch's until their visibility timeout, which Lambda requires to
        // be at least the function's: the invocation, a wait for a process included, gets that.
        let timeout = self
            .queue
            .spec()
            .visibility_timeout
            .max(pool.spec().timeout);
        let outcome = match pool.invoke(event, timeout).await {
            Ok(answer) if self.spec.report_batch_item_failures => {
                reported_failures(&answer, &batch)
            }
            Ok(_) => Ok(HashSet::new()),
            Err(InvokeError::ShuttingDown) => {
                debug!(mapping = %self.spec.logical_id, "batch given up: the gateway is stopping");
                return;
            }
            Err(error) => Err(error.to_string()),
        };
        let records = batch.len();
        match outcome {
            Ok(failed) => {
                for received in &batch {
                    if !failed.contains(received.message.message_id.as_str()) {
                        self.queue.delete(&received.receipt_handle);
                    }
                }
                if !failed.is_empty() {
                    warn!(
                        mapping = %self.spec.logical_id,
                        function = %self.spec.function,
                        records,
                        failed = failed.len(),
                        "batch partly failed: {} of {records} records reported failed; they return to the queue after its visibility timeout",
                        failed.len()
                    );
                }
            }
            Err(reason) => warn!(
                mapping = %self.spec.logical_id,
                function = %self.spec.function,
                records,
                failed = records,
                "batch failed ({reason}): all {records} records return to the queue after its visibility timeout"
            ),
        }
    }

    /// Lambda's SQS event for `batch`.
    fn event(&self, batch: &[Received]) -> Vec<u8> {
        let mut event = SqsEvent::default();
        event.records = batch.iter().map(|r| self.record(r)).collect();
        // Strings and maps of strings: serializing cannot fail.
        serde_json::to_vec(&event).unwrap_or_default()
    }

    fn record(&self, received: &Received) -> SqsMessage {
        let message = &received.message;
        let mut attributes = HashMap::from([
            (
                "ApproximateReceiveCount".to_owned(),
                message.receive_count.to_string(),
            ),
            (
                "SentTimestamp".to_owned(),
                message.sent_timestamp_ms.to_string(),
            ),
            ("SenderId".to_owned(), message.sender_id.clone()),
            (
                "ApproximateFirstReceiveTimestamp".to_owned(),
                message
                    .first_receive_ms
                    .unwrap_or(message.sent_timestamp_ms)
                    .to_string(),
            ),
        ]);
        if let Some(source) = &message.dead_letter_source_arn {
            attributes.insert("DeadLetterQueueSourceArn".to_owned(), source.clone());
        }
        let message_attributes = message
            .attributes
            .iter()
            .map(|(name, value)| {
                let mut attribute = SqsMessageAttribute::default();
                attribute.data_type = Some(value.data_type.clone());
                attribute.string_value = value.string_value.clone();
                attribute.binary_value = value.binary_value.as_ref().map(|bytes| {
                    let mut data = Base64Data::default();
                    *data = bytes.clone();
                    data
                });
                (name.clone(), attribute)
            })
            .collect();
        let mut record = SqsMessage::default();
        record.message_id = Some(message.message_id.clone());
        record.receipt_handle = Some(received.receipt_handle.clone());
        record.body = Some(message.body.clone());
        record.md5_of_body = Some(message.md5_of_body.clone());
        record.md5_of_message_attributes = message.md5_of_attributes.clone();
        record.attributes = attributes;
        record.message_attributes = message_attributes;
        record.event_source = Some("aws:sqs".to_owned());
        record.event_source_arn = Some(self.queue.spec().arn.clone());
        record.aws_region = Some(self.region.clone());
        record
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The message ids a `ReportBatchItemFailures` answer names. `Err` when Lambda takes the
/// whole batch as failed: an answer that is not JSON, or not an object, a `batchItemFailures`
/// that is not a list, or an entry whose `itemIdentifier` is missing, empty, or no message
/// of the batch. No answer, `null`, `{}` and an empty or null list are a full success.
fn reported_failures<'b>(answer: &[u8], batch: &'b [Received]) -> Result<HashSet<&'b str>, String> {
    let mut failed = HashSet::new();
    if answer.iter().all(u8::is_ascii_whitespace) {
        return Ok(failed);
    }
    let value: Value =
        serde_json::from_slice(answer).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let items = match &value {
        Value::Null => return Ok(failed),
        Value::Object(object) => match object.get("batchItemFailures") {
            None | Some(Value::Null) => return Ok(failed),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(format!("batchItemFailures is not a list: {other}")),
        },
        other => return Err(format!("the answer is not a batch response: {other}")),
    };
    for item in items {
        let id = item.get("itemIdentifier").and_then(Value::as_str);
        let found = id.and_then(|id| {
            batch
                .iter()
                .map(|r| r.message.message_id.as_str())
                .find(|known| *known == id)
        });
        match found {
            Some(id) => {
                failed.insert(id);
            }
            None => {
                return Err(format!(
                    "batchItemFailures names {item}, not a message of the batch"
                ))
            }
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::services::sqs::queues::NewMessage;
    use crate::template::QueueSpec;

    /// Two received messages, with bodies `a` and `b`.
    fn batch() -> Vec<Received> {
        let spec = QueueSpec {
            logical_id: "Q".into(),
            name: "q".into(),
            url: "http://127.0.0.1:1/000000000000/q".into(),
            arn: "arn:aws:sqs:us-east-1:000000000000:q".into(),
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(60),
            delay: Duration::ZERO,
            max_message_bytes: 1024,
            redrive: None,
        };
        let queues = Queues::new(&[spec]);
        let queue = queues.get("Q").expect("Q");
        for body in ["a", "b"] {
            queue.send(NewMessage {
                body: body.into(),
                ..NewMessage::default()
            });
        }
        queue.receive(10, MAX_BATCH_BYTES)
    }

    #[test]
    fn a_batch_response_is_read_as_lambda_reads_it() {
        let batch = batch();
        let a = batch[0].message.message_id.clone();
        let read = |answer: String| reported_failures(answer.as_bytes(), &batch);
        // A full success.
        for answer in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(read(answer.into()), Ok(HashSet::new()), "{answer}");
        }
        // Only `a` failed.
        let one = format!(r#"{{"batchItemFailures":[{{"itemIdentifier":"{a}"}}]}}"#);
        assert_eq!(read(one), Ok(HashSet::from([a.as_str()])));
        // The whole batch failed.
        for answer in [
            "not json",
            r#""done""#,
            r#"{"batchItemFailures":"a"}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"messageId":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"not-in-the-batch"}]}"#,
        ] {
            assert!(read(answer.into()).is_err(), "{answer}");
        }
    }
}
