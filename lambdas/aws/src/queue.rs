//! SQS as the [`FanoutQueue`] port: delivery jobs of the queued tier, ten to a batch call.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use realtime_core::ports::{FanoutQueue, QueueError};
use realtime_core::queued::FanoutJob;

use crate::dynamodb::Backoff;

/// SendMessageBatch takes at most this many entries.
const BATCH_LIMIT: usize = 10;
/// SQS delays a message by at most 15 minutes.
const MAX_DELAY: Duration = Duration::from_secs(900);

/// Enqueues fan-out jobs on one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    retry_budget: Duration,
}

impl SqsQueue {
    /// A queue at `url` (`FANOUT_QUEUE_URL`), retrying entries SQS could not take for up to
    /// `retry_budget`.
    pub fn new(client: Client, url: impl Into<String>, retry_budget: Duration) -> Self {
        Self {
            client,
            url: url.into(),
            retry_budget,
        }
    }
}

#[async_trait]
impl FanoutQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[FanoutJob], delay: Duration) -> Result<(), QueueError> {
        let error = |jobs: usize, source: String| QueueError {
            jobs,
            source: source.into(),
        };
        let delay_seconds = i32::try_from(delay.min(MAX_DELAY).as_secs()).unwrap_or(0);
        let mut backoff = Backoff::new(self.retry_budget);
        for (chunk_index, chunk) in jobs.chunks(BATCH_LIMIT).enumerate() {
            let mut pending = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    let body = serde_json::to_string(job)
                        .map_err(|e| error(1, format!("job not serializable: {e}")))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("j{i}"))
                        .message_body(body)
                        .delay_seconds(delay_seconds)
                        .build()
                        .map_err(|e| error(1, e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let left_after = jobs.len() - chunk_index * BATCH_LIMIT - chunk.len();
            while !pending.is_empty() {
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        error(
                            pending.len() + left_after,
                            aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
                        )
                    })?;
                let failed = out.failed();
                // An entry at fault (too large, malformed) fails again: only SQS's own
                // failures are retried.
                if let Some(fault) = failed.iter().find(|entry| entry.sender_fault()) {
                    return Err(error(
                        failed.len() + left_after,
                        format!(
                            "SQS refused a job: {} {}",
                            fault.code(),
                            fault.message().unwrap_or_default()
                        ),
                    ));
                }
                pending.retain(|entry| failed.iter().any(|f| f.id() == entry.id()));
                if !pending.is_empty() && !backoff.wait().await {
                    return Err(error(
                        pending.len() + left_after,
                        format!("still failing after {:?} of retries", self.retry_budget),
                    ));
                }
            }
        }
        Ok(())
    }
}
