//! The use cases' settings and adapters, and what happens on `$connect` and `$disconnect`.
//! Client actions are in [`crate::messaging`].

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::error::ClientError;
use crate::fanout::FanoutPolicy;
use crate::model::{AuditEntry, AuditEvent, Caller, ChatMessage, Connection, Room};
use crate::ports::{AuditLog, Clock, ConnectionStore, IdSource, RateStore, StoreError};
use crate::rate::RatePolicy;

/// Shortest connection TTL allowed: API Gateway's maximum connection duration.
pub const MIN_CONNECTION_TTL: Duration = Duration::hours(2);

/// Tunables of the use cases, read from the stage settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// How long connection records live if `$disconnect` never comes (at least 2 h).
    pub connection_ttl: Duration,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// How fan-out to a room behaves.
    pub fanout: FanoutPolicy,
    /// The per-connection rate of `sendmessage`, `whisper` and `join`.
    pub rate_limit: RatePolicy,
    /// Rooms one connection may be in at once, the lobby included.
    pub max_rooms_per_connection: usize,
    /// A 410 for a connection registered more recently than this does not forget it: API
    /// Gateway answers 410 until a new connection's handshake has completed.
    pub new_connection_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connection_ttl: Duration::hours(3),
            audit_retention: Duration::days(30),
            fanout: FanoutPolicy::default(),
            rate_limit: RatePolicy::default(),
            max_rooms_per_connection: 50,
            new_connection_grace: Duration::seconds(30),
        }
    }
}

/// Why a use case could not complete.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request cannot be served as asked: the client is told why.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The connection store or audit log failed: the client only learns it was our fault.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The adapters the use cases run on.
#[derive(Clone)]
pub struct Ports {
    /// Connections and memberships.
    pub store: Arc<dyn ConnectionStore>,
    /// The rate limiter's state.
    pub rates: Arc<dyn RateStore>,
    /// Everything that happened, and what `history` reads.
    pub audit: Arc<dyn AuditLog>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Ids for messages and audit entries.
    pub ids: Arc<dyn IdSource>,
    /// The tunables.
    pub settings: Settings,
}

impl Ports {
    /// An audit entry for something that happens now.
    pub(crate) fn entry(
        &self,
        caller: &Caller,
        route: &str,
        size: usize,
        event: AuditEvent,
    ) -> AuditEntry {
        let at = self.clock.now();
        self.entry_at(at, caller, route, size, event)
    }

    /// An audit entry at a given time, with a fresh id (or the message's own).
    pub(crate) fn entry_at(
        &self,
        at: DateTime<Utc>,
        caller: &Caller,
        route: &str,
        size: usize,
        event: AuditEvent,
    ) -> AuditEntry {
        let id = match &event {
            AuditEvent::Message(message) | AuditEvent::Whisper { message, .. } => {
                message.id.clone()
            }
            _ => self.ids.next_id(at),
        };
        AuditEntry {
            id,
            at,
            connection_id: caller.connection_id.clone(),
            user: caller.user.clone(),
            route: route.to_owned(),
            size,
            event,
            expires_at: at + self.settings.audit_retention,
        }
    }

    /// A chat message accepted now, with a fresh id.
    pub(crate) fn message(
        &self,
        caller: &Caller,
        room: Option<Room>,
        text: String,
        direct: bool,
    ) -> ChatMessage {
        let at = self.clock.now();
        ChatMessage {
            room,
            text,
            from: caller.connection_id.clone(),
            user: caller.user.clone(),
            id: self.ids.next_id(at),
            sent_at: at,
            direct,
        }
    }

    /// `$connect`: store the connection with its user, join the lobby, audit it.
    pub async fn connect(&self, caller: &Caller) -> Result<(), AppError> {
        let now = self.clock.now();
        let connection = Connection {
            id: caller.connection_id.clone(),
            user: caller.user.clone(),
            connected_at: now,
            expires_at: now + self.settings.connection_ttl,
        };
        let entry = self.entry(caller, "$connect", 0, AuditEvent::Connect);
        let lobby = Room::lobby();
        futures::try_join!(
            self.store.add(&connection, &lobby),
            self.audit.record(&entry)
        )?;
        Ok(())
    }

    /// `$disconnect`: forget the connection and its memberships, audit it.
    pub async fn disconnect(
        &self,
        caller: &Caller,
        status_code: Option<i64>,
        reason: Option<String>,
    ) -> Result<(), AppError> {
        let entry = self.entry(
            caller,
            "$disconnect",
            0,
            AuditEvent::Disconnect {
                status_code,
                reason,
            },
        );
        futures::try_join!(
            self.store.forget(&caller.connection_id),
            self.audit.record(&entry)
        )?;
        Ok(())
    }
}
