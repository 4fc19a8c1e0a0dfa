//! Local-only: behaviours only the local gateway can set up on demand. API Gateway's idle
//! timeout is 10 minutes (here 2 s), its integrations fail when a handler crashes or storage
//! stalls (here a test route that exits, and a paused DynamoDB Local), and expired tokens need
//! the stage's key to sign.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::conn::{assert_error, Conn};
use crate::runner::Case;
use crate::support;
use crate::target::Target;

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            Local,
            idle_connection_closes_after_the_idle_timeout_with_1001
        ),
        case!(
            Local,
            handler_crash_is_internal_server_error_and_the_socket_stays
        ),
        case!(Local, storage_failure_is_internal_with_a_request_id),
        case!(Local, expired_and_not_yet_valid_tokens_are_403),
    ]
}

/// This gateway's idle timeout is 2 s (API Gateway's is 10 minutes).
async fn idle_connection_closes_after_the_idle_timeout_with_1001(
    target: &Target,
) -> Result<(), String> {
    let gateway = target.local().idle().await;
    let mut conn = Conn::new(support::Client::connect_to(&gateway.websocket_url()).await);
    // The idle clock restarts when the gateway receives the ping: just after this instant.
    let sent = Instant::now();
    let pong = conn.call(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    let code = conn.expect_close().await;
    let idle = sent.elapsed();
    assert_eq!(code, 1001, "close code of the idle timeout");
    assert!(
        idle >= Duration::from_millis(1900) && idle < Duration::from_secs(6),
        "closed {idle:?} after the last message; the idle timeout is 2 s"
    );
    // Gone for @connections too.
    let error = support::management(gateway)
        .get_connection()
        .connection_id(conn.id())
        .send()
        .await
        .err()
        .ok_or("GetConnection of an idled-out connection succeeded")?;
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "GetConnection after the idle timeout: {error:?}"
    );
    Ok(())
}

/// An integration failure is API Gateway's own frame, with no `type`; the socket stays open.
async fn handler_crash_is_internal_server_error_and_the_socket_stays(
    target: &Target,
) -> Result<(), String> {
    let gateway = target.local().faults().await;
    let mut conn = Conn::new(support::Client::connect_to(&gateway.websocket_url()).await);
    conn.send(&json!({"action": "crash"})).await;
    let frame = conn
        .recv_where(|v| v["message"] == "Internal server error")
        .await;
    assert_eq!(frame["connectionId"], conn.id(), "{frame}");
    assert!(
        frame["requestId"].as_str().is_some_and(|id| id.len() == 16),
        "a 16-character requestId: {frame}"
    );
    assert_eq!(
        frame.as_object().map(|o| o.len()),
        Some(3),
        "message, connectionId and requestId only: {frame}"
    );
    let pong = conn.call(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "the connection stays open: {pong}");
    Ok(())
}

/// Sends SIGCONT when dropped: a paused DynamoDB Local never outlives the case.
struct Paused(u32);

impl Paused {
    fn new(pid: u32) -> Self {
        signal(pid, libc::SIGSTOP);
        Self(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill only sends a signal, to the DynamoDB Local the faults gateway started.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(sent, 0, "signal {signal} to DynamoDB Local ({pid})");
}

/// Storage that does not answer: `internal` with the request id (the handlers' AWS calls give
/// up after `SDK_TIMEOUT_MS`, 2 s on this gateway), well inside the integration timeout;
/// `ping` needs no storage; once it is back, the next request succeeds.
async fn storage_failure_is_internal_with_a_request_id(target: &Target) -> Result<(), String> {
    let gateway = target.local().faults().await;
    let mut conn = Conn::new(support::Client::connect_to(&gateway.websocket_url()).await);
    let pid = gateway
        .dynamodb_pid()
        .ok_or("the faults gateway runs no DynamoDB Local")?;
    let request = json!({"action": "join", "room": "stalled"});
    let started = Instant::now();
    let (error, pong) = {
        let _paused = Paused::new(pid);
        let error = conn.call(request.clone()).await;
        let pong = conn.call(json!({"action": "ping"})).await;
        (error, pong)
    };
    let took = started.elapsed();
    println!("  storage stalled: `internal` after {took:?}");
    assert_error(&error, "internal", &request);
    assert!(
        took < Duration::from_secs(15),
        "internal after {took:?}: well inside the 29 s integration timeout"
    );
    assert_eq!(pong["type"], "pong", "ping needs no storage: {pong}");
    let joined = conn.call(request).await;
    assert_eq!(
        joined["type"], "joined",
        "joined once DynamoDB is back: {joined}"
    );
    Ok(())
}

/// Tokens signed with the stage's own key (the local secret) whose time claims are wrong.
async fn expired_and_not_yet_valid_tokens_are_403(target: &Target) -> Result<(), String> {
    let now = support::now_secs();
    let key = support::secret();
    let claims = |iat: u64, exp: u64, nbf: Option<u64>| {
        let mut claims = json!({"sub": "bob", "name": "bob", "iat": iat, "exp": exp});
        if let Some(nbf) = nbf {
            claims["nbf"] = json!(nbf);
        }
        claims
    };
    for (what, claims) in [
        ("expired an hour ago", claims(now - 7200, now - 3600, None)),
        (
            "valid only in an hour",
            claims(now, now + 7200, Some(now + 3600)),
        ),
    ] {
        let token = support::sign(&claims, &key);
        let (status, _) = support::refused(target.url_with_token(&token)).await;
        assert_eq!(status, 403, "a token {what}");
    }
    // The same key and claims that are in time: accepted, as bob.
    let token = support::sign(&claims(now, now + 600, None), &key);
    let mut bob = Conn::new(support::Client::connect_to(&target.url_with_token(&token)).await);
    let identity = bob.call(json!({"action": "whoami"})).await;
    assert_eq!(identity["user"], "bob", "{identity}");
    Ok(())
}
