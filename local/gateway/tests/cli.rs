//! The `local-gateway` binary as a person runs it: one clear line for each startup error,
//! and SIGINT / SIGTERM stop every process it started.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dynamodb_local::procfs::{children_of, is_running};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_local-gateway");
const HOW_TO_BUILD: &str = "run `make gateway-e2e-deps` (builds the handler binaries, synthesizes cdk.out/Realtime-dev.template.json)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("LOCAL_GATEWAY_BIN_DIR").map_or_else(
        || Path::new(BIN).parent().expect("target folder").to_owned(),
        PathBuf::from,
    );
    assert!(
        dir.join("message").is_file(),
        "handler binaries missing in {}: {HOW_TO_BUILD}",
        dir.display()
    );
    dir
}

/// A local secret for the gateway (the template's Secrets Manager secret holds it): the file
/// the end-to-end tests use too.
fn secret_file() -> PathBuf {
    let path = std::env::temp_dir().join("local-gateway-test-jwt-secret");
    let content = "local-gateway-tests-only-6f1d2c9a8b7e4f3a5d6c7b8a9e0f1d2c3b4a5f6e\n";
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
        // Written aside and renamed: a reader never sees half a file.
        let aside = path.with_extension(std::process::id().to_string());
        std::fs::write(&aside, content).expect("write the secret");
        std::fs::set_permissions(&aside, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod the secret");
        std::fs::rename(&aside, &path).expect("rename the secret");
    }
    path
}

/// A copy of the synthesized template without a `$connect` authorizer: the test client has
/// no token, and the authorizer has its own tests.
fn template() -> PathBuf {
    template_copy(false)
}

/// A copy of the synthesized template, with or without its `$connect` authorizer.
fn template_copy(keep_authorizer: bool) -> PathBuf {
    let path = repo_root().join("cdk.out/Realtime-dev.template.json");
    assert!(
        path.is_file(),
        "{} is missing: {HOW_TO_BUILD}",
        path.display()
    );
    let mut template: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
    if keep_authorizer {
        // Nothing to change.
    } else if let Some(resources) = template["Resources"].as_object_mut() {
        for resource in resources.values_mut() {
            if resource["Type"] == "AWS::ApiGatewayV2::Route" {
                resource["Properties"]["AuthorizationType"] = "NONE".into();
                if let Some(p) = resource["Properties"].as_object_mut() {
                    p.remove("AuthorizerId");
                }
            }
        }
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("local-gateway-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("Realtime-dev.template.json");
    std::fs::write(&copy, template.to_string()).expect("write");
    copy
}

/// Runs the binary to completion; returns its exit code and stderr.
fn run_failing(args: &[&str], path_env: Option<&str>) -> (Option<i32>, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null());
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    let output = command.output().expect("run local-gateway");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_error_line(stderr: &str, expected: &str) {
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expected),
        "{stderr}"
    );
}

#[test]
fn startup_errors_are_one_clear_line() {
    let template = template().display().to_string();
    let bins = bin_dir().display().to_string();
    let secret = secret_file().display().to_string();

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (code, stderr) = run_failing(
        &["--template", &template, "--bin-dir", &bins, "--port", &port],
        None,
    );
    assert_eq!(code, Some(1));
    assert_one_error_line(
        &stderr,
        &format!("port {port} on 127.0.0.1 is already in use"),
    );

    let bad = std::env::temp_dir().join(format!(
        "local-gateway-cli-{}.template.json",
        std::process::id()
    ));
    std::fs::write(&bad, "{ \"Resources\": ").expect("write");
    let (code, stderr) = run_failing(
        &["--template", &bad.display().to_string(), "--port", "0"],
        None,
    );
    let _ = std::fs::remove_file(&bad);
    assert_eq!(code, Some(1));
    assert_one_error_line(&stderr, "cannot parse template");

    let (code, stderr) = run_failing(
        &[
            "--template",
            &template,
            "--bin-dir",
            &bins,
            "--port",
            "0",
            "--jwt-secret-file",
            "/nonexistent/jwt-secret",
        ],
        None,
    );
    assert_eq!(code, Some(1));
    assert_one_error_line(
        &stderr,
        "/nonexistent/jwt-secret, which does not exist: run `make dev` or `make token`",
    );

    let (code, stderr) = run_failing(
        &[
            "--template",
            &template,
            "--bin-dir",
            &bins,
            "--port",
            "0",
            "--jwt-secret-file",
            &secret,
        ],
        Some("/nonexistent"),
    );
    assert_eq!(code, Some(1));
    assert_one_error_line(&stderr, "Java is not installed");
    if let Some(dir) = Path::new(&template).parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts the binary (from the repository root, as `make dev` does) and waits for its ready
/// lines; returns the child, the WebSocket URL it prints, and what it printed.
fn start_gateway() -> (Child, String) {
    let (child, url, _) = start_gateway_with(false);
    (child, url)
}

fn start_gateway_with(keep_authorizer: bool) -> (Child, String, String) {
    let template = template_copy(keep_authorizer);
    let mut child = Command::new(BIN)
        .args(["--template", &template.display().to_string()])
        .args(["--bin-dir", &bin_dir().display().to_string(), "--port", "0"])
        .args(["--jwt-secret-file", &secret_file().display().to_string()])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start local-gateway");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let mut url = None;
    loop {
        let line = lines
            .next()
            .expect("the gateway printed its URLs")
            .expect("read stdout");
        printed.push_str(&line);
        printed.push('\n');
        if let Some((_, rest)) = line.split_once("wscat -c \"") {
            url = rest.split_once('"').map(|(url, _)| url.to_owned());
        }
        if line.contains("@connections API:") {
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no wscat line in:\n{printed}"));
    // The template is read once at start.
    if let Some(dir) = template.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    // Keep draining stdout so the gateway never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, url, printed)
}

fn stops_everything_on(signal: libc::c_int) {
    let (mut child, url) = start_gateway();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A client makes the handler processes start: there is something to stop.
    let client = runtime.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        ws.send(Message::text(r#"{"action":"ping"}"#))
            .await
            .expect("send");
        let pong = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("pong in time");
        assert!(matches!(pong, Some(Ok(Message::Text(t))) if t.contains("pong")));
        ws
    });
    let children: Vec<u32> = children_of(child.id())
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    assert!(
        children.len() >= 3,
        "java, connect and message should run: {children:?}"
    );

    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    if signal == libc::SIGKILL {
        // No clean-up ran: the kernel's parent-death signal stops the children.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    } else {
        assert!(status.success(), "{status}");
    }
    drop(client);
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<_> = children
        .into_iter()
        .filter(|&pid| is_running(pid))
        .collect();
    assert!(
        left.is_empty(),
        "still running after the gateway stopped: {left:?}"
    );
}

#[test]
fn sigint_stops_every_process() {
    stops_everything_on(libc::SIGINT);
}

#[test]
fn sigterm_stops_every_process() {
    stops_everything_on(libc::SIGTERM);
}

#[test]
fn sigkill_leaves_no_process_behind() {
    stops_everything_on(libc::SIGKILL);
}

#[test]
fn prints_a_ready_token_and_serves_the_web_client() {
    let (mut child, url, printed) = start_gateway_with(true);
    // `Connect as alice:  npx wscat -c "ws://127.0.0.1:PORT/dev?token=..."`
    assert!(printed.contains("Connect as alice:"), "{printed}");
    let (base, token) = url
        .split_once("?token=")
        .unwrap_or_else(|| panic!("no token in the wscat URL:\n{printed}"));
    assert!(
        base.starts_with("ws://127.0.0.1:") && base.ends_with("/dev"),
        "{printed}"
    );
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let port = base
        .trim_start_matches("ws://127.0.0.1:")
        .trim_end_matches("/dev");
    let web = format!("http://127.0.0.1:{port}/?token={token}");
    assert!(
        printed.contains(&format!("Web client:        {web}")),
        "{printed}"
    );
    assert!(printed.contains("make token USER="), "{printed}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // The printed URL connects as alice through the real authorizer.
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("the printed URL connects");
        ws.send(Message::text(r#"{"action":"whoami"}"#))
            .await
            .expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an answer in time");
        let Some(Ok(Message::Text(text))) = reply else {
            panic!("no identity: {reply:?}");
        };
        let identity: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(identity["user"], "alice", "{identity}");
        // Without the token: 401.
        match tokio_tungstenite::connect_async(base).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            other => panic!("expected 401 without a token, got {other:?}"),
        }
        // The printed web address serves the project's client (web/ by default).
        let mut stream =
            tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port")))
                .await
                .expect("connect");
        let request = format!(
            "GET /?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .expect("write");
        let mut page = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut page)
            .await
            .expect("read");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains(r#"<script src="app.js""#), "{page}");
    });
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[test]
fn writes_a_ready_file_that_names_its_urls() {
    let template = template();
    let dir = template.parent().expect("a folder").to_owned();
    let ready = dir.join("ready.json");
    let mut child = Command::new(BIN)
        .args(["--template", &template.display().to_string()])
        .args(["--bin-dir", &bin_dir().display().to_string(), "--port", "0"])
        .args(["--jwt-secret-file", &secret_file().display().to_string()])
        .args(["--ready-file", &ready.display().to_string()])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start local-gateway");
    let deadline = Instant::now() + Duration::from_secs(60);
    let value: serde_json::Value = loop {
        // Renamed into place: a file that exists is whole.
        if let Ok(bytes) = std::fs::read(&ready) {
            break serde_json::from_slice(&bytes).expect("the ready file is JSON");
        }
        assert!(Instant::now() < deadline, "no ready file within 60 s");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the gateway exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let url = value["url"].as_str().expect("url").to_owned();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/dev"),
        "{value}"
    );
    assert_eq!(
        value["callbackUrl"].as_str(),
        Some(url.replacen("ws://", "http://", 1).as_str()),
        "{value}"
    );
    assert_eq!(
        value["pid"].as_u64(),
        Some(u64::from(child.id())),
        "{value}"
    );
    assert_eq!(value["stage"], "dev", "{value}");
    assert!(
        value["servicesEndpoint"]
            .as_str()
            .is_some_and(|s| s.starts_with("http://127.0.0.1:")),
        "{value}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // The URL it names takes clients.
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("the ready file's URL connects");
        ws.close(None).await.expect("close");
    });
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}
