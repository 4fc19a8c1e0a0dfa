//! Clients spread over several processes: one process may hold 20,000 open files, and a room
//! of 15,000 needs 15,000 client sockets beside the gateway's 15,000. Each child is this
//! binary re-invoked as `bench clients`, holding its share of the room and talking JSON lines:
//! it says when its clients are connected, sends a frame from its first client when told, and
//! reports when its clients received the marked message. Times are wall-clock (epoch µs), so
//! that the parent can compare them across processes.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::clients::{self, Fleet, Target};
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
    Report(Arrivals),
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

/// The marked message's arrivals in one process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Arrivals {
    /// Clients that received it.
    delivered: usize,
    /// Error frames any client got.
    errors: usize,
    /// The last arrival, epoch µs (0: none).
    last_us: u64,
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
    let mut fleet = Fleet::default();
    fleet.add(sockets);
    let total = fleet.len();
    let mut arrivals = Arrivals::default();
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            Some(arrival) = fleet.next() => {
                if arrival.kind == "message" {
                    if arrival.text.as_deref() == Some(args.marker.as_str()) {
                        arrivals.last_us = arrivals.last_us.max(arrival.wall_us);
                        arrivals.delivered += 1;
                        if arrivals.delivered == total {
                            emit(&Event::Report(arrivals));
                        }
                    }
                    continue;
                }
                if arrival.kind == "apigw" || arrival.kind == "error" {
                    arrivals.errors += 1;
                }
                if arrival.client == 0 {
                    let frame = serde_json::from_str(&arrival.raw).unwrap_or(Value::Null);
                    emit(&Event::Reply { frame });
                }
            }
            line = commands.next_line() => {
                let Ok(Some(line)) = line else { break };
                match line.split_once(' ').map_or((line.as_str(), ""), |(c, rest)| (c, rest)) {
                    ("send", frame) => {
                        let frame: Value = serde_json::from_str(frame).context("a frame to send")?;
                        let at_us = now_us();
                        fleet.send(0, &frame).await?;
                        emit(&Event::Sent { at_us });
                    }
                    ("report", _) => emit(&Event::Report(arrivals)),
                    _ => break,
                }
            }
        }
    }
    fleet.close().await;
    Ok(())
}

/// One `bench clients` process, from the parent's side.
struct Member {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    report: Option<Arrivals>,
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
                    Ok(Event::Report(arrivals)) => member.report = Some(arrivals),
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
                        if let Event::Report(arrivals) = member.next(late).await? {
                            member.report = Some(arrivals);
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
            if let Some(arrivals) = member.report.take() {
                delivery.delivered += arrivals.delivered;
                delivery.last_us = delivery.last_us.max(arrivals.last_us);
                delivery.errors += arrivals.errors;
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
