//! Load and abuse, through the real gateway, handlers and DynamoDB Local: a soak with churn,
//! flooding and slow clients, connection storms. Every scenario is bounded in count and time,
//! asserts outcomes (counts, states) and prints its counts.
//!
//! Needs what `e2e.rs` needs: `make gateway-e2e-deps`.

mod support;

use std::time::{Duration, Instant};

use futures::SinkExt;
use local_gateway::quotas::Quotas;
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
    println!("load: {}", Quotas::relaxed().describe());
    let gateway = start(real_template_copy(), |o| {
        o.quotas = Quotas::relaxed();
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

/// The items of one partition of a table.
async fn partition(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    db.query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("query")
}

/// The dev stage's lobby shards (`roomShards` in cdk.json): its members live under these keys.
const LOBBY_SHARDS: u32 = 8;

/// Every membership item of the lobby, over all its shards.
async fn lobby_items(
    db: &aws_sdk_dynamodb::Client,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    for shard in 0..LOBBY_SHARDS {
        let pk = match shard {
            0 => "ROOM#lobby".to_owned(),
            k => format!("ROOM#lobby#{k}"),
        };
        items.extend(partition(db, "realtime-dev-connections", &pk).await);
    }
    items
}

/// 1,000 clients connecting at once, then all closing at once: every `$connect` is answered
/// (accepted or a clear status), every `$disconnect` runs exactly once, and DynamoDB holds no
/// record of a closed connection afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_connects_and_closes_leaves_nothing_behind() {
    const CLIENTS: usize = 1000;
    // A thousand at once is over API Gateway's 500 a second: this storm is about the gateway.
    println!("storm: {}", Quotas::relaxed().describe());
    let gateway = start(real_template_copy(), |o| o.quotas = Quotas::relaxed()).await;
    let url = gateway.websocket_url();
    let attempts = futures::future::join_all((0..CLIENTS).map(|_| {
        let url = url.clone();
        async move {
            match tokio::time::timeout(
                Duration::from_secs(60),
                tokio_tungstenite::connect_async(url),
            )
            .await
            {
                Ok(Ok((ws, _))) => Ok(ws),
                Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                    Err(format!("HTTP {}", response.status()))
                }
                Ok(Err(other)) => Err(format!("failed: {other}")),
                Err(_) => Err("no answer within 60 s".to_owned()),
            }
        }
    }))
    .await;
    let mut sockets = Vec::new();
    let mut refusals: std::collections::BTreeMap<String, usize> = Default::default();
    for attempt in attempts {
        match attempt {
            Ok(ws) => sockets.push(ws),
            Err(why) => *refusals.entry(why).or_default() += 1,
        }
    }
    let accepted = sockets.len();
    let db = local_gateway::tables::local_client(gateway.dynamodb_endpoint(), "us-east-1");
    let lobby = lobby_items(&db).await;
    // The lobby's hottest shard: what one partition key took during the storm.
    let partitions = gateway.hot_partitions();
    let hottest_lobby_wcu = partitions
        .partitions
        .iter()
        .filter(|peak| peak.key.starts_with("ROOM#lobby"))
        .map(|peak| peak.write_units)
        .fold(0.0, f64::max);
    let lobby_keys = partitions
        .partitions
        .iter()
        .filter(|peak| peak.key.starts_with("ROOM#lobby"))
        .count();
    let ids: Vec<String> = lobby
        .iter()
        .filter_map(|item| item.get("connectionId")?.as_s().ok().cloned())
        .collect();

    // All close at once.
    futures::future::join_all(sockets.iter_mut().map(|ws| ws.close(None))).await;
    drop(sockets);
    let disconnect_fn = real_function_id("disconnect");
    let mut left = usize::MAX;
    for _ in 0..600 {
        left = lobby_items(&db).await.len();
        let disconnects = gateway.invocation_count(&disconnect_fn).unwrap_or(0);
        if left == 0 && gateway.connection_count() == 0 && disconnects >= accepted as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let disconnects = gateway.invocation_count(&disconnect_fn).unwrap_or(0);
    let mut records_left = 0;
    let mut disconnects_audited = std::collections::BTreeMap::<usize, usize>::new();
    for id in &ids {
        records_left += partition(&db, "realtime-dev-connections", &format!("CONN#{id}"))
            .await
            .len();
        let audited = partition(&db, "realtime-dev-audit", &format!("CONN#{id}"))
            .await
            .iter()
            .filter(|item| {
                item.get("kind")
                    .and_then(|k| k.as_s().ok())
                    .map(String::as_str)
                    == Some("disconnect")
            })
            .count();
        *disconnects_audited.entry(audited).or_default() += 1;
    }
    println!(
        "storm: the lobby over {lobby_keys} keys, the hottest at {hottest_lobby_wcu:.0} WCU/s (limit 1,000)"
    );
    println!(
        "storm: {CLIENTS} connects: {accepted} accepted, refused {refusals:?}; {} in the lobby; \
         {disconnects} $disconnect runs; audited disconnects per connection {disconnects_audited:?}; \
         {left} lobby and {records_left} connection records left",
        ids.len()
    );
    assert_eq!(accepted + refusals.values().sum::<usize>(), CLIENTS);
    assert!(
        refusals.keys().all(|why| why.starts_with("HTTP ")),
        "every refusal is a clear status: {refusals:?}"
    );
    assert_eq!(
        ids.len(),
        accepted,
        "every accepted connection was in the lobby"
    );
    assert_eq!(
        disconnects, accepted as u64,
        "one $disconnect per connection"
    );
    assert_eq!(
        lobby_keys, LOBBY_SHARDS as usize,
        "the lobby is spread over its shards"
    );
    assert!(
        hottest_lobby_wcu < partitions.write_limit,
        "no lobby key past DynamoDB's per-partition write limit: {hottest_lobby_wcu}"
    );
    assert_eq!(
        disconnects_audited,
        std::collections::BTreeMap::from([(1, accepted)]),
        "each connection's disconnect recorded exactly once"
    );
    assert_eq!(
        (left, records_left),
        (0, 0),
        "no record of a closed connection"
    );
    gateway.shutdown().await;
}
