//! An accepted socket: each text frame to its route, API Gateway's error frames back, and the
//! closes for oversized or binary messages, idle timeout and maximum duration.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::proxy::{ProxyResponse, RouteResult};
use crate::connections::{CloseReason, Connection, Outbound, MAX_MESSAGE_BYTES};
use crate::events::{self, new_id};
use crate::state::Shared;

/// Bytes read from a client socket at a time. Small on purpose: the library allocates it up
/// front for every connection, and reserves a frame's whole length when a longer one arrives, so
/// a small buffer costs idle connections nothing and long messages only a few more reads.
pub(super) const READ_BUFFER_BYTES: usize = 256;

/// The hard limit where the WebSocket library stops reading a message. Messages between
/// 128 KiB and this are read whole and then refused with 1009, so the close handshake
/// completes normally.
pub(super) const HARD_MESSAGE_LIMIT: usize = 1024 * 1024;

/// API Gateway's frame quota: a larger message must come in several frames (browsers never
/// split, so a 40 KiB message from a browser fails on AWS: it fails here too, with 1009).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// How long a closing socket waits for the client's close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Close code and reason for a message over 128 KiB or a frame over 32 KiB.
pub const TOO_BIG: CloseReason = CloseReason {
    code: 1009,
    reason: "Message Too Big",
};
/// Close code and reason for a binary frame.
pub const UNSUPPORTED_DATA: CloseReason = CloseReason {
    code: 1003,
    reason: "Unsupported Data",
};
/// Close code and reason for idle timeout, maximum duration and shutdown.
pub const GOING_AWAY: CloseReason = CloseReason {
    code: 1001,
    reason: "Going away",
};
/// Close code and reason for DeleteConnection.
pub const DELETED: CloseReason = CloseReason {
    code: 1000,
    reason: "Connection Closed Normally",
};
/// API Gateway's error frame, byte for byte in its layout.
pub(crate) fn error_frame(message: &str, connection_id: &str, request_id: &str) -> String {
    format!(
        r#"{{"message": "{message}", "connectionId":"{connection_id}", "requestId":"{request_id}"}}"#
    )
}

/// Serves an accepted socket until it closes, then runs `$disconnect`.
///
/// The rare awaits (closing, `$disconnect`) are boxed: a task reserves its future's largest state
/// up front, so unboxed, every idle connection would hold room for a `$disconnect` invocation.
pub(super) async fn serve(shared: Arc<Shared>, connection: Arc<Connection>, mut socket: WebSocket) {
    let limits = shared.limits;
    let max_end = Instant::now() + limits.max_duration;
    let mut last_activity = Instant::now();
    // A message is read only with a slot: with every slot taken, the socket is not read and
    // TCP holds the client back.
    let slots = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut slot: Option<OwnedSemaphorePermit> = None;
    // The status reported to $disconnect; 1006 unless a close frame says otherwise.
    let mut status: (u16, String) = (1006, "Connection Closed Abnormally".to_owned());
    loop {
        let deadline = (last_activity + limits.idle_timeout).min(max_end);
        tokio::select! {
            acquired = slots.clone().acquire_owned(), if slot.is_none() => slot = acquired.ok(),
            frame = socket.recv(), if slot.is_some() => match frame {
                Some(Ok(Message::Text(text))) => {
                    last_activity = Instant::now();
                    connection.touch();
                    if text.len() > MAX_MESSAGE_BYTES {
                        status = Box::pin(close(&mut socket, &shared, &connection, TOO_BIG)).await;
                        break;
                    }
                    // Counted: shutdown lets messages in flight finish before the database stops.
                    let guard = (
                        shared.connections.task_guard(),
                        shared.connections.message_guard(),
                        slot.take(),
                    );
                    let (shared, connection) = (shared.clone(), connection.clone());
                    tokio::spawn(async move {
                        route_message(shared, connection, text).await;
                        drop(guard);
                    });
                }
                Some(Ok(Message::Binary(_))) => {
                    status = Box::pin(close(&mut socket, &shared, &connection, UNSUPPORTED_DATA)).await;
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    // Pings count as activity; the library answers them by itself.
                    last_activity = Instant::now();
                    connection.touch();
                }
                Some(Ok(Message::Close(frame))) => {
                    connection.mark_closing();
                    shared.connections.remove(connection.id());
                    status = client_close_status(frame.as_ref());
                    // Keep polling: the library sends the close reply and then ends the stream.
                }
                Some(Err(error)) => {
                    if is_too_long(&error) {
                        // The library stopped mid-frame: read nothing more, just say why.
                        status = Box::pin(close_now(&mut socket, &shared, &connection, TOO_BIG)).await;
                    } else {
                        debug!(connection_id = connection.id(), "socket error: {error}");
                    }
                    break;
                }
                None => break,
            },
            () = connection.woken() => {
                let mut closed = false;
                while let Some(next) = connection.next_outbound() {
                    match next {
                        Ok(frame) => {
                            let message = match frame {
                                Outbound::Text(bytes) => match Utf8Bytes::try_from(bytes) {
                                    Ok(text) => Message::Text(text),
                                    Err(_) => continue,
                                },
                                Outbound::Binary(bytes) => Message::Binary(bytes),
                            };
                            // A client that does not read holds the write: a close
                            // request (DeleteConnection, shutdown) must still get through.
                            let sent = tokio::select! {
                                sent = socket.send(message) => sent.is_ok(),
                                () = connection.close_requested() => false,
                            };
                            if sent {
                                // Traffic either way keeps a connection alive, as on AWS: a
                                // client that only receives posts is not idle.
                                last_activity = Instant::now();
                            } else {
                                if let Some(reason) = connection.abandon_outbox() {
                                    status = Box::pin(close(&mut socket, &shared, &connection, reason)).await;
                                }
                                closed = true;
                                break;
                            }
                        }
                        Err(reason) => {
                            status = Box::pin(close(&mut socket, &shared, &connection, reason)).await;
                            closed = true;
                            break;
                        }
                    }
                }
                if closed {
                    break;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let which = if Instant::now() >= max_end { "maximum duration" } else { "idle timeout" };
                debug!(connection_id = connection.id(), "closing on {which}");
                status = Box::pin(close(&mut socket, &shared, &connection, GOING_AWAY)).await;
                break;
            }
        }
    }
    connection.mark_closing();
    shared.connections.remove(connection.id());
    debug!(
        connection_id = connection.id(),
        code = status.0,
        "disconnected"
    );
    drop(socket);
    Box::pin(shared.disconnect(&connection, status.0, &status.1)).await;
}

/// Sends a close frame and waits briefly for the client's reply; the connection is gone for
/// the @connections API from the start.
async fn close(
    socket: &mut WebSocket,
    shared: &Shared,
    connection: &Connection,
    reason: CloseReason,
) -> (u16, String) {
    let status = close_now(socket, shared, connection, reason).await;
    // At shutdown nobody waits for slow clients: the close frame is sent, that is enough.
    if !shared.is_shutting_down() {
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    status
}

/// Sends a close frame without waiting for the reply (the read side is unusable).
async fn close_now(
    socket: &mut WebSocket,
    shared: &Shared,
    connection: &Connection,
    reason: CloseReason,
) -> (u16, String) {
    connection.mark_closing();
    shared.connections.remove(connection.id());
    let frame = CloseFrame {
        code: reason.code,
        reason: Utf8Bytes::from_static(reason.reason),
    };
    // A client that reads nothing cannot take the close frame either: give up after a while.
    let _ = tokio::time::timeout(
        CLOSE_HANDSHAKE_TIMEOUT,
        socket.send(Message::Close(Some(frame))),
    )
    .await;
    (reason.code, reason.reason.to_owned())
}

fn client_close_status(frame: Option<&CloseFrame>) -> (u16, String) {
    match frame {
        None => (1005, "Client-side close frame status not set".to_owned()),
        // The client's own reason, `""` when it gave none: API Gateway's texts are for the
        // closes it initiates.
        Some(frame) => (frame.code, frame.reason.to_string()),
    }
}

fn is_too_long(error: &axum::Error) -> bool {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::{error::CapacityError, Error};
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(inner) = source {
        if let Some(Error::Capacity(CapacityError::MessageTooLong { .. })) =
            inner.downcast_ref::<Error>()
        {
            return true;
        }
        source = inner.source();
    }
    false
}

/// Sends one client message to its route, and API Gateway's error frame back on failure.
async fn route_message(shared: Arc<Shared>, connection: Arc<Connection>, body: Utf8Bytes) {
    let request_id = new_id();
    let stack = shared.stack();
    let Some(route) = stack.api.route_for_message(body.as_str()) else {
        let _ = connection.send_text(error_frame("Forbidden", connection.id(), &request_id));
        return;
    };
    if !shared.throttles.admit_route(&route.key) {
        // API Gateway's frame for a throttled message, in its error frames' layout.
        let frame = error_frame("Too Many Requests", connection.id(), &request_id);
        let _ = connection.send_text(frame);
        return;
    }
    let event = events::message(
        &stack.events,
        &connection.facts(),
        &request_id,
        &route.key,
        body.as_str(),
    );
    let failure = match shared.invoke_message(&stack, route, event).await {
        Ok(Some(response)) => match ProxyResponse::read_route_result(&response) {
            Ok(_) if !route.two_way => None,
            Ok(RouteResult::Proxy(body)) => reply(&connection, body.unwrap_or_default()),
            Ok(RouteResult::Raw(body)) => reply(&connection, body),
            Err(problem) => Some(problem),
        },
        Ok(None) => None,
        Err(error) => Some(error.to_string()),
    };
    if let Some(problem) = failure {
        warn!(route = %route.key, connection_id = connection.id(), request_id, "integration failed: {problem}");
        let _ = connection.send_text(error_frame(
            "Internal server error",
            connection.id(),
            &request_id,
        ));
    }
}

/// Sends a two-way route's reply; a reply over the message quota cannot be one frame, and is
/// the integration's failure instead.
fn reply(connection: &Connection, body: String) -> Option<String> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Some(format!(
            "the route response is {} bytes, over the {MAX_MESSAGE_BYTES}-byte message quota",
            body.len()
        ));
    }
    if !body.is_empty() {
        let _ = connection.send_text(body);
    }
    None
}
