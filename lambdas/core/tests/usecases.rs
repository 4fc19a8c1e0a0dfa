//! The use cases over in-memory adapters: every action and every error code. The caller's
//! reply is returned (the route response); the notifier only sees deliveries to others.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use realtime_core::memory::{FixedClock, MemoryAudit, MemoryNotifier, MemoryStore, SequentialIds};
use realtime_core::ports::Clock;
use realtime_core::Action;
use realtime_core::{
    AuditEvent, Caller, ConnectionId, Deadline, ErrorCode, Messaging, Outcome, Ports, Settings,
};
use serde_json::{json, Value};

struct World {
    store: Arc<MemoryStore>,
    audit: Arc<MemoryAudit>,
    notifier: Arc<MemoryNotifier>,
    clock: Arc<FixedClock>,
    app: Messaging,
}

fn world() -> World {
    world_with(|_| {})
}

/// A world whose settings `tweak` changes.
fn world_with(tweak: impl FnOnce(&mut Settings)) -> World {
    let store = Arc::new(MemoryStore::default());
    let audit = Arc::new(MemoryAudit::default());
    let notifier = Arc::new(MemoryNotifier::default());
    let clock = Arc::new(FixedClock::at(
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap(),
    ));
    let mut settings = Settings::default();
    settings.fanout.base_backoff = Duration::from_millis(1);
    tweak(&mut settings);
    let ports = Ports {
        store: store.clone(),
        rates: store.clone(),
        audit: audit.clone(),
        clock: clock.clone(),
        ids: Arc::new(SequentialIds::default()),
        settings,
    };
    let app = Messaging::new(ports, notifier.clone());
    World {
        store,
        audit,
        notifier,
        clock,
        app,
    }
}

fn caller(id: &str) -> Caller {
    Caller {
        connection_id: ConnectionId::from(id),
        request_id: format!("req-{id}"),
        user: Some(format!("user-{id}")),
    }
}

impl World {
    async fn connect(&self, id: &str) -> Caller {
        let caller = caller(id);
        self.app.ports().connect(&caller).await.expect("connect");
        caller
    }

    async fn send(&self, caller: &Caller, frame: Value) -> Outcome {
        self.app
            .on_message(caller, &frame.to_string(), Deadline::NONE)
            .await
    }

    /// Sends a frame only the caller hears about: its reply, checking that nothing was posted
    /// to anyone (the reply travels back as the route response).
    async fn ask(&self, caller: &Caller, frame: Value) -> Value {
        let attempts = self.notifier.attempts.load(Ordering::SeqCst);
        let outcome = self.send(caller, frame).await;
        assert_eq!(
            self.notifier.attempts.load(Ordering::SeqCst),
            attempts,
            "nothing posted"
        );
        reply(&outcome)
    }

    fn frames(&self, caller: &Caller) -> Vec<Value> {
        self.notifier.frames_to(&caller.connection_id)
    }

    fn last(&self, caller: &Caller) -> Value {
        self.frames(caller).pop().expect("a frame was sent")
    }
}

/// The reply to the caller, as JSON, exactly as it is sent.
fn reply(outcome: &Outcome) -> Value {
    serde_json::from_str(&outcome.frame()).expect("JSON")
}

/// The id the world's `n`th id is (connects, joins and messages each take one).
fn nth_id(w: &World, n: u64) -> String {
    SequentialIds::nth(w.clock.now(), n).to_string()
}

#[tokio::test]
async fn connect_stores_the_user_joins_the_lobby_and_is_audited() {
    let w = world();
    let alice = w.connect("A1").await;
    let stored = w.store.connection(&alice.connection_id).expect("stored");
    assert_eq!(stored.user.as_deref(), Some("user-A1"));
    assert_eq!(
        stored.expires_at - stored.connected_at,
        chrono::Duration::hours(3)
    );
    assert_eq!(
        w.ask(&alice, json!({"action": "whoami"})).await,
        json!({"type": "identity", "connectionId": "A1", "user": "user-A1", "rooms": ["lobby"]})
    );
    let kinds: Vec<_> = w.audit.entries().iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["connect"]);
}

#[tokio::test]
async fn ping_answers_pong() {
    let w = world();
    let a = w.connect("A").await;
    let outcome = w.send(&a, json!({"action": "ping"})).await;
    assert_eq!(outcome.action, Some(Action::Ping));
    assert_eq!(outcome.error(), None);
    assert_eq!(reply(&outcome), json!({"type": "pong"}));
    assert!(w.frames(&a).is_empty(), "the reply is not posted");
}

#[tokio::test]
async fn join_and_leave_reply_and_change_membership() {
    let w = world();
    let a = w.connect("A").await;
    assert_eq!(
        w.ask(&a, json!({"action": "join", "room": "rust-fans"}))
            .await,
        json!({"type": "joined", "room": "rust-fans"})
    );
    assert_eq!(
        w.ask(&a, json!({"action": "whoami"})).await["rooms"],
        json!(["lobby", "rust-fans"])
    );
    assert_eq!(
        w.ask(&a, json!({"action": "leave", "room": "rust-fans"}))
            .await,
        json!({"type": "left", "room": "rust-fans"})
    );
    assert_eq!(
        w.ask(&a, json!({"action": "whoami"})).await["rooms"],
        json!(["lobby"])
    );
    let kinds: Vec<_> = w.audit.entries().iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["connect", "join", "leave"]);
}

#[tokio::test]
async fn sendmessage_reaches_every_member_and_the_sender_only_in_that_room() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    let c = w.connect("C").await;
    w.send(&a, json!({"action": "join", "room": "r1"})).await;
    w.send(&b, json!({"action": "join", "room": "r1"})).await;
    let outcome = w
        .send(
            &a,
            json!({"action": "sendmessage", "room": "r1", "text": "hi"}),
        )
        .await;
    assert_eq!(outcome.fanout.as_ref().map(|f| f.delivered), Some(2));
    let id = nth_id(&w, 6);
    assert_eq!(
        reply(&outcome),
        json!({"type": "sent", "room": "r1", "id": id, "sentAt": "2026-11-28T12:00:00.000Z"}),
        "the ack carries the id the members see"
    );
    let expected = json!({
        "type": "message", "room": "r1", "text": "hi", "from": "A", "user": "user-A",
        "id": id, "sentAt": "2026-11-28T12:00:00.000Z"
    });
    for member in [&a, &b] {
        assert_eq!(w.frames(member), vec![expected.clone()], "only the message");
    }
    assert!(w.frames(&c).is_empty(), "C is not in r1");
}

#[tokio::test]
async fn sendmessage_without_room_goes_to_the_lobby() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    w.send(&a, json!({"action": "sendmessage", "text": "hello all"}))
        .await;
    assert_eq!(w.last(&b)["room"], "lobby");
    assert_eq!(w.last(&b)["text"], "hello all");
}

#[tokio::test]
async fn a_user_less_sender_is_null() {
    let w = world();
    let mut anon = caller("N");
    anon.user = None;
    w.app.ports().connect(&anon).await.expect("connect");
    w.send(&anon, json!({"action": "sendmessage", "text": "x"}))
        .await;
    assert_eq!(w.last(&anon)["user"], Value::Null);
}

#[tokio::test]
async fn sending_to_a_room_not_joined_is_not_member() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    w.send(&b, json!({"action": "join", "room": "r1"})).await;
    let outcome = w
        .send(
            &a,
            json!({"action": "sendmessage", "room": "r1", "text": "hi"}),
        )
        .await;
    assert_eq!(outcome.error(), Some(ErrorCode::NotMember));
    let frame = reply(&outcome);
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["code"], "not_member");
    assert_eq!(frame["requestId"], "req-A");
    assert_eq!(w.notifier.delivered(), 0, "nothing was posted, to A or B");
}

#[tokio::test]
async fn whisper_reaches_only_the_target_as_direct() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    let c = w.connect("C").await;
    let outcome = w
        .send(&a, json!({"action": "whisper", "to": "B", "text": "psst"}))
        .await;
    let ack = reply(&outcome);
    assert_eq!(ack["type"], "sent", "{ack}");
    assert_eq!(ack["to"], "B");
    assert_eq!(outcome.error(), None);
    assert_eq!(w.frames(&b).len(), 1);
    let frame = w.last(&b);
    assert_eq!(frame["type"], "message");
    assert_eq!(frame["direct"], true);
    assert_eq!(frame["from"], "A");
    assert_eq!(frame["text"], "psst");
    assert_eq!(
        frame["id"], ack["id"],
        "the ack carries the id the target sees"
    );
    assert!(frame.get("room").is_none());
    assert!(w.frames(&a).is_empty());
    assert!(w.frames(&c).is_empty());
    let last = w.audit.entries().pop().expect("audited");
    assert!(matches!(last.event, AuditEvent::Whisper { ref to, .. } if to.as_str() == "B"));
}

#[tokio::test]
async fn whisper_to_a_gone_target_is_gone_and_forgets_the_target_not_the_sender() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    w.notifier.mark_gone(&b.connection_id);
    w.clock.advance(chrono::Duration::seconds(31));
    let outcome = w
        .send(&a, json!({"action": "whisper", "to": "B", "text": "psst"}))
        .await;
    assert_eq!(outcome.error(), Some(ErrorCode::Gone));
    assert_eq!(reply(&outcome)["code"], "gone");
    assert_eq!(
        w.notifier.delivered(),
        0,
        "the error is the reply, not a post"
    );
    assert!(
        w.store.connection(&b.connection_id).is_none(),
        "B forgotten"
    );
    assert!(w.store.connection(&a.connection_id).is_some(), "A kept");
}

#[tokio::test]
async fn fanout_forgets_gone_members_and_counts_them() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    w.notifier.mark_gone(&b.connection_id);
    // Past the grace period of new connections: a 410 now means gone.
    w.clock.advance(chrono::Duration::seconds(31));
    let outcome = w
        .send(&a, json!({"action": "sendmessage", "text": "hi"}))
        .await;
    let report = outcome.fanout.expect("fanned out");
    assert_eq!(report.delivered, 1);
    assert_eq!(report.gone, vec![b.connection_id.clone()]);
    assert!(w.store.connection(&b.connection_id).is_none());
    w.send(&a, json!({"action": "sendmessage", "text": "again"}))
        .await;
    assert_eq!(
        w.notifier.attempts.load(Ordering::SeqCst),
        3,
        "A, B, then only A: B is no longer tried"
    );
}

#[tokio::test]
async fn throttled_posts_are_retried() {
    let w = world();
    let a = w.connect("A").await;
    w.notifier.throttle(2);
    let outcome = w
        .send(&a, json!({"action": "sendmessage", "text": "hi"}))
        .await;
    assert_eq!(outcome.fanout.map(|f| f.delivered), Some(1));
    assert_eq!(w.notifier.attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn history_returns_the_last_messages_oldest_first() {
    let w = world();
    let a = w.connect("A").await;
    for i in 1..=5 {
        w.send(
            &a,
            json!({"action": "sendmessage", "text": format!("t{i}")}),
        )
        .await;
        w.clock.advance(chrono::Duration::seconds(1));
    }
    let frame = w
        .ask(
            &a,
            json!({"action": "history", "room": "lobby", "limit": 3}),
        )
        .await;
    assert_eq!(frame["type"], "history");
    assert_eq!(frame["room"], "lobby");
    let texts: Vec<_> = frame["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("t3"), json!("t4"), json!("t5")]);
    let frame = w
        .ask(&a, json!({"action": "history", "room": "lobby"}))
        .await;
    assert_eq!(frame["messages"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn disconnect_forgets_the_connection_and_records_the_close() {
    let w = world();
    let a = w.connect("A").await;
    w.send(&a, json!({"action": "join", "room": "r1"})).await;
    w.app
        .ports()
        .disconnect(&a, Some(1001), Some("Going away".into()))
        .await
        .expect("disconnect");
    assert!(w.store.connection(&a.connection_id).is_none());
    let b = w.connect("B").await;
    w.send(&b, json!({"action": "join", "room": "r1"})).await;
    w.send(
        &b,
        json!({"action": "sendmessage", "room": "r1", "text": "anyone?"}),
    )
    .await;
    assert!(w.frames(&a).is_empty(), "A left every room");
    let disconnect = w
        .audit
        .entries()
        .into_iter()
        .find(|e| e.event.kind() == "disconnect")
        .expect("audited");
    assert_eq!(
        disconnect.event,
        AuditEvent::Disconnect {
            status_code: Some(1001),
            reason: Some("Going away".into())
        }
    );
}

async fn error_of(w: &World, body: &str) -> (String, String) {
    let a = caller("E");
    let outcome = w.app.on_message(&a, body, Deadline::NONE).await;
    assert!(w.frames(&a).is_empty(), "errors are replies, not posts");
    let frame = reply(&outcome);
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["requestId"], "req-E");
    (
        frame["code"].as_str().unwrap().to_owned(),
        frame["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn malformed_input_is_bad_request() {
    let w = world();
    for body in [
        "not json",
        "",
        "[1,2]",
        "\"ping\"",
        "42",
        "{\"action\": 7}",
        "{\"action\":\"join\",\"room\":5}",
        "{\"action\":\"sendmessage\",\"text\":null}",
        "{\"action\":\"join\"}",
        "{\"action\":\"history\",\"room\":\"a\",\"limit\":\"5\"}",
        "{\"action\":\"history\",\"room\":\"a\",\"limit\":2.5}",
    ] {
        let (code, message) = error_of(&w, body).await;
        assert_eq!(code, "bad_request", "{body} → {message}");
        assert!(!message.is_empty());
    }
}

#[tokio::test]
async fn unknown_or_missing_actions_list_the_valid_ones() {
    let w = world();
    for body in ["{\"action\":\"dance\"}", "{}", "{\"action\":null}"] {
        let (code, message) = error_of(&w, body).await;
        assert_eq!(code, "unknown_action", "{body}");
        assert!(
            message.contains("join, leave, sendmessage, whisper, history, whoami, ping"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn out_of_bounds_values_are_invalid() {
    let w = world();
    let long_room = "r".repeat(65);
    let big_text = "x".repeat(32 * 1024 + 1);
    let bodies = [
        json!({"action": "join", "room": ""}),
        json!({"action": "join", "room": "has space"}),
        json!({"action": "join", "room": long_room}),
        json!({"action": "join", "room": "émoji"}),
        json!({"action": "sendmessage", "text": ""}),
        json!({"action": "sendmessage", "text": big_text}),
        json!({"action": "whisper", "to": "", "text": "x"}),
        json!({"action": "history", "room": "a", "limit": 0}),
        json!({"action": "history", "room": "a", "limit": 101}),
        json!({"action": "history", "room": "a", "limit": -3}),
    ];
    for body in bodies {
        let (code, message) = error_of(&w, &body.to_string()).await;
        assert_eq!(code, "invalid", "{message}");
    }
    // The edges themselves are accepted.
    let a = w.connect("OK").await;
    assert_eq!(
        w.ask(&a, json!({"action": "join", "room": "r".repeat(64)}))
            .await["type"],
        "joined"
    );
    w.send(
        &a,
        json!({"action": "sendmessage", "text": "x".repeat(32 * 1024)}),
    )
    .await;
    assert_eq!(w.last(&a)["type"], "message");
    assert_eq!(
        w.ask(
            &a,
            json!({"action": "history", "room": "lobby", "limit": 100}),
        )
        .await["type"],
        "history"
    );
}

#[tokio::test]
async fn a_failing_store_is_internal_without_details_and_nothing_is_sent_to_others() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    w.store.fail.store(true, Ordering::SeqCst);
    for body in [
        json!({"action": "join", "room": "r"}),
        json!({"action": "sendmessage", "text": "x"}),
        json!({"action": "whoami"}),
    ] {
        let outcome = w.send(&a, body).await;
        assert_eq!(outcome.error(), Some(ErrorCode::Internal));
        let frame = reply(&outcome);
        assert_eq!(frame["code"], "internal");
        assert!(
            !frame["message"].as_str().unwrap().contains("test switch"),
            "no internals leak"
        );
    }
    assert!(w.frames(&b).is_empty(), "nothing reached B");
    assert_eq!(w.notifier.delivered(), 0, "nor A: errors are replies");
}

#[tokio::test]
async fn the_body_cannot_claim_another_identity() {
    let w = world();
    let a = w.connect("A").await;
    w.send(
        &a,
        json!({"action": "sendmessage", "text": "hi", "user": "admin", "from": "B"}),
    )
    .await;
    let frame = w.last(&a);
    assert_eq!(frame["user"], "user-A");
    assert_eq!(frame["from"], "A");
}

// ---------- acks, resume, size-safe replies, limits ----------

#[tokio::test]
async fn a_410_for_a_connection_still_connecting_keeps_its_records() {
    let w = world();
    let a = w.connect("A").await;
    w.clock.advance(chrono::Duration::seconds(60));
    // B's $connect has stored it, but API Gateway still answers 410 for it.
    let b = w.connect("B").await;
    w.notifier.mark_gone(&b.connection_id);
    let outcome = w
        .send(&a, json!({"action": "sendmessage", "text": "welcome"}))
        .await;
    let report = outcome.fanout.expect("fanned out");
    assert_eq!(
        report.skipped,
        vec![b.connection_id.clone()],
        "counted as skipped"
    );
    assert!(report.gone.is_empty(), "not as gone");
    assert!(w.store.connection(&b.connection_id).is_some(), "B kept");
    assert_eq!(
        w.ask(&b, json!({"action": "whoami"})).await["rooms"],
        json!(["lobby"])
    );
    // Once the grace period has passed, a 410 means gone.
    w.clock.advance(chrono::Duration::seconds(31));
    let report = w
        .send(&a, json!({"action": "sendmessage", "text": "still there?"}))
        .await
        .fanout
        .expect("fanned out");
    assert_eq!(report.gone, vec![b.connection_id.clone()]);
    assert!(
        w.store.connection(&b.connection_id).is_none(),
        "B forgotten"
    );
}

#[tokio::test]
async fn sendmessage_right_after_join_is_accepted_though_the_room_read_lags() {
    let w = world();
    let a = w.connect("A").await;
    w.send(&a, json!({"action": "join", "room": "fresh"})).await;
    // The room's (eventually consistent) read does not see A's join yet.
    w.store.members_lag.store(1, Ordering::SeqCst);
    let outcome = w
        .send(
            &a,
            json!({"action": "sendmessage", "room": "fresh", "text": "first!"}),
        )
        .await;
    assert_eq!(reply(&outcome)["type"], "sent", "{}", reply(&outcome));
    assert_eq!(
        w.last(&a)["text"],
        "first!",
        "the sender gets its copy all the same"
    );
}

#[tokio::test]
async fn a_non_member_is_refused_without_reading_the_room() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    w.send(&b, json!({"action": "join", "room": "club"})).await;
    let outcome = w
        .send(
            &a,
            json!({"action": "sendmessage", "room": "club", "text": "let me in"}),
        )
        .await;
    assert_eq!(outcome.error(), Some(ErrorCode::NotMember));
    assert_eq!(w.store.members_reads.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn fanout_stops_before_the_deadline_and_still_answers_the_sender() {
    let w = world_with(|s| {
        s.fanout.concurrency = 8;
        s.fanout.deadline_margin = Duration::from_secs(1);
    });
    let a = w.connect("A").await;
    for i in 0..999 {
        w.connect(&format!("M{i}")).await;
    }
    // 1,000 posts of 20 ms, 8 at a time, take 2.5 s; the deadline is 2 s away.
    w.notifier.set_latency(Duration::from_millis(20));
    let outcome = w
        .app
        .on_message(
            &a,
            &json!({"action": "sendmessage", "text": "big news"}).to_string(),
            Deadline::after(Duration::from_secs(2)),
        )
        .await;
    assert_eq!(reply(&outcome)["type"], "sent");
    let report = outcome.fanout.expect("fanned out");
    println!(
        "deadline: {} delivered, {} not attempted",
        report.delivered,
        report.not_attempted.len()
    );
    assert!(
        report.delivered > 0 && !report.not_attempted.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.delivered + report.not_attempted.len(), 1000);
    assert_eq!(w.notifier.delivered(), report.delivered);
}

/// The texts of a `history` reply, in order.
fn texts(frame: &Value) -> Vec<String> {
    frame["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn history_pages_back_with_before_and_forward_with_after() {
    let w = world_with(|s| s.rate_limit.burst = 100);
    let a = w.connect("A").await;
    let mut ids = Vec::new();
    for i in 1..=7 {
        let ack = reply(
            &w.send(
                &a,
                json!({"action": "sendmessage", "text": format!("t{i}")}),
            )
            .await,
        );
        ids.push(ack["id"].as_str().expect("id").to_owned());
        w.clock.advance(chrono::Duration::milliseconds(10));
    }
    let latest = w
        .ask(
            &a,
            json!({"action": "history", "room": "lobby", "limit": 3}),
        )
        .await;
    assert_eq!(texts(&latest), ["t5", "t6", "t7"]);
    assert_eq!(latest["more"], true);
    let older = w
        .ask(
            &a,
            json!({"action": "history", "room": "lobby", "limit": 3, "before": ids[4]}),
        )
        .await;
    assert_eq!(texts(&older), ["t2", "t3", "t4"]);
    assert_eq!(older["more"], true);
    let oldest = w
        .ask(
            &a,
            json!({"action": "history", "room": "lobby", "limit": 3, "before": ids[1]}),
        )
        .await;
    assert_eq!(texts(&oldest), ["t1"]);
    assert_eq!(oldest["more"], false);
    let resumed = w
        .ask(
            &a,
            json!({"action": "history", "room": "lobby", "limit": 4, "after": ids[1]}),
        )
        .await;
    assert_eq!(texts(&resumed), ["t3", "t4", "t5", "t6"], "oldest first");
    assert_eq!(resumed["more"], true, "a full page");
    let rest = w
        .ask(
            &a,
            json!({"action": "history", "room": "lobby", "limit": 4, "after": ids[5]}),
        )
        .await;
    assert_eq!(texts(&rest), ["t7"]);
    assert_eq!(rest["more"], false);
    let everything = w
        .ask(&a, json!({"action": "history", "room": "lobby"}))
        .await;
    assert_eq!(everything["more"], false);
    assert_eq!(texts(&everything).len(), 7);
    for bad in [
        json!({"action": "history", "room": "lobby", "before": "m1"}),
        json!({"action": "history", "room": "lobby", "after": ids[0].to_uppercase()}),
        json!({"action": "history", "room": "lobby", "before": ids[0], "after": ids[1]}),
    ] {
        let (code, message) = error_of(&w, &bad.to_string()).await;
        assert_eq!(code, "invalid", "{bad}: {message}");
    }
}

#[tokio::test]
async fn a_history_page_stops_under_the_frame_quota() {
    let w = world();
    let a = w.connect("A").await;
    for letter in ["a", "b", "c", "d", "e", "f"] {
        w.send(
            &a,
            json!({"action": "sendmessage", "text": letter.repeat(32 * 1024)}),
        )
        .await;
    }
    let outcome = w
        .send(
            &a,
            json!({"action": "history", "room": "lobby", "ref": "page1"}),
        )
        .await;
    let frame = outcome.frame();
    assert!(frame.len() <= 128 * 1024, "{} bytes", frame.len());
    let page = reply(&outcome);
    let first: Vec<String> = texts(&page).iter().map(|t| t[..1].to_owned()).collect();
    assert_eq!(first, ["d", "e", "f"], "the newest that fit");
    assert_eq!(page["more"], true);
    assert_eq!(page["ref"], "page1");
}

#[tokio::test]
async fn writes_are_rate_limited_per_connection_and_ping_is_not() {
    let w = world();
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    let mut accepted = 0;
    let mut limited = None;
    for i in 0..25 {
        let frame = reply(
            &w.send(&a, json!({"action": "sendmessage", "text": format!("{i}")}))
                .await,
        );
        match frame["type"].as_str() {
            Some("sent") => accepted += 1,
            _ => {
                limited.get_or_insert(frame);
            }
        }
    }
    assert_eq!(accepted, 20, "the burst");
    let limited = limited.expect("the 21st was limited");
    assert_eq!(limited["code"], "rate_limited");
    let wait = limited["retryAfterMs"].as_i64().expect("retryAfterMs");
    assert_eq!(wait, 100, "one token is back after 1/10 s");
    for blocked in [
        json!({"action": "whisper", "to": "B", "text": "x"}),
        json!({"action": "join", "room": "r"}),
    ] {
        assert_eq!(reply(&w.send(&a, blocked).await)["code"], "rate_limited");
    }
    assert_eq!(
        reply(&w.send(&a, json!({"action": "ping"})).await)["type"],
        "pong"
    );
    assert_eq!(
        reply(
            &w.send(&b, json!({"action": "sendmessage", "text": "me too"}))
                .await
        )["type"],
        "sent",
        "another connection has its own bucket"
    );
    w.clock.advance(chrono::Duration::milliseconds(wait));
    assert_eq!(
        reply(
            &w.send(&a, json!({"action": "sendmessage", "text": "later"}))
                .await
        )["type"],
        "sent"
    );
}

#[tokio::test]
async fn join_beyond_the_room_limit_is_limit_exceeded() {
    let w = world_with(|s| s.max_rooms_per_connection = 3);
    let a = w.connect("A").await;
    for room in ["r1", "r2"] {
        assert_eq!(
            w.ask(&a, json!({"action": "join", "room": room})).await["type"],
            "joined"
        );
    }
    let refused = w.ask(&a, json!({"action": "join", "room": "r3"})).await;
    assert_eq!(refused["code"], "limit_exceeded");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 3 rooms")),
        "{refused}"
    );
    assert_eq!(
        w.ask(&a, json!({"action": "join", "room": "r2"})).await["type"],
        "joined",
        "joining a room again is no new room"
    );
    w.send(&a, json!({"action": "leave", "room": "r1"})).await;
    assert_eq!(
        w.ask(&a, json!({"action": "join", "room": "r3"})).await["type"],
        "joined"
    );
    assert_eq!(
        w.ask(&a, json!({"action": "whoami"})).await["rooms"],
        json!(["lobby", "r2", "r3"])
    );
}

#[tokio::test]
async fn every_reply_and_error_echoes_the_ref() {
    let w = world();
    let a = w.connect("A").await;
    for frame in [
        json!({"action": "ping", "ref": "1"}),
        json!({"action": "whoami", "ref": "2"}),
        json!({"action": "join", "room": "r", "ref": "3"}),
        json!({"action": "sendmessage", "room": "r", "text": "x", "ref": "4"}),
        json!({"action": "history", "room": "r", "ref": "5"}),
        json!({"action": "leave", "room": "r", "ref": "6"}),
        json!({"action": "sendmessage", "room": "r", "text": "x", "ref": "7"}),
        json!({"action": "dance", "ref": "8"}),
        json!({"action": "join", "room": "bad room", "ref": "9"}),
    ] {
        let expected = frame["ref"].clone();
        let answer = reply(&w.send(&a, frame).await);
        assert_eq!(answer["ref"], expected, "{answer}");
    }
    let bad = reply(&w.send(&a, json!({"action": "ping", "ref": 7})).await);
    assert_eq!(bad["code"], "bad_request");
    assert!(bad.get("ref").is_none());
}

#[tokio::test]
async fn errors_quote_client_input_only_in_part() {
    let w = world();
    let huge = "x".repeat(100_000);
    for body in [
        json!({"action": "history", "room": "a", "limit": huge}),
        json!({"action": huge}),
        json!({"action": "join", "room": huge}),
        json!({"action": "history", "room": "a", "after": huge}),
    ] {
        let (_, message) = error_of(&w, &body.to_string()).await;
        assert!(
            message.chars().count() <= 301,
            "{} characters",
            message.len()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_with_no_time_left_to_deliver_is_refused_unrecorded() {
    let w = world_with(|s| s.fanout.deadline_margin = Duration::from_secs(1));
    let a = w.connect("A").await;
    let b = w.connect("B").await;
    let recorded = w.audit.entries().len();
    for body in [
        json!({"action": "sendmessage", "text": "late"}),
        json!({"action": "whisper", "to": "B", "text": "late"}),
    ] {
        let outcome = w
            .app
            .on_message(
                &a,
                &body.to_string(),
                Deadline::after(Duration::from_millis(500)),
            )
            .await;
        let frame = reply(&outcome);
        assert_eq!(frame["code"], "internal", "{frame}");
        assert!(
            frame["message"]
                .as_str()
                .is_some_and(|m| m.contains("not sent")),
            "{frame}"
        );
    }
    assert_eq!(w.audit.entries().len(), recorded, "nothing recorded");
    assert_eq!(w.notifier.delivered(), 0, "nothing posted");
    assert!(w.frames(&b).is_empty());
}
