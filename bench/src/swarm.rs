//! Clients spread over several processes: one process may hold 20,000 open files, and a room
//! of 15,000 needs 15,000 client sockets beside the gateway's 15,000. Each child is this
//! binary re-invoked as `bench clients`, holding its share of the room and talking JSON lines:
//! it says when its clients are connected, sends a frame from its first client when told, and
//! reports when its clients received the marked message. Times are wall-clock (epoch µs), so
//! that the parent can compare them across processes.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::clients::{self, Target};
use crate::gateway::Credentials;

/// What `bench clients` is told on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// `ws://127.0.0.1:PORT/STAGE`.
    #[arg(long)]
    pub url: String,
    /// A query parameter of every upgrade, `NAME=VALUE` (the token).
    #[arg(long)]
    pub query: Vec<String>,
    /// Clients to hold.
    #[arg(long)]
    pub count: usize,
    /// Upgrades in flight.
    #[arg(long, default_value_t = 32)]
    pub parallel: usize,
    /// The `text` of the message whose arrivals are counted.
    #[arg(long)]
    pub marker: String,
}

/// One line a child writes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Every client is connected (or the connects failed).
    Connected {
        /// Clients open.
        count: usize,
        /// Why some failed, if any did.
        error: Option<String>,
    },
    /// The first client sent the frame, at this wall-clock time.
    Sent {
        /// Epoch µs.
        at_us: u64,
    },
    /// A frame the first client got that is not the marked message (the ack, an error).
    Reply {
        /// The frame.
        frame: Value,
    },
    /// The marked message's arrivals so far.
    Report {
        /// Clients that received it.
        delivered: usize,
        /// The first arrival, epoch µs (0: none).
        first_us: u64,
        /// The last arrival, epoch µs (0: none).
        last_us: u64,
        /// Error frames any client got.
        errors: usize,
    },
}

/// Epoch µs now, as every process reads it (CLOCK_REALTIME).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn emit(event: &Event) {
    // One line per event, flushed: the parent reads them as they come.
    if let Ok(line) = serde_json::to_string(event) {
        println!("{line}");
    }
}

#[derive(Default)]
struct Arrivals {
    delivered: AtomicUsize,
    errors: AtomicUsize,
    first_us: AtomicU64,
    last_us: AtomicU64,
}

impl Arrivals {
    fn report(&self) -> Event {
        Event::Report {
            delivered: self.delivered.load(Ordering::Acquire),
            first_us: self.first_us.load(Ordering::Acquire),
            last_us: self.last_us.load(Ordering::Acquire),
            errors: self.errors.load(Ordering::Acquire),
        }
    }
}

/// `bench clients`: connects, then follows the commands on stdin (`send FRAME`, `report`,
/// `close`); stdin's end closes everything too.
pub async fn child(args: ChildArgs) -> Result<()> {
    crate::sys::raise_nofile()?;
    let query = args
        .query
        .iter()
        .filter_map(|q| q.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let target = Target {
        url: args.url.clone(),
        credentials: Credentials {
            query,
            headers: Vec::new(),
        },
    };
    let (sockets, error) = match clients::connect_many(&target, args.count, args.parallel).await {
        Ok((sockets, _, _)) => (sockets, None),
        Err(error) => (Vec::new(), Some(format!("{error:#}"))),
    };
    emit(&Event::Connected {
        count: sockets.len(),
        error,
    });
    let arrivals = Arc::new(Arrivals {
        first_us: AtomicU64::new(u64::MAX),
        ..Arrivals::default()
    });
    let (replies, mut replies_rx) = mpsc::unbounded_channel::<Value>();
    let mut sinks = Vec::with_capacity(sockets.len());
    let mut readers = Vec::with_capacity(sockets.len());
    let total = sockets.len();
    for (index, ws) in sockets.into_iter().enumerate() {
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let arrivals = arrivals.clone();
        let replies = replies.clone();
        let marker = args.marker.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let at = now_us();
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let kind = frame.get("type").and_then(Value::as_str);
                let is_marked = kind == Some("message")
                    && frame.get("text").and_then(Value::as_str) == Some(marker.as_str());
                if is_marked {
                    arrivals.first_us.fetch_min(at, Ordering::AcqRel);
                    arrivals.last_us.fetch_max(at, Ordering::AcqRel);
                    let delivered = arrivals.delivered.fetch_add(1, Ordering::AcqRel) + 1;
                    if delivered == total {
                        emit(&arrivals.report());
                    }
                    continue;
                }
                if kind != Some("message") {
                    if kind.is_none_or(|k| k == "error") {
                        arrivals.errors.fetch_add(1, Ordering::AcqRel);
                    }
                    if index == 0 {
                        let _ = replies.send(frame);
                    }
                }
            }
        }));
    }
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            Some(frame) = replies_rx.recv() => emit(&Event::Reply { frame }),
            line = commands.next_line() => {
                let Ok(Some(line)) = line else { break };
                match line.split_once(' ').map_or((line.as_str(), ""), |(c, rest)| (c, rest)) {
                    ("send", frame) => {
                        let sink = sinks.first_mut().ok_or_else(|| anyhow!("no client to send from"))?;
                        let at_us = now_us();
                        sink.send(Message::text(frame.to_owned())).await.context("send")?;
                        emit(&Event::Sent { at_us });
                    }
                    ("report", _) => emit(&arrivals.report()),
                    _ => break,
                }
            }
        }
    }
    futures::stream::iter(sinks.iter_mut())
        .for_each_concurrent(256, |sink| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), sink.close()).await;
        })
        .await;
    for reader in readers {
        reader.abort();
    }
    Ok(())
}

/// One `bench clients` process, from the parent's side.
struct Member {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    report: Option<(usize, u64, u64, usize)>,
}

impl Member {
    async fn next(&mut self, until: tokio::time::Instant) -> Result<Event> {
        let line = tokio::time::timeout_at(until, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("a client process said nothing in time"))?
            .context("read a client process")?
            .ok_or_else(|| anyhow!("a client process exited"))?;
        serde_json::from_str(&line).with_context(|| format!("a client process wrote {line:?}"))
    }

    async fn command(&mut self, line: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .context("write to a client process")
    }
}

/// What the whole swarm saw of one message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When the frame left the sender, epoch µs.
    pub sent_us: u64,
    /// Clients that received the message.
    pub delivered: usize,
    /// The last arrival, epoch µs (0: none).
    pub last_us: u64,
    /// Error frames the clients got.
    pub errors: usize,
    /// The sender's reply (the ack), if one came.
    pub ack: Option<Value>,
}

/// Several `bench clients` processes holding one room between them.
pub struct Swarm {
    members: Vec<Member>,
    count: usize,
}

impl Swarm {
    /// Starts `processes` children holding `count` clients between them, and waits until
    /// every one is connected (or `timeout` passes).
    pub async fn start(
        target: &Target,
        count: usize,
        processes: usize,
        marker: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("find the bench binary")?;
        let processes = processes.max(1);
        let mut members = Vec::with_capacity(processes);
        for i in 0..processes {
            let share = count / processes + usize::from(i < count % processes);
            let mut command = Command::new(&exe);
            command
                .args(["clients", "--url", &target.url, "--marker", marker])
                .args(["--count", &share.to_string()]);
            for (name, value) in &target.credentials.query {
                command.arg("--query").arg(format!("{name}={value}"));
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("start a `bench clients` process")?;
            let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("no stdout pipe"))?;
            members.push(Member {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
                report: None,
            });
        }
        let until = tokio::time::Instant::now() + timeout;
        let mut open = 0;
        for member in &mut members {
            match member.next(until).await? {
                Event::Connected { count, error: None } => open += count,
                Event::Connected {
                    error: Some(error), ..
                } => bail!("a client process could not connect: {error}"),
                other => bail!("a client process said {other:?} before connecting"),
            }
        }
        Ok(Self {
            members,
            count: open,
        })
    }

    /// Clients open.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Sends `frame` from the first client and waits until every client received the message
    /// marked with the swarm's marker, or `timeout` passes; what arrived by then.
    pub async fn deliver(&mut self, frame: &Value, timeout: Duration) -> Result<Delivery> {
        let until = tokio::time::Instant::now() + timeout;
        let first = self
            .members
            .first_mut()
            .ok_or_else(|| anyhow!("no client process"))?;
        first.command(&format!("send {frame}")).await?;
        let mut sent_us = 0;
        let mut ack = None;
        // The sender's process writes its `sent`, its ack and its report in any order; a
        // process is done with its report (the sender's with its ack too).
        let mut pending: Vec<usize> = (0..self.members.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &i in &pending {
                let member = &mut self.members[i];
                // Each process gets a short slice, then the next: none blocks the others.
                let slice = (tokio::time::Instant::now() + Duration::from_millis(50)).min(until);
                match member.next(slice).await {
                    Ok(Event::Sent { at_us }) => sent_us = at_us,
                    Ok(Event::Reply { frame }) => {
                        ack.get_or_insert(frame);
                    }
                    Ok(Event::Report {
                        delivered,
                        first_us,
                        last_us,
                        errors,
                    }) => member.report = Some((delivered, first_us, last_us, errors)),
                    Ok(Event::Connected { .. }) | Err(_) => {}
                }
                let done = member.report.is_some() && (i != 0 || ack.is_some());
                if done {
                    continue;
                }
                if tokio::time::Instant::now() < until {
                    still.push(i);
                } else if member.report.is_none() {
                    // Out of time: ask for what arrived so far.
                    member.command("report").await?;
                    let late = tokio::time::Instant::now() + Duration::from_secs(10);
                    while member.report.is_none() {
                        if let Event::Report {
                            delivered,
                            first_us,
                            last_us,
                            errors,
                        } = member.next(late).await?
                        {
                            member.report = Some((delivered, first_us, last_us, errors));
                        }
                    }
                }
            }
            pending = still;
        }
        let mut delivery = Delivery {
            sent_us,
            delivered: 0,
            last_us: 0,
            errors: 0,
            ack,
        };
        for member in &mut self.members {
            if let Some((delivered, _, last_us, errors)) = member.report.take() {
                delivery.delivered += delivered;
                delivery.last_us = delivery.last_us.max(last_us);
                delivery.errors += errors;
            }
        }
        Ok(delivery)
    }

    /// Closes every client and waits for the processes to exit.
    pub async fn close(mut self) {
        for member in &mut self.members {
            let _ = member.command("close").await;
        }
        for member in &mut self.members {
            if tokio::time::timeout(Duration::from_secs(30), member.child.wait())
                .await
                .is_err()
            {
                let _ = member.child.kill().await;
            }
        }
    }
}
