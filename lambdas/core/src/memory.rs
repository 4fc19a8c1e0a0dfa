//! In-memory adapters for fast unit tests of the domain. Production and integration tests use
//! DynamoDB (Local) and the @connections API instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{
    AuditEntry, AuditEvent, ChatMessage, Connection, ConnectionId, HistoryPage, MessageId, Room,
};
use crate::ports::{
    AuditLog, Clock, ConnectionStore, FanoutQueue, IdSource, JobLedger, MemberPage, Notifier,
    NotifyError, QueueError, RateStore, StoreError,
};
use crate::queued::FanoutJob;
use crate::shards::RoomShards;

fn poisoned(operation: &'static str) -> StoreError {
    StoreError::new(operation, "in-memory store lock poisoned")
}

/// Connections and memberships in maps.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<StoreState>,
    /// When set, every call fails (to test the `internal` error path).
    pub fail: std::sync::atomic::AtomicBool,
    /// How many of the latest joins `members` does not see yet, as an eventually consistent
    /// read of DynamoDB may not (the other reads are consistent).
    pub members_lag: AtomicUsize,
    /// Calls of `members`: reads of a whole room.
    pub members_reads: AtomicUsize,
    /// How rooms are sharded (for `member_page`); the stage default unless replaced.
    pub shards: RoomShards,
}

#[derive(Debug, Default)]
struct StoreState {
    connections: HashMap<ConnectionId, Connection>,
    rooms: BTreeMap<Room, BTreeMap<ConnectionId, DateTime<Utc>>>,
    /// Memberships in the order they were written, for `members_lag`.
    joins: Vec<(Room, ConnectionId)>,
    rates: HashMap<ConnectionId, i64>,
}

impl MemoryStore {
    fn state(
        &self,
        operation: &'static str,
    ) -> Result<std::sync::MutexGuard<'_, StoreState>, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::new(
                operation,
                "store unavailable (test switch)",
            ));
        }
        self.inner.lock().map_err(|_| poisoned(operation))
    }

    /// An empty store whose rooms are sharded by `shards`.
    pub fn sharded(shards: RoomShards) -> Self {
        Self {
            shards,
            ..Self::default()
        }
    }

    /// The stored connection, if any.
    pub fn connection(&self, id: &ConnectionId) -> Option<Connection> {
        self.inner.lock().ok()?.connections.get(id).cloned()
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    fn shards(&self, room: &Room) -> u32 {
        self.shards.count(room)
    }

    async fn member_page(
        &self,
        room: &Room,
        shard: u32,
        now: DateTime<Utc>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<MemberPage, StoreError> {
        let state = self.state("member_page")?;
        let Some(members) = state.rooms.get(room) else {
            return Ok(MemberPage::default());
        };
        // As DynamoDB does: the limit counts members read, before expired ones are dropped,
        // and a full page says where the next starts, even if that one is empty.
        let read: Vec<(&ConnectionId, &DateTime<Utc>)> = members
            .iter()
            .filter(|(id, _)| after.is_none_or(|after| *id > after))
            .filter(|(id, _)| self.shards.shard_of(room, id) == shard)
            .take(limit)
            .collect();
        let next = (read.len() == limit)
            .then(|| read.last().map(|(id, _)| (*id).clone()))
            .flatten();
        let ids = read
            .into_iter()
            .filter(|(_, expires)| **expires > now)
            .map(|(id, _)| id.clone())
            .collect();
        Ok(MemberPage { ids, next })
    }

    async fn add(&self, connection: &Connection, lobby: &Room) -> Result<(), StoreError> {
        let mut state = self.state("add")?;
        state
            .connections
            .insert(connection.id.clone(), connection.clone());
        state
            .rooms
            .entry(lobby.clone())
            .or_default()
            .insert(connection.id.clone(), connection.expires_at);
        Ok(())
    }

    async fn join(
        &self,
        id: &ConnectionId,
        room: &Room,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state("join")?;
        state
            .rooms
            .entry(room.clone())
            .or_default()
            .insert(id.clone(), expires_at);
        state.joins.push((room.clone(), id.clone()));
        Ok(())
    }

    async fn leave(&self, id: &ConnectionId, room: &Room) -> Result<(), StoreError> {
        let mut state = self.state("leave")?;
        if let Some(members) = state.rooms.get_mut(room) {
            members.remove(id);
        }
        Ok(())
    }

    async fn is_member(
        &self,
        id: &ConnectionId,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let state = self.state("is_member")?;
        Ok(state
            .rooms
            .get(room)
            .and_then(|members| members.get(id))
            .is_some_and(|expires| *expires > now))
    }

    async fn members(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        self.members_reads.fetch_add(1, Ordering::SeqCst);
        let state = self.state("members")?;
        let lag = self.members_lag.load(Ordering::SeqCst);
        let unseen = &state.joins[state.joins.len().saturating_sub(lag)..];
        Ok(state
            .rooms
            .get(room)
            .map(|members| {
                members
                    .iter()
                    .filter(|(_, expires)| **expires > now)
                    .filter(|(id, _)| !unseen.iter().any(|(r, c)| r == room && c == *id))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn rooms_of(
        &self,
        id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Room>, StoreError> {
        let state = self.state("rooms_of")?;
        Ok(state
            .rooms
            .iter()
            .filter(|(_, members)| members.get(id).is_some_and(|expires| *expires > now))
            .map(|(room, _)| room.clone())
            .collect())
    }

    async fn forget(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let mut state = self.state("forget")?;
        state.connections.remove(id);
        state.rates.remove(id);
        for members in state.rooms.values_mut() {
            members.remove(id);
        }
        Ok(())
    }

    async fn forget_stale(
        &self,
        id: &ConnectionId,
        registered_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let recent = self
            .state("forget_stale")?
            .connections
            .get(id)
            .is_some_and(|c| c.connected_at >= registered_before);
        if recent {
            return Ok(false);
        }
        self.forget(id).await?;
        Ok(true)
    }
}

#[async_trait]
impl RateStore for MemoryStore {
    async fn rate_state(&self, id: &ConnectionId) -> Result<Option<i64>, StoreError> {
        Ok(self.state("rate_state")?.rates.get(id).copied())
    }

    async fn replace_rate_state(
        &self,
        id: &ConnectionId,
        expected: Option<i64>,
        next: i64,
        _expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state("replace_rate_state")?;
        if state.rates.get(id).copied() != expected {
            return Ok(false);
        }
        state.rates.insert(id.clone(), next);
        Ok(true)
    }
}

/// The audit log in a vector.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    entries: Mutex<Vec<AuditEntry>>,
}

impl MemoryAudit {
    /// Every entry recorded so far, in order.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl AuditLog for MemoryAudit {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.entries
            .lock()
            .map_err(|_| poisoned("record"))?
            .push(entry.clone());
        Ok(())
    }

    async fn messages(
        &self,
        room: &Room,
        page: &HistoryPage,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let entries = self.entries.lock().map_err(|_| poisoned("messages"))?;
        let mut messages: Vec<ChatMessage> = entries
            .iter()
            .filter(|entry| entry.expires_at > now)
            .filter_map(|entry| match &entry.event {
                AuditEvent::Message(m) if m.room.as_ref() == Some(room) => Some(m.clone()),
                _ => None,
            })
            .filter(|m| match page {
                HistoryPage::Latest => true,
                HistoryPage::Before(id) => m.id < *id,
                HistoryPage::After(id) => m.id > *id,
            })
            .collect();
        // Ids sort as DynamoDB's sort keys do.
        messages.sort_by(|a, b| a.id.cmp(&b.id));
        let limit = limit as usize;
        if matches!(page, HistoryPage::After(_)) {
            messages.truncate(limit);
        } else {
            messages.drain(..messages.len().saturating_sub(limit));
        }
        Ok(messages)
    }
}

/// Records what is posted; connections can be marked gone or throttled, and posts can be slow.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    posted: Mutex<Vec<(ConnectionId, Vec<u8>)>>,
    gone: Mutex<HashSet<ConnectionId>>,
    /// Throttle this many posts (429) before letting them through.
    throttle_next: AtomicUsize,
    /// Every post takes this long (milliseconds).
    latency_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// The most posts seen in flight at once.
    pub max_in_flight: AtomicUsize,
    /// Posts attempted, throttled ones included.
    pub attempts: AtomicUsize,
}

impl MemoryNotifier {
    /// Marks a connection as gone: posts to it answer 410.
    pub fn mark_gone(&self, id: &ConnectionId) {
        if let Ok(mut gone) = self.gone.lock() {
            gone.insert(id.clone());
        }
    }

    /// Makes the next `n` posts answer 429.
    pub fn throttle(&self, n: usize) {
        self.throttle_next.store(n, Ordering::SeqCst);
    }

    /// Makes every post take `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every frame posted to a connection, parsed as JSON.
    pub fn frames_to(&self, id: &ConnectionId) -> Vec<serde_json::Value> {
        self.posted
            .lock()
            .map(|posted| {
                posted
                    .iter()
                    .filter(|(to, _)| to == id)
                    .filter_map(|(_, data)| serde_json::from_slice(data).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many frames were delivered in all.
    pub fn delivered(&self) -> usize {
        self.posted.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn post(&self, id: &ConnectionId, data: &[u8]) -> Result<(), NotifyError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight
            .fetch_max(now_in_flight, Ordering::SeqCst);
        let latency = self.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let throttled = self
            .throttle_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            return Err(NotifyError::Throttled);
        }
        if self.gone.lock().map(|g| g.contains(id)).unwrap_or(false) {
            return Err(NotifyError::Gone);
        }
        self.posted
            .lock()
            .map_err(|_| NotifyError::Failed("lock poisoned".into()))?
            .push((id.clone(), data.to_vec()));
        Ok(())
    }
}

/// A clock that stands still until moved.
#[derive(Debug)]
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    /// A clock showing `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map(|now| *now).unwrap_or_default()
    }
}

/// Ids of the real format, predictable: the time, then 1, 2, 3, ... in place of random bits.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl SequentialIds {
    /// The id the `n`th call (from 1) makes at `at`.
    pub fn nth(at: DateTime<Utc>, n: u64) -> MessageId {
        MessageId::new(at, n)
    }
}

impl IdSource for SequentialIds {
    fn next_id(&self, now: DateTime<Utc>) -> MessageId {
        Self::nth(now, self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// Claims in a set.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    claims: Mutex<HashSet<String>>,
}

#[async_trait]
impl JobLedger for MemoryLedger {
    async fn claim(&self, key: &str, _expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut claims = self.claims.lock().map_err(|_| poisoned("claim"))?;
        Ok(claims.insert(key.to_owned()))
    }
}

/// A queue that keeps what was enqueued, for tests to work through by hand.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    jobs: Mutex<Vec<(FanoutJob, Duration)>>,
    /// When set, every enqueue fails.
    pub fail: std::sync::atomic::AtomicBool,
}

impl MemoryQueue {
    /// Takes every job enqueued so far, with its delay.
    pub fn take(&self) -> Vec<(FanoutJob, Duration)> {
        self.jobs
            .lock()
            .map(|mut jobs| std::mem::take(&mut *jobs))
            .unwrap_or_default()
    }

    /// Puts jobs back, as the queue does with a message whose processing failed.
    pub fn put_back(&self, jobs: Vec<(FanoutJob, Duration)>) {
        if let Ok(mut queued) = self.jobs.lock() {
            queued.extend(jobs);
        }
    }
}

#[async_trait]
impl FanoutQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[FanoutJob], delay: Duration) -> Result<(), QueueError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(QueueError {
                jobs: jobs.len(),
                source: "queue unavailable (test switch)".into(),
            });
        }
        let mut queued = self.jobs.lock().map_err(|_| QueueError {
            jobs: jobs.len(),
            source: "in-memory queue lock poisoned".into(),
        })?;
        queued.extend(jobs.iter().map(|job| (job.clone(), delay)));
        Ok(())
    }
}
