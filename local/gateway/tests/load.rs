//! Load and abuse, through the real gateway, handlers and DynamoDB Local: a soak with churn,
//! flooding and slow clients, connection storms. Every scenario is bounded in count and time,
//! asserts outcomes (counts, states) and prints its counts.
//!
//! Needs what `e2e.rs` needs: `make gateway-e2e-deps`.

mod support;

use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A bound on any one answer that holds on any machine: far above a loaded laptop's
/// milliseconds, far below the seconds one client could once cost every other.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// A client that pipelines 10,000 frames without reading, and one that never reads what is
/// posted to it: the gateway holds a bounded amount for each, everyone else is answered, the
/// non-reader's posts get 429 and the sender's fan-out still completes.
#[tokio::test(flavor = "multi_thread")]
async fn flooding_and_slow_clients_cost_the_others_nothing() {
    let gateway = start(real_template_copy(), |o| {
        // This scenario is about the gateway, not the per-connection rate limit.
        o.extra_env
            .insert("RATE_LIMIT_PER_SECOND".into(), "1000".into());
        o.extra_env.insert("RATE_LIMIT_BURST".into(), "1000".into());
    })
    .await;
    let max_in_flight = 10;
    let mut flooder = Client::connect(&gateway).await;
    let slow = Client::connect(&gateway).await;
    let mut sender = Client::connect(&gateway).await;
    let mut other = Client::connect(&gateway).await;

    let flood = tokio::spawn(async move {
        let frame = json!({"action": "ping"}).to_string();
        for _ in 0..10_000 {
            // Fed without flushing each one: as fast as the gateway lets the socket take them.
            if flooder.ws.feed(Message::text(frame.clone())).await.is_err() {
                break;
            }
        }
        let _ = flooder.ws.flush().await;
        flooder
    });
    let mut slowest = Duration::ZERO;
    let mut peak = local_gateway::connections::Load::default();
    for n in 0..20 {
        let started = Instant::now();
        other
            .send(json!({"action": "ping", "ref": format!("p{n}")}))
            .await;
        let pong = other
            .next(ANSWER_BOUND)
            .await
            .unwrap_or_else(|| panic!("ping {n} unanswered within {ANSWER_BOUND:?}"));
        assert_eq!(pong["ref"], format!("p{n}"), "{pong}");
        slowest = slowest.max(started.elapsed());
        let load = gateway.load();
        peak.messages_in_flight = peak.messages_in_flight.max(load.messages_in_flight);
        peak.queued_bytes = peak.queued_bytes.max(load.queued_bytes);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The non-reader: lobby messages of 30 KiB until its outbox (and TCP's buffers) are full.
    let text = "s".repeat(30 * 1024);
    let mut acks = 0;
    for n in 0..300 {
        let request = json!({"action": "sendmessage", "text": text, "ref": format!("s{n}")});
        sender.send_fragmented(&request.to_string()).await;
        let ack = sender
            .recv_where(|v| v["type"] == "sent" || v["type"] == "error")
            .await;
        assert_eq!(ack["type"], "sent", "{}", ack["code"]);
        acks += 1;
        let load = gateway.load();
        peak.queued_bytes = peak.queued_bytes.max(load.queued_bytes);
        if load.refused_posts > 0 {
            break;
        }
    }
    let refused = gateway.load().refused_posts;
    println!(
        "flood: slowest other ping {slowest:?}; at most {} messages in flight and {} KiB queued; \
         {acks} messages of 30 KiB acked before the non-reader's posts got 429 ({refused} refused)",
        peak.messages_in_flight,
        peak.queued_bytes / 1024
    );
    // The flooder's frames are read only as fast as its own are answered; everyone else has
    // at most a few in flight.
    assert!(
        peak.messages_in_flight <= max_in_flight + 3,
        "{} messages in flight",
        peak.messages_in_flight
    );
    // Four outboxes of at most 1 MiB each.
    assert!(peak.queued_bytes <= 4 * 1024 * 1024, "{peak:?}");
    assert!(refused > 0, "the non-reader's posts were refused with 429");
    flood.abort();
    drop(slow);
    gateway.shutdown().await;
}
