//! Clients spread over several processes: one process may hold 20,000 open files, and a room
//! of 15,000 needs 15,000 client sockets beside the gateway's 15,000. Each child is this
//! binary re-invoked as `bench clients`, holding its share of the room in a [`Fleet`] and
//! talking JSON lines: it says when its clients are connected, and on `deliver` (the first
//! child also sends the frame) reports when its clients received the marked message. Times
//! are wall-clock (epoch µs), so that the parent can compare them across processes.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::clients::{self, Fleet, Target};

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

/// What the parent tells a child on one line of its stdin.
#[derive(Debug, Serialize, Deserialize)]
struct Deliver {
    /// Sent from the child's first client, if any: only the sender's child gets it.
    frame: Option<Value>,
    /// How long to wait for the arrivals (and the sender's reply), ms.
    timeout_ms: u64,
}

/// One line a child writes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    /// Every client is connected (`error`: why some failed).
    Connected { count: usize, error: Option<String> },
    /// The marked message's arrivals in this child, when all came or the time ran out.
    Report(Delivery),
}

/// What one child, or the whole swarm, saw of one message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delivery {
    /// When the frame left the sender, epoch µs (0 in the other children).
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

/// `bench clients`: connects, then serves one `deliver` line after another until stdin ends.
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
        query,
        headers: Vec::new(),
    };
    let (sockets, error) = match clients::connect_many(&target, args.count, args.parallel).await {
        Ok((sockets, _, _)) => (sockets, None),
        Err(error) => (Vec::new(), Some(format!("{error:#}"))),
    };
    let count = sockets.len();
    emit(&Event::Connected { count, error });
    let mut fleet = Fleet::default();
    fleet.add(sockets);
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = commands.next_line().await {
        let command: Deliver = serde_json::from_str(&line).context("a deliver command")?;
        let mut seen = Delivery::default();
        if let Some(frame) = &command.frame {
            seen.sent_us = now_us();
            fleet.send(0, frame).await?;
        }
        let until = tokio::time::Instant::now() + Duration::from_millis(command.timeout_ms);
        // Done when every client has it, and the sender's child when its reply came too.
        while seen.delivered < count || (command.frame.is_some() && seen.ack.is_none()) {
            let Ok(Some(arrival)) = tokio::time::timeout_at(until, fleet.next()).await else {
                break;
            };
            if arrival.kind == "message" {
                if arrival.text.as_deref() == Some(args.marker.as_str()) {
                    seen.last_us = seen.last_us.max(arrival.wall_us);
                    seen.delivered += 1;
                }
                continue;
            }
            seen.errors += usize::from(arrival.kind == "apigw" || arrival.kind == "error");
            if command.frame.is_some() && arrival.client == 0 && seen.ack.is_none() {
                seen.ack = Some(serde_json::from_str(&arrival.raw).unwrap_or(Value::Null));
            }
        }
        emit(&Event::Report(seen));
    }
    fleet.close().await;
    Ok(())
}

/// One `bench clients` process, from the parent's side.
struct Member {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
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
        let until = tokio::time::Instant::now() + timeout;
        let mut swarm = Self {
            members: Vec::with_capacity(processes),
            count: 0,
        };
        for i in 0..processes {
            let share = count / processes + usize::from(i < count % processes);
            let mut command = Command::new(&exe);
            command
                .args(["clients", "--url", &target.url, "--marker", marker])
                .args(["--count", &share.to_string()]);
            for (name, value) in &target.query {
                command.arg("--query").arg(format!("{name}={value}"));
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("start a `bench clients` process")?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                bail!("a `bench clients` process without pipes");
            };
            let lines = BufReader::new(stdout).lines();
            swarm.members.push(Member {
                child,
                stdin,
                lines,
            });
        }
        for member in &mut swarm.members {
            match member.next(until).await? {
                Event::Connected { count, error: None } => swarm.count += count,
                Event::Connected {
                    error: Some(error), ..
                } => bail!("a client process could not connect: {error}"),
                other => bail!("a client process said {other:?} before connecting"),
            }
        }
        Ok(swarm)
    }

    /// Clients open.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Sends `frame` from the first client and waits until every client received the message
    /// marked with the swarm's marker, or `timeout` passes; what arrived by then.
    pub async fn deliver(&mut self, frame: &Value, timeout: Duration) -> Result<Delivery> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        for (i, member) in self.members.iter_mut().enumerate() {
            let frame = (i == 0).then(|| frame.clone());
            let line = serde_json::to_string(&Deliver { frame, timeout_ms })? + "\n";
            member
                .stdin
                .write_all(line.as_bytes())
                .await
                .context("write to a client process")?;
        }
        // Each child stops at its own deadline; a little more for its report to come.
        let until = tokio::time::Instant::now() + timeout + Duration::from_secs(10);
        let mut total = Delivery::default();
        for member in &mut self.members {
            let Event::Report(seen) = member.next(until).await? else {
                bail!("a client process answered `deliver` with something else");
            };
            total.sent_us = total.sent_us.max(seen.sent_us);
            total.delivered += seen.delivered;
            total.last_us = total.last_us.max(seen.last_us);
            total.errors += seen.errors;
            total.ack = total.ack.or(seen.ack);
        }
        Ok(total)
    }

    /// Closes every client (each child's stdin ends) and waits for the processes to exit.
    pub async fn close(self) {
        let mut children: Vec<Child> = self.members.into_iter().map(|m| m.child).collect();
        for child in &mut children {
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}
