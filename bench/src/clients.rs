//! WebSocket clients: one at a time for round trips, thousands at once for fan-out and
//! capacity. Small buffers, so that the harness's own memory stays modest at 10,000.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::stream::{self, SplitSink, StreamExt};
use futures::SinkExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one connect (upgrade plus `$connect`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Client buffers: small, frames are small.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Where clients connect, and with what credentials.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `ws://127.0.0.1:PORT/STAGE`.
    pub url: String,
    /// Query-string parameters of every upgrade (a token, when the gateway wants one).
    pub query: Vec<(String, String)>,
    /// Headers of every upgrade.
    pub headers: Vec<(String, String)>,
}

impl Target {
    /// A target without credentials (the raw echo server).
    pub fn plain(url: String) -> Self {
        Self {
            url,
            ..Self::default()
        }
    }

    fn url(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            self.url.clone()
        } else {
            format!("{}?{}", self.url, query.join("&"))
        }
    }
}

/// Opens one client; returns it with the time the upgrade (and `$connect`) took.
pub async fn connect(target: &Target) -> Result<(Ws, Duration)> {
    let mut request = target
        .url()
        .into_client_request()
        .context("bad WebSocket URL")?;
    for (name, value) in &target.headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName =
            name.parse().context("header name")?;
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).context("header value")?);
    }
    let started = Instant::now();
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true),
    )
    .await
    .map_err(|_| anyhow!("connect timed out after {CONNECT_TIMEOUT:?}"))?
    .context("WebSocket connect")?;
    Ok((ws, started.elapsed()))
}

/// Opens `n` clients with at most `parallel` upgrades in flight; returns them with each
/// upgrade's duration and the total time.
pub async fn connect_many(
    target: &Target,
    n: usize,
    parallel: usize,
) -> Result<(Vec<Ws>, Vec<Duration>, Duration)> {
    let started = Instant::now();
    let results: Vec<Result<(Ws, Duration)>> = stream::iter(0..n)
        .map(|_| connect(target))
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut sockets = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok((ws, took)) => {
                sockets.push(ws);
                times.push(took);
            }
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    if !failures.is_empty() {
        failures.sort();
        failures.dedup();
        bail!(
            "{} of {n} connects failed, e.g.: {}",
            n - sockets.len(),
            failures.into_iter().take(3).collect::<Vec<_>>().join("; ")
        );
    }
    Ok((sockets, times, elapsed))
}

/// A frame a fleet client received: its `type` (or `apigw` for API Gateway's own frames),
/// its `text`, and when.
#[derive(Debug)]
pub struct Arrival {
    /// The frame's `type`.
    pub kind: String,
    /// The frame's `text`, if any.
    pub text: Option<String>,
    /// When the client read it.
    pub at: Instant,
    /// The same moment as epoch µs, comparable across processes.
    pub wall_us: u64,
    /// Which client of the fleet read it.
    pub client: usize,
    /// The whole frame, for error messages.
    pub raw: String,
}

/// Many clients whose readers report every frame to one channel.
pub struct Fleet {
    sinks: Vec<SplitSink<Ws, Message>>,
    readers: Vec<JoinHandle<()>>,
    tx: mpsc::UnboundedSender<Arrival>,
    rx: mpsc::UnboundedReceiver<Arrival>,
}

impl Default for Fleet {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            sinks: Vec::new(),
            readers: Vec::new(),
            tx,
            rx,
        }
    }
}

impl Fleet {
    /// How many clients.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Adds clients; their frames start arriving on the fleet's channel.
    pub fn add(&mut self, sockets: Vec<Ws>) {
        for ws in sockets {
            let client = self.sinks.len();
            let (sink, mut stream) = ws.split();
            let tx = self.tx.clone();
            self.readers.push(tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let (at, wall_us) = (Instant::now(), crate::swarm::now_us());
                    let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    let kind = match value.get("type").and_then(Value::as_str) {
                        Some(kind) => kind.to_owned(),
                        None => "apigw".to_owned(),
                    };
                    let text_field = value.get("text").and_then(Value::as_str).map(str::to_owned);
                    let raw = if kind == "message" {
                        String::new()
                    } else {
                        text.as_str().to_owned()
                    };
                    let _ = tx.send(Arrival {
                        kind,
                        text: text_field,
                        at,
                        wall_us,
                        client,
                        raw,
                    });
                }
            }));
            self.sinks.push(sink);
        }
    }

    /// Sends a JSON frame from client `index`.
    pub async fn send(&mut self, index: usize, frame: &Value) -> Result<Instant> {
        let sink = self
            .sinks
            .get_mut(index)
            .ok_or_else(|| anyhow!("no client {index}"))?;
        let sent = Instant::now();
        sink.send(Message::text(frame.to_string()))
            .await
            .context("send a frame")?;
        Ok(sent)
    }

    /// The next frame any client read (`None` never comes: the fleet holds a sender).
    pub async fn next(&mut self) -> Option<Arrival> {
        self.rx.recv().await
    }

    /// Sends `frame` from client 0 and waits for `n` `message` frames whose `text` is
    /// `marker`: the time from the send to the first and to the last of them.
    pub async fn round(
        &mut self,
        frame: &Value,
        marker: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<(Duration, Duration)> {
        let sent = self.send(0, frame).await?;
        let times = self.collect("message", Some(marker), n, timeout).await?;
        let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
            bail!("no arrivals");
        };
        Ok((*first - sent, *last - sent))
    }

    /// Waits for `expected` frames of `kind` (and `text`, when given); returns their arrival
    /// times. Frames of other rounds are skipped; error frames fail at once.
    pub async fn collect(
        &mut self,
        kind: &str,
        text: Option<&str>,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<Instant>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut times = Vec::with_capacity(expected);
        while times.len() < expected {
            let arrival = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(arrival)) => arrival,
                Ok(None) => bail!("every client reader stopped"),
                Err(_) => bail!(
                    "only {} of {expected} `{kind}` frames arrived within {timeout:?}",
                    times.len()
                ),
            };
            if arrival.kind == "error" || arrival.kind == "apigw" {
                bail!("a client got an error frame: {}", arrival.raw);
            }
            if arrival.kind == kind && (text.is_none() || arrival.text.as_deref() == text) {
                times.push(arrival.at);
            }
        }
        Ok(times)
    }

    /// Closes every client and stops the readers.
    pub async fn close(mut self) {
        stream::iter(self.sinks.iter_mut())
            .for_each_concurrent(256, |sink| async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), sink.close()).await;
            })
            .await;
        for reader in self.readers.drain(..) {
            reader.abort();
        }
    }
}

/// One request, one reply, on a dedicated socket: the round-trip time.
pub async fn round_trip(
    ws: &mut Ws,
    frame: &str,
    is_reply: impl Fn(&str) -> bool,
) -> Result<Duration> {
    let started = Instant::now();
    ws.send(Message::text(frame.to_owned()))
        .await
        .context("send")?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if is_reply(text.as_str()) {
                    return Ok(started.elapsed());
                }
                if !text.as_str().contains("\"type\"") || text.as_str().contains("\"error\"") {
                    bail!("unexpected frame: {}", text.as_str());
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => return Err(error).context("receive"),
            Ok(None) => bail!("the socket closed"),
            Err(_) => bail!("no reply within 30 s"),
        }
    }
}
