//! Delivering one frame to many connections: concurrent with a bound, retrying throttles,
//! starting nothing that the invocation's deadline would cut off.

use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::deadline::Deadline;
use crate::model::ConnectionId;
use crate::ports::{ConnectionStore, Notifier, NotifyError};

/// How a fan-out behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutPolicy {
    /// Posts in flight at once.
    pub concurrency: usize,
    /// Attempts per target when throttled (the first included).
    pub max_attempts: u32,
    /// The first backoff ceiling; doubled on each retry.
    pub base_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// No post starts when less than this is left before the deadline: a post may take the
    /// SDK timeout, and the sender must still be answered.
    pub deadline_margin: Duration,
}

impl Default for FanoutPolicy {
    fn default() -> Self {
        Self {
            concurrency: 64,
            max_attempts: 4,
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            deadline_margin: Duration::from_millis(3500),
        }
    }
}

impl FanoutPolicy {
    /// The pause before retry number `retry` (1-based): full jitter, so that throttled
    /// posts do not all come back at the same instant.
    pub fn backoff(&self, retry: u32) -> Duration {
        crate::random::full_jitter(self.base_backoff, self.max_backoff, retry)
    }
}

/// What happened to each target of a fan-out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanoutReport {
    /// Posts that succeeded.
    pub delivered: usize,
    /// Targets the @connections API called gone (410): their records are stale.
    pub gone: Vec<ConnectionId>,
    /// Targets that answered 410 but whose records were kept: registered within the grace
    /// period (still connecting), or no time was left to forget them.
    pub skipped: Vec<ConnectionId>,
    /// Targets still throttled (429) after every attempt: nothing was delivered to them.
    pub throttled: Vec<ConnectionId>,
    /// Targets that could not be reached for another reason.
    pub failed: Vec<ConnectionId>,
    /// Targets not tried: the invocation's deadline was too near.
    pub not_attempted: Vec<ConnectionId>,
}

impl FanoutReport {
    /// Targets that certainly did not get the data and may be tried again without
    /// delivering it twice: throttled and not attempted (a failed post may have arrived).
    pub fn retryable(&self) -> impl Iterator<Item = &ConnectionId> {
        self.throttled.iter().chain(&self.not_attempted)
    }
}

/// Spaces posts evenly at a fixed rate, across every task that shares it: a bound on one
/// process's share of the account's @connections throttle.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// At most `per_second` posts a second (at least one).
    pub fn new(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(None),
        }
    }

    /// Waits for the next slot. Slots are absolute times, so a late wake-up does not slow the
    /// rate down, and an idle pacer does not save up a burst.
    pub async fn wait(&self) {
        let slot = {
            let now = Instant::now();
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let slot = next.map_or(now, |at| at.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Posts `data` to every target, at most `policy.concurrency` at once, until the deadline is
/// within `policy.deadline_margin`.
pub async fn deliver(
    notifier: &dyn Notifier,
    targets: &[ConnectionId],
    data: &[u8],
    policy: FanoutPolicy,
    deadline: Deadline,
) -> FanoutReport {
    deliver_paced(notifier, targets, data, policy, deadline, None).await
}

/// [`deliver`], each attempt waiting for a slot of `pacer` when there is one.
pub async fn deliver_paced(
    notifier: &dyn Notifier,
    targets: &[ConnectionId],
    data: &[u8],
    policy: FanoutPolicy,
    deadline: Deadline,
    pacer: Option<&Pacer>,
) -> FanoutReport {
    let outcomes = stream::iter(targets)
        .map(|target| async move {
            // Checked when the post would start, not when the fan-out did.
            if deadline.is_within(policy.deadline_margin) {
                return (target, None);
            }
            let outcome = post_paced(notifier, target, data, policy, deadline, pacer).await;
            (target, Some(outcome))
        })
        .buffer_unordered(policy.concurrency.max(1));
    outcomes
        .fold(
            FanoutReport::default(),
            |mut report, (target, outcome)| async move {
                match outcome {
                    None => report.not_attempted.push(target.clone()),
                    Some(Ok(())) => report.delivered += 1,
                    Some(Err(NotifyError::Gone)) => report.gone.push(target.clone()),
                    Some(Err(NotifyError::Throttled)) => report.throttled.push(target.clone()),
                    Some(Err(error)) => {
                        tracing::warn!(target = %target, %error, "post failed");
                        report.failed.push(target.clone());
                    }
                }
                report
            },
        )
        .await
}

/// Posts once, retrying only throttles (a timed-out post may have been delivered already), and
/// no retry that the deadline would cut off.
pub async fn post_with_retry(
    notifier: &dyn Notifier,
    target: &ConnectionId,
    data: &[u8],
    policy: FanoutPolicy,
    deadline: Deadline,
) -> Result<(), NotifyError> {
    post_paced(notifier, target, data, policy, deadline, None).await
}

/// [`post_with_retry`], each attempt waiting for a slot of `pacer` when there is one.
async fn post_paced(
    notifier: &dyn Notifier,
    target: &ConnectionId,
    data: &[u8],
    policy: FanoutPolicy,
    deadline: Deadline,
    pacer: Option<&Pacer>,
) -> Result<(), NotifyError> {
    let mut attempt = 1;
    loop {
        if let Some(pacer) = pacer {
            pacer.wait().await;
        }
        match notifier.post(target, data).await {
            Err(NotifyError::Throttled)
                if attempt < policy.max_attempts && !deadline.is_within(policy.deadline_margin) =>
            {
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Deletes the records of connections the @connections API called gone, except those
/// registered at or after `registered_before` (still connecting) and those the deadline leaves
/// no time for: returns the forgotten ones and the skipped ones.
pub async fn forget_gone(
    store: &dyn ConnectionStore,
    gone: Vec<ConnectionId>,
    registered_before: chrono::DateTime<chrono::Utc>,
    policy: FanoutPolicy,
    deadline: Deadline,
) -> (Vec<ConnectionId>, Vec<ConnectionId>) {
    let results: Vec<(ConnectionId, bool)> = stream::iter(gone)
        .map(|id| async move {
            if deadline.is_within(policy.deadline_margin) {
                return (id, false);
            }
            match store.forget_stale(&id, registered_before).await {
                Ok(forgotten) => (id, forgotten),
                Err(error) => {
                    tracing::warn!(connection = %id, %error, "could not forget a gone connection");
                    (id, false)
                }
            }
        })
        .buffer_unordered(policy.concurrency.max(1))
        .collect()
        .await;
    let (forgotten, skipped): (Vec<_>, Vec<_>) =
        results.into_iter().partition(|(_, forgotten)| *forgotten);
    let ids = |pairs: Vec<(ConnectionId, bool)>| pairs.into_iter().map(|(id, _)| id).collect();
    (ids(forgotten), ids(skipped))
}
