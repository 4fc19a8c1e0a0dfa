//! The client protocol (README, "The client protocol"): every action with its reply, every error
//! code, the per-connection limits. A second user is a second connection with the same token.

use std::time::{Duration, Instant};

use realtime_core::Action;
use serde_json::{json, Value};

use crate::conn::{assert_error, closed_connection_id, unique, without_ref, Conn};
use crate::runner::Case;
use crate::target::Target;

pub fn cases() -> Vec<Case> {
    vec![
        case!(Wire, ping_answers_pong_and_echoes_the_ref),
        case!(Wire, whoami_names_the_connection_its_user_and_the_lobby),
        case!(Wire, two_connections_chat_in_a_room_and_the_lobby),
        case!(Wire, leave_ends_the_membership),
        case!(Wire, whisper_reaches_only_its_target),
        case!(Wire, history_pages_oldest_first_with_before_and_after),
        case!(Wire, text_of_32_kib_is_sent_and_longer_is_invalid),
        case!(Wire, every_protocol_error_code_reaches_the_sender),
        case!(Wire, rate_limit_refuses_with_retry_after),
        case!(Wire, rooms_limit_is_limit_exceeded_naming_the_limit),
    ]
}

async fn ping_answers_pong_and_echoes_the_ref(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    conn.send(&json!({"action": "ping"})).await;
    let pong = conn.recv_where(|v| v["type"] == "pong").await;
    assert_eq!(pong, json!({"type": "pong"}), "ping without a ref");
    // Unknown fields are ignored; the ref comes back verbatim, up to 64 characters.
    let reference = "r".repeat(64);
    let pong = conn
        .call(json!({"action": "ping", "ref": reference, "extra": {"ignored": true}}))
        .await;
    assert_eq!(pong, json!({"type": "pong", "ref": reference}));
    Ok(())
}

async fn whoami_names_the_connection_its_user_and_the_lobby(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    let identity = conn.call(json!({"action": "whoami"})).await;
    assert_eq!(
        without_ref(&identity),
        json!({"type": "identity", "connectionId": conn.id(), "user": target.user(), "rooms": ["lobby"]}),
        "a new connection is in the lobby only, as the token's user"
    );
    Ok(())
}

/// The README's chat: both members get each message with the id of the sender's ack.
async fn two_connections_chat_in_a_room_and_the_lobby(target: &Target) -> Result<(), String> {
    let user = target.user();
    let mut alice = target.connect().await;
    // The same token: a second user, as far as rooms and delivery go.
    let mut bob = target.connect().await;
    assert_ne!(alice.id(), bob.id(), "two connections, two ids");
    let room = unique("kitchen");
    for conn in [&mut alice, &mut bob] {
        let joined = conn.call(json!({"action": "join", "room": room})).await;
        assert_eq!(
            without_ref(&joined),
            json!({"type": "joined", "room": room})
        );
        // Idempotent.
        let again = conn.call(json!({"action": "join", "room": room})).await;
        assert_eq!(without_ref(&again), json!({"type": "joined", "room": room}));
    }
    let sender = alice.id().to_owned();
    let ack = alice
        .call(json!({"action": "sendmessage", "room": room, "text": "hello bob"}))
        .await;
    let id = assert_sent(&ack, "room", &room);
    for conn in [&mut alice, &mut bob] {
        let message = conn
            .recv_where(|v| v["type"] == "message" && v["id"] == id.as_str())
            .await;
        assert_eq!(
            message,
            json!({"type": "message", "room": room, "text": "hello bob", "from": sender,
                   "user": user, "id": id, "sentAt": ack["sentAt"]}),
            "the room's copy carries the ack's id and time"
        );
    }
    let ack = bob
        .call(json!({"action": "sendmessage", "room": room, "text": "hi alice"}))
        .await;
    let id = assert_sent(&ack, "room", &room);
    let message = alice
        .recv_where(|v| v["type"] == "message" && v["id"] == id.as_str())
        .await;
    assert_eq!(message["text"], "hi alice");
    assert_eq!(message["from"], bob.id());
    // Without a room: the lobby, which every connection joined at $connect.
    let ack = bob
        .call(json!({"action": "sendmessage", "text": "lobby news"}))
        .await;
    let id = assert_sent(&ack, "room", "lobby");
    let message = alice
        .recv_where(|v| v["type"] == "message" && v["id"] == id.as_str())
        .await;
    assert_eq!(message["room"], "lobby", "{message}");
    assert_eq!(message["text"], "lobby news", "{message}");
    Ok(())
}

async fn leave_ends_the_membership(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    let room = unique("hall");
    conn.call(json!({"action": "join", "room": room})).await;
    let identity = conn.call(json!({"action": "whoami"})).await;
    let mut rooms = vec![json!("lobby"), json!(room)];
    rooms.sort_by_key(|r| r.as_str().unwrap_or_default().to_owned());
    assert_eq!(identity["rooms"], json!(rooms), "rooms sorted: {identity}");
    let left = conn.call(json!({"action": "leave", "room": room})).await;
    assert_eq!(without_ref(&left), json!({"type": "left", "room": room}));
    let identity = conn.call(json!({"action": "whoami"})).await;
    assert_eq!(identity["rooms"], json!(["lobby"]), "{identity}");
    let request = json!({"action": "sendmessage", "room": room, "text": "still here?"});
    let refused = conn.call(request.clone()).await;
    assert_error(&refused, "not_member", &request);
    Ok(())
}

async fn whisper_reaches_only_its_target(target: &Target) -> Result<(), String> {
    let user = target.user();
    let mut alice = target.connect().await;
    let mut bob = target.connect().await;
    let mut carol = target.connect().await;
    let ack = alice
        .call(json!({"action": "whisper", "to": bob.id(), "text": "psst"}))
        .await;
    let id = assert_sent(&ack, "to", bob.id());
    let whisper = bob
        .recv_where(|v| v["type"] == "message" && v["id"] == id.as_str())
        .await;
    assert_eq!(
        whisper,
        json!({"type": "message", "text": "psst", "from": alice.id(), "user": user,
               "id": id, "sentAt": ack["sentAt"], "direct": true}),
        "a whisper is direct and has no room"
    );
    let is_it = |v: &Value| v["type"] == "message" && v["id"] == id.as_str();
    carol
        .assert_none_within(
            Duration::from_millis(500),
            is_it,
            "carol must not get bob's whisper",
        )
        .await;
    alice
        .assert_none_within(
            Duration::from_millis(100),
            is_it,
            "the sender gets no copy of a whisper",
        )
        .await;

    // A target that left: the sender gets `gone`.
    let gone = carol.id().to_owned();
    carol.close().await;
    let request = json!({"action": "whisper", "to": gone, "text": "still there?"});
    let error = alice.call(request.clone()).await;
    assert_error(&error, "gone", &request);
    Ok(())
}

async fn history_pages_oldest_first_with_before_and_after(target: &Target) -> Result<(), String> {
    let user = target.user();
    let mut alice = target.connect().await;
    let room = unique("log");
    alice.call(json!({"action": "join", "room": room})).await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let ack = alice
            .call(json!({"action": "sendmessage", "room": room, "text": text}))
            .await;
        ids.push(assert_sent(&ack, "room", &room));
    }
    // The audit log's reads are eventually consistent on AWS: wait until all three show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let page = alice.call(json!({"action": "history", "room": room})).await;
        if page["messages"].as_array().map(Vec::len) == Some(3) || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(all["type"], "history", "{all}");
    assert_eq!(all["room"], room.as_str(), "{all}");
    assert_eq!(all["more"], false, "{all}");
    assert_eq!(texts(&all), ["one", "two", "three"], "oldest first: {all}");
    let first = &all["messages"][0];
    assert_eq!(first["id"], ids[0].as_str(), "{all}");
    assert_eq!(first["from"], alice.id(), "{all}");
    assert_eq!(first["user"], user.as_str(), "{all}");
    assert_eq!(first["room"], room.as_str(), "{all}");

    let newest = alice
        .call(json!({"action": "history", "room": room, "limit": 2}))
        .await;
    assert_eq!(texts(&newest), ["two", "three"], "the newest 2: {newest}");
    assert_eq!(newest["more"], true, "an older one exists: {newest}");
    let older = alice
        .call(json!({"action": "history", "room": room, "before": ids[1]}))
        .await;
    assert_eq!(texts(&older), ["one"], "before two: {older}");
    assert_eq!(older["more"], false, "{older}");
    let newer = alice
        .call(json!({"action": "history", "room": room, "after": ids[0], "limit": 1}))
        .await;
    assert_eq!(texts(&newer), ["two"], "after one, one of them: {newer}");
    assert_eq!(newer["more"], true, "the page was full: {newer}");
    let rest = alice
        .call(json!({"action": "history", "room": room, "after": ids[1]}))
        .await;
    assert_eq!(texts(&rest), ["three"], "after two: {rest}");
    assert_eq!(rest["more"], false, "{rest}");
    let empty = alice
        .call(json!({"action": "history", "room": unique("never-used")}))
        .await;
    assert_eq!(empty["messages"], json!([]), "{empty}");
    assert_eq!(empty["more"], false, "{empty}");
    Ok(())
}

/// 32 KiB of text is the most a message may carry; it travels in frames of 32 KiB.
async fn text_of_32_kib_is_sent_and_longer_is_invalid(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    let room = unique("big");
    conn.call(json!({"action": "join", "room": room})).await;
    let text = "x".repeat(32 * 1024);
    let ack = conn
        .call_fragmented(json!({"action": "sendmessage", "room": room, "text": text}))
        .await;
    let id = assert_sent(&ack, "room", &room);
    let copy = conn
        .recv_where(|v| v["type"] == "message" && v["id"] == id.as_str())
        .await;
    assert_eq!(copy["text"].as_str().map(str::len), Some(32 * 1024));
    for (what, text) in [
        ("one byte over 32 KiB", "x".repeat(32 * 1024 + 1)),
        // 20,000 bytes, 120,000 once JSON-escaped.
        ("over 64 KiB once escaped", "\u{1}".repeat(20_000)),
    ] {
        let request = json!({"action": "sendmessage", "room": room, "text": text});
        let error = conn.call_fragmented(request).await;
        assert_eq!(error["type"], "error", "{what}: {error}");
        assert_eq!(error["code"], "invalid", "{what}: {error}");
    }
    Ok(())
}

async fn every_protocol_error_code_reaches_the_sender(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    let gone = closed_connection_id(target).await;
    let message_id = "0".repeat(28);
    // Frames that are not a JSON object, or have a bad ref, carry no ref to match: one at a time.
    for frame in [
        "this is not JSON",
        "[1, 2, 3]",
        r#""a string""#,
        r#"{"action": "ping", "ref": ""}"#,
        r#"{"action": "ping", "ref": 7}"#,
    ] {
        conn.send_text(frame).await;
        let error = conn.recv_where(|v| v["type"] == "error").await;
        assert_error(&error, "bad_request", &Value::Null);
        assert!(error.get("ref").is_none(), "{frame}: {error}");
    }
    let long_ref = json!({"action": "ping", "ref": "r".repeat(65)});
    conn.send(&long_ref).await;
    let error = conn.recv_where(|v| v["type"] == "error").await;
    assert_error(&error, "bad_request", &Value::Null);

    let room = unique("err");
    let cases = [
        (json!({"action": "join", "room": 7}), "bad_request"),
        (json!({"action": 5}), "bad_request"),
        (
            json!({"action": "whisper", "text": "to whom?"}),
            "bad_request",
        ),
        (json!({"ref": "no-action"}), "unknown_action"),
        (json!({"action": "dance"}), "unknown_action"),
        (json!({"action": "Ping"}), "unknown_action"),
        (
            json!({"action": "join", "room": "no spaces allowed"}),
            "invalid",
        ),
        (json!({"action": "join", "room": "r".repeat(65)}), "invalid"),
        (json!({"action": "join", "room": ""}), "invalid"),
        (
            json!({"action": "sendmessage", "room": "lobby", "text": ""}),
            "invalid",
        ),
        (
            json!({"action": "whisper", "to": "", "text": "hi"}),
            "invalid",
        ),
        (
            json!({"action": "history", "room": "lobby", "limit": 0}),
            "invalid",
        ),
        (
            json!({"action": "history", "room": "lobby", "limit": 101}),
            "invalid",
        ),
        (
            json!({"action": "history", "room": "lobby", "before": "not-an-id"}),
            "invalid",
        ),
        (
            json!({"action": "history", "room": "lobby", "after": "G".repeat(28)}),
            "invalid",
        ),
        (
            json!({"action": "history", "room": "lobby", "before": message_id, "after": message_id}),
            "invalid",
        ),
        (
            json!({"action": "sendmessage", "room": room, "text": "hi"}),
            "not_member",
        ),
        (
            json!({"action": "whisper", "to": gone, "text": "hi"}),
            "gone",
        ),
    ];
    for (request, code) in cases {
        let error = conn.call(request.clone()).await;
        assert_error(&error, code, &request);
    }
    // The unknown-action message lists the valid actions.
    let error = conn.call(json!({"action": "dance"})).await;
    let message = error["message"].as_str().unwrap_or_default();
    for action in Action::all() {
        assert!(
            message.contains(action.name()),
            "the unknown_action message names `{}`: {error}",
            action.name()
        );
    }
    // Messages quote client input only in part.
    let error = conn.call(json!({"action": "d".repeat(10_000)})).await;
    let chars = error["message"].as_str().map_or(0, |m| m.chars().count());
    assert!(chars <= 301, "a message of {chars} characters: {error}");
    // And the connection still works.
    let pong = conn.call(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    Ok(())
}

/// `join` (like `sendmessage` and `whisper`) takes a token of the connection's bucket (default
/// 10 a second, bursts of 20); `ping`, `whoami` and `history` are not limited.
async fn rate_limit_refuses_with_retry_after(target: &Target) -> Result<(), String> {
    // Pipelined in batches until the bucket runs dry: a loaded machine answers slower, and the
    // bucket refills meanwhile.
    const BATCH: usize = 20;
    const MOST: usize = 200;
    let mut conn = target.connect().await;
    let room = unique("busy");
    let started = Instant::now();
    let mut replies: Vec<Value> = Vec::new();
    while replies.len() < MOST && !replies.iter().any(|r| r["code"] == "rate_limited") {
        let mut refs = Vec::new();
        for _ in 0..BATCH {
            refs.push(
                conn.send_with_ref(json!({"action": "join", "room": room}))
                    .await,
            );
        }
        for reference in &refs {
            replies.push(conn.reply_to(reference).await);
        }
    }
    let elapsed = started.elapsed();
    let joined = replies.iter().filter(|r| r["type"] == "joined").count();
    let limited: Vec<&Value> = replies
        .iter()
        .filter(|r| r["code"] == "rate_limited")
        .collect();
    assert_eq!(
        joined + limited.len(),
        replies.len(),
        "every join answered joined or rate_limited: {replies:?}"
    );
    assert!(joined >= 1, "the first joins are accepted: {replies:?}");
    assert!(
        !limited.is_empty(),
        "{} joins in {elapsed:?} were all accepted: the stage's rate limit is above the default 10/s, bursts of 20",
        replies.len()
    );
    let mut wait = 0;
    for error in &limited {
        assert_error(error, "rate_limited", &Value::Null);
        let retry = error["retryAfterMs"].as_u64();
        assert!(
            retry.is_some_and(|ms| (1..=60_000).contains(&ms)),
            "rate_limited says when to retry: {error}"
        );
        wait = retry.unwrap_or_default();
    }
    // Not limited, even with the bucket empty.
    for request in [
        json!({"action": "ping"}),
        json!({"action": "whoami"}),
        json!({"action": "history", "room": room}),
    ] {
        let reply = conn.call(request.clone()).await;
        assert_ne!(
            reply["type"], "error",
            "{request} is not rate limited: {reply}"
        );
    }
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    let again = conn.call(json!({"action": "join", "room": room})).await;
    assert_eq!(
        again["type"], "joined",
        "accepted after retryAfterMs: {again}"
    );
    println!(
        "  rate limit: {} joins in {elapsed:?}: {joined} joined, {} rate_limited, then retryAfterMs {wait}",
        replies.len(),
        limited.len()
    );
    Ok(())
}

/// `join` beyond the rooms one connection may be in (default 50, the lobby included).
async fn rooms_limit_is_limit_exceeded_naming_the_limit(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    let prefix = unique("many");
    let mut joined = vec!["lobby".to_owned()];
    let refusal = loop {
        assert!(
            joined.len() <= 500,
            "no limit_exceeded after joining 500 rooms (the most a stage allows)"
        );
        let room = format!("{prefix}-{}", joined.len());
        let reply = join_paced(&mut conn, &room).await;
        match reply["type"].as_str() {
            Some("joined") => joined.push(room),
            _ => break reply,
        }
    };
    let request = json!({"action": "join"});
    assert_error(&refusal, "limit_exceeded", &request);
    let limit = joined.len();
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&limit.to_string()),
        "refused after {limit} rooms; the message names the limit: {refusal}"
    );
    let identity = conn.call(json!({"action": "whoami"})).await;
    assert_eq!(
        identity["rooms"].as_array().map(Vec::len),
        Some(limit),
        "{identity}"
    );
    // At the limit, a room already joined is still joined (idempotent), and leaving one makes
    // room for another.
    let again = join_paced(&mut conn, &joined[1]).await;
    assert_eq!(again["type"], "joined", "{again}");
    let left = conn
        .call(json!({"action": "leave", "room": joined[1]}))
        .await;
    assert_eq!(left["type"], "left", "{left}");
    let other = join_paced(&mut conn, &format!("{prefix}-other")).await;
    assert_eq!(other["type"], "joined", "after a leave: {other}");
    println!("  rooms limit: {limit} rooms, the lobby included");
    Ok(())
}

/// A `join`, asked again after `retryAfterMs` while rate limited.
async fn join_paced(conn: &mut Conn, room: &str) -> Value {
    loop {
        let reply = conn.call(json!({"action": "join", "room": room})).await;
        if reply["code"] != "rate_limited" {
            return reply;
        }
        let wait = reply["retryAfterMs"].as_u64().unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Checks a `sent` ack (`room` or `to` equal to `value`) and returns its message id.
fn assert_sent(ack: &Value, key: &str, value: &str) -> String {
    assert_eq!(ack["type"], "sent", "expected a sent ack, got {ack}");
    assert_eq!(ack[key], value, "{ack}");
    let other = if key == "room" { "to" } else { "room" };
    assert!(
        ack.get(other).is_none(),
        "a {key} ack has no {other}: {ack}"
    );
    let id = ack["id"].as_str().unwrap_or_default();
    assert!(
        id.len() == 28 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "a message id: {ack}"
    );
    let sent_at = ack["sentAt"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(sent_at).is_ok(),
        "sentAt is ISO-8601: {ack}"
    );
    id.to_owned()
}

fn texts(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
