//! A soak with churn, through the real gateway, handlers and DynamoDB Local: 300 clients in 10
//! rooms send about 3,000 messages at a gentle pace while 30 of them drop (a TCP reset, no close
//! frame) and come back (a new connection that joins again and catches up with `history`
//! `after` a resume point). The test checks from its own records that every acknowledged
//! message reached every connection that had to get it, once, in each sender's order, and that
//! a client that came back has all of its room's messages, live or through history.
//!
//! The assertions depend on counts only, never on timings: causality between clients is read
//! from one logical clock (a counter taken under one lock as each event is observed).
//!
//! Needs what `e2e.rs` needs: `make gateway-e2e-deps`.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use local_gateway::quotas::Quotas;
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

const CLIENTS: usize = 300;
const ROOMS: usize = 10;
const MESSAGES_PER_CLIENT: usize = 10;
/// Each client sends one message per `PACE` (staggered): 300 clients make 75 a second in all,
/// each one a message every 4 s, far under the per-connection limit of 10 a second.
const PACE: Duration = Duration::from_secs(4);
/// Never two sends of one client closer than this, even when it is behind its schedule.
const MIN_GAP: Duration = Duration::from_millis(300);
/// A reply comes within the gateway's 29 s integration timeout, or never.
const REPLY_WAIT: Duration = Duration::from_secs(35);
/// The whole scenario, connections and checks included.
const OVERALL: Duration = Duration::from_secs(300);
/// At most this many `sendmessage`s in flight in all: two for each of the message function's 4
/// processes. The schedule above is the most the clients send; on a slower (or busier) machine
/// this keeps them from queueing invocations until the 29 s integration timeout eats their
/// deadline (then the handler answers `sent` with no post attempted: an overloaded laptop, not
/// what this test is about).
const SENDS_AT_ONCE: usize = 8;
/// At most this many connects (upgrade, whoami, join) at once while the clients come in.
const CONNECTS_AT_ONCE: usize = 16;
/// The resume point is the newest message seen at least this much older than the newest seen.
const RESUME_LAG_SECONDS: i64 = 30;
const HISTORY_LIMIT: usize = 100;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn room_of(client: usize) -> usize {
    client / (CLIENTS / ROOMS)
}

fn room_name(room: usize) -> String {
    format!("soak-{room}")
}

/// How a client drops, if it does: 10% of the clients, three in every room.
#[derive(Debug, Clone, Copy)]
struct DropPlan {
    /// Dropped just before sending this message (0-based).
    before: usize,
    /// The message `before` is sent and the connection reset right after, its ack never read.
    mid_send: bool,
    /// How long the client stays away.
    offline: Duration,
}

fn drop_plan(client: usize) -> Option<DropPlan> {
    (client % 10 == 3).then(|| {
        let n = client / 10;
        DropPlan {
            before: 3 + n % 5,
            mid_send: n % 2 == 1,
            offline: Duration::from_millis(500 + 500 * (n % 4) as u64),
        }
    })
}

// ---------- what the test records ----------

/// One connection of one client.
#[derive(Debug)]
struct ConnRecord {
    client: usize,
    room: usize,
    id: String,
    /// When its `joined` for the room came.
    joined: Option<u64>,
    /// When it stopped counting as connected: just before the barrier ahead of its reset.
    cutoff: Option<u64>,
}

/// One `sendmessage` a client sent.
#[derive(Debug)]
struct SendRecord {
    client: usize,
    conn: usize,
    room: usize,
    k: usize,
    text: String,
    /// Just before its frame was written.
    started: u64,
    ack: Option<Ack>,
}

#[derive(Debug, Clone)]
struct Ack {
    id: String,
    at: u64,
}

/// A room message a connection read live.
#[derive(Debug)]
struct Delivery {
    conn: usize,
    id: String,
    room: String,
    from: String,
    text: String,
    sent_at: String,
    order: u64,
}

/// A room message a client got through `history` after coming back.
#[derive(Debug)]
struct HistoryItem {
    client: usize,
    id: String,
    room: String,
    sent_at: String,
}

#[derive(Default)]
struct Log {
    clock: u64,
    conns: Vec<ConnRecord>,
    sends: Vec<SendRecord>,
    deliveries: Vec<Delivery>,
    history: Vec<HistoryItem>,
    /// What each client is doing: a stuck run says where it stuck.
    stage: Vec<String>,
    drops: usize,
    reconnects: usize,
    history_pages: usize,
    rate_limited: usize,
    /// Replies nobody waited for, and refusals other than `rate_limited`.
    strays: Vec<String>,
    errors: Vec<String>,
}

impl Log {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Log>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stage(&self, client: usize, stage: impl Into<String>) {
        self.lock().stage[client] = stage.into();
    }

    fn stray(&self, client: usize, what: impl Into<String>) {
        let what = what.into();
        self.lock()
            .strays
            .push(format!("client {client}: {}", cut(&what)));
    }
}

fn cut(text: &str) -> String {
    text.chars().take(300).collect()
}

fn text_of(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_owned()
}

// ---------- one connection ----------

struct Conn {
    ws: Ws,
    /// Its index in `Log::conns`.
    index: usize,
    client: usize,
}

impl Conn {
    /// A new connection, its id asked with `whoami` (waiting as long as any reply may take).
    async fn open(url: &str, client: usize, log: &Shared) -> Result<Self, String> {
        let (ws, response) = connect_async(url)
            .await
            .map_err(|e| format!("client {client}: the upgrade failed: {e}"))?;
        if response.status() != 101 {
            return Err(format!(
                "client {client}: upgrade answered {}",
                response.status()
            ));
        }
        let index = {
            let mut log = log.lock();
            log.conns.push(ConnRecord {
                client,
                room: room_of(client),
                id: String::new(),
                joined: None,
                cutoff: None,
            });
            log.conns.len() - 1
        };
        let mut conn = Self { ws, index, client };
        let identity = conn
            .request(log, json!({"action": "whoami"}), "whoami")
            .await?;
        let Some(id) = identity["connectionId"].as_str() else {
            return Err(format!("client {client}: whoami answered {identity}"));
        };
        log.lock().conns[index].id = id.to_owned();
        Ok(conn)
    }

    async fn send(&mut self, value: &Value) -> Result<(), String> {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .map_err(|e| format!("client {}: send failed: {e}", self.client))
    }

    /// Reads one frame: a room message is recorded, anything else returned. Cancel-safe: the
    /// only await is the socket's `next`.
    async fn read_one(&mut self, log: &Shared) -> Result<Option<Value>, String> {
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    format!("client {}: not JSON ({e}): {}", self.client, cut(&text))
                })?;
                if value["type"] == "message" {
                    let mut log = log.lock();
                    let order = log.tick();
                    log.deliveries.push(Delivery {
                        conn: self.index,
                        id: text_of(&value, "id"),
                        room: text_of(&value, "room"),
                        from: text_of(&value, "from"),
                        text: text_of(&value, "text"),
                        sent_at: text_of(&value, "sentAt"),
                        order,
                    });
                    Ok(None)
                } else {
                    Ok(Some(value))
                }
            }
            Some(Ok(Message::Close(frame))) => Err(format!(
                "client {}: the gateway closed the connection: {frame:?}",
                self.client
            )),
            Some(Ok(_)) => Ok(None),
            Some(Err(error)) => Err(format!("client {}: socket error: {error}", self.client)),
            None => Err(format!("client {}: the connection ended", self.client)),
        }
    }

    /// Reads (recording room messages) until the reply with this `ref`.
    async fn reply(&mut self, log: &Shared, reference: &str) -> Result<Value, String> {
        let deadline = Instant::now() + REPLY_WAIT;
        loop {
            let Ok(read) = timeout_at(deadline, self.read_one(log)).await else {
                return Err(format!(
                    "client {}: no reply to `{reference}` within {REPLY_WAIT:?}",
                    self.client
                ));
            };
            if let Some(value) = read? {
                if value["ref"] == reference {
                    return Ok(value);
                }
                log.stray(self.client, value.to_string());
            }
        }
    }

    async fn request(
        &mut self,
        log: &Shared,
        mut request: Value,
        reference: &str,
    ) -> Result<Value, String> {
        request["ref"] = json!(reference);
        self.send(&request).await?;
        self.reply(log, reference).await
    }

    /// Reads (recording room messages) until `until`.
    async fn idle_until(&mut self, log: &Shared, until: Instant) -> Result<(), String> {
        loop {
            tokio::select! {
                () = sleep_until(until) => return Ok(()),
                read = self.read_one(log) => if let Some(value) = read? {
                    log.stray(self.client, value.to_string());
                },
            }
        }
    }

    /// Reads (recording room messages) until the watched value passes `ready`.
    async fn idle_until_watch<T>(
        &mut self,
        log: &Shared,
        rx: &mut watch::Receiver<T>,
        ready: impl Fn(&T) -> bool,
    ) -> Result<T, String>
    where
        T: Clone,
    {
        loop {
            tokio::select! {
                seen = rx.wait_for(&ready) => {
                    return seen.map(|v| v.clone()).map_err(|_| "the scenario ended".to_owned());
                }
                read = self.read_one(log) => if let Some(value) = read? {
                    log.stray(self.client, value.to_string());
                },
            }
        }
    }

    /// Reads (recording room messages) until a permit to send is free; its place in the
    /// semaphore's queue is kept meanwhile.
    async fn idle_for_permit(
        &mut self,
        log: &Shared,
        sends: &Arc<Semaphore>,
    ) -> Result<OwnedSemaphorePermit, String> {
        let acquire = sends.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                permit = &mut acquire => return permit.map_err(|_| "the semaphore closed".to_owned()),
                read = self.read_one(log) => if let Some(value) = read? {
                    log.stray(self.client, value.to_string());
                },
            }
        }
    }

    async fn join(&mut self, log: &Shared) -> Result<(), String> {
        let room = room_name(room_of(self.client));
        let reply = self
            .request(log, json!({"action": "join", "room": room}), "join")
            .await?;
        if reply["type"] != "joined" {
            return Err(format!("client {}: join refused: {reply}", self.client));
        }
        let mut log = log.lock();
        let at = log.tick();
        log.conns[self.index].joined = Some(at);
        Ok(())
    }

    /// What every frame the gateway queued for this connection before now has reached: a ping
    /// is answered through the same outbox, after them.
    async fn barrier(&mut self, log: &Shared, reference: &str) -> Result<(), String> {
        let pong = self
            .request(log, json!({"action": "ping"}), reference)
            .await?;
        if pong["type"] == "pong" {
            Ok(())
        } else {
            Err(format!("client {}: ping answered {pong}", self.client))
        }
    }

    /// The TCP connection ends with a reset: no close frame, no FIN.
    fn reset(self) -> Result<(), String> {
        match self.ws.get_ref() {
            // `set_zero_linger` is `set_linger(Some(Duration::ZERO))` without the deprecation.
            MaybeTlsStream::Plain(tcp) => tcp
                .set_zero_linger()
                .map_err(|e| format!("client {}: SO_LINGER: {e}", self.client))?,
            _ => return Err("not a plain TCP stream".into()),
        }
        drop(self.ws);
        Ok(())
    }
}

// ---------- one client ----------

enum Event {
    Ready,
    Finished,
}

/// Tells the scenario this client is ready and finished, also when it fails or panics, so that
/// the others do not wait for it.
struct Report {
    tx: mpsc::UnboundedSender<Event>,
    ready: bool,
    finished: bool,
}

impl Report {
    fn ready(&mut self) {
        if !self.ready {
            self.ready = true;
            let _ = self.tx.send(Event::Ready);
        }
    }

    fn finished(&mut self) {
        self.ready();
        if !self.finished {
            self.finished = true;
            let _ = self.tx.send(Event::Finished);
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.finished();
    }
}

struct Signals {
    url: String,
    connects: Arc<Semaphore>,
    sends: Arc<Semaphore>,
    start: watch::Receiver<Option<Instant>>,
    end: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<Event>,
}

async fn client(i: usize, log: Shared, mut signals: Signals) -> Result<(), String> {
    let mut report = Report {
        tx: signals.events.clone(),
        ready: false,
        finished: false,
    };
    let room = room_of(i);
    let mut conn = {
        let _permit = signals.connects.acquire().await.expect("semaphore");
        log.stage(i, "connecting");
        let mut conn = Conn::open(&signals.url, i, &log).await?;
        log.stage(i, "joining");
        conn.join(&log).await?;
        conn
    };
    log.stage(i, "waiting for the start");
    report.ready();
    let start = conn
        .idle_until_watch(&log, &mut signals.start, Option::is_some)
        .await?
        .expect("a start");
    let offset = PACE.mul_f64(((i * 7919) % CLIENTS) as f64 / CLIENTS as f64);
    let plan = drop_plan(i);
    let mut last_ack = start;
    let mut k = 0;
    while k < MESSAGES_PER_CLIENT {
        if let Some(plan) = plan.filter(|p| p.before == k) {
            log.stage(i, format!("dropping before message {k}"));
            {
                let mut log = log.lock();
                let at = log.tick();
                log.conns[conn.index].cutoff = Some(at);
            }
            conn.barrier(&log, "bye").await?;
            if plan.mid_send {
                // Sent, then the connection is reset at once: its ack is never read.
                let _permit = conn.idle_for_permit(&log, &signals.sends).await?;
                send_start(&mut conn, &log, room, k).await?;
                k += 1;
            }
            conn.reset()?;
            log.lock().drops += 1;
            sleep(plan.offline).await;
            log.stage(i, "reconnecting");
            conn = Conn::open(&signals.url, i, &log).await?;
            conn.join(&log).await?;
            log.lock().reconnects += 1;
            log.stage(i, "catching up");
            catch_up(&mut conn, &log, room).await?;
            if k >= MESSAGES_PER_CLIENT {
                break;
            }
        }
        let at = (start + offset + PACE * k as u32).max(last_ack + MIN_GAP);
        log.stage(i, format!("waiting to send message {k}"));
        conn.idle_until(&log, at).await?;
        log.stage(i, format!("waiting for a permit to send message {k}"));
        let permit = conn.idle_for_permit(&log, &signals.sends).await?;
        log.stage(i, format!("sending message {k}"));
        loop {
            let (send, reference) = send_start(&mut conn, &log, room, k).await?;
            let reply = conn.reply(&log, &reference).await?;
            match reply["type"].as_str() {
                Some("sent") => {
                    let mut log = log.lock();
                    let at = log.tick();
                    if reply["room"] != room_name(room) {
                        log.errors
                            .push(format!("client {i}: an ack for another room: {reply}"));
                    }
                    log.sends[send].ack = Some(Ack {
                        id: text_of(&reply, "id"),
                        at,
                    });
                    break;
                }
                Some("error") if reply["code"] == "rate_limited" => {
                    log.lock().rate_limited += 1;
                    let wait = reply["retryAfterMs"].as_u64().unwrap_or(100);
                    conn.idle_until(&log, Instant::now() + Duration::from_millis(wait))
                        .await?;
                }
                _ => {
                    log.lock()
                        .errors
                        .push(format!("client {i}: message {k} refused: {reply}"));
                    break;
                }
            }
        }
        drop(permit);
        last_ack = Instant::now();
        k += 1;
    }
    log.stage(i, "finished, reading");
    report.finished();
    conn.idle_until_watch(&log, &mut signals.end, |end| *end)
        .await?;
    // Every ack has come: whatever was posted for them is read before this pong.
    conn.barrier(&log, "end").await?;
    log.stage(i, "done");
    let _ = conn.ws.close(None).await;
    Ok(())
}

/// Records and writes one `sendmessage`: its index in `Log::sends` and its `ref`.
async fn send_start(
    conn: &mut Conn,
    log: &Shared,
    room: usize,
    k: usize,
) -> Result<(usize, String), String> {
    let text = format!("c{} m{k}", conn.client);
    let index = {
        let mut log = log.lock();
        let started = log.tick();
        log.sends.push(SendRecord {
            client: conn.client,
            conn: conn.index,
            room,
            k,
            text: text.clone(),
            started,
            ack: None,
        });
        log.sends.len() - 1
    };
    let reference = format!("m{index}");
    conn.send(
        &json!({"action": "sendmessage", "room": room_name(room), "text": text, "ref": reference}),
    )
    .await?;
    Ok((index, reference))
}

/// After a reconnect: `history` `after` the resume point, paging while `more`.
async fn catch_up(conn: &mut Conn, log: &Shared, room: usize) -> Result<(), String> {
    let name = room_name(room);
    let resume = resume_point(log, conn.client, &name);
    let mut request = json!({"action": "history", "room": name, "limit": HISTORY_LIMIT});
    // Nothing seen yet: the newest page, then older ones with `before`.
    if let Some(id) = &resume {
        request["after"] = json!(id);
    }
    let mut page_no = 0;
    loop {
        page_no += 1;
        let page = conn
            .request(log, request.clone(), &format!("h{page_no}"))
            .await?;
        if page["type"] != "history" {
            return Err(format!("client {}: history refused: {page}", conn.client));
        }
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        {
            let mut log = log.lock();
            log.history_pages += 1;
            for m in &messages {
                log.history.push(HistoryItem {
                    client: conn.client,
                    id: text_of(m, "id"),
                    room: text_of(m, "room"),
                    sent_at: text_of(m, "sentAt"),
                });
            }
        }
        if page["more"] != true || messages.is_empty() {
            return Ok(());
        }
        let (field, edge) = if resume.is_some() {
            ("after", messages.last())
        } else {
            ("before", messages.first())
        };
        request = json!({"action": "history", "room": name, "limit": HISTORY_LIMIT});
        request[field] = edge.expect("a message")["id"].clone();
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The newest id this client has seen in the room whose `sentAt` is at least 30 s older than
/// the newest seen there, else the oldest seen there; `None` when it has seen none.
fn resume_point(log: &Shared, client: usize, room: &str) -> Option<String> {
    let log = log.lock();
    let mine: HashSet<usize> = log
        .conns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.client == client)
        .map(|(n, _)| n)
        .collect();
    let seen: Vec<(&str, DateTime<Utc>)> = log
        .deliveries
        .iter()
        .filter(|d| mine.contains(&d.conn) && d.room == room)
        .map(|d| (d.id.as_str(), d.sent_at.as_str()))
        .chain(
            log.history
                .iter()
                .filter(|h| h.client == client && h.room == room)
                .map(|h| (h.id.as_str(), h.sent_at.as_str())),
        )
        .filter_map(|(id, at)| Some((id, parse_time(at)?)))
        .collect();
    let newest = seen.iter().map(|(_, at)| *at).max()?;
    let horizon = newest - chrono::Duration::seconds(RESUME_LAG_SECONDS);
    seen.iter()
        .filter(|(_, at)| *at <= horizon)
        .map(|(id, _)| *id)
        .max()
        .or_else(|| seen.iter().map(|(id, _)| *id).min())
        .map(str::to_owned)
}

// ---------- the scenario and its checks ----------

async fn scenario(url: String, log: Shared) -> Vec<String> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (start_tx, start_rx) = watch::channel(None);
    let (end_tx, end_rx) = watch::channel(false);
    let connects = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
    let sends = Arc::new(Semaphore::new(SENDS_AT_ONCE));
    let mut clients = JoinSet::new();
    for i in 0..CLIENTS {
        let signals = Signals {
            url: url.clone(),
            connects: connects.clone(),
            sends: sends.clone(),
            start: start_rx.clone(),
            end: end_rx.clone(),
            events: events_tx.clone(),
        };
        clients.spawn(client(i, log.clone(), signals));
    }
    drop(events_tx);
    let connecting = std::time::Instant::now();
    let (mut ready, mut finished) = (0, 0);
    let mut sending = std::time::Instant::now();
    while finished < CLIENTS {
        match events.recv().await {
            Some(Event::Ready) => {
                ready += 1;
                if ready == CLIENTS {
                    println!(
                        "soak: {CLIENTS} clients connected and joined in {:.1} s",
                        connecting.elapsed().as_secs_f64()
                    );
                    sending = std::time::Instant::now();
                    let _ = start_tx.send(Some(Instant::now()));
                }
            }
            Some(Event::Finished) => finished += 1,
            None => break,
        }
    }
    let _ = end_tx.send(true);
    let seconds = sending.elapsed().as_secs_f64();
    let acked = log.lock().sends.iter().filter(|s| s.ack.is_some()).count();
    println!(
        "soak: {acked} messages acked in {seconds:.1} s of sending ({:.0} a second)",
        acked as f64 / seconds
    );
    let mut failures = Vec::new();
    while let Some(done) = clients.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(error),
            Err(panic) => failures.push(format!("a client panicked: {panic}")),
        }
    }
    failures
}

#[derive(Debug, Default)]
struct Counts {
    messages: usize,
    deliveries: usize,
    lost_live: usize,
    lost_resume: usize,
    duplicated: usize,
    out_of_order: usize,
    /// Copies whose room, sender or text is not the acknowledged message's.
    wrong: usize,
    unacked: usize,
    examples: Vec<String>,
}

fn check(log: &Log) -> Counts {
    let mut counts = Counts {
        deliveries: log.deliveries.len(),
        ..Counts::default()
    };
    let example = |counts: &mut Counts, what: String| {
        if counts.examples.len() < 40 {
            counts.examples.push(what);
        }
    };
    // id -> the acknowledged send.
    let mut acked: HashMap<&str, &SendRecord> = HashMap::new();
    for send in &log.sends {
        match &send.ack {
            Some(ack) => {
                if acked.insert(&ack.id, send).is_some() {
                    example(&mut counts, format!("two acks with the id {}", ack.id));
                }
            }
            None => counts.unacked += 1,
        }
    }
    counts.messages = acked.len();
    // (connection, id) -> copies read live.
    let mut copies: HashMap<(usize, &str), usize> = HashMap::new();
    for d in &log.deliveries {
        *copies.entry((d.conn, d.id.as_str())).or_default() += 1;
        if let Some(send) = acked.get(d.id.as_str()) {
            let from = &log.conns[send.conn].id;
            if d.room != room_name(send.room) || &d.from != from || d.text != send.text {
                counts.wrong += 1;
                example(&mut counts, format!("a wrong copy of {}: {d:?}", d.id));
            }
        }
    }
    for (&(conn, id), &n) in &copies {
        if n > 1 {
            counts.duplicated += n - 1;
            let c = &log.conns[conn];
            example(
                &mut counts,
                format!(
                    "{n} copies of {id} on connection {conn} (client {}, {}), acked: {}",
                    c.client,
                    c.id,
                    acked.contains_key(id)
                ),
            );
        }
    }
    // Live: every member joined before the send started and connected until after its ack.
    for (id, send) in &acked {
        let ack = send.ack.as_ref().expect("acked");
        for (n, c) in log.conns.iter().enumerate() {
            let joined_before = c.room == send.room && c.joined.is_some_and(|j| j < send.started);
            let connected_after = c.cutoff.is_none_or(|cut| cut > ack.at);
            if joined_before && connected_after && !copies.contains_key(&(n, *id)) {
                counts.lost_live += 1;
                example(
                    &mut counts,
                    format!(
                        "lost live: {id} (client {} message {}, started {} acked {}) never reached \
                         connection {n} (client {}, {}, joined {:?}, cutoff {:?}, reconnected: {})",
                        send.client,
                        send.k,
                        send.started,
                        ack.at,
                        c.client,
                        c.id,
                        c.joined,
                        c.cutoff,
                        log.conns.iter().position(|o| o.client == c.client) != Some(n)
                    ),
                );
            }
        }
    }
    // Resume: a client that came back has every message of its room since its first join.
    let mut conns_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (n, c) in log.conns.iter().enumerate() {
        conns_of.entry(c.client).or_default().push(n);
    }
    for (&client, conns) in &conns_of {
        if conns.len() < 2 {
            continue;
        }
        let Some(first_join) = log.conns[conns[0]].joined else {
            continue;
        };
        let room = room_of(client);
        let mut have: HashSet<&str> = log
            .deliveries
            .iter()
            .filter(|d| conns.contains(&d.conn))
            .map(|d| d.id.as_str())
            .collect();
        have.extend(
            log.history
                .iter()
                .filter(|h| h.client == client)
                .map(|h| h.id.as_str()),
        );
        for (id, send) in &acked {
            if send.room == room && send.started > first_join && !have.contains(id) {
                counts.lost_resume += 1;
                let rejoined = conns[1..]
                    .iter()
                    .map(|&n| (log.conns[n].joined, log.conns[n].id.as_str()))
                    .collect::<Vec<_>>();
                example(
                    &mut counts,
                    format!(
                        "lost on resume: {id} (client {} message {}, started {} acked {:?}) is \
                         neither live nor in the history of client {client} (first join {first_join}, \
                         cutoff {:?}, rejoined {rejoined:?})",
                        send.client,
                        send.k,
                        send.started,
                        send.ack.as_ref().map(|a| a.at),
                        log.conns[conns[0]].cutoff,
                    ),
                );
            }
        }
    }
    // Order: per receiving connection, each sender's acknowledged messages in send order.
    let mut last: HashMap<(usize, usize), (usize, &str)> = HashMap::new();
    let mut deliveries: Vec<&Delivery> = log.deliveries.iter().collect();
    deliveries.sort_by_key(|d| d.order);
    for d in deliveries {
        let Some(send) = acked.get(d.id.as_str()) else {
            continue;
        };
        if let Some((k, earlier)) = last.insert((d.conn, send.client), (send.k, &d.id)) {
            if k >= send.k {
                counts.out_of_order += 1;
                example(
                    &mut counts,
                    format!(
                        "out of order on connection {}: client {}'s message {} ({}) after its message {k} ({earlier})",
                        d.conn, send.client, send.k, d.id
                    ),
                );
            }
        }
    }
    counts
}

fn summary(log: &Log, counts: &Counts, elapsed: Duration) {
    println!(
        "soak: {} messages, {} deliveries, {} lost, {} duplicated",
        counts.messages,
        counts.deliveries,
        counts.lost_live + counts.lost_resume,
        counts.duplicated
    );
    println!(
        "soak: {} sends ({} unacked, {} rate_limited retries), lost live {}, lost on resume {}, \
         {} out of order, {} wrong copies; {} drops, {} reconnects, {} history pages with {} messages; \
         {} connections; {:.1} s",
        log.sends.len(),
        counts.unacked,
        log.rate_limited,
        counts.lost_live,
        counts.lost_resume,
        counts.out_of_order,
        counts.wrong,
        log.drops,
        log.reconnects,
        log.history_pages,
        log.history.len(),
        log.conns.len(),
        elapsed.as_secs_f64()
    );
    for example in &counts.examples {
        println!("soak:   {example}");
    }
    for stray in log.strays.iter().take(20) {
        println!("soak:   stray: {stray}");
    }
    for error in log.errors.iter().take(20) {
        println!("soak:   error: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn soak_with_churn_loses_and_duplicates_nothing() {
    println!("soak: {}", Quotas::relaxed().describe());
    let gateway = start(real_template_copy(), |o| {
        o.quotas = Quotas::relaxed();
        // Otherwise the stage's defaults: a rate limit of 10 a second with bursts of 20,
        // 4 processes a function, 10 messages of one connection in flight. The handlers log
        // warnings only (the invocations that ran out of time among them), unless RUST_LOG
        // says otherwise.
        if std::env::var_os("RUST_LOG").is_none() {
            o.extra_env
                .insert("AWS_LAMBDA_LOG_LEVEL".into(), "warn".into());
        }
    })
    .await;
    let log = Shared::default();
    log.lock().stage = vec!["not started".into(); CLIENTS];
    let started = std::time::Instant::now();
    let outcome =
        tokio::time::timeout(OVERALL, scenario(gateway.websocket_url(), log.clone())).await;
    let elapsed = started.elapsed();
    let log = std::mem::take(&mut *log.lock());
    let counts = check(&log);
    summary(&log, &counts, elapsed);
    let failures = match outcome {
        Ok(failures) => failures,
        Err(_) => {
            let mut stages: HashMap<&str, usize> = HashMap::new();
            for stage in &log.stage {
                *stages.entry(stage.as_str()).or_default() += 1;
            }
            panic!("the soak did not finish within {OVERALL:?}; clients by stage: {stages:?}");
        }
    };
    gateway.shutdown().await;
    assert!(failures.is_empty(), "clients failed: {failures:#?}");
    assert!(log.errors.is_empty(), "refused: {:#?}", log.errors);
    let lost = counts.lost_live + counts.lost_resume;
    assert_eq!(lost, 0, "lost messages (see above)");
    assert_eq!(counts.duplicated, 0, "duplicated messages (see above)");
    assert_eq!(
        counts.out_of_order, 0,
        "messages out of send order (see above)"
    );
    assert_eq!(counts.wrong, 0, "copies unlike their message (see above)");
    assert!(
        counts.messages >= 2_900,
        "only {} messages acked",
        counts.messages
    );
    assert_eq!(log.reconnects, 30, "every dropped client came back");
}
