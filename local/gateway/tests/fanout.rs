//! The queued fan-out tier end to end on the real stack: the message handler enqueues, the
//! gateway's SQS and event source mapping feed the real `fanout` binary, and every member
//! gets the message exactly once, under the roles the stack grants.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{real_function_id, real_template, resources, start, write_template, Client};

/// Members above which the test stage queues a room's delivery (the dev stage says 1,000).
const ABOVE: usize = 5;

/// The logical id of the one resource of a type whose id starts with `prefix`.
fn resource_id(template: &Value, kind: &str, prefix: &str) -> String {
    let ids: Vec<String> = template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(id, r)| r["Type"] == kind && id.starts_with(prefix))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "one {kind} named {prefix}*: {ids:?}");
    ids[0].clone()
}

/// The real template, its message function queueing rooms above [`ABOVE`] members.
fn template_queueing_small_rooms() -> Value {
    let mut template = real_template();
    let message = real_function_id("message");
    let variables =
        &mut resources(&mut template)[&message]["Properties"]["Environment"]["Variables"];
    assert!(
        variables.get("FANOUT_QUEUE_URL").is_some(),
        "the stack gives the message function the queue"
    );
    variables["QUEUED_FANOUT_ABOVE"] = json!(ABOVE.to_string());
    template
}

/// Copies of message `id` that arrive: the first within `first`, then any more until
/// nothing came for `quiet`.
async fn copies(client: &mut Client, id: &str, first: Duration, quiet: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + first;
    let mut seen = 0;
    loop {
        let wait = if seen == 0 {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            quiet
        };
        match client.next(wait).await {
            Some(frame) if frame["type"] == "message" && frame["id"] == id => seen += 1,
            Some(_) => {}
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_above_the_threshold_is_delivered_through_the_queue_once_to_each_member() {
    let template = template_queueing_small_rooms();
    let queue = resource_id(&template, "AWS::SQS::Queue", "FanoutQueue");
    let dead_letters = resource_id(&template, "AWS::SQS::Queue", "FanoutDeadLetterQueue");
    let mapping = resource_id(&template, "AWS::Lambda::EventSourceMapping", "Fanout");
    let gateway = start(write_template(&template), |_| {}).await;

    let mut members = Vec::new();
    for _ in 0..ABOVE * 3 {
        members.push(Client::connect(&gateway).await);
    }
    let sent = members[0]
        .request(
            json!({"action": "sendmessage", "text": "to the big lobby", "ref": "q1"}),
            "sent",
        )
        .await;
    assert_eq!(sent["queued"], true, "{sent}");
    assert_eq!(sent["ref"], "q1");
    let id = sent["id"].as_str().expect("id").to_owned();

    // Each member gets it once: the first within seconds, no second copy after.
    let mut counts = Vec::new();
    for member in &mut members {
        counts.push(
            copies(
                member,
                &id,
                Duration::from_secs(10),
                Duration::from_millis(300),
            )
            .await,
        );
    }
    assert!(
        counts.iter().all(|n| *n == 1),
        "copies per member: {counts:?}"
    );

    // The fan-out function did it, through the mapping, and the queue is drained.
    assert!(gateway.event_source_invocations(&mapping).unwrap_or(0) >= 1);
    assert!(
        gateway
            .invocation_count(&real_function_id("fanout"))
            .unwrap_or(0)
            >= 1
    );
    let counts = gateway.queue_counts(&queue).expect("queue");
    println!("fan-out queue after delivery: {counts:?}");
    assert_eq!(
        gateway.queue_messages(&dead_letters).map(|m| m.len()),
        Some(0),
        "no job failed"
    );
    // Every call of both functions was allowed by the roles the stack grants.
    assert!(gateway.denials().is_empty(), "{:?}", gateway.denials());

    // A room at or under the threshold is still delivered before the ack, without the queue.
    for member in &mut members[..2] {
        member
            .request(json!({"action": "join", "room": "pair"}), "joined")
            .await;
    }
    let invocations = gateway.invocation_count(&real_function_id("fanout"));
    let sent = members[0]
        .request(
            json!({"action": "sendmessage", "room": "pair", "text": "just us"}),
            "sent",
        )
        .await;
    assert!(sent.get("queued").is_none(), "{sent}");
    let id = sent["id"].as_str().expect("id").to_owned();
    let pair = copies(
        &mut members[1],
        &id,
        Duration::from_secs(2),
        Duration::from_millis(300),
    );
    assert_eq!(pair.await, 1);
    assert_eq!(
        gateway.invocation_count(&real_function_id("fanout")),
        invocations
    );
    gateway.shutdown().await;
}
