//! The nouns of the domain: connections, rooms, users, messages.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{quoted, ClientError, ErrorCode};

/// The room every connection joins at `$connect`, and where `sendmessage` without a room goes.
pub const LOBBY: &str = "lobby";

/// An API Gateway connection id (opaque, e.g. `L0SM9cOFvHcCIhw=`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for ConnectionId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for ConnectionId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room name: 1 to 64 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Room(String);

impl Room {
    /// Longest room name accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates a room name.
    pub fn parse(name: &str) -> Result<Self, ClientError> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(ClientError::new(
                ErrorCode::Invalid,
                format!(
                    "room `{}` is not valid: use 1 to {} letters, digits, `_` or `-`",
                    quoted(name, Self::MAX_LEN),
                    Self::MAX_LEN
                ),
            ))
        }
    }

    /// The room every connection joins at `$connect`.
    pub fn lobby() -> Self {
        Self(LOBBY.to_owned())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message id: 12 hex digits of the epoch milliseconds at which the server accepted the
/// message, then 16 random ones. Ids therefore sort by time, and a page boundary (`before`,
/// `after`) can be found from the id alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    /// Characters in an id.
    pub const LEN: usize = 28;

    /// The id of something accepted at `at`, made unique by `random`.
    pub fn new(at: DateTime<Utc>, random: u64) -> Self {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        Self(format!("{millis:012x}{random:016x}"))
    }

    /// Checks an id a client sent in `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, ClientError> {
        let valid = text.len() == Self::LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(ClientError::new(
                ErrorCode::Invalid,
                format!(
                    "`{field}` must be a message id ({} lower-case hex digits), not `{}`",
                    Self::LEN,
                    quoted(text, Self::LEN)
                ),
            ))
        }
    }

    /// An id read back from storage, where only ids this code made are kept.
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    /// When the message was accepted, from the id's first digits.
    pub fn accepted_at(&self) -> Option<DateTime<Utc>> {
        let millis = i64::from_str_radix(self.0.get(..12)?, 16).ok()?;
        DateTime::from_timestamp_millis(millis)
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which messages of a room `history` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryPage {
    /// The newest ones.
    Latest,
    /// The newest ones older than this message.
    Before(MessageId),
    /// The oldest ones newer than this message.
    After(MessageId),
}

/// Who is calling: the connection, the API Gateway request, and the authenticated user if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's connection.
    pub connection_id: ConnectionId,
    /// The API Gateway request id, echoed in error frames.
    pub request_id: String,
    /// The user the authorizer vouched for (never taken from the message body).
    pub user: Option<String>,
}

/// A chat message as delivered to clients and kept in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The room; absent for a direct message.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub room: Option<Room>,
    /// The text.
    pub text: String,
    /// The sender's connection id.
    pub from: ConnectionId,
    /// The sender's user, or null.
    pub user: Option<String>,
    /// Its id, ordered by the time it was accepted.
    pub id: MessageId,
    /// When the server accepted the message; sent as ISO-8601 in UTC with milliseconds.
    #[serde(rename = "sentAt", serialize_with = "serialize_iso8601")]
    pub sent_at: DateTime<Utc>,
    /// True for a whisper.
    #[serde(skip_serializing_if = "is_false", default)]
    pub direct: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Writes a time as [`iso8601`] does (for serde).
pub fn serialize_iso8601<S: Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&iso8601(*time))
}

/// Formats a time as the protocol does: ISO-8601 in UTC with milliseconds.
pub fn iso8601(time: DateTime<Utc>) -> String {
    // By hand: chrono's RFC 3339 writer is more code than this one format needs.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.timestamp_subsec_millis().min(999)
    )
}

/// A connection as stored at `$connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Its id.
    pub id: ConnectionId,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// When it connected.
    pub connected_at: DateTime<Utc>,
    /// When its records may be deleted by TTL, in case `$disconnect` never comes.
    pub expires_at: DateTime<Utc>,
}

/// What the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// A connection was accepted.
    Connect,
    /// A connection closed.
    Disconnect {
        /// The WebSocket close code, when API Gateway reports one.
        status_code: Option<i64>,
        /// The close reason, when API Gateway reports one.
        reason: Option<String>,
    },
    /// The connection joined a room.
    Join(Room),
    /// The connection left a room.
    Leave(Room),
    /// A message to a room (what `history` reads back).
    Message(ChatMessage),
    /// A direct message.
    Whisper {
        /// The target.
        to: ConnectionId,
        /// The message.
        message: ChatMessage,
    },
}

impl AuditEvent {
    /// A short name for the event, stored with it.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Connect => "connect",
            AuditEvent::Disconnect { .. } => "disconnect",
            AuditEvent::Join(_) => "join",
            AuditEvent::Leave(_) => "leave",
            AuditEvent::Message(_) => "message",
            AuditEvent::Whisper { .. } => "whisper",
        }
    }

    /// The room the event concerns, if any.
    pub fn room(&self) -> Option<&Room> {
        match self {
            AuditEvent::Join(room) | AuditEvent::Leave(room) => Some(room),
            AuditEvent::Message(message) => message.room.as_ref(),
            _ => None,
        }
    }
}

/// One entry of the audit log: who, when, which route, what, how large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// A unique, time-ordered id (the message's own for messages).
    pub id: MessageId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The connection that caused it.
    pub connection_id: ConnectionId,
    /// The user, if authenticated.
    pub user: Option<String>,
    /// The API Gateway route key (`$connect`, `sendmessage`, ...).
    pub route: String,
    /// The size of the inbound frame in bytes (0 for connect and disconnect).
    pub size: usize,
    /// What happened.
    pub event: AuditEvent,
    /// When the entry may be deleted (the stage's audit retention).
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod iso8601_tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone};

    #[test]
    fn matches_rfc3339_with_milliseconds() {
        let times = [
            Utc.timestamp_millis_opt(0).single(),
            Utc.timestamp_millis_opt(1_764_331_200_007).single(),
            Utc.timestamp_millis_opt(253_402_300_799_999).single(),
            Utc.with_ymd_and_hms(2026, 2, 3, 4, 5, 6).single(),
        ];
        for time in times.into_iter().map(|t| t.expect("valid time")) {
            assert_eq!(
                iso8601(time),
                time.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        }
        assert_eq!(
            iso8601(Utc.timestamp_millis_opt(1_764_331_200_007).unwrap()),
            "2025-11-28T12:00:00.007Z"
        );
    }
}
