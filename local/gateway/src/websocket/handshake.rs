//! The upgrade: route to the stage (or to the web client), authorize, run `$connect`, and
//! accept or refuse the handshake as API Gateway does.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tracing::{debug, info, warn};

use super::proxy::ProxyResponse;
use super::session::{serve, HARD_MESSAGE_LIMIT, MAX_FRAME_BYTES, READ_BUFFER_BYTES};
use crate::connections::Connection;
use crate::events::{self, canonical_header_name, new_id};
use crate::listener::ClientInfo;
use crate::state::{Shared, Stack};

/// `GET /` (the stage is implied).
pub(crate) async fn upgrade_root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<ClientInfo>,
    uri: Uri,
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
    upgrade(shared, client, &uri, headers, query, ws).await
}

/// `GET /STAGE`, and `GET /FILE` of the web client.
pub(crate) async fn upgrade_stage(
    State(shared): State<Arc<Shared>>,
    Path(stage): Path<String>,
    ConnectInfo(client): ConnectInfo<ClientInfo>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let (Err(_), Some(web)) = (&ws, &shared.web) {
        if stage != shared.stage && !wants_upgrade(&headers) {
            return web.serve(&stage).await;
        }
    }
    if stage != shared.stage {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"message":"Forbidden"}"#,
        )
            .into_response();
    }
    let query = query.map(|Query(q)| q).unwrap_or_default();
    upgrade(shared, client, &uri, headers, query, ws).await
}

/// Whether the request asks for a protocol upgrade (a WebSocket handshake, perhaps a bad one)
/// rather than a plain page load.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
}

async fn upgrade(
    shared: Arc<Shared>,
    client: ClientInfo,
    uri: &Uri,
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
    let url_length = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if shared
        .limits
        .quotas
        .max_url_length
        .is_some_and(|max| url_length > max)
    {
        info!(
            url_length,
            "upgrade refused: the URL is over API Gateway's quota"
        );
        return api_error_response(StatusCode::URI_TOO_LONG);
    }
    if !shared.throttles.admit_connection() {
        info!("upgrade refused: over the new-connection rate or the $connect route's throttling");
        return api_error_response(StatusCode::TOO_MANY_REQUESTS);
    }
    let connection_id = new_id();
    let request_id = new_id();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let peer = client.peer;
    let mut connection = Connection::new(connection_id.clone(), peer.ip(), user_agent);

    let spelled = client.header_names();
    let event_headers = connect_headers(&headers, &spelled, peer, shared.local_port);
    // One version of the stack for the whole handshake: authorizer and $connect alike.
    let stack = shared.stack();
    if let Some(route) = stack.api.route("$connect") {
        if let Some(authorizer) = &route.authorizer {
            match crate::authorizer::authorize(
                &shared,
                &stack,
                authorizer,
                &connection,
                &request_id,
                &authorizer_headers(&headers, &spelled, &event_headers),
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
    let protocol = match run_connect(
        &shared,
        &stack,
        &connection,
        &request_id,
        &event_headers,
        &query,
    )
    .await
    {
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
    stack: &Stack,
    connection: &Connection,
    request_id: &str,
    headers: &[(String, String)],
    query: &[(String, String)],
) -> Result<Option<String>, Response> {
    let Some(route) = stack.api.route("$connect") else {
        return Ok(None);
    };
    let connection_id = connection.id();
    let event = events::connect(
        &stack.events,
        &connection.facts(),
        request_id,
        headers,
        query,
    );
    match shared.invoke(stack, route, event).await {
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

/// A header's name as the client spelled it, else as API Gateway writes its own.
fn spelled_name(spelled: &[String], name: &HeaderName) -> String {
    ClientInfo::spelling(spelled, name.as_str())
        .map_or_else(|| canonical_header_name(name.as_str()), str::to_owned)
}

/// The headers of the `$connect` event: the client's (without `Connection` and `Upgrade`, as
/// API Gateway passes them), plus the ones API Gateway adds.
fn connect_headers(
    headers: &HeaderMap,
    spelled: &[String],
    peer: SocketAddr,
    local_port: u16,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| *name != header::CONNECTION && *name != header::UPGRADE)
        .filter_map(|(name, value)| {
            Some((spelled_name(spelled, name), value.to_str().ok()?.to_owned()))
        })
        .collect();
    out.push(("X-Amzn-Trace-Id".into(), events::trace_id()));
    out.push(("X-Forwarded-For".into(), peer.ip().to_string()));
    out.push(("X-Forwarded-Port".into(), local_port.to_string()));
    out.push(("X-Forwarded-Proto".into(), "http".into()));
    out
}

/// The authorizer's headers: those of `$connect`, plus `Connection`, `Upgrade` and a
/// `content-length` of 0, which API Gateway's authorizer event carries and `$connect`'s does not.
fn authorizer_headers(
    headers: &HeaderMap,
    spelled: &[String],
    connect: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out = connect.to_vec();
    for name in [header::CONNECTION, header::UPGRADE] {
        if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            out.push((spelled_name(spelled, &name), value.to_owned()));
        }
    }
    out.push(("content-length".to_owned(), "0".to_owned()));
    out
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
        StatusCode::TOO_MANY_REQUESTS => "Too Many Requests",
        StatusCode::URI_TOO_LONG => "Request-URI Too Long",
        _ => "Internal server error",
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}
