//! Delivering one frame to many connections: concurrent with a bound, retrying throttles,
//! starting nothing that the invocation's deadline would cut off.

use std::time::Duration;

use futures::stream::{self, StreamExt};

use crate::deadline::Deadline;
use crate::model::ConnectionId;
use crate::ports::{Notifier, NotifyError};

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
    /// Targets that could not be reached for another reason.
    pub failed: Vec<ConnectionId>,
    /// Targets not tried: the invocation's deadline was too near.
    pub not_attempted: usize,
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
    let outcomes = stream::iter(targets)
        .map(|target| async move {
            // Checked when the post would start, not when the fan-out did.
            if deadline.is_within(policy.deadline_margin) {
                return (target, None);
            }
            let outcome = post_with_retry(notifier, target, data, policy, deadline).await;
            (target, Some(outcome))
        })
        .buffer_unordered(policy.concurrency.max(1));
    outcomes
        .fold(
            FanoutReport::default(),
            |mut report, (target, outcome)| async move {
                match outcome {
                    None => report.not_attempted += 1,
                    Some(Ok(())) => report.delivered += 1,
                    Some(Err(NotifyError::Gone)) => report.gone.push(target.clone()),
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
    let mut attempt = 1;
    loop {
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
