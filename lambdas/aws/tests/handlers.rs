//! The handlers on real captured API Gateway events, over DynamoDB Local and a loopback
//! @connections API: every action of the protocol, end to end below the gateway. The caller's
//! reply is the response body (the route response); @connections carries the rest.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::encodings::Body;
use lambda_runtime::{Context, LambdaEvent};
use realtime_aws::dynamodb::{DynamoAudit, DynamoStore};
use realtime_aws::notifier::ApiGatewayNotifier;
use realtime_aws::{clients, handlers};
use realtime_core::ports::{RandomIds, SystemClock};
use realtime_core::{Messaging, Ports, Settings};
use serde_json::{json, Value};
use support::{Behaviour, Connections};

fn fixture(name: &str) -> ApiGatewayWebsocketProxyRequest {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture parses as a WebSocket event")
}

fn event(payload: ApiGatewayWebsocketProxyRequest) -> LambdaEvent<ApiGatewayWebsocketProxyRequest> {
    LambdaEvent::new(payload, Context::default())
}

struct Harness {
    _db: support::Db,
    api: Arc<Connections>,
    messaging: Messaging,
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

/// A harness whose use-case settings `tweak` changes.
async fn harness_with(tweak: impl FnOnce(&mut Settings)) -> Harness {
    let mut settings = Settings::default();
    tweak(&mut settings);
    let db = support::db().await;
    let connections = support::table(&db.client, "connections").await;
    let audit = support::table(&db.client, "audit").await;
    let (api, url) = support::connections_api().await;
    let sdk = clients::local_sdk_config(Duration::from_secs(5)).await;
    let store = Arc::new(DynamoStore::new(db.client.clone(), connections));
    let ports = Ports {
        store: store.clone(),
        rates: store,
        audit: Arc::new(DynamoAudit::new(db.client.clone(), audit)),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
        settings,
    };
    let notifier = ApiGatewayNotifier::new(clients::management(&sdk, &url, Duration::from_secs(5)));
    Harness {
        _db: db,
        api,
        messaging: Messaging::new(ports, Arc::new(notifier)),
    }
}

impl Harness {
    async fn connect(&self, id: &str, user: Option<&str>) {
        let mut payload = fixture("connect");
        payload.request_context.connection_id = Some(id.to_owned());
        payload.request_context.authorizer.fields.clear();
        if let Some(user) = user {
            payload
                .request_context
                .authorizer
                .fields
                .insert("principalId".into(), json!(user));
        }
        let response = handlers::connect(self.messaging.ports(), event(payload))
            .await
            .expect("connect");
        assert_eq!(response.status_code, 200);
        assert_eq!(response.body, None, "$connect has nothing to say");
    }

    /// Sends a frame as `id`: the reply in the response body, if any.
    async fn send(&self, id: &str, body: Value) -> Option<Value> {
        self.send_text(id, &body.to_string()).await
    }

    async fn send_text(&self, id: &str, body: &str) -> Option<Value> {
        let mut payload = fixture("message");
        payload.request_context.connection_id = Some(id.to_owned());
        payload.request_context.request_id = Some(format!("req-{id}"));
        payload.body = Some(body.to_owned());
        let response = handlers::message(&self.messaging, event(payload))
            .await
            .expect("message");
        assert_eq!(response.status_code, 200);
        match response.body? {
            Body::Text(text) => Some(serde_json::from_str(&text).expect("the reply is JSON")),
            other => panic!("the reply is a text body, not {other:?}"),
        }
    }

    /// Sends a frame only the caller hears about: its reply, checking that nothing went
    /// through @connections.
    async fn ask(&self, id: &str, body: Value) -> Value {
        let requests = self.api.requests.load(Ordering::SeqCst);
        let reply = self.send(id, body).await.expect("a reply in the body");
        assert_eq!(
            self.api.requests.load(Ordering::SeqCst),
            requests,
            "nothing posted"
        );
        reply
    }

    fn last(&self, id: &str) -> Value {
        self.api.last_to(id)
    }
}

#[tokio::test]
async fn the_captured_connect_event_stores_the_authorizer_principal() {
    let h = harness().await;
    let response = handlers::connect(h.messaging.ports(), event(fixture("connect")))
        .await
        .expect("connect");
    assert_eq!(response.status_code, 200);
    let identity = h.ask("TWegAcC4EowCHnA=", json!({"action": "whoami"})).await;
    // The captured event carries `principalId: admin` from its authorizer. `whoami` of the
    // MESSAGE fixture has no authorizer, but membership is the stored one.
    assert_eq!(identity["rooms"], json!(["lobby"]));
}

#[tokio::test]
async fn every_action_works_against_dynamodb_local() {
    let h = harness().await;
    h.connect("alice=", Some("alice")).await;
    h.connect("bob+/", Some("bob")).await;

    assert_eq!(
        h.ask("alice=", json!({"action": "ping"})).await,
        json!({"type": "pong"})
    );

    assert_eq!(
        h.ask("alice=", json!({"action": "join", "room": "rust"}))
            .await,
        json!({"type": "joined", "room": "rust"})
    );
    h.ask("bob+/", json!({"action": "join", "room": "rust"}))
        .await;

    let ack = h
        .send(
            "alice=",
            json!({"action": "sendmessage", "room": "rust", "text": "hi bob", "ref": "m1"}),
        )
        .await
        .expect("an ack");
    assert_eq!(ack["type"], "sent", "{ack}");
    assert_eq!(
        (ack["room"].clone(), ack["ref"].clone()),
        (json!("rust"), json!("m1"))
    );
    for id in ["alice=", "bob+/"] {
        assert_eq!(h.api.frames_to(id).len(), 1, "only the message was posted");
        let frame = h.last(id);
        assert_eq!(frame["type"], "message");
        assert_eq!(frame["room"], "rust");
        assert_eq!(frame["text"], "hi bob");
        assert_eq!(frame["from"], "alice=");
        assert_eq!(
            frame["user"],
            Value::Null,
            "MESSAGE fixture has no authorizer"
        );
        assert!(frame["sentAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            (frame["id"].clone(), frame["sentAt"].clone()),
            (ack["id"].clone(), ack["sentAt"].clone())
        );
    }

    let ack = h
        .send(
            "bob+/",
            json!({"action": "whisper", "to": "alice=", "text": "psst"}),
        )
        .await
        .expect("an ack");
    assert_eq!(
        (ack["type"].clone(), ack["to"].clone()),
        (json!("sent"), json!("alice="))
    );
    let whisper = h.last("alice=");
    assert_eq!(whisper["id"], ack["id"]);
    assert_eq!(
        (whisper["direct"].clone(), whisper["text"].clone()),
        (json!(true), json!("psst"))
    );

    let history = h
        .ask("bob+/", json!({"action": "history", "room": "rust"}))
        .await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(history["messages"][0]["text"], "hi bob");
    assert_eq!(history["more"], false);

    assert_eq!(
        h.ask("alice=", json!({"action": "whoami"})).await,
        json!({"type": "identity", "connectionId": "alice=", "user": null, "rooms": ["lobby", "rust"]})
    );

    assert_eq!(
        h.ask("alice=", json!({"action": "leave", "room": "rust"}))
            .await,
        json!({"type": "left", "room": "rust"})
    );
    let error = h
        .ask(
            "alice=",
            json!({"action": "sendmessage", "room": "rust", "text": "still here?"}),
        )
        .await;
    assert_eq!(error["code"], "not_member");
    assert_eq!(error["requestId"], "req-alice=");

    h.send(
        "alice=",
        json!({"action": "sendmessage", "text": "lobby hello"}),
    )
    .await;
    assert_eq!(h.last("bob+/")["room"], "lobby");
}

#[tokio::test]
async fn errors_reach_only_the_sender() {
    let h = harness().await;
    h.connect("a", None).await;
    h.connect("b", None).await;
    let cases = [
        ("not json", "bad_request"),
        ("{\"action\":\"fly\"}", "unknown_action"),
        ("{\"action\":\"join\",\"room\":\"no spaces\"}", "invalid"),
        (
            "{\"action\":\"sendmessage\",\"room\":\"x\",\"text\":\"t\"}",
            "not_member",
        ),
    ];
    for (body, code) in cases {
        let reply = h.send_text("a", body).await.expect("an error reply");
        assert_eq!(reply["code"], code, "{body}");
    }
    assert_eq!(
        h.api.requests.load(Ordering::SeqCst),
        0,
        "errors are replies: nothing posted, to a or b"
    );
}

#[tokio::test]
async fn a_gone_member_is_forgotten_and_a_gone_whisper_target_is_reported() {
    // No grace period: every 410 here is a connection that is gone.
    let h = harness_with(|s| s.new_connection_grace = chrono::Duration::zero()).await;
    h.connect("a", None).await;
    h.connect("stale", None).await;
    h.api.set("stale", Behaviour::Gone);
    h.send("a", json!({"action": "sendmessage", "text": "anyone?"}))
        .await;
    assert_eq!(
        h.last("a")["text"],
        "anyone?",
        "the sender still gets its copy"
    );
    h.api.set("stale", Behaviour::Accept);
    h.send("a", json!({"action": "sendmessage", "text": "again"}))
        .await;
    assert!(
        h.api.frames_to("stale").is_empty(),
        "stale was removed from the lobby"
    );

    h.api.set("ghost", Behaviour::Gone);
    let reply = h
        .send(
            "a",
            json!({"action": "whisper", "to": "ghost", "text": "boo"}),
        )
        .await
        .expect("an error reply");
    assert_eq!(reply["code"], "gone");
}

#[tokio::test]
async fn a_410_within_the_grace_period_keeps_the_new_connection() {
    let h = harness().await;
    h.connect("a", None).await;
    h.connect("newcomer", None).await;
    // API Gateway answers 410 while the newcomer's handshake completes.
    h.api.set("newcomer", Behaviour::Gone);
    h.send("a", json!({"action": "sendmessage", "text": "hello"}))
        .await;
    h.api.set("newcomer", Behaviour::Accept);
    h.send("a", json!({"action": "sendmessage", "text": "welcome"}))
        .await;
    assert_eq!(h.last("newcomer")["text"], "welcome", "still in the lobby");
    assert_eq!(
        h.ask("newcomer", json!({"action": "whoami"})).await["rooms"],
        json!(["lobby"])
    );
}

#[tokio::test]
async fn a_fanout_past_its_deadline_stops_posting_and_still_acks() {
    let h = harness_with(|s| {
        s.fanout.concurrency = 4;
        s.fanout.deadline_margin = Duration::from_millis(500);
    })
    .await;
    h.connect("sender", None).await;
    for i in 0..99 {
        h.connect(&format!("member-{i}"), None).await;
    }
    // 100 posts of 50 ms, 4 at a time, need 1.25 s; the invocation has 1.5 s, 0.5 s of margin.
    h.api.latency_ms.store(50, Ordering::SeqCst);
    let mut payload = fixture("message");
    payload.request_context.connection_id = Some("sender".into());
    payload.body = Some(json!({"action": "sendmessage", "text": "too many"}).to_string());
    let mut context = Context::default();
    context.deadline = u64::try_from(chrono::Utc::now().timestamp_millis() + 1500).expect("now");
    let response = handlers::message(&h.messaging, LambdaEvent::new(payload, context))
        .await
        .expect("answered");
    let Some(Body::Text(body)) = response.body else {
        panic!("a reply body");
    };
    let ack: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ack["type"], "sent", "{ack}");
    let posted = h.api.requests.load(Ordering::SeqCst);
    println!("deadline: {posted} of 100 posts started");
    assert!(posted > 0 && posted < 100, "{posted} posts");
}

#[tokio::test]
async fn the_captured_disconnect_event_forgets_the_connection() {
    let h = harness().await;
    h.connect("AAAA1234=", None).await;
    h.connect("other", None).await;
    let response = handlers::disconnect(h.messaging.ports(), event(fixture("disconnect")))
        .await
        .expect("disconnect");
    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, None);
    h.send("other", json!({"action": "sendmessage", "text": "bye"}))
        .await;
    assert!(h.api.frames_to("AAAA1234=").is_empty());
}

#[tokio::test]
async fn an_event_without_connection_id_is_a_clear_error() {
    let h = harness().await;
    let mut payload = fixture("message");
    payload.request_context.connection_id = None;
    let err = handlers::message(&h.messaging, event(payload))
        .await
        .expect_err("bad event");
    assert_eq!(
        err.to_string(),
        "the event has no requestContext.connectionId"
    );
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "BadEvent");
}
