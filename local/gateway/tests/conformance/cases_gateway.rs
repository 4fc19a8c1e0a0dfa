//! What API Gateway itself does (shared/reference/apigw-websocket.md): `$connect` and its
//! authorizer's status codes, the user the authorizer vouches for, the message and frame quotas
//! with their close codes, and the @connections API through the SDK.

use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, SdkError};
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::{json, Value};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::conn::{closed_connection_id, unique, without_ref};
use crate::runner::Case;
use crate::support;
use crate::target::Target;

pub fn cases() -> Vec<Case> {
    vec![
        case!(Wire, connect_without_a_token_is_401),
        case!(Wire, connect_with_a_bad_token_is_403),
        case!(Wire, the_user_comes_from_the_token_only),
        case!(Wire, message_over_128_kib_closes_with_1009),
        case!(Wire, frame_over_32_kib_closes_with_1009),
        case!(Wire, message_of_128_kib_in_32_kib_frames_is_accepted),
        case!(Wire, binary_frame_closes_with_1003),
        case!(Management, connections_post_get_and_delete),
        case!(Management, connections_post_over_128_kib_is_413),
        case!(Management, connections_to_a_closed_connection_are_410),
    ]
}

/// The status and body of an upgrade: 101 and `Null` when it was accepted.
async fn upgrade<R>(request: R) -> (u16, Value)
where
    R: IntoClientRequest + Unpin,
{
    match connect_async(request).await {
        Ok(_) => (101, Value::Null),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| {
                    serde_json::from_slice(b)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into()))
                })
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("expected an HTTP answer to the upgrade, got {other}"),
    }
}

/// No identity source (`?token=`): 401 from API Gateway, without invoking the authorizer.
async fn connect_without_a_token_is_401(target: &Target) -> Result<(), String> {
    for query in ["", "?token=", "?user=alice"] {
        let (status, body) = upgrade(format!("{}{query}", target.ws_url)).await;
        assert_eq!(
            (status, &body),
            (401, &json!({"message": "Unauthorized"})),
            "upgrade with {query:?}"
        );
    }
    // The identity source is the query string: a header alone does not count.
    let mut request = target
        .ws_url
        .as_str()
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", target.token)
            .parse()
            .expect("a header value"),
    );
    let (status, _) = upgrade(request).await;
    assert_eq!(status, 401, "the token in an Authorization header only");
    Ok(())
}

/// A token the authorizer denies: 403.
async fn connect_with_a_bad_token_is_403(target: &Target) -> Result<(), String> {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = &target.token;
    let claims = target.claims();
    let (head_and_payload, signature) = token.rsplit_once('.').expect("a JWT");
    // One character of the signature changed (not the last, whose low bits may not count).
    let tampered = {
        let mut chars: Vec<char> = signature.chars().collect();
        chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
        format!(
            "{head_and_payload}.{}",
            chars.into_iter().collect::<String>()
        )
    };
    let bad = [
        ("not a JWT", "not-a-token".to_owned()),
        ("its signature changed", tampered),
        (
            "its claims signed with another key",
            support::sign(&claims, &"k".repeat(64)),
        ),
        (
            "its claims with alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims)
            ),
        ),
    ];
    for (what, token) in bad {
        let (status, body) = upgrade(target.url_with_token(&token)).await;
        assert_eq!(
            (status, &body),
            (403, &json!({"message": "Forbidden"})),
            "a token: {what}"
        );
    }
    Ok(())
}

/// The authorizer's `principalId` (the token's `sub`) is the user of every later event;
/// nothing in a message body changes it.
async fn the_user_comes_from_the_token_only(target: &Target) -> Result<(), String> {
    let user = target.user();
    let mut alice = target.connect().await;
    let mut bob = target.connect().await;
    let room = unique("den");
    for conn in [&mut alice, &mut bob] {
        conn.call(json!({"action": "join", "room": room})).await;
    }
    let ack = alice
        .call(json!({
            "action": "sendmessage", "room": room, "text": "it is me",
            "user": "mallory", "from": bob.id(), "principalId": "mallory",
            "requestContext": {"authorizer": {"principalId": "mallory"}}
        }))
        .await;
    assert_eq!(ack["type"], "sent", "{ack}");
    let sender = alice.id().to_owned();
    for conn in [&mut alice, &mut bob] {
        let message = conn
            .recv_where(|v| v["type"] == "message" && v["id"] == ack["id"])
            .await;
        assert_eq!(message["user"], user.as_str(), "{message}");
        assert_eq!(message["from"], sender.as_str(), "{message}");
    }
    let identity = bob
        .call(json!({"action": "whoami", "user": "mallory"}))
        .await;
    let mut rooms = vec![room, "lobby".to_owned()];
    rooms.sort();
    assert_eq!(
        without_ref(&identity),
        json!({"type": "identity", "connectionId": bob.id(), "user": user, "rooms": rooms}),
        "whoami ignores a user in the body"
    );
    Ok(())
}

/// Over 128 KiB in frames of 32 KiB: read whole, then refused with 1009.
async fn message_over_128_kib_closes_with_1009(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    conn.send_fragmented(&"x".repeat(128 * 1024 + 1)).await;
    assert_eq!(conn.expect_close().await, 1009, "close code");
    Ok(())
}

/// One frame over 32 KiB: API Gateway's frame quota.
async fn frame_over_32_kib_closes_with_1009(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    conn.send_text(&"x".repeat(32 * 1024 + 1)).await;
    assert_eq!(conn.expect_close().await, 1009, "close code");
    Ok(())
}

async fn message_of_128_kib_in_32_kib_frames_is_accepted(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    let message = padded(r#"{"action":"ping","ref":"big","pad":""}"#, 128 * 1024);
    assert_eq!(message.len(), 128 * 1024);
    conn.send_fragmented(&message).await;
    let pong = conn.reply_to("big").await;
    assert_eq!(pong, json!({"type": "pong", "ref": "big"}));
    Ok(())
}

/// `skeleton` (JSON ending in `""}`) with its last string padded to `len` bytes in all.
fn padded(skeleton: &str, len: usize) -> String {
    let (head, tail) = skeleton.split_at(skeleton.len() - 2);
    format!("{head}{}{tail}", "y".repeat(len - skeleton.len()))
}

/// The API does not take binary frames.
async fn binary_frame_closes_with_1003(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await;
    conn.send_binary(vec![1, 2, 3]).await;
    assert_eq!(conn.expect_close().await, 1003, "close code");
    Ok(())
}

/// What an SDK error was, for a failure message.
fn describe<E: std::error::Error + 'static, R: std::fmt::Debug>(error: &SdkError<E, R>) -> String {
    format!("{}", DisplayErrorContext(error))
}

/// A call expected to answer 410: `None` when it succeeded, else whether the error is the
/// SDK's typed GoneException, and the error as the SDK tells it.
fn gone_outcome<T, E: std::error::Error + 'static, R: std::fmt::Debug>(
    result: Result<T, SdkError<E, R>>,
    is_gone: impl Fn(&E) -> bool,
) -> Option<(bool, String)> {
    result
        .err()
        .map(|e| (e.as_service_error().is_some_and(&is_gone), describe(&e)))
}

async fn connections_post_get_and_delete(target: &Target) -> Result<(), String> {
    let client = target.management();
    let mut conn = target.connect().await;
    let id = conn.id().to_owned();
    // The SDK percent-encodes the id's `=`; the API decodes it.
    let data = json!({"type": "hello", "from": "the conformance suite"});
    client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(data.to_string()))
        .send()
        .await
        .map_err(|e| format!("PostToConnection: {}", describe(&e)))?;
    let got = conn.recv_where(|v| v["type"] == "hello").await;
    assert_eq!(got, data, "the post arrives as it was sent");

    let info = client
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .map_err(|e| format!("GetConnection: {}", describe(&e)))?;
    let now =
        aws_sdk_apigatewaymanagement::primitives::DateTime::from(std::time::SystemTime::now());
    let connected_at = info.connected_at().ok_or("GetConnection: no connectedAt")?;
    let last_active_at = info
        .last_active_at()
        .ok_or("GetConnection: no lastActiveAt")?;
    let skew = 120;
    assert!(
        connected_at.secs() <= now.secs() + skew && connected_at.secs() > now.secs() - 600,
        "connectedAt {connected_at} is about now ({now})"
    );
    assert!(
        last_active_at.secs() >= connected_at.secs(),
        "lastActiveAt {last_active_at} is not before connectedAt {connected_at}"
    );
    assert!(
        info.identity()
            .and_then(|i| i.source_ip())
            .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok()),
        "GetConnection gives the source IP: {info:?}"
    );

    // DELETE closes the connection; afterwards the id is gone.
    client
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .map_err(|e| format!("DeleteConnection: {}", describe(&e)))?;
    assert_eq!(
        conn.expect_close().await,
        1000,
        "close code after DeleteConnection"
    );
    let error = client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("late"))
        .send()
        .await
        .err()
        .ok_or("PostToConnection after DeleteConnection succeeded; expected 410 Gone")?;
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "PostToConnection after DeleteConnection: expected GoneException, got {}",
        describe(&error)
    );
    Ok(())
}

/// Data over 131072 bytes is refused with 413; exactly that much is delivered.
async fn connections_post_over_128_kib_is_413(target: &Target) -> Result<(), String> {
    let client = target.management();
    let mut conn = target.connect().await;
    let error = client
        .post_to_connection()
        .connection_id(conn.id())
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await
        .err()
        .ok_or("a post of 128 KiB + 1 byte was accepted; expected 413")?;
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_payload_too_large_exception()),
        "expected PayloadTooLargeException, got {}",
        describe(&error)
    );
    let data = padded(r#"{"type":"full","pad":""}"#, 128 * 1024);
    assert_eq!(data.len(), 128 * 1024);
    client
        .post_to_connection()
        .connection_id(conn.id())
        .data(Blob::new(data.clone()))
        .send()
        .await
        .map_err(|e| format!("PostToConnection of 128 KiB: {}", describe(&e)))?;
    let got = conn.recv_where(|v| v["type"] == "full").await;
    assert_eq!(got.to_string().len(), data.len(), "delivered whole");
    Ok(())
}

/// A connection that closed: every @connections call answers 410 GoneException.
async fn connections_to_a_closed_connection_are_410(target: &Target) -> Result<(), String> {
    let client = target.management();
    let gone = closed_connection_id(target).await;
    let post = client
        .post_to_connection()
        .connection_id(&gone)
        .data(Blob::new("{}"))
        .send()
        .await;
    let post = gone_outcome(post, PostToConnectionError::is_gone_exception);
    let get = client.get_connection().connection_id(&gone).send().await;
    let get = gone_outcome(get, GetConnectionError::is_gone_exception);
    let delete = client.delete_connection().connection_id(&gone).send().await;
    let delete = gone_outcome(delete, DeleteConnectionError::is_gone_exception);
    for (call, outcome) in [("POST", post), ("GET", get), ("DELETE", delete)] {
        match outcome {
            Some((true, _)) => {}
            Some((false, error)) => {
                return Err(format!(
                    "{call} to a closed connection: expected GoneException, got {error}"
                ))
            }
            None => {
                return Err(format!(
                    "{call} to a closed connection succeeded; expected 410"
                ))
            }
        }
    }
    Ok(())
}
