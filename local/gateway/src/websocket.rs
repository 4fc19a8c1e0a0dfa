//! The client side, as API Gateway serves it: the upgrade waits for `$connect`, each text
//! frame goes to its route, errors come back as API Gateway's own frames, and the socket
//! closes on oversized or binary messages, idle timeout and maximum duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{
    rejection::WebSocketUpgradeRejection, CloseFrame, Message, Utf8Bytes, WebSocket,
    WebSocketUpgrade,
};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::connections::{CloseReason, Connection, Outbound, MAX_MESSAGE_BYTES};
use crate::events::{self, canonical_header_name, new_id};
use crate::gateway::Shared;

/// Bytes read from a client socket at a time. Small on purpose: the library allocates it up
/// front for every connection, and reserves a frame's whole length when a longer one arrives, so
/// a small buffer costs idle connections nothing and long messages only a few more reads.
const READ_BUFFER_BYTES: usize = 256;

/// The hard limit where the WebSocket library stops reading a message. Messages between
/// 128 KiB and this are read whole and then refused with 1009, so the close handshake
/// completes normally.
const HARD_MESSAGE_LIMIT: usize = 1024 * 1024;

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

/// `GET /` (the stage is implied).
pub(crate) async fn upgrade_root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let (Err(_), Some(web)) = (&ws, &shared.web) {
        if !wants_upgrade(&headers) {
            return web.serve("index.html").await;
        }
    }
    let query = query.map(|Query(q)| q).unwrap_or_default();
    upgrade(shared, peer, headers, query, ws).await
}

/// `GET /STAGE`, and `GET /FILE` of the web client.
pub(crate) async fn upgrade_stage(
    State(shared): State<Arc<Shared>>,
    Path(stage): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let (Err(_), Some(web)) = (&ws, &shared.web) {
        if stage != shared.api.stage.name && !wants_upgrade(&headers) {
            return web.serve(&stage).await;
        }
    }
    if stage != shared.api.stage.name {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"message":"Forbidden"}"#,
        )
            .into_response();
    }
    let query = query.map(|Query(q)| q).unwrap_or_default();
    upgrade(shared, peer, headers, query, ws).await
}

/// Whether the request asks for a protocol upgrade (a WebSocket handshake, perhaps a bad one)
/// rather than a plain page load.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
}

async fn upgrade(
    shared: Arc<Shared>,
    peer: SocketAddr,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                format!("this endpoint takes WebSocket connections: {rejection}\n"),
            )
                .into_response();
        }
    };
    if shared.is_shutting_down() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let connection_id = new_id();
    let request_id = new_id();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut connection = Connection::new(connection_id.clone(), peer.ip(), user_agent);

    let event_headers = connect_headers(&headers, peer, shared.local_port);
    if let Some(route) = shared.api.route("$connect") {
        if let Some(authorizer) = &route.authorizer {
            match crate::authorizer::authorize(
                &shared,
                authorizer,
                &connection,
                &request_id,
                &event_headers,
                &query,
            )
            .await
            {
                Ok(context) => connection.set_authorizer(&context),
                Err(status) => {
                    info!(
                        connection_id,
                        request_id,
                        "authorizer refused the connection: {}",
                        status.as_u16()
                    );
                    return api_error_response(status);
                }
            }
        }
    }
    let connection = Arc::new(connection);
    shared.connections.insert(connection.clone());
    let protocol =
        match run_connect(&shared, &connection, &request_id, &event_headers, &query).await {
            Ok(protocol) => protocol,
            Err(refusal) => {
                shared.connections.remove(&connection_id);
                return refusal;
            }
        };
    let delay = shared.limits.upgrade_delay;
    if !delay.is_zero() {
        // Still connecting for the @connections API: posts get 410, as on AWS until the
        // handshake completes.
        tokio::time::sleep(delay).await;
    }
    connection.open();
    debug!(connection_id, "connected");

    let guard = shared.connections.task_guard();
    let ws = ws
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write each frame at once: buffering only delays messages and costs memory.
        .write_buffer_size(0)
        .max_message_size(HARD_MESSAGE_LIMIT)
        .max_frame_size(MAX_FRAME_BYTES);
    let failed = {
        let shared = shared.clone();
        let connection = connection.clone();
        // Shutdown waits for this $disconnect too.
        let guard = shared.connections.task_guard();
        move |error: axum::Error| {
            warn!(
                connection_id = connection.id(),
                "WebSocket upgrade failed: {error}"
            );
            tokio::spawn(async move {
                connection.mark_closing();
                shared.connections.remove(connection.id());
                shared
                    .disconnect(&connection, 1006, "Connection Closed Abnormally")
                    .await;
                drop(guard);
            });
        }
    };
    let mut response = ws
        .on_failed_upgrade(failed)
        .on_upgrade(move |socket| async move {
            serve(shared, connection, socket).await;
            drop(guard);
        });
    if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// Runs the `$connect` route: `Ok` accepts (with the subprotocol the handler chose, if any),
/// `Err` is the response that refuses the upgrade.
async fn run_connect(
    shared: &Shared,
    connection: &Connection,
    request_id: &str,
    headers: &[(String, String)],
    query: &[(String, String)],
) -> Result<Option<String>, Response> {
    let Some(route) = shared.api.route("$connect") else {
        return Ok(None);
    };
    let connection_id = connection.id();
    let event = events::connect(
        &shared.events,
        &connection.facts(),
        request_id,
        headers,
        query,
    );
    match shared.invoke(route, event).await {
        Ok(None) => Ok(None),
        Ok(Some(body)) => match ProxyResponse::parse(&body) {
            Some(response) if (200..300).contains(&response.status_code) => {
                Ok(response.header("sec-websocket-protocol"))
            }
            Some(response) => {
                info!(
                    connection_id,
                    request_id, "$connect returned {}: connection refused", response.status_code
                );
                Err(reject(&response))
            }
            None => {
                warn!(
                    connection_id,
                    request_id, "$connect returned no statusCode: refused with 502"
                );
                Err(api_error_response(StatusCode::BAD_GATEWAY))
            }
        },
        Err(error) => {
            warn!(connection_id, request_id, "$connect failed: {error}");
            Err(api_error_response(StatusCode::BAD_GATEWAY))
        }
    }
}

/// The headers of the `$connect` event: the client's, plus the ones API Gateway adds.
fn connect_headers(
    headers: &HeaderMap,
    peer: SocketAddr,
    local_port: u16,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| *name != header::CONNECTION && *name != header::UPGRADE)
        .filter_map(|(name, value)| {
            Some((
                canonical_header_name(name.as_str()),
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect();
    out.push(("X-Amzn-Trace-Id".into(), events::trace_id()));
    out.push(("X-Forwarded-For".into(), peer.ip().to_string()));
    out.push(("X-Forwarded-Port".into(), local_port.to_string()));
    out.push(("X-Forwarded-Proto".into(), "http".into()));
    out
}

/// A Lambda proxy response, as far as API Gateway reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct ProxyResponse {
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    body: Option<String>,
}

impl ProxyResponse {
    fn parse(raw: &[u8]) -> Option<Self> {
        serde_json::from_slice(raw).ok()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    }
}

fn reject(response: &ProxyResponse) -> Response {
    let status = StatusCode::from_u16(response.status_code).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = response.body.clone().unwrap_or_default();
    (status, Body::from(body)).into_response()
}

/// An API Gateway error response: `{"message": "..."}` with the status's reason.
pub(crate) fn api_error_response(status: StatusCode) -> Response {
    let message = match status {
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        _ => "Internal server error",
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}

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
async fn serve(shared: Arc<Shared>, connection: Arc<Connection>, mut socket: WebSocket) {
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
                            if !sent {
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
        Some(frame) if !frame.reason.is_empty() => (frame.code, frame.reason.to_string()),
        Some(frame) => {
            let reason = match frame.code {
                1000 => "Connection Closed Normally",
                1001 => "Going away",
                _ => "",
            };
            (frame.code, reason.to_owned())
        }
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
    let Some(route) = shared.api.route_for_message(body.as_str()) else {
        let _ = connection.send_text(error_frame("Forbidden", connection.id(), &request_id));
        return;
    };
    let event = events::message(
        &shared.events,
        &connection.facts(),
        &request_id,
        &route.key,
        body.as_str(),
    );
    match shared.invoke_message(route, event).await {
        Ok(Some(response)) if route.two_way => {
            let body = match ProxyResponse::parse(&response) {
                Some(proxy) => proxy.body.unwrap_or_default(),
                None => String::from_utf8_lossy(&response).into_owned(),
            };
            if !body.is_empty() {
                let _ = connection.send_text(body);
            }
        }
        Ok(_) => {}
        Err(error) => {
            warn!(route = %route.key, connection_id = connection.id(), request_id, "integration failed: {error}");
            let _ = connection.send_text(error_frame(
                "Internal server error",
                connection.id(),
                &request_id,
            ));
        }
    }
}
