//! The client protocol: JSON text frames in, exactly one JSON reply out per request, every
//! reply with a `type` and the request's `ref` echoed.
//!
//! To add an action: add a variant to [`Request`] (its name is the variant's, lower-cased, for
//! serde and for [`Action`] alike), its checks to [`Request::validate`], then handle it in
//! `Messaging::execute` (`messaging.rs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::IntoEnumIterator;

use crate::error::{quoted, ClientError, ErrorCode};
use crate::model::{serialize_iso8601, ChatMessage, ConnectionId, HistoryPage, MessageId, Room};

/// Largest chat text accepted, in UTF-8 bytes (API Gateway's frame limit is 32 KB).
pub const MAX_TEXT_BYTES: usize = 32 * 1024;

/// Largest chat text once JSON-escaped, in bytes: control characters take six bytes each, so
/// this is what keeps a message frame within [`MAX_FRAME_BYTES`].
pub const MAX_ENCODED_TEXT_BYTES: usize = 64 * 1024;

/// API Gateway's message quota: no frame the backend sends (route response or @connections
/// post) may be larger, or it is never delivered.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// `history` returns this many messages when the client names no limit.
pub const DEFAULT_HISTORY_LIMIT: u32 = 20;

/// `history` never returns more than this many messages.
pub const MAX_HISTORY_LIMIT: u32 = 100;

/// Longest `ref` accepted, in characters.
pub const MAX_REF_CHARS: usize = 64;

/// Longest connection id accepted as a `whisper` target (API Gateway's are 16 characters).
const MAX_CONNECTION_ID_LEN: usize = 128;

/// A parsed client request, before its values are checked. Each variant's lower-cased name is
/// its `action` (and its route key): [`Action`] is derived from this enum.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, strum::EnumDiscriminants)]
#[serde(tag = "action", rename_all = "lowercase")]
#[strum_discriminants(
    name(Action),
    derive(strum::EnumIter, strum::IntoStaticStr, Hash, PartialOrd, Ord),
    strum(serialize_all = "lowercase")
)]
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
    SendMessage {
        /// The lobby when absent.
        #[serde(default)]
        room: Option<String>,
        /// What to send.
        text: String,
    },
    /// Send text to one connection only.
    Whisper {
        /// The target's connection id.
        to: String,
        /// What to send.
        text: String,
    },
    /// A page of a room's messages, oldest first.
    History {
        /// The room.
        room: String,
        /// How many messages (1 to 100, default 20).
        #[serde(default)]
        limit: Option<i64>,
        /// Only messages older than this message id.
        #[serde(default)]
        before: Option<String>,
        /// Only messages newer than this message id.
        #[serde(default)]
        after: Option<String>,
    },
    /// Who this connection is and which rooms it is in.
    WhoAmI,
    /// A keep-alive that also proves the round trip.
    Ping,
}

impl Action {
    /// The name clients send in `action`, and the route key of the action.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Every action, in the order of [`Request`].
    pub fn all() -> impl Iterator<Item = Action> {
        Action::iter()
    }

    /// Whether the action writes or fans out, so that the per-connection rate limit applies.
    pub fn is_rate_limited(self) -> bool {
        matches!(self, Action::Join | Action::SendMessage | Action::Whisper)
    }
}

/// A request whose values have been checked: room names valid, sizes within bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// See [`Request::Join`].
    Join(Room),
    /// See [`Request::Leave`].
    Leave(Room),
    /// See [`Request::SendMessage`]; the room is the lobby when the client named none.
    SendMessage {
        /// Where it goes.
        room: Room,
        /// What to send.
        text: String,
    },
    /// See [`Request::Whisper`].
    Whisper {
        /// Who gets it.
        to: ConnectionId,
        /// What to send.
        text: String,
    },
    /// See [`Request::History`].
    History {
        /// Whose messages.
        room: Room,
        /// At most this many.
        limit: u32,
        /// Which ones.
        page: HistoryPage,
    },
    /// See [`Request::WhoAmI`].
    WhoAmI,
    /// See [`Request::Ping`].
    Ping,
}

impl Command {
    /// The action this command carries out.
    pub fn action(&self) -> Action {
        match self {
            Command::Join(_) => Action::Join,
            Command::Leave(_) => Action::Leave,
            Command::SendMessage { .. } => Action::SendMessage,
            Command::Whisper { .. } => Action::Whisper,
            Command::History { .. } => Action::History,
            Command::WhoAmI => Action::WhoAmI,
            Command::Ping => Action::Ping,
        }
    }
}

/// One text frame, parsed: the client's `ref` (when valid, whatever else is wrong) and the
/// command or the reason there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The `ref` to echo in the reply.
    pub reference: Option<String>,
    /// The checked command, or the error to answer.
    pub command: Result<Command, ClientError>,
}

/// Parses and validates one text frame.
pub fn parse(body: &str) -> Parsed {
    match envelope(body) {
        Ok((value, reference)) => Parsed {
            reference,
            command: check_action(value.get("action")).and_then(|()| {
                serde_json::from_value::<Request>(value)
                    .map_err(|e| {
                        ClientError::new(ErrorCode::BadRequest, format!("bad field: {e}"))
                    })?
                    .validate()
            }),
        },
        Err(error) => Parsed {
            reference: None,
            command: Err(error),
        },
    }
}

/// The frame as a JSON object, and its `ref`.
fn envelope(body: &str) -> Result<(Value, Option<String>), ClientError> {
    let bad_request = |message: String| ClientError::new(ErrorCode::BadRequest, message);
    let value: Value = serde_json::from_str(body)
        .map_err(|e| bad_request(format!("the message is not JSON: {e}")))?;
    let Value::Object(object) = &value else {
        return Err(bad_request(
            "the message must be a JSON object with an `action` field".to_owned(),
        ));
    };
    let reference = match object.get("ref") {
        None => None,
        Some(Value::String(r)) if (1..=MAX_REF_CHARS).contains(&r.chars().count()) => {
            Some(r.clone())
        }
        Some(_) => {
            return Err(bad_request(format!(
                "`ref` must be a string of 1 to {MAX_REF_CHARS} characters"
            )))
        }
    };
    Ok((value, reference))
}

fn check_action(action: Option<&Value>) -> Result<(), ClientError> {
    match action {
        None | Some(Value::Null) => Err(unknown_action("the message has no `action`")),
        Some(Value::String(action)) if !Action::all().any(|a| a.name() == action) => Err(
            unknown_action(&format!("unknown action `{}`", quoted(action, 64))),
        ),
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(ClientError::new(
            ErrorCode::BadRequest,
            "`action` must be a string",
        )),
    }
}

fn unknown_action(what: &str) -> ClientError {
    let valid: Vec<&str> = Action::all().map(Action::name).collect();
    ClientError::new(
        ErrorCode::UnknownAction,
        format!("{what}; valid actions: {}", valid.join(", ")),
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
            Request::History {
                room,
                limit,
                before,
                after,
            } => Command::History {
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
                page: match (before, after) {
                    (None, None) => HistoryPage::Latest,
                    (Some(id), None) => HistoryPage::Before(MessageId::parse("before", &id)?),
                    (None, Some(id)) => HistoryPage::After(MessageId::parse("after", &id)?),
                    (Some(_), Some(_)) => {
                        return Err(ClientError::new(
                            ErrorCode::Invalid,
                            "give `before` or `after`, not both",
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
    let encoded = encoded_len(&text);
    if encoded > MAX_ENCODED_TEXT_BYTES {
        return Err(ClientError::new(
            ErrorCode::Invalid,
            format!(
                "`text` is {encoded} bytes once JSON-escaped (control characters take 6 bytes each); at most {MAX_ENCODED_TEXT_BYTES} are allowed"
            ),
        ));
    }
    Ok(text)
}

/// The length of `text` as a JSON string, quotes excluded, computed without writing it.
fn encoded_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// Everything the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply {
    /// The connection is now a member of the room.
    Joined {
        /// The room joined.
        room: Room,
    },
    /// The connection is no longer a member of the room.
    Left {
        /// The room left.
        room: Room,
    },
    /// A `sendmessage` or `whisper` was accepted: its id is the one the recipients see.
    Sent {
        /// The room, for `sendmessage`.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<Room>,
        /// The target, for `whisper`.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<ConnectionId>,
        /// The message id.
        id: MessageId,
        /// When the message was accepted.
        #[serde(rename = "sentAt", serialize_with = "serialize_iso8601")]
        sent_at: DateTime<Utc>,
        /// True when a large room's delivery was handed to the queued tier: accepted and
        /// queued, delivered within seconds. Absent for rooms delivered before the reply.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        queued: bool,
    },
    /// A chat message, to a room or direct.
    Message(ChatMessage),
    /// A page of a room's messages, oldest first.
    History {
        /// Whose messages.
        room: Room,
        /// Oldest first.
        messages: Vec<ChatMessage>,
        /// Whether there are more in the page's direction (older ones for the latest page and
        /// `before`, newer ones for `after`).
        more: bool,
    },
    /// The caller's identity.
    Identity {
        /// The caller's connection id (what others whisper to).
        #[serde(rename = "connectionId")]
        connection_id: ConnectionId,
        /// The authenticated user, if any.
        user: Option<String>,
        /// The rooms the connection is a member of, sorted.
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
        /// For `rate_limited`: when to retry.
        #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl Reply {
    /// The error frame for a client error.
    pub fn error(error: &ClientError, request_id: &str) -> Self {
        Reply::Error {
            code: error.code,
            message: error.message.clone(),
            request_id: request_id.to_owned(),
            retry_after_ms: error.retry_after_ms,
        }
    }

    /// The frame as JSON text, with the request's `ref` when it had one.
    pub fn to_json(&self, reference: Option<&str>) -> String {
        #[derive(Serialize)]
        struct Framed<'a> {
            #[serde(flatten)]
            reply: &'a Reply,
            #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
            reference: Option<&'a str>,
        }
        // Serializing these plain structs cannot fail: no maps with non-string keys, no floats.
        serde_json::to_string(&Framed {
            reply: self,
            reference,
        })
        .unwrap_or_else(|_| "{\"type\":\"error\"}".to_owned())
    }

    /// The frame as JSON bytes, without `ref` (what an @connections post carries).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_json(None).into_bytes()
    }
}

/// The bytes a message takes inside a `history` reply's `messages` (its separator included).
pub fn encoded_message_len(message: &ChatMessage) -> usize {
    serde_json::to_vec(message).map_or(MAX_FRAME_BYTES, |bytes| bytes.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal valid request of each action.
    fn example(action: Action) -> Value {
        match action {
            Action::Join | Action::Leave => json!({"action": action.name(), "room": "r"}),
            Action::SendMessage => json!({"action": action.name(), "text": "t"}),
            Action::Whisper => json!({"action": action.name(), "to": "c", "text": "t"}),
            Action::History => json!({"action": action.name(), "room": "r"}),
            Action::WhoAmI | Action::Ping => json!({"action": action.name()}),
        }
    }

    #[test]
    fn every_action_name_parses_to_its_own_command() {
        let names: Vec<&str> = Action::all().map(Action::name).collect();
        assert_eq!(
            names,
            [
                "join",
                "leave",
                "sendmessage",
                "whisper",
                "history",
                "whoami",
                "ping"
            ]
        );
        for action in Action::all() {
            let parsed = parse(&example(action).to_string());
            let command = parsed.command.expect("valid");
            assert_eq!(command.action(), action);
        }
    }

    #[test]
    fn ref_is_kept_whatever_else_is_wrong_and_refused_when_bad() {
        let parsed = parse(r#"{"action":"dance","ref":"r-1"}"#);
        assert_eq!(parsed.reference.as_deref(), Some("r-1"));
        assert_eq!(
            parsed.command.map_err(|e| e.code),
            Err(ErrorCode::UnknownAction)
        );
        for bad in [json!(7), json!(""), json!("x".repeat(65)), json!(null)] {
            let parsed = parse(&json!({"action": "ping", "ref": bad}).to_string());
            assert_eq!(parsed.reference, None);
            assert_eq!(
                parsed.command.map_err(|e| e.code),
                Err(ErrorCode::BadRequest),
                "{bad}"
            );
        }
        let edge = "é".repeat(64);
        assert_eq!(
            parse(&json!({"action": "ping", "ref": edge}).to_string()).reference,
            Some(edge)
        );
    }

    #[test]
    fn replies_carry_the_ref_after_their_own_fields() {
        let frame = Reply::Pong.to_json(Some("abc"));
        assert_eq!(frame, r#"{"type":"pong","ref":"abc"}"#);
        let error = Reply::error(&ClientError::rate_limited(250), "req");
        let value: Value = serde_json::from_str(&error.to_json(None)).expect("JSON");
        assert_eq!(
            value,
            json!({"type": "error", "code": "rate_limited", "message": "too many requests from this connection; retry in 250 ms", "requestId": "req", "retryAfterMs": 250})
        );
    }

    #[test]
    fn escaped_length_is_what_serde_writes() {
        for text in [
            "plain",
            "quote \" and \\ back",
            "\u{1}\u{1f}\n\t\r",
            "é ü 😀",
        ] {
            let written = serde_json::to_string(text).expect("JSON").len() - 2;
            assert_eq!(encoded_len(text), written, "{text:?}");
        }
    }

    #[test]
    fn text_that_would_make_a_frame_too_large_is_invalid() {
        // 20,000 control characters: 20 KB raw, 120 KB escaped.
        let text = "\u{1}".repeat(20_000);
        let error = check_text(text).expect_err("too large escaped");
        assert_eq!(error.code, ErrorCode::Invalid);
        assert!(error.message.contains("JSON-escaped"), "{}", error.message);
        assert!(
            check_text("\"".repeat(MAX_TEXT_BYTES)).is_ok(),
            "64 KiB escaped"
        );
    }
}
