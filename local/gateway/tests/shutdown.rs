//! Shutdown under load, as a person stops `make dev`: the real `local-gateway` binary, with
//! 200 clients in rooms and messages flowing, gets SIGTERM. Every client gets a close frame
//! with 1001, every connection's `$disconnect` runs exactly once (the disconnect handler's log
//! says so), the gateway exits with 0 in time, and none of its processes (handlers, Java)
//! outlives it. Bounded in count and time; asserts outcomes and prints its counts.
//!
//! Needs what `e2e.rs` needs: `make gateway-e2e-deps`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use dynamodb_local::procfs::{children_of, is_running};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::{bin_dir, real_template_copy, repo_root, secret_file, Client};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_local-gateway");
const CLIENTS: usize = 200;
const ROOMS: usize = 4;
/// Every this many clients, one sends; the others only read.
const SENDER_EVERY: usize = 10;
/// A sender sends this often, answered or not: the gateway holds at most 10 messages of one
/// connection in flight (`--max-in-flight-per-connection`) and leaves the rest in the socket.
const SEND_EVERY: Duration = Duration::from_millis(100);
/// Connections being opened at once.
const CONNECTING_AT_ONCE: usize = 16;
/// Traffic before SIGTERM.
const TRAFFIC: Duration = Duration::from_secs(3);
/// The gateway prints its ready line within this.
const READY_BOUND: Duration = Duration::from_secs(60);
/// All clients connected and in their rooms within this.
const SETUP_BOUND: Duration = Duration::from_secs(120);
/// The gateway exits within this after SIGTERM.
const EXIT_BOUND: Duration = Duration::from_secs(30);
/// Every client has its close frame within this after SIGTERM.
const CLOSE_BOUND: Duration = Duration::from_secs(35);
/// The gateway's stderr reaches its end within this after it exited.
const STDERR_BOUND: Duration = Duration::from_secs(5);

/// The gateway process: killed with its process group (and every child recorded) when the
/// test ends without it having exited, whatever the reason.
struct Gateway {
    child: Child,
    status: Option<ExitStatus>,
    children: Arc<Mutex<BTreeMap<u32, String>>>,
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: sends a signal to our own child process, which we have not reaped yet.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Waits for the exit, at most `bound`.
    async fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        while self.status.is_none() && Instant::now() < deadline {
            self.status = self.child.try_wait().expect("try_wait");
            if self.status.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.status
    }

    /// SIGKILL to the gateway's process group and to every child of it still running.
    fn kill_everything(&mut self) {
        if self.status.is_none() {
            let group = libc::pid_t::try_from(self.pid()).expect("pid");
            // SAFETY: the gateway leads its own process group (see `start_gateway`); it is not
            // reaped yet, so the group id is still ours.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
            self.status = self.child.wait().ok();
        }
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for (&pid, name) in children.iter() {
            // Only a process that is still the one recorded (same name, not a reused pid).
            if is_running(pid) && process_name(pid).as_deref() == Some(name.as_str()) {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: a signal to a process the gateway started, checked just above.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill_everything();
    }
}

/// The command name of a running process, as `/proc/PID/stat` gives it.
fn process_name(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, _) = stat.rsplit_once(')')?;
    head.split_once('(').map(|(_, name)| name.to_owned())
}

/// What the gateway wrote to stderr, line by line, and whether it reached the end.
#[derive(Clone, Default)]
struct Stderr {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    ended: Arc<AtomicBool>,
}

impl Stderr {
    fn collect(&self, pipe: impl Read + Send + 'static) {
        let this = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                this.lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), text));
                line.clear();
            }
            this.ended.store(true, Ordering::Release);
        });
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        let tail: Vec<&str> = lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|(_, line)| line.as_str())
            .collect();
        tail.join("\n")
    }
}

/// Starts the binary in its own process group, from the repository root, on a free port with
/// the template without its `$connect` authorizer; returns it and its port once it is ready.
fn start_gateway(stderr: &Stderr) -> (Gateway, u16) {
    let template = real_template_copy();
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--stage", "dev"])
        // 200 clients at once are over the dev stage's $connect burst: this is about shutdown.
        .arg("--relax-quotas")
        .arg("--template")
        .arg(&template)
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--jwt-secret-file")
        .arg(secret_file())
        .current_dir(repo_root())
        // What the handlers log is what their defaults give.
        .env_remove("RUST_LOG")
        .env_remove("LOCAL_GATEWAY_LOG")
        .env("DDB_LOCAL_TELEMETRY", "0")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start local-gateway");
    stderr.collect(child.stderr.take().expect("stderr"));
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Drained to the end, so the gateway never blocks on a full pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let gateway = Gateway {
        child,
        status: None,
        children: Arc::default(),
    };
    let deadline = Instant::now() + READY_BOUND;
    let port = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => {
                // "Local gateway ready: stage dev on 127.0.0.1:PORT (Ctrl-C stops everything)."
                if let Some((_, rest)) =
                    line.split_once("Local gateway ready: stage dev on 127.0.0.1:")
                {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    break digits.parse::<u16>().expect("a port in the ready line");
                }
            }
            Err(error) => panic!(
                "no ready line within {READY_BOUND:?} ({error}); stderr:\n{}",
                stderr.tail(40)
            ),
        }
    };
    // The template is read once at start.
    if let Some(dir) = template.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    (gateway, port)
}

/// Records every child of `parent` (pid and command name) until `parent` has exited.
fn record_children(parent: u32, into: Arc<Mutex<BTreeMap<u32, String>>>) {
    std::thread::spawn(move || {
        // A zombie counts as not running: its children have already been handed on.
        while is_running(parent) {
            let found = children_of(parent);
            let mut seen = into.lock().unwrap_or_else(|e| e.into_inner());
            for (pid, name) in found {
                // The latest name: between fork and exec a child still has the name of the
                // gateway's thread that forked it (`tokio-rt-worker`).
                seen.insert(pid, name);
            }
            drop(seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// Counts every client shares, to show that traffic flows.
#[derive(Default)]
struct Traffic {
    sent: AtomicUsize,
    acked: AtomicUsize,
    delivered: AtomicUsize,
}

/// How a client's connection ended.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    Close { code: u16, reason: String },
    CloseWithoutFrame,
    EndedWithoutClose,
    SocketError(String),
    NothingWithin(Duration),
}

/// What one client saw.
#[derive(Debug)]
struct Seen {
    id: String,
    ending: Ending,
    sent: usize,
    acked: usize,
    delivered: usize,
    /// Replies that are not acks: error frames (by code) and API Gateway's own frames.
    other_replies: BTreeMap<String, usize>,
    send_error: Option<String>,
    /// When the connection ended (its close frame, or what came instead).
    ended_at: Instant,
}

/// Reads everything the client is sent until its close frame; a sender also sends to its room
/// every `SEND_EVERY` (from `start`).
async fn drive(
    client: Client,
    room: String,
    start: Option<tokio::time::Instant>,
    traffic: Arc<Traffic>,
    deadline: tokio::time::Instant,
) -> Seen {
    let Client { ws, id } = client;
    let (mut sink, mut stream) = ws.split();
    let mut tick = tokio::time::interval_at(start.unwrap_or(deadline), SEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = Seen {
        id,
        ending: Ending::NothingWithin(Duration::ZERO),
        sent: 0,
        acked: 0,
        delivered: 0,
        other_replies: BTreeMap::new(),
        send_error: None,
        ended_at: Instant::now(),
    };
    let mut sending = start.is_some();
    seen.ending = loop {
        tokio::select! {
            _ = tick.tick(), if sending => {
                let n = seen.sent;
                let request = json!({
                    "action": "sendmessage", "room": room,
                    "text": format!("{} says {n}", seen.id), "ref": format!("m{n}"),
                });
                match sink.send(Message::text(request.to_string())).await {
                    Ok(()) => {
                        seen.sent += 1;
                        traffic.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        // The close frame may still be on its way: keep reading.
                        seen.send_error = Some(error.to_string());
                        sending = false;
                    }
                }
            }
            frame = tokio::time::timeout_at(deadline, stream.next()) => match frame {
                Err(_) => break Ending::NothingWithin(CLOSE_BOUND),
                Ok(None) => break Ending::EndedWithoutClose,
                Ok(Some(Err(error))) => break Ending::SocketError(error.to_string()),
                Ok(Some(Ok(Message::Close(Some(frame))))) => break Ending::Close {
                    code: u16::from(frame.code),
                    reason: frame.reason.to_string(),
                },
                Ok(Some(Ok(Message::Close(None)))) => break Ending::CloseWithoutFrame,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    match value["type"].as_str() {
                        Some("message") => {
                            seen.delivered += 1;
                            traffic.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("sent") => {
                            seen.acked += 1;
                            traffic.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("error") => {
                            let code = value["code"].as_str().unwrap_or("?");
                            *seen.other_replies.entry(format!("error {code}")).or_default() += 1;
                        }
                        _ => {
                            // API Gateway's own frames ("Internal server error") have no type.
                            let what = value["message"].as_str().unwrap_or("unreadable frame");
                            *seen.other_replies.entry(what.to_owned()).or_default() += 1;
                        }
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    };
    seen.ended_at = Instant::now();
    seen
}

/// Connects `CLIENTS` clients (a few at a time) and puts client `i` in room `i % ROOMS`.
async fn connect_all(url: &str) -> Vec<(Client, String)> {
    futures::stream::iter(0..CLIENTS)
        .map(|i| async move {
            let mut client = Client::connect_to(url).await;
            let room = format!("shutdown-{}", i % ROOMS);
            let joined = client
                .request(json!({"action": "join", "room": room}), "joined")
                .await;
            assert_eq!(joined["type"], "joined", "client {i}: {joined}");
            (client, room)
        })
        .buffered(CONNECTING_AT_ONCE)
        .collect()
        .await
}

/// What the disconnect handler's `"disconnected"` lines say.
#[derive(Default)]
struct Disconnects {
    /// Lines by the connection id of their span.
    by_id: HashMap<String, usize>,
    /// Lines by the close code they report.
    codes: BTreeMap<String, usize>,
    /// When the last one reached the gateway's stderr.
    last: Option<Instant>,
}

fn disconnects(lines: &[(Instant, String)]) -> Disconnects {
    let mut found = Disconnects::default();
    for (at, line) in lines {
        let Some(json) = line.strip_prefix("[realtime-dev-disconnect] ") else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(json) else {
            continue;
        };
        if value["fields"]["message"] != "disconnected" {
            continue;
        }
        // The event's span, or any span of the line, carries the connection id.
        let id = value["span"]["connection_id"].as_str().or_else(|| {
            value["spans"]
                .as_array()?
                .iter()
                .find_map(|span| span["connection_id"].as_str())
        });
        *found
            .by_id
            .entry(id.unwrap_or("(no connection id)").to_owned())
            .or_default() += 1;
        *found
            .codes
            .entry(value["fields"]["status_code"].to_string())
            .or_default() += 1;
        found.last = found.last.max(Some(*at));
    }
    found
}

/// A WARN or ERROR line of the gateway itself: its message (without the fields after it) and
/// the connection it names, if any.
struct Warning {
    message: String,
    connection_id: Option<String>,
}

impl Warning {
    /// `2026-01-01T00:00:00.000000Z  WARN local_gateway::gateway: MESSAGE connection_id="ID" ...`
    fn parse(line: &str) -> Option<Self> {
        if line.starts_with('[') {
            return None; // a handler's line
        }
        let (_, rest) = line
            .split_once(" WARN ")
            .or_else(|| line.split_once(" ERROR "))?;
        let (_, text) = rest.split_once(": ")?;
        // The fields follow the message: ` name=value`.
        let fields_at = text
            .match_indices(' ')
            .map(|(i, _)| i)
            .find(|&i| {
                let field = &text[i + 1..];
                let name_len = field
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(field.len());
                name_len > 0 && field[name_len..].starts_with('=')
            })
            .unwrap_or(text.len());
        let connection_id = text
            .split_once("connection_id=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(id, _)| id.to_owned());
        Some(Self {
            message: text[..fields_at].to_owned(),
            connection_id,
        })
    }
}

fn count_by<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_closes_every_client_runs_every_disconnect_and_stops_every_process() {
    let began = Instant::now();
    let stderr = Stderr::default();
    let (mut gateway, port) = start_gateway(&stderr);
    record_children(gateway.pid(), gateway.children.clone());
    let url = format!("ws://127.0.0.1:{port}/dev");

    let clients = match tokio::time::timeout(SETUP_BOUND, connect_all(&url)).await {
        Ok(clients) => clients,
        Err(_) => panic!(
            "{CLIENTS} clients not connected within {SETUP_BOUND:?}; stderr:\n{}",
            stderr.tail(40)
        ),
    };
    let connected = began.elapsed();
    let ids: Vec<String> = clients.iter().map(|(c, _)| c.id.clone()).collect();
    assert_eq!(
        count_by(ids.iter()).len(),
        CLIENTS,
        "every client has its own connection id"
    );

    let traffic = Arc::new(Traffic::default());
    let first_send = tokio::time::Instant::now();
    let deadline = first_send + TRAFFIC + CLOSE_BOUND;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, (client, room))| {
            // Senders spread over the interval, so the load is even.
            let start = (i % SENDER_EVERY == 0).then(|| {
                first_send
                    + SEND_EVERY * u32::try_from(i).expect("i") / u32::try_from(CLIENTS).expect("n")
            });
            tokio::spawn(drive(client, room, start, traffic.clone(), deadline))
        })
        .collect();

    tokio::time::sleep(TRAFFIC).await;
    let delivered_before = traffic.delivered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, acked, delivered) = (
        traffic.sent.load(Ordering::Relaxed),
        traffic.acked.load(Ordering::Relaxed),
        traffic.delivered.load(Ordering::Relaxed),
    );
    let running_at_sigterm = children_of(gateway.pid());
    // Mid-traffic: messages are still being delivered, and some are unanswered.
    let signalled = Instant::now();
    gateway.signal(libc::SIGTERM);
    println!(
        "shutdown (quotas relaxed): {CLIENTS} clients connected in {connected:?}; at SIGTERM {sent} sent, {acked} acked, \
         {delivered} delivered ({} in the last 300 ms), {} unanswered; gateway children then: {:?}",
        delivered - delivered_before,
        sent - acked,
        count_by(running_at_sigterm.iter().map(|(_, name)| name.as_str())),
    );
    assert!(
        delivered > delivered_before,
        "traffic flowed when SIGTERM came"
    );

    let mut failures = Vec::new();

    // The gateway exits, with 0, in time.
    let status = gateway.wait_exit(EXIT_BOUND).await;
    let exit_took = signalled.elapsed();
    // Whatever still runs the instant the gateway is gone (it waits for its children).
    let children = gateway
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let left_at_exit: Vec<_> = children
        .iter()
        .filter(|(&pid, _)| is_running(pid))
        .map(|(&pid, name)| format!("{name} ({pid})"))
        .collect();
    match status {
        Some(status) if status.success() => {}
        Some(status) => failures.push(format!(
            "the gateway exited with {status} (signal {:?})",
            status.signal()
        )),
        None => {
            failures.push(format!(
                "the gateway did not exit within {EXIT_BOUND:?} of SIGTERM: its process group was killed"
            ));
            gateway.kill_everything();
        }
    }

    // Every client has its close frame.
    let mut seen = Vec::new();
    for task in tasks {
        match task.await {
            Ok(client) => seen.push(client),
            Err(error) => failures.push(format!("a client task failed: {error}")),
        }
    }
    let last_close = seen
        .iter()
        .map(|c| c.ended_at.saturating_duration_since(signalled))
        .max()
        .unwrap_or_default();
    let closed_1001 = seen
        .iter()
        .filter(|c| matches!(c.ending, Ending::Close { code: 1001, .. }))
        .count();
    let endings = count_by(seen.iter().map(|c| match &c.ending {
        Ending::Close { code, reason } => format!("close {code} {reason:?}"),
        other => format!("{other:?}"),
    }));
    for client in seen
        .iter()
        .filter(|c| !matches!(c.ending, Ending::Close { code: 1001, .. }))
    {
        failures.push(format!(
            "client {} saw {:?} instead of a close frame with 1001 (sent {}, acked {}, delivered {}, send error {:?})",
            client.id, client.ending, client.sent, client.acked, client.delivered, client.send_error
        ));
    }
    let other_replies = seen
        .iter()
        .fold(BTreeMap::<String, usize>::new(), |mut all, c| {
            for (what, n) in &c.other_replies {
                *all.entry(what.clone()).or_default() += n;
            }
            all
        });
    let send_errors = seen.iter().filter(|c| c.send_error.is_some()).count();

    // Every connection's $disconnect ran, once.
    let stderr_deadline = Instant::now() + STDERR_BOUND;
    while !stderr.ended.load(Ordering::Acquire) && Instant::now() < stderr_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !stderr.ended.load(Ordering::Acquire) {
        failures.push(format!(
            "the gateway's stderr did not end within {STDERR_BOUND:?} of its exit: a process still holds it"
        ));
    }
    let lines = stderr.lines();
    let Disconnects {
        by_id,
        codes,
        last: last_disconnect,
    } = disconnects(&lines);
    let last_disconnect = last_disconnect.map(|at| at.saturating_duration_since(signalled));
    let disconnected = ids.iter().filter(|id| by_id.get(*id) == Some(&1)).count();
    // What the gateway itself warned about (its own lines, not the handlers'), by message.
    let warnings: Vec<Warning> = lines
        .iter()
        .filter_map(|(_, line)| Warning::parse(line))
        .collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !by_id.contains_key(*id)).collect();
    if !missing.is_empty() {
        // Why, as far as the gateway said.
        let why = count_by(missing.iter().map(|id| {
            warnings
                .iter()
                .find(|w| {
                    w.connection_id.as_deref() == Some(id.as_str())
                        && w.message.starts_with("$disconnect")
                })
                .map_or("no warning about it", |w| w.message.as_str())
        }));
        failures.push(format!(
            "{} of {CLIENTS} connections have no $disconnect line; the gateway's warnings for them: {why:?}; ids: {missing:?}",
            missing.len()
        ));
    }
    for id in &ids {
        if let Some(&n) = by_id.get(id).filter(|&&n| n > 1) {
            failures.push(format!("{n} $disconnect lines for {id}"));
        }
    }
    for (id, n) in &by_id {
        if !ids.contains(id) {
            failures.push(format!(
                "{n} $disconnect lines for {id}, not a client of this test"
            ));
        }
    }
    let warning_counts = count_by(warnings.iter().map(|w| w.message.as_str()));

    // No child outlives the gateway.
    std::thread::sleep(Duration::from_millis(300));
    let survivors: Vec<_> = children
        .iter()
        .filter(|(&pid, name)| {
            is_running(pid) && process_name(pid).as_deref() == Some(name.as_str())
        })
        .map(|(&pid, name)| format!("{name} ({pid})"))
        .collect();
    let gone = children.len() - survivors.len();
    let names = count_by(children.values().map(String::as_str));
    for name in ["java", "connect", "disconnect", "message"] {
        if !names.contains_key(name) {
            failures.push(format!(
                "no {name} process was seen among the gateway's children: {names:?}"
            ));
        }
    }
    if !left_at_exit.is_empty() {
        failures.push(format!(
            "still running the moment the gateway had exited: {left_at_exit:?}"
        ));
    }
    if !survivors.is_empty() {
        failures.push(format!(
            "still running 300 ms after the gateway exited: {survivors:?}"
        ));
    }

    println!(
        "shutdown: {CLIENTS} clients, {closed_1001} closed with 1001, {disconnected} $disconnect, {gone} children gone"
    );
    println!(
        "shutdown: after SIGTERM: last client ended at {last_close:?}, last $disconnect logged at \
         {last_disconnect:?}, gateway exited ({status:?}) at {exit_took:?}; \
         endings {endings:?}; $disconnect status codes {codes:?}; replies other than acks {other_replies:?}; \
         {send_errors} clients failed to send after the close; children {names:?}; \
         gateway warnings {warning_counts:?}; whole test {:?}",
        began.elapsed()
    );
    if !failures.is_empty() {
        println!("stderr tail:\n{}", stderr.tail(30));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
