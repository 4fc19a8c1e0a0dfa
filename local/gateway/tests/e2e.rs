//! End-to-end: the real gateway with the real handler binaries and DynamoDB Local, driven by a
//! real WebSocket client over loopback. Each test starts its own gateway on a free port.
//!
//! What the protocol and API Gateway promise on the wire is the conformance suite's
//! (`tests/conformance`, which also runs against a deployed stage); these tests are about the
//! gateway itself: test templates and routes, its options, its internals and its extras.
//!
//! Needs the handler binaries (`target/debug/{connect,disconnect,message,authorizer}`,
//! `mint-token`), the test handler example and the synthesized template:
//! `make gateway-e2e-deps` builds all three.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_apigatewaymanagement::error::SdkError;
use futures::{SinkExt, StreamExt};
use local_gateway::{Gateway, Options};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

// ---------- the tests ----------

#[tokio::test(flavor = "multi_thread")]
async fn without_default_route_unmatched_frames_get_forbidden() {
    let mut template = real_template();
    resources(&mut template).retain(|_, r| r["Properties"]["RouteKey"] != "$default");
    let gateway = start(write_template(&template), |_| {}).await;
    let mut alice = Client::connect(&gateway).await;
    for frame in ["not json", r#"{"action":"dance"}"#] {
        alice.send_text(frame).await;
        let forbidden = alice.next(WAIT).await.expect("a Forbidden frame");
        assert_eq!(forbidden["message"], "Forbidden", "{forbidden}");
        assert_eq!(forbidden["connectionId"], alice.id.as_str());
        assert!(
            forbidden["requestId"]
                .as_str()
                .is_some_and(|id| id.len() == 16),
            "{forbidden}"
        );
        assert_eq!(
            forbidden.as_object().map(|o| o.len()),
            Some(3),
            "{forbidden}"
        );
    }
    assert_eq!(
        alice.request(json!({"action": "ping"}), "pong").await,
        json!({"type": "pong"})
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_gives_internal_server_error_and_the_next_message_works() {
    let gateway = start_with_test_routes(&["crash", "echo", "sleep", "fail"]).await;
    let mut alice = Client::connect(&gateway).await;

    alice.send(json!({"action": "echo"})).await;
    let first = alice.next(WAIT).await.expect("echo");
    assert_eq!(first["routeKey"], "echo");
    assert_eq!(
        first["marker"], "from-the-gateway",
        "--env reaches the functions"
    );

    for action in ["fail", "crash", "sleep"] {
        let started = Instant::now();
        alice.send(json!({"action": action})).await;
        let error = alice.next(WAIT).await.expect("an error frame");
        assert_eq!(
            error["message"], "Internal server error",
            "{action}: {error}"
        );
        assert_eq!(error["connectionId"], alice.id.as_str());
        assert!(error["requestId"].is_string());
        if action == "sleep" {
            // The function's 1 s timeout, not the 29 s integration timeout.
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "timeout took {:?}",
                started.elapsed()
            );
        }
    }
    // The connection stays open, and a fresh process answers: its invocation count restarted.
    alice.send(json!({"action": "echo", "n": 2})).await;
    let echo = alice.next(WAIT).await.expect("echo after crash");
    assert_eq!(echo["routeKey"], "echo");
    assert_eq!(
        echo["invocations"], 1,
        "a new process after the timeout: {echo}"
    );
    assert_eq!(
        alice.request(json!({"action": "ping"}), "pong").await,
        json!({"type": "pong"})
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_selection_expression_without_route_response_is_one_way() {
    let mut template = real_template();
    add_test_routes(&mut template, &["quiet", "echo"]);
    // Half of a two-way route: API Gateway discards what the integration returns.
    resources(&mut template).remove("TestRoutequietResponse");
    let gateway = start(write_template(&template), |o| {
        o.max_processes_per_function = 1
    })
    .await;
    let mut alice = Client::connect(&gateway).await;
    alice.send(json!({"action": "quiet"})).await;
    alice.send(json!({"action": "echo"})).await;
    assert_eq!(alice.next(WAIT).await.expect("echo")["routeKey"], "echo");
    alice.send(json!({"action": "echo"})).await;
    let echo = alice.next(WAIT).await.expect("echo");
    assert_eq!(echo["routeKey"], "echo", "{echo}");
    // One process served all three events: `quiet` ran, and nothing of it came back.
    assert_eq!(echo["invocations"], 3, "{echo}");
    assert_eq!(alice.next(Duration::from_millis(500)).await, None);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_functions_get_more_processes_up_to_the_bound() {
    let mut template = real_template();
    add_test_routes(&mut template, &["nap"]);
    let gateway = start(write_template(&template), |o| {
        o.max_processes_per_function = 2
    })
    .await;
    let mut alice = Client::connect(&gateway).await;
    let started = Instant::now();
    for n in 0..4 {
        alice.send(json!({"action": "nap", "n": n})).await;
    }
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let answer = alice.recv_where(|v| v["routeKey"] == "nap").await;
        pids.insert(answer["pid"].as_u64().expect("pid"));
    }
    let elapsed = started.elapsed();
    // Busy: a second process started; bounded: no third. One event at a time each, so
    // four naps of 300 ms take at least two rounds.
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_status_decides_the_upgrade() {
    let gateway = start_with_test_routes(&["$connect"]).await;
    let url = gateway.websocket_url();
    match connect_async(format!("{url}?reject=403")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected a refused upgrade, got {other:?}"),
    }
    // Accepted at / as well as /dev; the message handler then works as usual.
    let root = format!("ws://{}/", gateway.local_addr());
    let (mut ws, _) = connect_async(root).await.expect("upgrade at /");
    ws.send(Message::text(r#"{"action":"ping"}"#))
        .await
        .expect("send");
    let pong = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("pong in time");
    assert!(matches!(pong, Some(Ok(Message::Text(t))) if t.contains("pong")));
    // Another stage is refused.
    match connect_async(format!("ws://{}/prod", gateway.local_addr())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403 for another stage, got {other:?}"),
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authorizer_on_connect_gives_401_403_or_its_context() {
    let mut template = real_template();
    add_test_routes(&mut template, &["echo"]);
    add_test_authorizer(&mut template);
    let gateway = start(write_template(&template), |_| {}).await;
    let url = gateway.websocket_url();
    for (query, status) in [("", 401), ("?token=", 401), ("?token=deny", 403)] {
        match connect_async(format!("{url}{query}")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), status, "{query}")
            }
            other => panic!("expected {status} for {query:?}, got {other:?}"),
        }
    }
    let mut alice = Client::connect_to(&format!("{url}?token=allow")).await;
    alice.send(json!({"action": "echo"})).await;
    let echo = alice.next(WAIT).await.expect("echo");
    assert_eq!(echo["authorizer"]["principalId"], "alice-id", "{echo}");
    assert_eq!(echo["authorizer"]["user"], "alice");
    assert_eq!(
        echo["authorizer"]["level"], "3",
        "context values are stringified"
    );
    assert!(
        echo["authorizer"]["integrationLatency"].is_u64(),
        "the authorizer's latency is a number: {echo}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_get_410_gone_exception_after_the_injected_latency() {
    let latency = Duration::from_millis(200);
    let gateway = start(real_template_copy(), |o| o.connections_latency = latency).await;
    for method in ["POST", "GET", "DELETE"] {
        let started = Instant::now();
        let (status, headers, _) = signed_http(
            &gateway,
            method,
            "/dev/@connections/Tm9ib2R5%2BSGVy%2FZQ%3D",
            b"{}",
        )
        .await;
        assert_eq!(status, 410, "{method}");
        assert!(
            started.elapsed() >= latency,
            "{method}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            header(&headers, "x-amzn-errortype"),
            Some("GoneException"),
            "{method}"
        );
    }
    let error = management(&gateway)
        .get_connection()
        .connection_id("Tm9+b2R5/SGVyZQ=")
        .send()
        .await
        .expect_err("unknown id");
    match error {
        SdkError::ServiceError(e) => assert!(e.err().is_gone_exception(), "{:?}", e.err()),
        other => panic!("expected GoneException, got {other:?}"),
    }
    // Another stage's @connections is refused.
    let (status, _, _) = http(&gateway, "POST", "/prod/@connections/abc", b"{}").await;
    assert_eq!(status, 403);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_template_gives_every_route_and_table() {
    let local = local_gateway::template::LocalContext {
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        api_id: "local".into(),
        api_endpoint: "ws://127.0.0.1:3001".into(),
        services_endpoint: "http://127.0.0.1:4566".into(),
    };
    let api = local_gateway::template::Template::load(&real_template_path())
        .expect("the synthesized template parses")
        .api("dev", &local)
        .expect("the synthesized template is usable");
    let lifecycle = ["$connect", "$disconnect"];
    // The stack routes exactly the protocol's actions (derived from its Request enum).
    let actions: Vec<&str> = realtime_core::Action::all().map(|a| a.name()).collect();
    let mut routed: Vec<&str> = api
        .routes
        .keys()
        .map(String::as_str)
        .filter(|key| !key.starts_with('$'))
        .collect();
    routed.sort_unstable();
    let mut expected = actions.clone();
    expected.sort_unstable();
    assert_eq!(routed, expected, "the template's action routes");
    let message_routes: Vec<&str> = actions.into_iter().chain(["$default"]).collect();
    for key in lifecycle.iter().chain(&message_routes) {
        let route = api
            .routes
            .get(*key)
            .unwrap_or_else(|| panic!("no route {key}"));
        assert!(route.target.is_some(), "route {key} has no integration");
    }
    // The message handler answers its caller in the route response.
    for key in &message_routes {
        assert!(api.routes[*key].two_way, "route {key} is not two-way");
    }
    for key in lifecycle {
        assert!(!api.routes[key].two_way, "route {key} is two-way");
    }
    let gateway = start_real().await;
    let mut alice = Client::connect(&gateway).await;
    // Every action the stack routes reaches the message handler.
    assert_eq!(
        alice.request(json!({"action": "ping"}), "pong").await,
        json!({"type": "pong"})
    );
    let identity = alice.request(json!({"action": "whoami"}), "identity").await;
    assert_eq!(identity["connectionId"], alice.id.as_str());
    assert!(
        identity["rooms"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("lobby"))),
        "{identity}"
    );
    let ddb = local_gateway::tables::local_client(gateway.dynamodb_endpoint(), "us-east-1");
    let tables = ddb.list_tables().send().await.expect("list tables");
    let names = tables.table_names();
    assert!(
        names.iter().any(|n| n == "realtime-dev-connections"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "realtime-dev-audit"), "{names:?}");
    gateway.shutdown().await;
}

// ---------- the real authorizer, the local Secrets Manager, the web client ----------

/// The name of the synthesized template's one Secrets Manager secret.
fn real_secret_name() -> String {
    let template = real_template_with_authorizer();
    let names: Vec<_> = template["Resources"]
        .as_object()
        .expect("Resources")
        .values()
        .filter(|r| r["Type"] == "AWS::SecretsManager::Secret")
        .map(|r| r["Properties"]["Name"].as_str().expect("Name").to_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

/// A token from `mint-token`, what `make token` runs, with the tests' secret file.
fn mint_token(user: &str) -> String {
    let binary = target_dir().join("mint-token");
    assert!(
        binary.is_file(),
        "{} is missing: {HOW_TO_BUILD}",
        binary.display()
    );
    let output = std::process::Command::new(&binary)
        .arg(secret_file())
        .arg(user)
        .output()
        .expect("run mint-token");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// What the conformance suite cannot see on the wire: which upgrades reach the authorizer, and
/// that the tokens of `make token` (mint-token), of the tests and of the gateway's ready line
/// (used at `/`, as the web client connects) are the ones the real authorizer accepts.
#[tokio::test(flavor = "multi_thread")]
async fn the_real_authorizer_runs_only_with_a_token_and_takes_the_local_tokens() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let authorizer = real_authorizer_function();
    let gateway = start(write_template(&real_template_with_authorizer()), |_| {}).await;
    let url = gateway.websocket_url();

    // No identity source: 401, and the authorizer is not even invoked.
    for query in ["", "?token=", "?user=alice"] {
        assert_eq!(refused(format!("{url}{query}")).await.0, 401, "{query:?}");
    }
    let mut request = url.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token_for("alice"))
            .parse()
            .expect("header"),
    );
    assert_eq!(refused(request).await.0, 401);
    assert_eq!(gateway.invocation_count(&authorizer), Some(0));

    // Every request with a token reaches it.
    let now = now_secs();
    let claims = json!({"sub": "alice", "name": "alice", "iat": now, "exp": now + 600});
    for token in ["not-a-token".to_owned(), sign(&claims, &"x".repeat(64))] {
        assert_eq!(refused(format!("{url}?token={token}")).await.0, 403);
    }
    assert_eq!(gateway.invocation_count(&authorizer), Some(2));
    assert_eq!(gateway.connection_count(), 0);

    let carol_token = gateway
        .local_token("carol")
        .expect("the real authorizer takes local tokens");
    for (address, user) in [
        (format!("{url}?token={}", mint_token("alice")), "alice"),
        (format!("{url}?token={}", token_for("bob")), "bob"),
        (
            format!("ws://{}/?token={carol_token}", gateway.local_addr()),
            "carol",
        ),
    ] {
        let mut client = Client::connect_to(&address).await;
        let identity = client
            .request(json!({"action": "whoami"}), "identity")
            .await;
        assert_eq!(identity["user"], user, "{identity}");
    }
    assert_eq!(gateway.invocation_count(&authorizer), Some(5));
    gateway.shutdown().await;
}

fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "e2e"))
        .endpoint_url(endpoint)
        .http_client(realtime_aws::clients::http_client())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_manager_serves_the_template_secrets_with_the_local_value() {
    let name = real_secret_name();
    let arn = format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}");
    let gateway = start(write_template(&real_template_with_authorizer()), |_| {}).await;
    let endpoint = gateway.secrets_manager_endpoint().to_owned();
    let client = secrets_client(&endpoint);
    for id in [arn.as_str(), name.as_str()] {
        let secret_value = client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .expect("GetSecretValue");
        assert_eq!(secret_value.secret_string(), Some(secret().as_str()));
        assert_eq!(secret_value.arn(), Some(arn.as_str()));
        assert_eq!(secret_value.name(), Some(name.as_str()));
        assert!(secret_value.version_id().is_some_and(|v| v.len() == 36));
        assert!(secret_value.created_date().is_some());
        assert_eq!(secret_value.version_stages(), ["AWSCURRENT"]);
    }
    let error = client
        .get_secret_value()
        .secret_id("realtime-nope-jwt-secret")
        .send()
        .await
        .expect_err("an unknown secret");
    assert!(
        error.into_service_error().is_resource_not_found_exception(),
        "a typed ResourceNotFoundException"
    );

    // The wire format: AWS JSON 1.1, the error type in the header and in `__type`.
    let addr = endpoint.trim_start_matches("http://");
    let call = |target: &'static str, host: String, body: &'static str| {
        let addr = addr.to_owned();
        async move {
            http_to(
                &addr,
                "POST",
                "/",
                &[
                    ("Host", &host),
                    ("X-Amz-Target", target),
                    ("Content-Type", "application/x-amz-json-1.1"),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    // (Unsigned, so refused as Secrets Manager refuses a call without credentials.)
    let (status, headers, body) = call(
        "secretsmanager.GetSecretValue",
        addr.to_owned(),
        r#"{"SecretId":"missing"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");
    let (status, headers, _) = call("secretsmanager.ListSecrets", addr.to_owned(), r#"{}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("UnknownOperationException")
    );
    // A page that reached the port through a rebound DNS name is refused.
    let port = addr.rsplit(':').next().expect("port");
    let (status, _, _) = call(
        "secretsmanager.GetSecretValue",
        format!("attacker.example:{port}"),
        r#"{"SecretId":"realtime-dev-jwt-secret"}"#,
    )
    .await;
    assert_eq!(status, 403);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn template_secrets_need_the_secret_file() {
    let mut options = Options::new(write_template(&real_template_with_authorizer()));
    options.port = 0;
    options.bin_dir = bin_dir();
    options.jwt_secret_file = std::env::temp_dir().join("local-gateway-e2e-no-such-secret");
    options.dynamodb = local_gateway::DynamoDb::External("http://127.0.0.1:9".into());
    let error = Gateway::start(options.clone())
        .await
        .expect_err("no secret file, no start")
        .to_string();
    assert!(
        error.contains("make dev")
            && error.contains("make token")
            && error.contains(&real_secret_name()),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");

    let short = std::env::temp_dir().join(format!(
        "local-gateway-e2e-{}-short-secret",
        std::process::id()
    ));
    std::fs::write(&short, "too short\n").expect("write");
    options.jwt_secret_file = short.clone();
    let error = Gateway::start(options.clone())
        .await
        .expect_err("a short secret, no start")
        .to_string();
    let _ = std::fs::remove_file(&short);
    assert!(error.contains("fewer than 32"), "{error}");

    // Without a secret in the template, no file is needed: start gets as far as the tables
    // (here an unreachable DynamoDB, so that no Java starts for this check).
    let first_template = options.template.clone();
    let mut template = real_template();
    resources(&mut template).retain(|_, r| r["Type"] != "AWS::SecretsManager::Secret");
    options.template = write_template(&template);
    options.jwt_secret_file = std::env::temp_dir().join("local-gateway-e2e-no-such-secret");
    let error = Gateway::start(options.clone())
        .await
        .expect_err("DynamoDB is unreachable")
        .to_string();
    assert!(
        error.contains("cannot create the template's tables"),
        "{error}"
    );
    for path in [first_template, options.template] {
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_client_is_served_next_to_the_websocket_endpoint() {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir().join(format!(
        "local-gateway-e2e-web-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let web = base.join("web");
    std::fs::create_dir_all(web.join("sub")).expect("mkdir");
    let index = r#"<!doctype html><script src="app.js" defer></script>"#;
    std::fs::write(web.join("index.html"), index).expect("write");
    std::fs::write(web.join("app.js"), "console.log(1);").expect("write");
    std::fs::write(web.join("style.css"), "body{}").expect("write");
    std::fs::write(web.join(".hidden.js"), "hidden").expect("write");
    std::fs::write(web.join("notes.md"), "notes").expect("write");
    std::fs::write(web.join("sub/inner.js"), "inner").expect("write");
    std::fs::write(base.join("outside.js"), "outside").expect("write");
    std::os::unix::fs::symlink(base.join("outside.js"), web.join("link.js")).expect("symlink");

    let gateway = start(real_template_copy(), |o| o.web_dir = Some(web.clone())).await;
    assert_eq!(
        gateway.web_url(),
        Some(format!("http://{}/", gateway.local_addr()))
    );
    for (path, content_type, body) in [
        ("/", "text/html; charset=utf-8", index),
        ("/?token=abc.def.ghi", "text/html; charset=utf-8", index),
        ("/index.html", "text/html; charset=utf-8", index),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "console.log(1);",
        ),
        ("/style.css", "text/css; charset=utf-8", "body{}"),
    ] {
        let (status, headers, got) = http(&gateway, "GET", path, b"").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(got, body, "{path}");
    }
    for path in [
        "/missing.js",
        "/sub",
        "/sub/inner.js",
        "/link.js",
        "/.hidden.js",
        "/notes.md",
        "/..%2Foutside.js",
        "/%2E%2E%2Foutside.js",
        "/web%2Fapp.js",
        "/..",
    ] {
        let (status, _, body) = http(&gateway, "GET", path, b"").await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("outside"), "{path}: {body}");
    }
    // The stage is the WebSocket endpoint, not a page.
    let (status, _, _) = http(&gateway, "GET", "/dev", b"").await;
    assert_eq!(status, 426);
    // Upgrades at / and /STAGE work as before.
    let mut staged = Client::connect(&gateway).await;
    let mut rooted = Client::connect_to(&format!("ws://{}/", gateway.local_addr())).await;
    for client in [&mut staged, &mut rooted] {
        assert_eq!(
            client.request(json!({"action": "ping"}), "pong").await,
            json!({"type": "pong"})
        );
    }
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&base);

    // The project's own client.
    let gateway = start(real_template_copy(), |o| {
        o.web_dir = Some(repo_root().join("web"))
    })
    .await;
    let (status, _, page) = http(&gateway, "GET", "/", b"").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<script src="app.js""#), "{page}");
    for path in ["/app.js", "/style.css"] {
        assert_eq!(http(&gateway, "GET", path, b"").await.0, 200, "{path}");
    }
    gateway.shutdown().await;
}
