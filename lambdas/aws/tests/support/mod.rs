//! What the integration tests share: DynamoDB Local with fresh tables, and a loopback
//! @connections server that records what is posted and answers like API Gateway.
#![allow(dead_code)] // each test file uses a part of this

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use dynamodb_local::{DynamoDbLocal, Options};
use realtime_aws::clients;

/// DynamoDB Local for one test: the suite's shared one when `make test` started it
/// (`TEST_DYNAMODB_ENDPOINT`), otherwise a private one stopped on drop.
pub struct Db {
    _local: Option<DynamoDbLocal>,
    pub client: Client,
}

pub async fn db() -> Db {
    let (local, endpoint) = match std::env::var("TEST_DYNAMODB_ENDPOINT") {
        Ok(endpoint) => (None, endpoint),
        Err(_) => {
            let local = DynamoDbLocal::start(Options::default())
                .await
                .expect("DynamoDB Local starts (run `make deps` first)");
            let endpoint = local.endpoint();
            (Some(local), endpoint)
        }
    };
    let client = clients::local_dynamodb(&endpoint, clients::LOCAL_REGION, Duration::from_secs(10));
    Db {
        _local: local,
        client,
    }
}

static TABLES: AtomicU64 = AtomicU64::new(0);

/// Creates a table shaped like the stack's (pk/sk strings, TTL on `expiresAt`) with a
/// name no other test uses.
pub async fn table(client: &Client, purpose: &str) -> String {
    let name = format!(
        "test-{purpose}-{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::SeqCst)
    );
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
    client
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expiresAt")
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("enable TTL");
    name
}

/// How the fake @connections API treats a connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 and record the post.
    Accept,
    /// 410 with `x-amzn-ErrorType: GoneException`.
    Gone,
    /// 410 with no error type header.
    BareGone,
    /// 429 `LimitExceededException` this many times, then accept.
    Throttle(usize),
    /// Never answer within any sane timeout.
    Hang,
}

#[derive(Default)]
pub struct Connections {
    pub posted: Mutex<Vec<(String, Vec<u8>)>>,
    pub behaviour: Mutex<HashMap<String, Behaviour>>,
    pub latency_ms: AtomicU64,
    pub requests: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl Connections {
    pub fn set(&self, id: &str, behaviour: Behaviour) {
        self.behaviour
            .lock()
            .unwrap()
            .insert(id.to_owned(), behaviour);
    }

    /// Every frame posted to `id`, as JSON.
    pub fn frames_to(&self, id: &str) -> Vec<serde_json::Value> {
        self.posted
            .lock()
            .unwrap()
            .iter()
            .filter(|(to, _)| to == id)
            .map(|(_, data)| serde_json::from_slice(data).expect("frames are JSON"))
            .collect()
    }

    pub fn last_to(&self, id: &str) -> serde_json::Value {
        self.frames_to(id)
            .pop()
            .unwrap_or_else(|| panic!("nothing posted to {id}"))
    }

    /// Takes the behaviour for one request: throttles count down.
    fn next(&self, id: &str) -> Behaviour {
        let mut map = self.behaviour.lock().unwrap();
        match map.get(id).copied().unwrap_or(Behaviour::Accept) {
            Behaviour::Throttle(0) => Behaviour::Accept,
            Behaviour::Throttle(n) => {
                map.insert(id.to_owned(), Behaviour::Throttle(n - 1));
                Behaviour::Throttle(n)
            }
            other => other,
        }
    }
}

fn error(status: StatusCode, kind: Option<&'static str>) -> (StatusCode, HeaderMap, &'static str) {
    let mut headers = HeaderMap::new();
    if let Some(kind) = kind {
        headers.insert("x-amzn-ErrorType", kind.parse().unwrap());
    }
    (status, headers, "{\"message\":null}")
}

async fn respond(state: &Connections, id: &str) -> Option<(StatusCode, HeaderMap, &'static str)> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let latency = state.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match state.next(id) {
        Behaviour::Accept => None,
        Behaviour::Gone => Some(error(StatusCode::GONE, Some("GoneException"))),
        Behaviour::BareGone => Some(error(StatusCode::GONE, None)),
        Behaviour::Throttle(_) => Some(error(
            StatusCode::TOO_MANY_REQUESTS,
            Some("LimitExceededException"),
        )),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            None
        }
    }
}

async fn post_to(
    State(state): State<Arc<Connections>>,
    Path((_stage, id)): Path<(String, String)>,
    body: Bytes,
) -> (StatusCode, HeaderMap, &'static str) {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let answer = respond(&state, &id).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(answer) = answer {
        return answer;
    }
    state.posted.lock().unwrap().push((id, body.to_vec()));
    (StatusCode::OK, HeaderMap::new(), "")
}

/// A loopback @connections API; returns its state and the callback URL (`.../test`).
pub async fn connections_api() -> (Arc<Connections>, String) {
    let state = Arc::new(Connections::default());
    let app = Router::new()
        .route("/{stage}/@connections/{id}", post(post_to))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/test", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, url)
}
