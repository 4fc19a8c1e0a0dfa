//! Starts the real DynamoDB Local and checks it answers on loopback, then that it stops.

use dynamodb_local::procfs::{children_of, is_running};
use dynamodb_local::{DynamoDbLocal, Error, Options};

#[tokio::test]
async fn starts_answers_and_stops() {
    let db = DynamoDbLocal::start(Options::default())
        .await
        .expect("DynamoDB Local starts (run through `make test`, which installs it)");
    let port = db.port();
    assert!(db.endpoint().starts_with("http://127.0.0.1:"));
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok());
    let pid = db.pid().expect("a pid while running");
    db.stop().await;
    // Stopped means the Java process is gone (killed and reaped). The port itself proves
    // nothing afterwards: tests running beside this one may be handed the same free port.
    assert!(!is_running(pid), "Java {pid} still runs after stop");
}

#[tokio::test]
async fn a_folder_without_the_jar_is_a_clear_error() {
    let missing = std::env::temp_dir().join("no-dynamodb-local-here");
    let err = DynamoDbLocal::start(Options {
        jar_dir: Some(missing.clone()),
        ..Options::default()
    })
    .await
    .expect_err("no jar, no start");
    assert!(matches!(err, Error::JarMissing(ref dir) if *dir == missing));
    assert!(err.to_string().contains("make deps"));
}

#[tokio::test]
async fn a_port_in_use_is_named_as_such() {
    // DynamoDB Local binds every interface, so a loopback listener on the port blocks it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("addr").port();
    let err = DynamoDbLocal::start(Options {
        port: Some(port),
        ..Options::default()
    })
    .await
    .expect_err("the port is held");
    assert!(matches!(err, Error::PortInUse(p) if p == port), "{err:?}");
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[tokio::test]
async fn java_runs_in_its_own_process_group() {
    let db = DynamoDbLocal::start(Options::default())
        .await
        .expect("DynamoDB Local starts");
    let pid = db.pid().expect("a pid");
    // Field 5 of /proc/PID/stat is the process group; the command name (field 2) has no spaces.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let group: u32 = stat
        .split_whitespace()
        .nth(4)
        .and_then(|g| g.parse().ok())
        .expect("process group");
    assert_eq!(
        group, pid,
        "Ctrl-C to our group must not reach Java: {stat}"
    );
    db.stop().await;
}

#[test]
fn a_parent_killed_with_sigkill_leaves_no_java_behind() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    // The parent: with-dynamodb running a command that prints the endpoint and then waits for
    // its stdin to close. SIGKILL gives it no chance to stop Java itself.
    let mut parent = Command::new(env!("CARGO_BIN_EXE_with-dynamodb"))
        .args(["sh", "-c", r#"echo "$TEST_DYNAMODB_ENDPOINT"; exec cat"#])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start with-dynamodb");
    let mut endpoint = String::new();
    BufReader::new(parent.stdout.take().expect("stdout"))
        .read_line(&mut endpoint)
        .expect("read the endpoint");
    let port: u16 = endpoint
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no endpoint printed: {endpoint:?}"));
    let java: Vec<u32> = children_of(parent.id())
        .into_iter()
        .filter(|(_, name)| name == "java")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(
        java.len(),
        1,
        "one Java child: {:?}",
        children_of(parent.id())
    );
    let java = java[0];
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    parent.kill().expect("SIGKILL the parent");
    parent.wait().expect("reap the parent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(java) {
        assert!(
            Instant::now() < deadline,
            "Java {java} still runs 10 s after its parent was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Closing the pipe ends `cat`, the orphaned command. The port is not checked again:
    // tests running beside this one may be handed it as soon as Java lets it go.
    drop(parent.stdin.take());
}

/// The `Access-Control-Allow-Origin` DynamoDB Local answers a browser's preflight from `origin`.
async fn allowed_origin(port: u16, origin: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!(
        "OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type,x-amz-target\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    answer
        .lines()
        .find_map(|line| line.strip_prefix("Access-Control-Allow-Origin: "))
        .map(str::to_owned)
}

#[tokio::test]
async fn browsers_may_call_it_only_from_the_origin_given() {
    // DynamoDB Local's own default is `*`: any web page could read and write the tables.
    let db = DynamoDbLocal::start(Options::default())
        .await
        .expect("DynamoDB Local starts");
    assert_eq!(allowed_origin(db.port(), "http://evil.example").await, None);
    db.stop().await;
    let db = DynamoDbLocal::start(Options {
        cors_origin: Some("http://127.0.0.1:3001".into()),
        ..Options::default()
    })
    .await
    .expect("DynamoDB Local starts");
    assert_eq!(allowed_origin(db.port(), "http://evil.example").await, None);
    assert_eq!(
        allowed_origin(db.port(), "http://127.0.0.1:3001")
            .await
            .as_deref(),
        Some("http://127.0.0.1:3001")
    );
    db.stop().await;
}
