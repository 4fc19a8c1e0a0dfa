//! In-memory adapters for fast unit tests of the domain. Production and integration tests use
//! DynamoDB (Local) and the @connections API instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{AuditEntry, AuditEvent, ChatMessage, Connection, ConnectionId, Room};
use crate::ports::{AuditLog, Clock, ConnectionStore, IdSource, Notifier, NotifyError, StoreError};

fn poisoned(operation: &'static str) -> StoreError {
    StoreError::new(operation, "in-memory store lock poisoned")
}

/// Connections and memberships in maps.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<StoreState>,
    /// When set, every call fails (to test the `internal` error path).
    pub fail: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct StoreState {
    connections: HashMap<ConnectionId, Connection>,
    rooms: BTreeMap<Room, BTreeMap<ConnectionId, DateTime<Utc>>>,
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

    /// The stored connection, if any.
    pub fn connection(&self, id: &ConnectionId) -> Option<Connection> {
        self.inner.lock().ok()?.connections.get(id).cloned()
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
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
        Ok(())
    }

    async fn leave(&self, id: &ConnectionId, room: &Room) -> Result<(), StoreError> {
        let mut state = self.state("leave")?;
        if let Some(members) = state.rooms.get_mut(room) {
            members.remove(id);
        }
        Ok(())
    }

    async fn members(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let state = self.state("members")?;
        Ok(state
            .rooms
            .get(room)
            .map(|members| {
                members
                    .iter()
                    .filter(|(_, expires)| **expires > now)
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
        for members in state.rooms.values_mut() {
            members.remove(id);
        }
        Ok(())
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

    async fn recent_messages(
        &self,
        room: &Room,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let entries = self
            .entries
            .lock()
            .map_err(|_| poisoned("recent_messages"))?;
        let mut messages: Vec<ChatMessage> = entries
            .iter()
            .rev()
            .filter(|entry| entry.expires_at > now)
            .filter_map(|entry| match &entry.event {
                AuditEvent::Message(m) if m.room.as_ref() == Some(room) => Some(m.clone()),
                _ => None,
            })
            .take(limit as usize)
            .collect();
        messages.reverse();
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

/// Ids `m1`, `m2`, ... in order.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdSource for SequentialIds {
    fn next_id(&self, _now: DateTime<Utc>) -> String {
        format!("m{}", self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}
