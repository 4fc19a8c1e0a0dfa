//! The @connections notifier against a loopback HTTP server: ids, 410, 429, timeouts, and
//! fan-out concurrency through the real SDK client.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use realtime_aws::clients;
use realtime_aws::notifier::ApiGatewayNotifier;
use realtime_core::fanout::{deliver, FanoutPolicy};
use realtime_core::ports::{Notifier, NotifyError};
use realtime_core::{ConnectionId, Deadline};
use support::Behaviour;

async fn notifier(url: &str, timeout: Duration) -> ApiGatewayNotifier {
    let config = clients::local_sdk_config(timeout).await;
    ApiGatewayNotifier::new(clients::management(&config, url, timeout))
}

#[tokio::test]
async fn post_sends_the_raw_bytes_to_the_decoded_id() {
    let (api, url) = support::connections_api().await;
    let notifier = notifier(&url, Duration::from_secs(2)).await;
    // `=`, `+` and `/` are percent-encoded by the SDK and must arrive decoded.
    let id = ConnectionId::from("L0S+M9c/OFvHcCIhw=");
    notifier
        .post(&id, b"{\"type\":\"pong\"}")
        .await
        .expect("posted");
    assert_eq!(
        api.frames_to("L0S+M9c/OFvHcCIhw="),
        vec![serde_json::json!({"type": "pong"})]
    );
}

#[tokio::test]
async fn gone_is_recognised_with_and_without_the_error_type_header() {
    let (api, url) = support::connections_api().await;
    let notifier = notifier(&url, Duration::from_secs(2)).await;
    api.set("typed", Behaviour::Gone);
    api.set("bare", Behaviour::BareGone);
    for id in ["typed", "bare"] {
        let err = notifier
            .post(&ConnectionId::from(id), b"x")
            .await
            .expect_err("gone");
        assert!(matches!(err, NotifyError::Gone), "{id}: {err:?}");
    }
}

#[tokio::test]
async fn throttling_is_reported_once_per_call_and_retried_by_the_fanout() {
    let (api, url) = support::connections_api().await;
    let notifier = notifier(&url, Duration::from_secs(2)).await;
    api.set("busy", Behaviour::Throttle(2));
    let id = ConnectionId::from("busy");
    let err = notifier.post(&id, b"x").await.expect_err("throttled");
    assert!(matches!(err, NotifyError::Throttled), "{err:?}");
    assert_eq!(
        api.requests.load(Ordering::SeqCst),
        1,
        "the SDK does not retry on its own"
    );
    let policy = FanoutPolicy {
        base_backoff: Duration::from_millis(5),
        ..FanoutPolicy::default()
    };
    let report = deliver(
        &notifier,
        std::slice::from_ref(&id),
        b"x",
        policy,
        Deadline::NONE,
    )
    .await;
    assert_eq!(report.delivered, 1);
    assert_eq!(api.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_hanging_call_times_out() {
    let (api, url) = support::connections_api().await;
    let notifier = notifier(&url, Duration::from_millis(300)).await;
    api.set("slow", Behaviour::Hang);
    let started = Instant::now();
    let err = notifier
        .post(&ConnectionId::from("slow"), b"x")
        .await
        .expect_err("timeout");
    assert!(matches!(err, NotifyError::Timeout), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn fanout_through_the_sdk_is_concurrent_up_to_the_bound() {
    let (api, url) = support::connections_api().await;
    api.latency_ms.store(20, Ordering::SeqCst);
    let notifier = notifier(&url, Duration::from_secs(5)).await;
    let targets: Vec<ConnectionId> = (0..256)
        .map(|i| ConnectionId::from(format!("c{i}")))
        .collect();
    let policy = FanoutPolicy {
        concurrency: 64,
        ..FanoutPolicy::default()
    };
    let started = Instant::now();
    let report = deliver(&notifier, &targets, b"x", policy, Deadline::NONE).await;
    let elapsed = started.elapsed();
    assert_eq!(report.delivered, 256);
    assert_eq!(
        api.max_in_flight.load(Ordering::SeqCst),
        64,
        "the bound is reached and held"
    );
    // Ideal 256 / 64 x 20 ms = 80 ms: only the floor is asserted, as the bound held means no
    // more than 64 ran at once. Speed is `make bench`'s to measure, not a test's.
    assert!(elapsed >= Duration::from_millis(75), "{elapsed:?}");
}
