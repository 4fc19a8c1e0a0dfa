//! Fan-out is concurrent with a bound: N posts at a fixed latency take about N / bound x latency.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use realtime_core::fanout::{deliver, FanoutPolicy};
use realtime_core::memory::MemoryNotifier;
use realtime_core::{ConnectionId, Deadline};

fn targets(n: usize) -> Vec<ConnectionId> {
    (0..n)
        .map(|i| ConnectionId::from(format!("c{i}")))
        .collect()
}

#[tokio::test]
async fn concurrency_is_bounded_and_used() {
    let notifier = MemoryNotifier::default();
    notifier.set_latency(Duration::from_millis(20));
    let policy = FanoutPolicy {
        concurrency: 8,
        ..FanoutPolicy::default()
    };
    let started = Instant::now();
    let report = deliver(&notifier, &targets(64), b"x", policy, Deadline::NONE).await;
    let elapsed = started.elapsed();
    assert_eq!(report.delivered, 64);
    assert_eq!(
        notifier.max_in_flight.load(Ordering::SeqCst),
        8,
        "never more than the bound, and the bound reached"
    );
    // Ideal: 64 / 8 x 20 ms = 160 ms. Only the floor is asserted: no more than the bound ran
    // at once. How close to ideal it comes is `make bench`'s to measure, not a test's.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
}

#[tokio::test]
async fn gone_and_failed_targets_are_reported_apart() {
    let notifier = MemoryNotifier::default();
    let all = targets(5);
    notifier.mark_gone(&all[1]);
    notifier.mark_gone(&all[3]);
    let report = deliver(
        &notifier,
        &all,
        b"x",
        FanoutPolicy::default(),
        Deadline::NONE,
    )
    .await;
    assert_eq!(report.delivered, 3);
    let mut gone = report.gone.clone();
    gone.sort();
    assert_eq!(gone, vec![all[1].clone(), all[3].clone()]);
    assert!(report.failed.is_empty());
}

#[tokio::test]
async fn throttles_give_up_after_max_attempts() {
    let notifier = MemoryNotifier::default();
    notifier.throttle(100);
    let policy = FanoutPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(1),
        ..FanoutPolicy::default()
    };
    let report = deliver(&notifier, &targets(1), b"x", policy, Deadline::NONE).await;
    // Throttled is not failed: nothing arrived, so the queued tier may try it again.
    assert_eq!(report.throttled.len(), 1);
    assert!(report.failed.is_empty());
    assert_eq!(report.retryable().count(), 1);
    assert_eq!(notifier.attempts.load(Ordering::SeqCst), 3);
}

#[test]
fn backoff_is_jittered_under_a_doubling_ceiling() {
    let policy = FanoutPolicy {
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..FanoutPolicy::default()
    };
    let samples: Vec<Duration> = (0..200).map(|_| policy.backoff(2)).collect();
    assert!(samples.iter().all(|d| *d <= Duration::from_millis(20)));
    assert!(
        samples.iter().any(|d| *d != samples[0]),
        "jittered, not fixed"
    );
    assert!(
        (0..200)
            .map(|_| policy.backoff(10))
            .all(|d| d <= Duration::from_millis(50)),
        "capped"
    );
}
