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
