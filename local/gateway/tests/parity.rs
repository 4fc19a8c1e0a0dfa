//! The details where the gateway once differed from API Gateway, each as AWS documents or
//! real captured events show it (see `shared/reference/apigw-websocket.md`, last section).
//! The test handler stands behind `$connect`, `$disconnect` and the authorizer, and writes
//! every event it gets to a file, so the tests read the events as a handler sees them.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use local_gateway::Gateway;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A gateway whose `$connect`, `$disconnect`, authorizer and `echo` route are the test
/// handler, logging each event to the returned file.
async fn recording_gateway(tweak: impl FnOnce(&mut local_gateway::Options)) -> (Gateway, PathBuf) {
    static N: AtomicU32 = AtomicU32::new(0);
    let log = std::env::temp_dir().join(format!(
        "local-gateway-parity-{}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&log);
    let mut template = real_template();
    add_test_routes(
        &mut template,
        &["$connect", "$disconnect", "echo", "extra-keys", "big"],
    );
    add_test_authorizer(&mut template);
    let path = log.display().to_string();
    let gateway = start(write_template(&template), |o| {
        o.extra_env.insert("TEST_EVENT_LOG".into(), path);
        tweak(o);
    })
    .await;
    (gateway, log)
}

/// The events logged so far whose `type` is `kind` (`REQUEST`: the authorizer's), or else
/// whose `requestContext.eventType` is (the authorizer's says `CONNECT` too).
fn events(log: &PathBuf, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| match kind {
            "REQUEST" => e["type"] == kind,
            _ => e["type"] != "REQUEST" && e["requestContext"]["eventType"] == kind,
        })
        .collect()
}

/// Waits until `count` events of `kind` are logged.
async fn wait_for_events(log: &PathBuf, kind: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = events(log, kind);
        if found.len() >= count || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_api_gateway_id(id: &str) -> bool {
    id.len() == 16
        && id.ends_with('=')
        && id[..15]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_use_the_url_safe_alphabet() {
    let gateway = start_real().await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let mut client = Client::connect(&gateway).await;
        ids.push(client.id.clone());
        client.send(json!({"action": "dance"})).await;
        let error = client.recv_where(|v| v["type"] == "error").await;
        ids.push(error["requestId"].as_str().unwrap_or_default().to_owned());
    }
    // 80 ids of 15 random characters: with `+` and `/` in the alphabet, some would hold one.
    let bad: Vec<_> = ids.iter().filter(|id| !is_api_gateway_id(id)).collect();
    assert!(bad.is_empty(), "not API Gateway's shape: {bad:?}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_names_arrive_as_the_client_spelled_them() {
    let (gateway, log) = recording_gateway(|_| {}).await;
    // A raw handshake: WebSocket libraries lowercase header names.
    let host = gateway.local_addr().to_string();
    let mut stream = TcpStream::connect(&host).await.expect("connect");
    let request = format!(
        "GET /dev?token=allow HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         HeaderAuth1: headerValue1\r\nx-api-key: some-key\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, stream.read(&mut head))
        .await
        .expect("an answer")
        .expect("read");
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    let authorizer = wait_for_events(&log, "REQUEST", 1).await;
    let headers = authorizer[0]["headers"]
        .as_object()
        .expect("headers")
        .clone();
    for name in [
        "HeaderAuth1",
        "x-api-key",
        "Connection",
        "Upgrade",
        "content-length",
    ] {
        assert!(
            headers.contains_key(name),
            "authorizer lacks {name}: {headers:?}"
        );
    }
    assert_eq!(headers["content-length"], "0");
    let connect = wait_for_events(&log, "CONNECT", 1).await;
    let headers = connect[0]["headers"].as_object().expect("headers").clone();
    assert!(headers.contains_key("HeaderAuth1"), "{headers:?}");
    assert!(headers.contains_key("x-api-key"), "{headers:?}");
    assert!(!headers.contains_key("headerauth1"), "{headers:?}");
    for name in ["Connection", "Upgrade", "connection", "upgrade"] {
        assert!(
            !headers.contains_key(name),
            "$connect has no {name}: {headers:?}"
        );
    }
    drop(stream);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_reason_is_the_clients_own() {
    let (gateway, log) = recording_gateway(|_| {}).await;
    let url = format!("{}?token=allow", gateway.websocket_url());
    for (code, reason) in [(1001, ""), (4000, "done for today"), (1000, "")] {
        let mut client = Client::connect_to(&url).await;
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        client
            .ws
            .send(Message::Close(Some(frame)))
            .await
            .expect("close");
        // Read the close reply until the stream ends.
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(2), client.ws.next()).await
        {}
    }
    let disconnects = wait_for_events(&log, "DISCONNECT", 3).await;
    let got: Vec<_> = disconnects
        .iter()
        .map(|e| {
            (
                e["requestContext"]["disconnectStatusCode"].clone(),
                e["requestContext"]["disconnectReason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (json!(1001), json!("")),
            (json!(4000), json!("done for today")),
            (json!(1000), json!("")),
        ]
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_to_a_client_keep_it_from_going_idle() {
    let gateway = start(real_template_copy(), |o| {
        o.idle_timeout = Duration::from_secs(2)
    })
    .await;
    let mut listener = Client::connect(&gateway).await;
    let connections = management(&gateway);
    // The client only receives, for twice the idle timeout.
    for i in 0..8 {
        connections
            .post_to_connection()
            .connection_id(&listener.id)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                json!({"type": "tick", "n": i}).to_string(),
            ))
            .send()
            .await
            .expect("the connection is still open");
        listener.recv_where(|v| v["type"] == "tick").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Silence both ways: now it goes idle.
    let closed = listener.expect_close().await;
    assert_eq!(close_code(closed), 1001);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_percent_encoded_connections_path_is_the_connections_api() {
    let gateway = start_real().await;
    let mut alice = Client::connect(&gateway).await;
    let path = format!("/dev/%40connections/{}", alice.id.replace('=', "%3D"));
    let (status, _, body) = signed_http(&gateway, "POST", &path, br#"{"type":"hello"}"#).await;
    assert_eq!(status, 200, "{body}");
    alice.recv_where(|v| v["type"] == "hello").await;
    let (status, _, body) = signed_http(&gateway, "GET", &path, b"").await;
    assert_eq!(status, 200, "{body}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authorizer_context_null_stays_null_and_objects_fail() {
    let (gateway, _log) = recording_gateway(|_| {}).await;
    let url = gateway.websocket_url();
    let mut alice = Client::connect_to(&format!("{url}?token=null-context")).await;
    alice.send(json!({"action": "echo"})).await;
    let echo = alice.recv_where(|v| v["routeKey"] == "echo").await;
    assert_eq!(echo["authorizer"]["user"], Value::Null, "{echo}");
    assert!(echo["authorizer"]["integrationLatency"].is_u64(), "{echo}");
    let (status, body) = refused(format!("{url}?token=object-context")).await;
    assert_eq!(status, 500, "{body}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn results_outside_the_proxy_format_and_oversized_replies_are_internal_errors() {
    let (gateway, _log) = recording_gateway(|_| {}).await;
    let mut alice = Client::connect_to(&format!("{}?token=allow", gateway.websocket_url())).await;
    for request in [
        json!({"action": "extra-keys"}),
        // A reply over 128 KB cannot be one frame.
        json!({"action": "big", "size": 140_000}),
    ] {
        alice.send(request.clone()).await;
        let frame = alice.next(WAIT).await.expect("a frame");
        assert_eq!(
            frame["message"], "Internal server error",
            "{request}: {frame}"
        );
        assert!(is_api_gateway_id(
            frame["requestId"].as_str().unwrap_or_default()
        ));
    }
    // A reply just under the quota still comes whole.
    alice.send(json!({"action": "big", "size": 100_000})).await;
    let reply = alice.next_text(WAIT).await.expect("the big reply");
    assert_eq!(reply.len(), 100_000);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_refuse_what_api_gateway_refuses() {
    // The stage throttled to 1 request a second with bursts of 2, on every route.
    let mut template = real_template();
    add_test_routes(&mut template, &["echo"]);
    add_test_authorizer(&mut template);
    let stage = resources(&mut template)
        .values_mut()
        .find(|r| r["Type"] == "AWS::ApiGatewayV2::Stage")
        .expect("a stage");
    stage["Properties"]["DefaultRouteSettings"] =
        json!({"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 2});
    let gateway = start(write_template(&template), |_| {}).await;
    let url = gateway.websocket_url();

    // Messages: two pass, the third gets API Gateway's frame.
    let mut alice = Client::connect_to(&format!("{url}?token=allow")).await;
    let mut frames = Vec::new();
    for _ in 0..3 {
        alice.send(json!({"action": "echo"})).await;
        frames.push(alice.next(WAIT).await.expect("a frame"));
    }
    assert_eq!(frames[0]["routeKey"], "echo");
    assert_eq!(frames[1]["routeKey"], "echo");
    assert_eq!(frames[2]["message"], "Too Many Requests", "{}", frames[2]);
    // $connect: alice took one of its two; the next takes the other, then 429.
    let _bob = Client::connect_to(&format!("{url}?token=allow")).await;
    let (status, body) = refused(format!("{url}?token=allow")).await;
    assert_eq!(status, 429, "{body}");

    // An over-long URL and an over-large authorizer result, on a gateway without throttling.
    let relaxed = start(write_template(&template), |o| {
        o.quotas.stage_throttling = false;
    })
    .await;
    let url = relaxed.websocket_url();
    let long = format!("{url}?token=allow&pad={}", "x".repeat(4096));
    assert_eq!(refused(long).await.0, 414);
    assert_eq!(refused(format!("{url}?token=huge-context")).await.0, 500);
    let _carol = Client::connect_to(&format!("{url}?token=allow")).await;
    relaxed.shutdown().await;
    gateway.shutdown().await;
}
