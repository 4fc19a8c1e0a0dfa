//! What a client can be told went wrong: the error codes of the protocol and the client error
//! that carries one. Below the model and the protocol, which both raise them.

use serde::Serialize;

/// The error codes a client can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a field of the wrong type, or a bad `ref`.
    BadRequest,
    /// No action, or one this API does not have.
    UnknownAction,
    /// Well-formed but out of bounds (room name, text size, limit, paging ids).
    Invalid,
    /// Sending to a room the connection has not joined.
    NotMember,
    /// The target connection no longer exists.
    Gone,
    /// The connection sends faster than its rate limit allows; retry after `retryAfterMs`.
    RateLimited,
    /// A per-connection limit (rooms per connection) would be exceeded.
    LimitExceeded,
    /// Something failed on our side; details are in the logs only.
    Internal,
}

/// Longest error message sent, in characters: messages quote client input, which is
/// unbounded, and an error frame must stay small.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// A request the client got wrong (or that we could not serve), answered with an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ClientError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The human-readable explanation, at most [`MAX_MESSAGE_CHARS`] characters.
    pub message: String,
    /// For `rate_limited`: how long to wait before the next request will be accepted.
    pub retry_after_ms: Option<u64>,
}

impl ClientError {
    /// A client error with the given code and message (cut to [`MAX_MESSAGE_CHARS`]).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: truncate(message.into(), MAX_MESSAGE_CHARS),
            retry_after_ms: None,
        }
    }

    /// `rate_limited`, with the wait before a retry can succeed.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many requests from this connection; retry in {retry_after_ms} ms"),
            )
        }
    }

    /// `internal`: our fault, with nothing of the cause (that is in the logs).
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "the request could not be completed; quote the requestId when reporting it",
        )
    }
}

/// Client input quoted in a message: at most `max` characters, with `…` when cut.
pub fn quoted(input: &str, max: usize) -> String {
    truncate(input.to_owned(), max)
}

fn truncate(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_and_quotes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(10_000);
        let error = ClientError::new(ErrorCode::Invalid, long);
        assert_eq!(error.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(error.message.ends_with('…'));
        assert_eq!(quoted("abcdef", 3), "abc…");
        assert_eq!(quoted("abc", 3), "abc");
    }
}
