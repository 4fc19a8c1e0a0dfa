//! The open WebSocket connections, by id. Kept small per connection: the memory of 10,000
//! idle connections is measured.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::events::{now_ms, ConnectionFacts};

/// The most bytes waiting to be written to one client before posts get 429, like API
/// Gateway's "client side buffer is full".
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// The largest message a client may send or be sent (128 KiB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

const CONNECTING: u8 = 0;
const OPEN: u8 = 1;
const CLOSING: u8 = 2;

/// Why a post to a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// Unknown, not yet open (during `$connect`), or closed.
    #[error("connection is gone")]
    Gone,
    /// The data is over 128 KiB.
    #[error("payload is over 128 KiB")]
    PayloadTooLarge,
    /// Too much is already waiting for a slow client.
    #[error("client side buffer is full")]
    BufferFull,
}

/// A frame waiting to be written to a client.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame (UTF-8 already checked).
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Binary(b) => b.len(),
        }
    }
}

/// Why the gateway closes a connection, as the close frame and `$disconnect` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// The WebSocket close code.
    pub code: u16,
    /// The close reason.
    pub reason: &'static str,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Outbound>,
    queued_bytes: usize,
    close: Option<CloseReason>,
}

/// One client connection.
pub struct Connection {
    id: Box<str>,
    connected_at_ms: i64,
    last_active_ms: AtomicI64,
    source_ip: IpAddr,
    user_agent: Option<Box<str>>,
    /// Kept as JSON text: a parsed map costs a B-tree node (~600 B) per idle connection.
    authorizer: Option<Box<str>>,
    state: AtomicU8,
    outbox: Mutex<Outbox>,
    wake: Notify,
    /// Wakes a socket task stuck writing to a client that does not read, when its close is
    /// requested (DeleteConnection, shutdown).
    closing: Notify,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection whose `$connect` is still running: posts to it get 410.
    pub fn new(id: String, source_ip: IpAddr, user_agent: Option<String>) -> Self {
        let now = now_ms();
        Self {
            id: id.into_boxed_str(),
            connected_at_ms: now,
            last_active_ms: AtomicI64::new(now),
            source_ip,
            user_agent: user_agent.map(String::into_boxed_str),
            authorizer: None,
            state: AtomicU8::new(CONNECTING),
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            closing: Notify::new(),
        }
    }

    /// Records what the authorizer returned; later events carry it.
    pub fn set_authorizer(&mut self, context: &Map<String, Value>) {
        self.authorizer = Some(Value::Object(context.clone()).to_string().into_boxed_str());
    }

    /// The connection id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What events say about this connection.
    pub fn facts(&self) -> ConnectionFacts<'_> {
        ConnectionFacts {
            id: &self.id,
            connected_at_ms: self.connected_at_ms,
            source_ip: self.source_ip,
            user_agent: self.user_agent.as_deref(),
            authorizer: self.authorizer.as_deref(),
        }
    }

    /// When the connection was accepted, epoch ms.
    pub fn connected_at_ms(&self) -> i64 {
        self.connected_at_ms
    }

    /// When the client last sent a message, epoch ms.
    pub fn last_active_ms(&self) -> i64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// The client's address.
    pub fn source_ip(&self) -> IpAddr {
        self.source_ip
    }

    /// The client's `User-Agent`.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// Records client activity (it resets the idle timeout).
    pub fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether `$connect` has accepted it and it is not closing.
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// Marks the connection accepted: posts are delivered from now on.
    pub fn open(&self) {
        let _ = self
            .state
            .compare_exchange(CONNECTING, OPEN, Ordering::AcqRel, Ordering::Acquire);
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues data from the @connections API: refused unless the connection is open.
    pub fn post(&self, data: Bytes) -> Result<(), PostError> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(PostError::PayloadTooLarge);
        }
        if !self.is_open() {
            return Err(PostError::Gone);
        }
        let frame = match std::str::from_utf8(&data) {
            Ok(_) => Outbound::Text(data),
            Err(_) => Outbound::Binary(data),
        };
        self.enqueue(frame)
    }

    /// Queues a frame the gateway itself sends (error frames, route responses).
    pub fn send_text(&self, text: String) -> Result<(), PostError> {
        if self.state.load(Ordering::Acquire) == CLOSING {
            return Err(PostError::Gone);
        }
        self.enqueue(Outbound::Text(Bytes::from(text)))
    }

    fn enqueue(&self, frame: Outbound) -> Result<(), PostError> {
        {
            let mut outbox = self.outbox();
            if outbox.close.is_some() {
                return Err(PostError::Gone);
            }
            if outbox.queued_bytes + frame.len() > MAX_QUEUED_BYTES {
                return Err(PostError::BufferFull);
            }
            outbox.queued_bytes += frame.len();
            outbox.queue.push_back(frame);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Asks the socket task to close with `reason`; false when it is already closing.
    pub fn request_close(&self, reason: CloseReason) -> bool {
        let previous = self.state.swap(CLOSING, Ordering::AcqRel);
        if previous == CLOSING {
            return false;
        }
        self.outbox().close.get_or_insert(reason);
        self.wake.notify_one();
        self.closing.notify_waiters();
        true
    }

    /// Resolves once a close has been requested.
    pub async fn close_requested(&self) {
        loop {
            let notified = self.closing.notified();
            if self.outbox().close.is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Marks the connection closing (the client went away): posts get 410 from now on.
    pub fn mark_closing(&self) {
        self.state.store(CLOSING, Ordering::Release);
    }

    /// Takes the next frame to write, or the close request once the queue is empty.
    pub fn next_outbound(&self) -> Option<Result<Outbound, CloseReason>> {
        let mut outbox = self.outbox();
        if let Some(frame) = outbox.queue.pop_front() {
            outbox.queued_bytes -= frame.len();
            if outbox.queue.is_empty() {
                // Give back the memory a burst needed: idle connections stay small.
                outbox.queue = VecDeque::new();
            }
            return Some(Ok(frame));
        }
        outbox.close.map(Err)
    }

    /// The close request, if any, with every frame still queued given up: they cannot reach a
    /// client that stopped reading.
    pub fn abandon_outbox(&self) -> Option<CloseReason> {
        let mut outbox = self.outbox();
        outbox.queue = VecDeque::new();
        outbox.queued_bytes = 0;
        outbox.close
    }

    /// Waits until there is something to write or a close request.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// What the gateway holds for its clients at one moment, and the posts it refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Open connections.
    pub connections: usize,
    /// Client messages routed and not yet answered.
    pub messages_in_flight: usize,
    /// Bytes waiting in outboxes for clients to read them.
    pub queued_bytes: usize,
    /// Posts refused because a client's outbox was full (429), since start.
    pub refused_posts: usize,
}

/// Every connection, by id, and a count of the socket tasks still running.
#[derive(Debug, Default)]
pub struct Connections {
    by_id: Mutex<HashMap<Box<str>, Arc<Connection>>>,
    tasks: TaskTracker,
    messages_in_flight: AtomicUsize,
    refused_posts: AtomicUsize,
}

impl Connections {
    fn map(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<Connection>>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection (still connecting).
    pub fn insert(&self, connection: Arc<Connection>) {
        self.map().insert(connection.id.clone(), connection);
    }

    /// Removes a connection.
    pub fn remove(&self, id: &str) -> Option<Arc<Connection>> {
        self.map().remove(id)
    }

    /// A connection by id, whatever its state.
    pub fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.map().get(id).cloned()
    }

    /// How many connections exist.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// The gateway's load now (a walk over every connection: for tests and reports).
    pub fn load(&self) -> Load {
        let all: Vec<_> = self.map().values().cloned().collect();
        Load {
            connections: all.len(),
            messages_in_flight: self.messages_in_flight.load(Ordering::Acquire),
            queued_bytes: all.iter().map(|c| c.outbox().queued_bytes).sum(),
            refused_posts: self.refused_posts.load(Ordering::Acquire),
        }
    }

    /// Counts a client message as in flight until the guard drops.
    pub fn message_guard(self: &Arc<Self>) -> MessageGuard {
        self.messages_in_flight.fetch_add(1, Ordering::AcqRel);
        MessageGuard(self.clone())
    }

    /// Counts a post refused for a full outbox.
    pub fn count_refused_post(&self) {
        self.refused_posts.fetch_add(1, Ordering::AcqRel);
    }

    /// Asks every connection to close (at shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        let all: Vec<_> = self.map().values().cloned().collect();
        for connection in all {
            connection.request_close(reason);
        }
    }

    /// Counts a socket task as running until the token drops.
    pub fn task_guard(&self) -> TaskTrackerToken {
        self.tasks.token()
    }

    /// Waits until every socket task has finished (at shutdown: tasks may still start, and
    /// are waited for too).
    pub async fn tasks_finished(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Keeps a client message counted as in flight (see [`Connections::message_guard`]).
#[derive(Debug)]
pub struct MessageGuard(Arc<Connections>);

impl Drop for MessageGuard {
    fn drop(&mut self) {
        self.0.messages_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
