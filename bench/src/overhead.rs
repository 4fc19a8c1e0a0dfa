//! Benchmark 3, gateway overhead: `ping` round trips through the gateway, the Runtime API
//! and the message handler, against a raw echo over the same WebSocket library (axum on
//! tungstenite, the same buffer settings) in its own process: the physical floor. Then
//! messages per second with 100 clients, each with one request in flight.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::clients::{self, Target};
use crate::stats::Summary;

/// The gateway's frame for `ping`, and what it answers.
pub const PING: &str = r#"{"action":"ping"}"#;

/// Round trips and throughput of one server.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Sequential round trips of one client, µs.
    pub rtt_us: Summary,
    /// Requests answered per second with `clients` clients, one request in flight each.
    pub per_second: f64,
    /// Round trips during the throughput run, µs.
    pub loaded_rtt_us: Summary,
    /// Clients of the throughput run.
    pub clients: usize,
    /// Length of the measured window, s.
    pub window_s: f64,
    /// CPU per answered request during the loaded run, µs: the server process (gateway or
    /// echo), the handler processes (gateway only), the harness's clients.
    pub cpu_us_per_message: CpuSplit,
}

/// Where the CPU of one request went.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuSplit {
    /// The gateway or the echo server.
    pub server: f64,
    /// The message handler processes.
    pub handlers: f64,
    /// The harness (the clients).
    pub clients: f64,
}

/// Gateway against raw echo.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Through the gateway, Runtime API and message handler.
    pub gateway: Side,
    /// Raw echo over the same WebSocket library.
    pub raw_echo: Side,
    /// Gateway median RTT / raw echo median RTT.
    pub median_ratio: f64,
}

/// Warm-up of the throughput run, before its measured window.
const LOAD_WARMUP: Duration = Duration::from_secs(1);

/// `bench echo-server`: a raw WebSocket echo on 127.0.0.1, printing its port.
pub async fn echo_server() -> Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("bind the echo server")?;
    println!("{}", listener.local_addr()?.port());
    let app = Router::new().route("/", get(upgrade));
    axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        app,
    )
    .await
    .context("echo server")
}

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    // The gateway's settings (local/gateway/src/websocket.rs), so only the work differs.
    ws.read_buffer_size(1024)
        .write_buffer_size(0)
        .max_frame_size(32 * 1024)
        .on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(text),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// The echo server as a child process of the harness (its own runtime, like the gateway).
pub struct EchoProcess {
    child: tokio::process::Child,
    /// `ws://127.0.0.1:PORT/`.
    pub url: String,
}

impl EchoProcess {
    /// The echo server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Starts `bench echo-server` and reads its port.
    pub async fn start() -> Result<Self> {
        let exe = std::env::current_exe().context("the harness's own path")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("echo-server")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start the echo server")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| anyhow!("the echo server did not print its port"))??
            .ok_or_else(|| anyhow!("the echo server exited"))?;
        let port: u16 = port.trim().parse().context("echo server port")?;
        Ok(Self {
            child,
            url: format!("ws://127.0.0.1:{port}/"),
        })
    }

    /// Stops it.
    pub async fn stop(mut self) {
        crate::sys::terminate(&mut self.child, Duration::from_secs(5)).await;
    }
}

fn is_pong(text: &str) -> bool {
    text.contains(r#""type":"pong""#)
}

fn is_echo(text: &str) -> bool {
    text == PING
}

/// Measures one side: sequential round trips, then the loaded run.
pub async fn measure_side(
    target: &Target,
    server_pid: u32,
    gateway: bool,
    plan: &crate::Plan,
) -> Result<Side> {
    let warmup = plan.round_trips / 10;
    let load_window = Duration::from_secs(plan.load_window_s);
    let is_reply: fn(&str) -> bool = if gateway { is_pong } else { is_echo };
    let handler_pids = || {
        if gateway {
            crate::sys::children_named(server_pid, "message")
        } else {
            Vec::new()
        }
    };
    let (mut ws, _) = clients::connect(target).await?;
    let mut rtts = Vec::with_capacity(plan.round_trips);
    for i in 0..warmup + plan.round_trips {
        let took = clients::round_trip(&mut ws, PING, is_reply).await?;
        if i >= warmup {
            rtts.push(took.as_secs_f64() * 1e6);
        }
    }
    let _ = ws.close(None).await;

    let (sockets, _, _) = clients::connect_many(target, plan.load_clients, 32).await?;
    let me = std::process::id();
    let before = (
        crate::sys::cpu_snapshot(&[server_pid]),
        crate::sys::cpu_snapshot(&handler_pids()),
        crate::sys::cpu_snapshot(&[me]),
    );
    let start = Instant::now() + Duration::from_millis(100);
    let window_start = start + LOAD_WARMUP;
    let window_end = window_start + load_window;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                let mut latencies = Vec::new();
                let mut answered = 0usize;
                loop {
                    let sent = Instant::now();
                    if sent >= window_end {
                        break;
                    }
                    let took = clients::round_trip(&mut ws, PING, is_reply).await?;
                    answered += 1;
                    let done = sent + took;
                    if sent >= window_start && done <= window_end {
                        latencies.push(took.as_secs_f64() * 1e6);
                    }
                }
                let _ = ws.close(None).await;
                Ok::<_, anyhow::Error>((latencies, answered))
            })
        })
        .collect();
    let mut loaded = Vec::new();
    let mut answered = 0usize;
    for task in tasks {
        let (latencies, count) = task.await.context("client task")??;
        loaded.extend(latencies);
        answered += count;
    }
    let per_message = |before: &std::collections::HashMap<u32, f64>,
                       after: &std::collections::HashMap<u32, f64>| {
        crate::sys::cpu_between(before, after) / answered.max(1) as f64
    };
    let cpu = CpuSplit {
        server: per_message(&before.0, &crate::sys::cpu_snapshot(&[server_pid])),
        handlers: per_message(&before.1, &crate::sys::cpu_snapshot(&handler_pids())),
        clients: per_message(&before.2, &crate::sys::cpu_snapshot(&[me])),
    };
    let window = load_window.as_secs_f64();
    Ok(Side {
        rtt_us: Summary::of(&rtts),
        per_second: loaded.len() as f64 / window,
        loaded_rtt_us: Summary::of(&loaded),
        clients: plan.load_clients,
        window_s: window,
        cpu_us_per_message: cpu,
    })
}

/// Both sides, echo first (it leaves nothing behind).
pub async fn measure(gateway: &Target, gateway_pid: u32, plan: &crate::Plan) -> Result<Overhead> {
    let echo = EchoProcess::start().await?;
    let echo_pid = echo.pid().unwrap_or_default();
    let raw = measure_side(&Target::plain(echo.url.clone()), echo_pid, false, plan).await;
    echo.stop().await;
    let raw = raw?;
    eprintln!(
        "bench: raw echo: median {:.0} µs, p99 {:.0} µs, {:.0} msg/s at {} clients",
        raw.rtt_us.median, raw.rtt_us.p99, raw.per_second, raw.clients
    );
    let through = measure_side(gateway, gateway_pid, true, plan).await?;
    eprintln!(
        "bench: gateway ping: median {:.0} µs, p99 {:.0} µs, {:.0} msg/s at {} clients",
        through.rtt_us.median, through.rtt_us.p99, through.per_second, through.clients
    );
    Ok(Overhead {
        median_ratio: through.rtt_us.median / raw.rtt_us.median.max(f64::EPSILON),
        gateway: through,
        raw_echo: raw,
    })
}
