//! Faults, through the real gateway: handlers that answer large, hang with children, crash in
//! the middle of a fan-out; DynamoDB Local stalled and killed; the authorizer's secret gone.
//! Each test asserts outcomes (counts, states), never durations, and prints its counts.
//!
//! Needs what `e2e.rs` needs: `make gateway-e2e-deps`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// A handler's answer may be as large as Lambda allows (6 MB): the process that sent it stays
/// in service. A larger one is the handler's error, not a dead process.
#[tokio::test(flavor = "multi_thread")]
async fn responses_up_to_six_mb_are_taken_and_larger_ones_fail_cleanly() {
    let mut template = real_template();
    add_test_routes(&mut template, &["big", "echo"]);
    // Megabytes through a debug build take longer than the test function's usual 1 s.
    resources(&mut template)["TestFunction"]["Properties"]["Timeout"] = json!(20);
    let gateway = start(write_template(&template), |o| {
        o.max_processes_per_function = 1
    })
    .await;
    let mut alice = Client::connect(&gateway).await;
    alice
        .send(json!({"action": "big", "size": 3 * 1024 * 1024}))
        .await;
    // Frames are served concurrently: let `big` take the one process before `echo` queues.
    invoked(&gateway, 1).await;
    alice.send(json!({"action": "echo"})).await;
    let echo = alice.recv_where(|v| v["routeKey"] == "echo").await;
    assert_eq!(
        echo["invocations"], 2,
        "the process that answered 3 MB served the next event: {echo}"
    );
    alice
        .send(json!({"action": "big", "size": 7 * 1024 * 1024}))
        .await;
    let error = alice.next(WAIT).await.expect("an error frame");
    assert_eq!(error["message"], "Internal server error", "{error}");
    invoked(&gateway, 3).await;
    alice.send(json!({"action": "echo"})).await;
    let echo = alice.recv_where(|v| v["routeKey"] == "echo").await;
    assert_eq!(echo["invocations"], 4, "and after 7 MB too: {echo}");
    gateway.shutdown().await;
}

/// Waits until the test function has received `n` events.
async fn invoked(gateway: &local_gateway::Gateway, n: u64) {
    for _ in 0..200 {
        if gateway.invocation_count("TestFunction") >= Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the test function never got event {n}");
}

/// Lambda discards a timed-out environment with everything in it: a child the handler started
/// does not outlive it.
#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_handler_takes_the_processes_it_started_with_it() {
    let gateway = start_with_test_routes(&["orphan"]).await;
    let mut alice = Client::connect(&gateway).await;
    let dir = std::env::temp_dir().join(format!("local-gateway-orphan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pidfile = dir.join("pid");
    alice
        .send(json!({"action": "orphan", "pidfile": pidfile.display().to_string()}))
        .await;
    let error = alice.next(WAIT).await.expect("the timeout's error frame");
    assert_eq!(error["message"], "Internal server error", "{error}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the handler wrote its child's pid")
        .trim()
        .parse()
        .expect("a pid");
    let mut alive = is_running(pid);
    for _ in 0..50 {
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive = is_running(pid);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("orphan: the handler's child {pid} alive after the timeout: {alive}");
    assert!(!alive, "the child {pid} outlived the timed-out handler");
    gateway.shutdown().await;
}

/// Whether a process runs: it exists and is not a zombie (an exited process no one has reaped:
/// the parent of an orphan may be a PID 1 that never reaps).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The authorizer cannot read its key: the upgrade is refused with 500 (our fault), not 403
/// (the client's) and not a hang, and works again once the secret is back. Tokens of every
/// malformed shape are refused with 401 or 403, and the gateway stays up.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_secret_is_500_and_malformed_tokens_are_401_or_403() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("local-gateway-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("jwt-secret");
    std::fs::write(&file, format!("{}\n", secret())).expect("write the secret");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let gateway = start(write_template(&real_template_with_authorizer()), |o| {
        o.jwt_secret_file = file.clone();
    })
    .await;
    let url = gateway.websocket_url();
    let good = token_for("alice");

    // Gone before the authorizer's first (cold) start, which reads the key.
    let aside = dir.join("jwt-secret.aside");
    std::fs::rename(&file, &aside).expect("hide the secret");
    let mut unreadable = Vec::new();
    for _ in 0..3 {
        unreadable.push(refused(format!("{url}?token={good}")).await);
    }
    std::fs::rename(&aside, &file).expect("restore the secret");
    let mut back = Client::connect_to(&format!("{url}?token={good}")).await;
    assert_eq!(
        back.request(json!({"action": "ping"}), "pong").await["type"],
        "pong"
    );

    let now = now_secs();
    let claims = json!({"sub": "alice", "name": "alice", "iat": now, "exp": now + 600});
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let header_hs256 = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let with_claims = |claims: &str| {
        // The right key over a body whose numbers no integer holds.
        format!("{header_hs256}.{}.{}", b64(claims.as_bytes()), b64(b"sig"))
    };
    // Another algorithm in the header, over the body and signature of a good token.
    let with_alg = |alg: &str| {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        let rest = good
            .split_once('.')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        format!("{header}.{rest}")
    };
    let mut padded = claims.clone();
    padded["pad"] = json!("x".repeat(4200));
    let malformed = [
        ("truncated", good[..good.len() / 2].to_owned()),
        ("over 4 KiB", sign(&padded, &secret())),
        ("HS512, not the stage's HS256", with_alg("HS512")),
        ("RS256 over an HS256 signature", with_alg("RS256")),
        ("alg none over an HS256 signature", with_alg("none")),
        ("bad base64", "!!!.@@@.###".to_owned()),
        ("two parts", format!("{header_hs256}.{}", b64(b"{}"))),
        (
            "huge numbers",
            with_claims(r#"{"sub":"a","exp":1e400,"iat":184467440737095516160000}"#),
        ),
        (
            "huge numbers, signed",
            sign(
                &json!({"sub": "alice", "exp": 1.0e300, "iat": -1.0e300}),
                &secret(),
            ),
        ),
        ("claims not an object", with_claims("[1,2,3]")),
    ];
    let mut statuses = Vec::new();
    for (what, token) in &malformed {
        let (status, _) = refused(format!("{url}?token={token}")).await;
        statuses.push((*what, status));
    }
    println!("auth: unreadable secret gave {unreadable:?}; malformed tokens gave {statuses:?}");
    for (status, body) in &unreadable {
        assert_eq!(*status, 500, "an unreadable secret is our fault: {body}");
    }
    for (what, status) in &statuses {
        // A URL over 4,096 characters never reaches the authorizer on AWS either.
        let expected: &[u16] = if *what == "over 4 KiB" {
            &[414]
        } else {
            &[401, 403]
        };
        assert!(expected.contains(status), "{what}: {status}");
    }
    // Still up: a good token still connects.
    let mut after = Client::connect_to(&format!("{url}?token={}", token_for("bob"))).await;
    assert_eq!(
        after.request(json!({"action": "ping"}), "pong").await["type"],
        "pong"
    );
    let _ = std::fs::remove_dir_all(&dir);
    gateway.shutdown().await;
}

/// Message handler processes SIGKILLed in the middle of fan-outs to a large room: each sender
/// gets exactly one reply (`Internal server error` or its ack), nothing hangs, the next
/// requests work, and no member gets a message twice.
#[tokio::test(flavor = "multi_thread")]
async fn handlers_killed_mid_fanout_cost_one_reply_each_and_no_duplicate() {
    const MEMBERS: usize = 100;
    const SENDERS: usize = 8;
    const ROUNDS: usize = 3;
    let gateway = start(real_template_copy(), |o| {
        // Posts that take a while, so that a fan-out is under way when its process dies.
        o.connections_latency = Duration::from_millis(20);
    })
    .await;
    let message_fn = real_function_id("message");
    let joined = futures::future::join_all((0..MEMBERS).map(|_| async {
        let mut client = Client::connect(&gateway).await;
        client
            .request(json!({"action": "join", "room": "hall"}), "joined")
            .await;
        Reader::new(client)
    }))
    .await;
    let mut members = joined;
    let mut killed = 0;
    for round in 0..ROUNDS {
        for (i, sender) in members.iter_mut().take(SENDERS).enumerate() {
            let tag = format!("r{round}-s{i}");
            sender
                .send(json!({"action": "sendmessage", "room": "hall", "text": tag, "ref": tag}))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        for pid in gateway.process_ids(&message_fn) {
            // SAFETY: kill only sends a signal to a handler process this gateway started.
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        for (i, sender) in members.iter().take(SENDERS).enumerate() {
            let tag = format!("r{round}-s{i}");
            sender
                .wait_for(|v| v["ref"] == tag.as_str() || v["message"] == "Internal server error")
                .await;
        }
        // Every sender answered for this round before the next one starts.
        for sender in members.iter().take(SENDERS) {
            let replies = replies(&sender.frames());
            assert!(
                replies <= round + 1,
                "{} replies after round {round}",
                replies
            );
            if replies < round + 1 {
                sender
                    .wait_for(|_| self::replies(&sender.frames()) > round)
                    .await;
            }
        }
    }
    // The next requests work, and reach everyone.
    for (i, sender) in members.iter_mut().take(SENDERS).enumerate() {
        let tag = format!("after-{i}");
        sender
            .send(json!({"action": "sendmessage", "room": "hall", "text": tag, "ref": tag}))
            .await;
        let ack = sender.wait_for(|v| v["ref"] == tag.as_str()).await;
        assert_eq!(ack["type"], "sent", "{ack}");
    }
    for member in &members {
        for i in 0..SENDERS {
            let tag = format!("after-{i}");
            member.wait_for(|v| v["text"] == tag.as_str()).await;
        }
    }
    let (mut acked, mut errors, mut duplicated) = (0, 0, 0);
    for sender in members.iter().take(SENDERS) {
        let frames = sender.frames();
        acked += frames.iter().filter(|v| v["type"] == "sent").count();
        errors += frames
            .iter()
            .filter(|v| v["message"] == "Internal server error")
            .count();
        assert_eq!(
            replies(&frames),
            ROUNDS + 1,
            "one reply per sendmessage: {frames:?}"
        );
    }
    let mut deliveries = 0;
    for member in &members {
        let mut seen = std::collections::HashMap::new();
        for frame in member.frames().iter().filter(|v| v["type"] == "message") {
            deliveries += 1;
            *seen.entry(frame["id"].to_string()).or_insert(0) += 1;
        }
        duplicated += seen.values().filter(|n| **n > 1).count();
    }
    println!(
        "crashes: {killed} handler processes killed over {ROUNDS} rounds; {} sendmessages: {acked} acked, \
         {errors} Internal server error; {deliveries} deliveries, {duplicated} duplicated",
        SENDERS * (ROUNDS + 1)
    );
    assert!(killed > 0, "some process was killed mid-fan-out");
    assert_eq!(duplicated, 0);
    gateway.shutdown().await;
}

/// How many replies a sender's frames hold: acks and API Gateway's error frames.
fn replies(frames: &[serde_json::Value]) -> usize {
    frames
        .iter()
        .filter(|v| {
            v["type"] == "sent" || v["type"] == "error" || v["message"] == "Internal server error"
        })
        .count()
}

/// Sends `request` and waits (within API Gateway's 29 s integration timeout) for its reply.
async fn reply_to(client: &mut Client, request: serde_json::Value) -> serde_json::Value {
    let reference = request["ref"].clone();
    client.send(request).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(29);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = client
            .next(left)
            .await
            .unwrap_or_else(|| panic!("no reply to {reference} within the integration timeout"));
        if frame["ref"] == reference {
            return frame;
        }
    }
}

/// Sends SIGSTOP, SIGCONT or SIGKILL to a process the gateway started.
fn signal(pid: u32, signal: i32) {
    // SAFETY: kill only sends a signal, to DynamoDB Local's Java process, which we started.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(sent, 0, "signal {signal} to {pid}");
}

/// DynamoDB Local paused (SIGSTOP), then killed: what needs storage answers `internal` with a
/// request id well inside the integration timeout, `ping` still answers, `$connect` is refused
/// with a 5xx; once it is back (SIGCONT, or the gateway's restart on its kept data) the next
/// actions succeed.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_stalled_then_killed_answers_internal_and_recovers() {
    let data = std::env::temp_dir().join(format!("local-gateway-ddb-{}", std::process::id()));
    let gateway = start(real_template_copy(), |o| {
        o.dynamodb = local_gateway::DynamoDb::Start {
            persist_dir: Some(data.clone()),
            jar_dir: None,
        };
    })
    .await;
    let url = gateway.websocket_url();
    let mut alice = Client::connect(&gateway).await;
    let mut bob = Client::connect(&gateway).await;
    let mut carol = Client::connect(&gateway).await;
    let mut dave = Client::connect(&gateway).await;
    alice
        .request(json!({"action": "join", "room": "den"}), "joined")
        .await;
    let pid = gateway
        .dynamodb_pid()
        .expect("the gateway runs DynamoDB Local");

    // Paused: it still accepts TCP connections, and never answers.
    signal(pid, libc::SIGSTOP);
    let (sent, joined, history, pong, connect) = tokio::join!(
        reply_to(
            &mut alice,
            json!({"action": "sendmessage", "room": "den", "text": "x", "ref": "s"})
        ),
        reply_to(
            &mut bob,
            json!({"action": "join", "room": "den", "ref": "j"})
        ),
        reply_to(
            &mut carol,
            json!({"action": "history", "room": "den", "ref": "h"})
        ),
        reply_to(&mut dave, json!({"action": "ping", "ref": "p"})),
        refused(url.clone()),
    );
    signal(pid, libc::SIGCONT);
    let after_pause = [
        reply_to(
            &mut alice,
            json!({"action": "sendmessage", "room": "den", "text": "y", "ref": "s2"}),
        )
        .await,
        reply_to(
            &mut bob,
            json!({"action": "join", "room": "den", "ref": "j2"}),
        )
        .await,
    ];

    // Killed: the gateway starts it again on the same port, on the data it kept.
    signal(pid, libc::SIGKILL);
    let mut restarted = None;
    for _ in 0..600 {
        restarted = gateway.dynamodb_pid().filter(|new| *new != pid);
        if restarted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restarted = restarted.expect("DynamoDB Local started again within 60 s");
    let after_kill = [
        reply_to(
            &mut alice,
            json!({"action": "sendmessage", "room": "den", "text": "z", "ref": "s3"}),
        )
        .await,
        reply_to(
            &mut carol,
            json!({"action": "history", "room": "den", "ref": "h3"}),
        )
        .await,
    ];
    let mut erin = Client::connect(&gateway).await;
    let erin_rooms = erin.request(json!({"action": "whoami"}), "identity").await["rooms"].clone();

    let stalled = [&sent, &joined, &history];
    println!(
        "dynamodb: paused: {} internal, ping {}, $connect {}; resumed: {:?}; killed {pid}, restarted as {restarted}: {:?}",
        stalled.iter().filter(|r| r["code"] == "internal").count(),
        pong["type"],
        connect.0,
        after_pause.iter().map(|r| r["type"].clone()).collect::<Vec<_>>(),
        after_kill.iter().map(|r| r["type"].clone()).collect::<Vec<_>>(),
    );
    for reply in stalled {
        assert_eq!(reply["code"], "internal", "{reply}");
        assert!(
            reply["requestId"].as_str().is_some_and(|id| !id.is_empty()),
            "{reply}"
        );
    }
    assert_eq!(pong["type"], "pong", "ping needs no storage: {pong}");
    assert!(
        (500..600).contains(&connect.0),
        "$connect refused with {connect:?}"
    );
    assert_eq!(after_pause[0]["type"], "sent", "{}", after_pause[0]);
    assert_eq!(after_pause[1]["type"], "joined", "{}", after_pause[1]);
    assert_eq!(after_kill[0]["type"], "sent", "{}", after_kill[0]);
    let texts: Vec<_> = after_kill[1]["messages"]
        .as_array()
        .expect("history after the restart")
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [json!("y"), json!("z")],
        "kept on disk across the restart"
    );
    assert_eq!(erin_rooms, json!(["lobby"]));
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}
