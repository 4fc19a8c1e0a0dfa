//! The ports: what the use cases need from the outside world. Adapters implement them
//! (DynamoDB and API Gateway in `realtime-aws`, memory in [`crate::memory`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{AuditEntry, ChatMessage, Connection, ConnectionId, Room};

/// A boxed error from an adapter, kept for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A storage operation failed (connections or audit log).
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {source}")]
pub struct StoreError {
    /// What was being done, e.g. `join`.
    pub operation: &'static str,
    /// The adapter's error.
    #[source]
    pub source: BoxError,
}

impl StoreError {
    /// Wraps an adapter error with the operation that failed.
    pub fn new(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            operation,
            source: source.into(),
        }
    }
}

/// Connections and their room memberships.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Records a new connection and its membership of `lobby`, all or nothing.
    async fn add(&self, connection: &Connection, lobby: &Room) -> Result<(), StoreError>;
    /// Makes the connection a member of the room (idempotent).
    async fn join(
        &self,
        id: &ConnectionId,
        room: &Room,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Ends the connection's membership of the room (idempotent).
    async fn leave(&self, id: &ConnectionId, room: &Room) -> Result<(), StoreError>;
    /// The live members of a room (records past their TTL excluded).
    async fn members(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError>;
    /// The rooms a connection is a live member of, sorted by name.
    async fn rooms_of(
        &self,
        id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Room>, StoreError>;
    /// Deletes every record of the connection: itself and all its memberships.
    async fn forget(&self, id: &ConnectionId) -> Result<(), StoreError>;
}

/// The audit log: every connect, disconnect and state-changing message.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry.
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The last `limit` messages of a room, oldest first.
    async fn recent_messages(
        &self,
        room: &Room,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>, StoreError>;
}

/// Why a call to a connection (the @connections API) failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The connection no longer exists (410): its records are stale.
    #[error("the connection is gone")]
    Gone,
    /// Throttled (429): worth retrying after a pause.
    #[error("throttled by the @connections API")]
    Throttled,
    /// The data is over the 128 KiB limit (413).
    #[error("the data is too large to post")]
    PayloadTooLarge,
    /// No answer within the configured timeout.
    #[error("the @connections call timed out")]
    Timeout,
    /// Anything else (403, 5xx, network): logged, not retried.
    #[error("the @connections call failed: {0}")]
    Failed(BoxError),
}

/// Sends data to connected clients (API Gateway's @connections API).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one frame to a connection. (The API's GET and DELETE are left out: no use case
    /// needs them, and the stack grants POST only.)
    async fn post(&self, id: &ConnectionId, data: &[u8]) -> Result<(), NotifyError>;
}

/// The current time (a port so that tests can fix it).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Unique ids for messages and audit entries (a port so that tests can predict them).
pub trait IdSource: Send + Sync {
    /// A new id that sorts after ids made earlier at a coarser time.
    fn next_id(&self, now: DateTime<Utc>) -> String;
}

/// Time-ordered random ids: 12 hex digits of epoch milliseconds, then 16 random hex digits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&self, now: DateTime<Utc>) -> String {
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        format!("{millis:012x}{:016x}", crate::random::next_u64())
    }
}
