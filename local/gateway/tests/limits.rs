//! End-to-end, through the real gateway and handlers: what a busy public chat must survive.
//! New connections that a fan-out meets while they are still connecting, replies that must fit
//! API Gateway's 128 KiB message quota, resuming after a drop, and a flooding client.
//!
//! Needs what `e2e.rs` needs: `make gateway-e2e-deps`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;

/// With the upgrade held open after `$connect` (as API Gateway holds it for some tens of
/// milliseconds), lobby fan-outs meet the new connections while @connections still answers 410
/// for them: none of them may lose its records.
#[tokio::test(flavor = "multi_thread")]
async fn connections_met_by_a_fanout_while_connecting_keep_their_lobby() {
    let gateway = start(real_template_copy(), |o| {
        o.upgrade_delay = Duration::from_millis(200);
    })
    .await;
    let mut sender = Client::connect(&gateway).await;
    let stop = Arc::new(AtomicBool::new(false));
    let chatter = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                sender
                    .send(json!({"action": "sendmessage", "text": format!("busy {sent}")}))
                    .await;
                sent += 1;
                // A few messages a second; read what comes back meanwhile.
                while sender.next(Duration::from_millis(150)).await.is_some() {}
            }
            (sender, sent)
        })
    };
    let mut newcomers = Vec::new();
    for _ in 0..40 {
        newcomers.push(Client::connect(&gateway).await);
    }
    stop.store(true, Ordering::Relaxed);
    let (mut sender, sent) = chatter.await.expect("the sender's task");
    let mut lost = Vec::new();
    for client in &mut newcomers {
        let identity = client
            .request(json!({"action": "whoami"}), "identity")
            .await;
        if !identity["rooms"]
            .as_array()
            .is_some_and(|rooms| rooms.contains(&json!("lobby")))
        {
            lost.push(identity);
        }
    }
    println!(
        "{sent} lobby messages during 40 connects, {} newcomers lost the lobby",
        lost.len()
    );
    assert!(sent >= 10, "the lobby was busy: {sent} messages");
    assert!(lost.is_empty(), "newcomers without the lobby: {lost:?}");
    sender
        .send(json!({"action": "sendmessage", "text": "welcome, all of you"}))
        .await;
    for client in &mut newcomers {
        let message = client
            .recv_where(|v| v["type"] == "message" && v["text"] == "welcome, all of you")
            .await;
        assert_eq!(message["room"], "lobby");
    }
    gateway.shutdown().await;
}

/// API Gateway's message quota, which every frame the backend sends must fit.
const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Six messages of 32 KiB, more than one reply can carry: `history` pages through all of them
/// with `before`, each page under the quota.
#[tokio::test(flavor = "multi_thread")]
async fn large_messages_page_through_history_each_reply_under_128_kib() {
    let gateway = start_real().await;
    let mut alice = Client::connect(&gateway).await;
    alice
        .request(json!({"action": "join", "room": "big"}), "joined")
        .await;
    let mut sent = Vec::new();
    for letter in ['a', 'b', 'c', 'd', 'e', 'f'] {
        let text = letter.to_string().repeat(32 * 1024);
        let request = json!({"action": "sendmessage", "room": "big", "text": text, "ref": letter.to_string()});
        alice.send_fragmented(&request.to_string()).await;
        let ack = alice
            .recv_where(|v| v["type"] == "sent" || v["type"] == "error")
            .await;
        assert_eq!(
            ack["type"],
            "sent",
            "{}",
            ack.to_string().chars().take(300).collect::<String>()
        );
        assert_eq!(ack["ref"], letter.to_string());
        sent.push(ack["id"].as_str().expect("an id").to_owned());
    }
    let mut request = json!({"action": "history", "room": "big", "limit": 100});
    let mut pages = Vec::new();
    let mut received: Vec<(String, char)> = Vec::new();
    loop {
        alice.send(request.clone()).await;
        let text = loop {
            let text = alice.next_text(WAIT).await.expect("a history reply");
            if text.contains("\"type\":\"history\"") || text.contains("\"type\":\"error\"") {
                break text;
            }
        };
        assert!(
            text.len() <= MAX_FRAME_BYTES,
            "a reply of {} bytes",
            text.len()
        );
        let page: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            page["type"],
            "history",
            "{}",
            text.chars().take(300).collect::<String>()
        );
        let messages = page["messages"].as_array().expect("messages").clone();
        assert!(
            !messages.is_empty(),
            "a page with more:true holds a message"
        );
        pages.push(messages.len());
        let mut this_page: Vec<(String, char)> = messages
            .iter()
            .map(|m| {
                let text = m["text"].as_str().expect("text");
                (
                    m["id"].as_str().expect("id").to_owned(),
                    text.chars().next().unwrap_or('?'),
                )
            })
            .collect();
        // Older pages come first in time: prepend.
        this_page.append(&mut received);
        received = this_page;
        if page["more"] != true {
            break;
        }
        request =
            json!({"action": "history", "room": "big", "limit": 100, "before": received[0].0});
    }
    println!("6 messages of 32 KiB in {} pages: {pages:?}", pages.len());
    assert!(
        pages.len() >= 2,
        "one reply cannot carry 192 KiB: {pages:?}"
    );
    let ids: Vec<String> = received.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, sent, "every message once, oldest first");
    let letters: String = received.iter().map(|(_, letter)| *letter).collect();
    assert_eq!(letters, "abcdef");
    gateway.shutdown().await;
}

/// A member that drops (no close frame) and comes back asks for what it missed with `after`.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_member_gets_what_it_missed_with_after() {
    let gateway = start_real().await;
    let mut alice = Client::connect(&gateway).await;
    let mut bob = Client::connect(&gateway).await;
    for client in [&mut alice, &mut bob] {
        client
            .request(json!({"action": "join", "room": "den"}), "joined")
            .await;
    }
    alice
        .request(
            json!({"action": "sendmessage", "room": "den", "text": "before the drop"}),
            "sent",
        )
        .await;
    let seen = bob
        .recv_where(|v| v["type"] == "message" && v["text"] == "before the drop")
        .await;
    let last_seen = seen["id"].as_str().expect("id").to_owned();
    // The TCP connection ends without a close frame.
    drop(bob);
    let mut missed = Vec::new();
    for n in 0..3 {
        let ack = alice
            .request(
                json!({"action": "sendmessage", "room": "den", "text": format!("missed {n}")}),
                "sent",
            )
            .await;
        missed.push(ack["id"].as_str().expect("the ack's id").to_owned());
    }
    let mut bob = Client::connect(&gateway).await;
    bob.request(json!({"action": "join", "room": "den"}), "joined")
        .await;
    let page = bob
        .request(
            json!({"action": "history", "room": "den", "after": last_seen, "ref": "resume"}),
            "history",
        )
        .await;
    assert_eq!(page["ref"], "resume");
    assert_eq!(page["more"], false, "{page}");
    let ids: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids, missed,
        "what was missed, oldest first, nothing else: {page}"
    );
    gateway.shutdown().await;
}

/// A client pipelining far more than its rate gets `rate_limited`; another client's messages
/// are all accepted meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_client_is_rate_limited_and_others_go_through() {
    let gateway = start_real().await;
    let mut flooder = Client::connect(&gateway).await;
    let mut calm = Client::connect(&gateway).await;
    let started = std::time::Instant::now();
    for n in 0..100 {
        flooder
            .send(json!({"action": "sendmessage", "text": format!("flood {n}"), "ref": format!("f{n}")}))
            .await;
    }
    // Answered while the flood is being served: one client does not starve another. The bound
    // (2 s) holds on any machine; the flood once kept a whoami waiting over 15 s.
    let asked = std::time::Instant::now();
    calm.send(json!({"action": "whoami", "ref": "who"})).await;
    // The flood's lobby messages come too: skip them.
    loop {
        let left = Duration::from_secs(2).saturating_sub(asked.elapsed());
        let frame = calm
            .next(left)
            .await
            .expect("whoami answered within 2 s of a flood");
        if frame["ref"] == "who" {
            assert_eq!(frame["type"], "identity", "{frame}");
            break;
        }
    }
    let whoami = asked.elapsed();
    let mut calm_acks = 0;
    for n in 0..5 {
        let ack = calm
            .request(
                json!({"action": "sendmessage", "text": format!("calm {n}"), "ref": format!("c{n}")}),
                "sent",
            )
            .await;
        assert_eq!(ack["type"], "sent", "{ack}");
        assert_eq!(ack["ref"], format!("c{n}"));
        calm_acks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut accepted, mut limited) = (0, 0);
    while accepted + limited < 100 {
        let reply = flooder
            .recv_where(|v| v["type"] == "sent" || v["type"] == "error")
            .await;
        match reply["type"].as_str() {
            Some("sent") => accepted += 1,
            _ => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                assert!(
                    reply["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
                    "{reply}"
                );
                assert!(
                    reply["ref"].as_str().is_some_and(|r| r.starts_with('f')),
                    "{reply}"
                );
                limited += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("flood: {accepted} accepted, {limited} rate_limited in {elapsed:.1} s; calm: whoami in {whoami:?}, {calm_acks} of 5 accepted");
    assert!(limited > 0, "the flood was limited");
    // A bucket of 20 refilled at 10 a second: no more than that got through.
    let bound = 20.0 + 10.0 * elapsed + 1.0;
    assert!(
        f64::from(accepted) <= bound,
        "{accepted} accepted, bound {bound:.0}"
    );
    assert_eq!(calm_acks, 5);
    gateway.shutdown().await;
}
