//! The ports: what the use cases need from the outside world. Adapters implement them
//! (DynamoDB and API Gateway in `realtime-aws`, memory in [`crate::memory`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{
    AuditEntry, ChatMessage, Connection, ConnectionId, HistoryPage, MessageId, Room,
};

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

/// Up to a bound of a room's members, and whether that was all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// The members read (at most the bound, or all of them).
    pub ids: Vec<ConnectionId>,
    /// False when the room has more members than the bound: the rest were not read.
    pub complete: bool,
}

/// One page of one shard of a room's members, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    /// The members on this page.
    pub ids: Vec<ConnectionId>,
    /// Where the next page starts (after this member), when there may be one.
    pub next: Option<ConnectionId>,
}

/// Connections and their room memberships.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// How many shards (partition keys) the room's membership is spread over; pages of
    /// [`ConnectionStore::member_page`] are per shard.
    fn shards(&self, _room: &Room) -> u32 {
        1
    }
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
    /// Whether the connection is a live member of the room, read consistently: a membership
    /// written just before is seen.
    async fn is_member(
        &self,
        id: &ConnectionId,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The live members of a room (records past their TTL excluded). May lag the latest joins
    /// and leaves (an eventually consistent read): fan-out only.
    async fn members(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError>;
    /// The live members of a room, reading no more than `max` of them (plus one, to know
    /// there are more), eventually consistent like [`ConnectionStore::members`].
    async fn members_up_to(
        &self,
        room: &Room,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Members, StoreError> {
        let mut ids = self.members(room, now).await?;
        let complete = ids.len() <= max;
        ids.truncate(max);
        Ok(Members { ids, complete })
    }
    /// Up to `limit` live members of one shard of a room, after the member `after` (a page
    /// boundary from [`MemberPage::next`]), eventually consistent.
    async fn member_page(
        &self,
        room: &Room,
        shard: u32,
        now: DateTime<Utc>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<MemberPage, StoreError>;
    /// The rooms a connection is a live member of, sorted by name, read consistently.
    async fn rooms_of(
        &self,
        id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Room>, StoreError>;
    /// Deletes every record of the connection: itself and all its memberships.
    async fn forget(&self, id: &ConnectionId) -> Result<(), StoreError>;
    /// Deletes every record of a connection the @connections API called gone, unless it was
    /// registered at or after `registered_before` (API Gateway answers 410 while a connection
    /// is still being established). True when its records were deleted.
    async fn forget_stale(
        &self,
        id: &ConnectionId,
        registered_before: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The per-connection rate limiter's state: one number per connection, the time (epoch ms)
/// at which its bucket is full again. Written only with a compare-and-set, so that concurrent
/// invocations for one connection cannot both take the last token.
#[async_trait]
pub trait RateStore: Send + Sync {
    /// The connection's stored state, read consistently; `None` when it has none.
    async fn rate_state(&self, id: &ConnectionId) -> Result<Option<i64>, StoreError>;
    /// Replaces the state if it is still `expected`; false when another request changed it.
    async fn replace_rate_state(
        &self,
        id: &ConnectionId,
        expected: Option<i64>,
        next: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Claims of queued fan-out jobs: each job is worked at most once, however often the queue
/// delivers it, so that no member gets a message twice.
#[async_trait]
pub trait JobLedger: Send + Sync {
    /// Records the claim of `key`; false when it was claimed before (a redelivery or a copy).
    async fn claim(&self, key: &str, expires_at: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// A queue call failed.
#[derive(Debug, thiserror::Error)]
#[error("enqueueing {jobs} fan-out job(s) failed: {source}")]
pub struct QueueError {
    /// How many jobs were not enqueued.
    pub jobs: usize,
    /// The adapter's error.
    #[source]
    pub source: BoxError,
}

/// The queue of the fan-out tier (SQS on AWS): delivery jobs for large rooms.
#[async_trait]
pub trait FanoutQueue: Send + Sync {
    /// Enqueues every job, each after `delay`, or fails naming how many were not enqueued.
    async fn enqueue(
        &self,
        jobs: &[crate::queued::FanoutJob],
        delay: std::time::Duration,
    ) -> Result<(), QueueError>;
}

/// The audit log: every connect, disconnect and state-changing message.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry.
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Up to `limit` messages of a room within retention, oldest first: the newest ones
    /// ([`HistoryPage::Latest`], [`HistoryPage::Before`]) or the oldest ones after a message
    /// ([`HistoryPage::After`]).
    async fn messages(
        &self,
        room: &Room,
        page: &HistoryPage,
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
    /// A new id for something accepted at `now`; it sorts after ids of earlier milliseconds.
    fn next_id(&self, now: DateTime<Utc>) -> MessageId;
}

/// Time-ordered ids made unique by 64 random bits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&self, now: DateTime<Utc>) -> MessageId {
        MessageId::new(now, crate::random::next_u64())
    }
}
