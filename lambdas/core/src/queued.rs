//! The queued tier of fan-out: rooms above a size threshold are delivered by a fan-out
//! function that a queue (SQS) feeds with jobs, instead of inside the sender's invocation.
//!
//! The message handler enqueues one [`FanoutJob`] per shard of the room. A shard job reads one
//! page of its shard's members, enqueues the job for the next page (so the pages of a room
//! proceed in parallel, up to the queue's concurrency), and posts to the page's members at a
//! paced rate. Members that were throttled or not reached before the deadline go into a retry
//! job. Every job is claimed in a ledger before it posts: a job the queue delivers again, or
//! enqueued twice, is skipped, so that no member gets a message twice. What a job posted is
//! never posted again; a job that fails before posting is safe for the queue to retry.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::deadline::Deadline;
use crate::fanout::{self, FanoutPolicy, FanoutReport, Pacer};
use crate::model::{ConnectionId, MessageId, Room};
use crate::ports::{
    Clock, ConnectionStore, FanoutQueue, JobLedger, Notifier, QueueError, StoreError,
};

/// One unit of queued delivery: a message's frame, and whom to post it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FanoutJob {
    /// The message delivered (its id makes the job's claim key).
    pub message_id: MessageId,
    /// The room it was sent to.
    pub room: Room,
    /// The exact frame the members receive.
    pub frame: String,
    /// Which members.
    #[serde(flatten)]
    pub work: Work,
}

/// Whom a job posts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Work {
    /// A page of one shard's members, read by the job: the first page, or the one after
    /// member `after`.
    Shard {
        /// The shard.
        shard: u32,
        /// The last member of the previous page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<ConnectionId>,
    },
    /// Members that certainly did not get the frame before (throttled or not attempted).
    Retry {
        /// How many retry jobs came before this one for these members (1 for the first).
        attempt: u32,
        /// The members.
        targets: Vec<ConnectionId>,
    },
}

impl FanoutJob {
    /// The first jobs of a message to a room: one per shard.
    pub fn for_message(message_id: &MessageId, room: &Room, frame: &str, shards: u32) -> Vec<Self> {
        (0..shards.max(1))
            .map(|shard| Self {
                message_id: message_id.clone(),
                room: room.clone(),
                frame: frame.to_owned(),
                work: Work::Shard { shard, after: None },
            })
            .collect()
    }

    /// The job's identity: the same for every copy of it, whoever enqueued it.
    pub fn key(&self) -> String {
        match &self.work {
            Work::Shard { shard, after } => format!(
                "{}#{}#{shard}#{}",
                self.message_id,
                self.room,
                after.as_ref().map_or("", ConnectionId::as_str)
            ),
            Work::Retry { attempt, targets } => {
                let mut ids: Vec<&str> = targets.iter().map(ConnectionId::as_str).collect();
                ids.sort_unstable();
                let hash = crate::shards::fnv1a(ids.join(",").as_bytes());
                format!(
                    "{}#{}#retry{attempt}#{hash:016x}",
                    self.message_id, self.room
                )
            }
        }
    }

    fn with(&self, work: Work) -> Self {
        Self {
            work,
            ..self.clone()
        }
    }
}

/// How the queued tier works.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueuedSettings {
    /// Members read and posted to per shard job.
    pub page_size: usize,
    /// Posts per second of one fan-out process: the stage's queued rate divided by the
    /// queue's maximum concurrency, so that the tier stays under the account's throttle.
    pub posts_per_second: u32,
    /// Retry jobs for the same members before they are given up (logged).
    pub max_retries: u32,
    /// How long a retry job waits in the queue: the throttle needs time to refill.
    pub retry_delay: Duration,
    /// How long a claim is kept: longer than the queue keeps a message.
    pub claim_ttl: chrono::Duration,
    /// A 410 for a connection younger than this does not forget it (still connecting).
    pub new_connection_grace: chrono::Duration,
    /// Posts in flight, backoff, deadline margin.
    pub fanout: FanoutPolicy,
}

impl Default for QueuedSettings {
    fn default() -> Self {
        Self {
            page_size: 1000,
            posts_per_second: 500,
            max_retries: 5,
            retry_delay: Duration::from_secs(1),
            claim_ttl: chrono::Duration::days(5),
            new_connection_grace: chrono::Duration::seconds(30),
            fanout: FanoutPolicy::default(),
        }
    }
}

/// Why a job was not done. Nothing was posted: the queue may deliver it again.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Reading members or claiming the job failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job for the next page could not be enqueued.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What one job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The job was claimed before: nothing was posted.
    pub duplicate: bool,
    /// Members this job was to post to.
    pub targets: usize,
    /// What the posts did.
    pub fanout: FanoutReport,
    /// The next page's job was enqueued.
    pub continued: bool,
    /// Members handed to a retry job.
    pub retried: usize,
    /// Members given up on: retries spent, or the retry job could not be enqueued.
    pub given_up: usize,
}

/// The fan-out function's use case: works one job.
pub struct QueuedFanout {
    store: Arc<dyn ConnectionStore>,
    ledger: Arc<dyn JobLedger>,
    queue: Arc<dyn FanoutQueue>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    settings: QueuedSettings,
    /// Shared by every job of the process: its share of the rate.
    pacer: Pacer,
}

impl QueuedFanout {
    /// The use case over its adapters.
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        ledger: Arc<dyn JobLedger>,
        queue: Arc<dyn FanoutQueue>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        settings: QueuedSettings,
    ) -> Self {
        Self {
            store,
            ledger,
            queue,
            notifier,
            clock,
            pacer: Pacer::new(settings.posts_per_second),
            settings,
        }
    }

    /// Works one job within the invocation's `deadline`. An error means nothing was posted.
    pub async fn run(&self, job: &FanoutJob, deadline: Deadline) -> Result<JobReport, JobError> {
        let now = self.clock.now();
        let mut report = JobReport::default();
        let targets = match &job.work {
            Work::Shard { shard, after } => {
                let page = self
                    .store
                    .member_page(
                        &job.room,
                        *shard,
                        now,
                        after.as_ref(),
                        self.settings.page_size,
                    )
                    .await?;
                if let Some(next) = page.next {
                    // Before this page's posts: the next page starts in parallel. A copy
                    // enqueued by a retried attempt of this job is skipped by its claim.
                    let next = job.with(Work::Shard {
                        shard: *shard,
                        after: Some(next),
                    });
                    self.queue.enqueue(&[next], Duration::ZERO).await?;
                    report.continued = true;
                }
                page.ids
            }
            Work::Retry { targets, .. } => targets.clone(),
        };
        if !self
            .ledger
            .claim(&job.key(), now + self.settings.claim_ttl)
            .await?
        {
            tracing::info!(job = %job.key(), "the job was claimed before: skipped");
            report.duplicate = true;
            return Ok(report);
        }
        report.targets = targets.len();
        let policy = self.settings.fanout;
        let frame = job.frame.as_bytes();
        let mut fanout = fanout::deliver_paced(
            self.notifier.as_ref(),
            &targets,
            frame,
            policy,
            deadline,
            Some(&self.pacer),
        )
        .await;
        let registered_before = self.clock.now() - self.settings.new_connection_grace;
        let gone = std::mem::take(&mut fanout.gone);
        (fanout.gone, fanout.skipped) = fanout::forget_gone(
            self.store.as_ref(),
            gone,
            registered_before,
            policy,
            deadline,
        )
        .await;
        let retry: Vec<ConnectionId> = fanout.retryable().cloned().collect();
        if !retry.is_empty() {
            let attempt = match &job.work {
                Work::Retry { attempt, .. } => attempt + 1,
                Work::Shard { .. } => 1,
            };
            if attempt > self.settings.max_retries {
                tracing::error!(job = %job.key(), members = retry.len(), "members still throttled after every retry: given up");
                report.given_up = retry.len();
            } else {
                let count = retry.len();
                let retry_job = job.with(Work::Retry {
                    attempt,
                    targets: retry,
                });
                match self
                    .queue
                    .enqueue(&[retry_job], self.settings.retry_delay)
                    .await
                {
                    Ok(()) => report.retried = count,
                    Err(error) => {
                        // Not an error of the job: what it posted must not be posted again.
                        tracing::error!(job = %job.key(), %error, members = count, "the retry job could not be enqueued: given up");
                        report.given_up = count;
                    }
                }
            }
        }
        tracing::info!(
            job = %job.key(),
            targets = report.targets,
            delivered = fanout.delivered,
            gone = fanout.gone.len(),
            skipped = fanout.skipped.len(),
            failed = fanout.failed.len(),
            retried = report.retried,
            given_up = report.given_up,
            continued = report.continued,
            "fan-out job done"
        );
        report.fanout = fanout;
        Ok(report)
    }
}
