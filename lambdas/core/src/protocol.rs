//! The client protocol: JSON text frames in, JSON replies out, every reply with a `type`.
//!
//! To add an action: add its name to [`ACTIONS`], a variant to [`Request`] (and its checks to
//! [`Request::validate`]), then handle it in `Messaging::execute` (`app.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{ChatMessage, ConnectionId, Room};

/// Every action a client may send, as named in the `action` field (and as route keys).
pub const ACTIONS: &[&str] = &[
    "join",
    "leave",
    "sendmessage",
    "whisper",
    "history",
    "whoami",
    "ping",
];

/// The room every connection joins at `$connect`, and where `sendmessage` without a room goes.
pub const LOBBY: &str = "lobby";

/// Largest chat text accepted, in bytes (API Gateway's frame limit is 32 KB).
pub const MAX_TEXT_BYTES: usize = 32 * 1024;

/// `history` returns this many messages when the client names no limit.
pub const DEFAULT_HISTORY_LIMIT: u32 = 20;

/// `history` never returns more than this many messages.
pub const MAX_HISTORY_LIMIT: u32 = 100;

/// Longest connection id accepted as a `whisper` target (API Gateway's are 16 characters).
const MAX_CONNECTION_ID_LEN: usize = 128;

/// A parsed, validated client request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Request {
    /// Become a member of a room.
    Join {
        /// The room to join.
        room: String,
    },
    /// Stop being a member of a room.
    Leave {
        /// The room to leave.
        room: String,
    },
    /// Send text to every member of a room, the sender included.
    #[serde(rename = "sendmessage")]
    SendMessage {
        /// The room; the lobby when absent.
        #[serde(default)]
        room: Option<String>,
        /// The text to send.
        text: String,
    },
    /// Send text to one connection only.
    Whisper {
        /// The target connection id.
        to: String,
        /// The text to send.
        text: String,
    },
    /// The last messages of a room, oldest first.
    History {
        /// The room.
        room: String,
        /// How many messages (1 to 100, default 20).
        #[serde(default)]
        limit: Option<i64>,
    },
    /// Who this connection is and which rooms it is in.
    #[serde(rename = "whoami")]
    WhoAmI,
    /// A keep-alive that also proves the round trip.
    Ping,
}

/// The error codes a client can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, or a field of the wrong type.
    BadRequest,
    /// No action, or one this API does not have.
    UnknownAction,
    /// Well-formed but out of bounds (room name, text size, limit).
    Invalid,
    /// Sending to a room the connection has not joined.
    NotMember,
    /// The target connection no longer exists.
    Gone,
    /// Something failed on our side; details are in the logs only.
    Internal,
}

/// A request the client got wrong, answered with an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ClientError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The human-readable explanation.
    pub message: String,
}

impl ClientError {
    /// A client error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A request whose fields have been checked: room names valid, sizes within bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// See [`Request::Join`].
    Join(Room),
    /// See [`Request::Leave`].
    Leave(Room),
    /// See [`Request::SendMessage`].
    SendMessage {
        /// The room (the lobby when the client named none).
        room: Room,
        /// The text.
        text: String,
    },
    /// See [`Request::Whisper`].
    Whisper {
        /// The target.
        to: ConnectionId,
        /// The text.
        text: String,
    },
    /// See [`Request::History`].
    History {
        /// The room.
        room: Room,
        /// How many messages.
        limit: u32,
    },
    /// See [`Request::WhoAmI`].
    WhoAmI,
    /// See [`Request::Ping`].
    Ping,
}

impl Command {
    /// The action name, as the client sent it (also the route key).
    pub fn action(&self) -> &'static str {
        match self {
            Command::Join(_) => "join",
            Command::Leave(_) => "leave",
            Command::SendMessage { .. } => "sendmessage",
            Command::Whisper { .. } => "whisper",
            Command::History { .. } => "history",
            Command::WhoAmI => "whoami",
            Command::Ping => "ping",
        }
    }
}

/// Parses and validates one text frame.
pub fn parse(body: &str) -> Result<Command, ClientError> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        ClientError::new(
            ErrorCode::BadRequest,
            format!("the message is not JSON: {e}"),
        )
    })?;
    let Value::Object(object) = &value else {
        return Err(ClientError::new(
            ErrorCode::BadRequest,
            "the message must be a JSON object with an `action` field",
        ));
    };
    match object.get("action") {
        None | Some(Value::Null) => {
            return Err(unknown_action("the message has no `action`"));
        }
        Some(Value::String(action)) if !ACTIONS.contains(&action.as_str()) => {
            let shown: String = action.chars().take(64).collect();
            return Err(unknown_action(&format!("unknown action `{shown}`")));
        }
        Some(Value::String(_)) => {}
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "`action` must be a string",
            ))
        }
    }
    let request: Request = serde_json::from_value(value)
        .map_err(|e| ClientError::new(ErrorCode::BadRequest, format!("bad field: {e}")))?;
    request.validate()
}

fn unknown_action(what: &str) -> ClientError {
    ClientError::new(
        ErrorCode::UnknownAction,
        format!("{what}; valid actions: {}", ACTIONS.join(", ")),
    )
}

impl Request {
    /// Checks bounds and turns the request into a [`Command`].
    pub fn validate(self) -> Result<Command, ClientError> {
        Ok(match self {
            Request::Join { room } => Command::Join(Room::parse(&room)?),
            Request::Leave { room } => Command::Leave(Room::parse(&room)?),
            Request::SendMessage { room, text } => Command::SendMessage {
                room: match room {
                    Some(room) => Room::parse(&room)?,
                    None => Room::lobby(),
                },
                text: check_text(text)?,
            },
            Request::Whisper { to, text } => {
                if to.is_empty() || to.len() > MAX_CONNECTION_ID_LEN {
                    return Err(ClientError::new(
                        ErrorCode::Invalid,
                        format!("`to` must be a connection id of 1 to {MAX_CONNECTION_ID_LEN} characters"),
                    ));
                }
                Command::Whisper {
                    to: ConnectionId::from(to),
                    text: check_text(text)?,
                }
            }
            Request::History { room, limit } => Command::History {
                room: Room::parse(&room)?,
                limit: match limit {
                    None => DEFAULT_HISTORY_LIMIT,
                    Some(n) if (1..=i64::from(MAX_HISTORY_LIMIT)).contains(&n) => n as u32,
                    Some(n) => {
                        return Err(ClientError::new(
                            ErrorCode::Invalid,
                            format!("`limit` must be between 1 and {MAX_HISTORY_LIMIT}, not {n}"),
                        ))
                    }
                },
            },
            Request::WhoAmI => Command::WhoAmI,
            Request::Ping => Command::Ping,
        })
    }
}

fn check_text(text: String) -> Result<String, ClientError> {
    if text.is_empty() {
        return Err(ClientError::new(
            ErrorCode::Invalid,
            "`text` must not be empty",
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ClientError::new(
            ErrorCode::Invalid,
            format!(
                "`text` is {} bytes; at most {MAX_TEXT_BYTES} are allowed",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// Everything the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply {
    /// The connection is now a member of the room.
    Joined {
        /// The room.
        room: Room,
    },
    /// The connection is no longer a member of the room.
    Left {
        /// The room.
        room: Room,
    },
    /// A chat message, to a room or direct.
    Message(ChatMessage),
    /// The last messages of a room, oldest first.
    History {
        /// The room.
        room: Room,
        /// The messages.
        messages: Vec<ChatMessage>,
    },
    /// The caller's identity.
    Identity {
        /// The caller's connection id.
        #[serde(rename = "connectionId")]
        connection_id: ConnectionId,
        /// The authenticated user, if any.
        user: Option<String>,
        /// The rooms the connection is in.
        rooms: Vec<Room>,
    },
    /// The answer to `ping`.
    Pong,
    /// A request failed.
    Error {
        /// The machine-readable code.
        code: ErrorCode,
        /// What went wrong, for a person.
        message: String,
        /// The API Gateway request id, to find the logs.
        #[serde(rename = "requestId")]
        request_id: String,
    },
}

impl Reply {
    /// The error frame for a client error.
    pub fn error(error: &ClientError, request_id: &str) -> Self {
        Reply::Error {
            code: error.code,
            message: error.message.clone(),
            request_id: request_id.to_owned(),
        }
    }

    /// The frame as JSON text (what a route response body carries).
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no floats.
        serde_json::to_string(self).unwrap_or_else(|_| "{\"type\":\"error\"}".to_owned())
    }

    /// The frame as JSON bytes (what an @connections post carries).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_json().into_bytes()
    }
}
