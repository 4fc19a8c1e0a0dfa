//! One connection of a case: the tests' WebSocket client, with replies matched to requests by
//! `ref`, frames that arrive meanwhile kept for later, and what was exercised recorded for the
//! coverage check.

use std::collections::VecDeque;
use std::time::Duration;

use futures::SinkExt;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::coverage;
use crate::support::{self, Client, WAIT};

/// A connection to the target.
pub struct Conn {
    client: Client,
    /// Frames read while waiting for another one, oldest first.
    kept: VecDeque<Value>,
    next_ref: u32,
}

impl Conn {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            kept: VecDeque::new(),
            next_ref: 0,
        }
    }

    /// The connection id (from its `whoami` at connect).
    pub fn id(&self) -> &str {
        &self.client.id
    }

    /// Sends a request and returns its one reply (or error), matched by a `ref` added here.
    pub async fn call(&mut self, request: Value) -> Value {
        let reference = self.send_with_ref(request.clone()).await;
        let reply = self.reply_to(&reference).await;
        coverage::record(&request, &reply);
        reply
    }

    /// [`Conn::call`] for a request over 32 KiB: sent in frames of 32 KiB.
    pub async fn call_fragmented(&mut self, mut request: Value) -> Value {
        let reference = self.fresh_ref();
        request["ref"] = json!(reference);
        self.send_fragmented(&request.to_string()).await;
        let reply = self.reply_to(&reference).await;
        coverage::record(&request, &reply);
        reply
    }

    fn fresh_ref(&mut self) -> String {
        self.next_ref += 1;
        format!("c{}", self.next_ref)
    }

    /// Sends a request with a fresh `ref` (kept if it has one) and returns the `ref`.
    pub async fn send_with_ref(&mut self, mut request: Value) -> String {
        if request.get("ref").is_none() {
            request["ref"] = json!(self.fresh_ref());
        }
        let reference = request["ref"].as_str().expect("a string ref").to_owned();
        self.send(&request).await;
        reference
    }

    /// The reply whose `ref` is `reference`, within [`WAIT`].
    pub async fn reply_to(&mut self, reference: &str) -> Value {
        self.recv_where(|v| v["ref"] == reference).await
    }

    /// Sends a frame as it is.
    pub async fn send(&mut self, value: &Value) {
        self.client.send(value.clone()).await;
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.client.send_text(text).await;
    }

    /// Sends a text message in frames of 32 KiB, API Gateway's frame quota.
    pub async fn send_fragmented(&mut self, text: &str) {
        self.client.send_fragmented(text).await;
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.client
            .ws
            .send(Message::binary(bytes))
            .await
            .expect("send a binary frame");
    }

    /// The first frame (kept or new) that matches, within [`WAIT`]; panics with what came
    /// instead.
    pub async fn recv_where(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        match self.wait_for(WAIT, &matches).await {
            Some(found) => {
                coverage::record_frame(&found);
                found
            }
            None => panic!(
                "expected a frame within {WAIT:?}, got none that matched; frames received: {:?}",
                self.kept
            ),
        }
    }

    /// The first frame that matches within `within`, or `None` (frames that do not match are
    /// kept for later).
    pub async fn wait_for(
        &mut self,
        within: Duration,
        matches: &impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(at) = self.kept.iter().position(matches) {
            return self.kept.remove(at);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let frame = self.client.next(left).await?;
            if matches(&frame) {
                return Some(frame);
            }
            self.kept.push_back(frame);
        }
    }

    /// Asserts that no frame matching `matches` arrives within `within`.
    pub async fn assert_none_within(
        &mut self,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
        what: &str,
    ) {
        if let Some(frame) = self.wait_for(within, &matches).await {
            panic!("{what}, but it got {frame}");
        }
    }

    /// Reads until the server's close frame and returns its code (1005 for none).
    pub async fn expect_close(&mut self) -> u16 {
        support::close_code(self.client.expect_close().await)
    }

    /// Closes the connection from the client side (code 1000) and waits for the server's
    /// answer, so that its `$disconnect` has begun.
    pub async fn close(mut self) {
        let _ = self.client.ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            use futures::StreamExt;
            while let Some(Ok(_)) = self.client.ws.next().await {}
        })
        .await;
    }
}

/// A name no earlier run used, for rooms: a deployed stage keeps its data between runs.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{:x}", (nanos as u64) ^ u64::from(std::process::id()))
    });
    format!("{prefix}-{run}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Asserts that `reply` is the error frame `code`, with a request id and the request's `ref`.
pub fn assert_error(reply: &Value, code: &str, request: &Value) {
    assert_eq!(
        reply["type"], "error",
        "request {request}: expected error `{code}`, got {reply}"
    );
    assert_eq!(
        reply["code"], code,
        "request {request}: expected error `{code}`, got {reply}"
    );
    assert!(
        reply["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "request {request}: an error frame carries the requestId: {reply}"
    );
    assert!(
        reply["message"].as_str().is_some_and(|m| !m.is_empty()),
        "request {request}: an error frame carries a message: {reply}"
    );
    if let Some(reference) = request.get("ref") {
        assert_eq!(
            &reply["ref"], reference,
            "request {request}: the error echoes the ref: {reply}"
        );
    }
}

/// The id of a connection that was open and is closed now (a well-formed id that is gone).
pub async fn closed_connection_id(target: &crate::target::Target) -> String {
    let conn = target.connect().await;
    let id = conn.id().to_owned();
    conn.close().await;
    id
}

/// A reply without its `ref`, to compare with what the protocol says it is.
pub fn without_ref(reply: &Value) -> Value {
    let mut reply = reply.clone();
    if let Some(object) = reply.as_object_mut() {
        object.remove("ref");
    }
    reply
}
