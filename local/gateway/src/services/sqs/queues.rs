//! The template's queues, in memory, with SQS's message lifecycle: a message is delayed, then
//! visible, then in flight once received (hidden for the visibility timeout, after which it is
//! visible again unless deleted), until deleted, expired by the retention period, or moved to
//! the dead-letter queue by the redrive policy.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::now_ms;
use crate::template::QueueSpec;

/// What an invocation may carry (Lambda's 6 MB payload), less room for the event's framing:
/// a mapping's batch stops short of it.
pub(crate) const MAX_BATCH_BYTES: usize = 6 * 1024 * 1024 - 256 * 1024;

/// Bytes of event JSON around each record's body and attributes, counted toward
/// [`MAX_BATCH_BYTES`].
const RECORD_OVERHEAD_BYTES: usize = 1024;

/// A message attribute, as `SendMessage` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    /// `String`, `Number` or `Binary`, with an optional `.custom` suffix.
    pub data_type: String,
    /// The value of a `String` or `Number` attribute.
    pub string_value: Option<String>,
    /// The value of a `Binary` attribute.
    pub binary_value: Option<Vec<u8>>,
}

impl MessageAttribute {
    /// What the attribute counts toward the message size: name, type and value.
    fn size(&self, name: &str) -> usize {
        name.len()
            + self.data_type.len()
            + self.string_value.as_ref().map_or(0, String::len)
            + self.binary_value.as_ref().map_or(0, Vec::len)
    }
}

/// A message as it was sent, before the queue gives it an id.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewMessage {
    pub(crate) body: String,
    pub(crate) attributes: BTreeMap<String, MessageAttribute>,
    /// The message's own `DelaySeconds`; the queue's when `None`.
    pub(crate) delay: Option<Duration>,
    /// `SenderId`: who sent it.
    pub(crate) sender_id: String,
}

impl NewMessage {
    /// The size SQS holds against `MaximumMessageSize`: the body and every attribute.
    pub(crate) fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, a)| a.size(name))
                .sum::<usize>()
    }
}

/// A message in a queue, with what SQS records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// `MessageId`.
    pub message_id: String,
    /// The body.
    pub body: String,
    /// `MD5OfBody`: the hex MD5 of the body.
    pub md5_of_body: String,
    /// The message attributes.
    pub attributes: BTreeMap<String, MessageAttribute>,
    /// `MD5OfMessageAttributes`, when it has attributes.
    pub md5_of_attributes: Option<String>,
    /// `SenderId`.
    pub sender_id: String,
    /// `SentTimestamp`, in epoch milliseconds.
    pub sent_timestamp_ms: i64,
    /// `ApproximateReceiveCount`: how often it was received.
    pub receive_count: u32,
    /// `ApproximateFirstReceiveTimestamp`, in epoch milliseconds, once received.
    pub first_receive_ms: Option<i64>,
    /// `DeadLetterQueueSourceArn`: the queue it was moved from, in a dead-letter queue.
    pub dead_letter_source_arn: Option<String>,
    /// When it was first sent, for the retention period (kept across a move, as SQS does).
    sent_at: Instant,
}

impl QueuedMessage {
    /// What the message counts toward a batch's payload.
    pub(crate) fn batch_bytes(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, a)| a.size(name))
                .sum::<usize>()
            + RECORD_OVERHEAD_BYTES
    }
}

/// A received message and the receipt handle that deletes it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) message: QueuedMessage,
    pub(crate) receipt_handle: String,
}

/// How many messages a queue holds in each state (`ApproximateNumberOfMessages`, `...NotVisible`
/// and `...Delayed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready to be received.
    pub visible: usize,
    /// Received, neither deleted nor visible again yet.
    pub in_flight: usize,
    /// Sent with a delay that has not passed.
    pub delayed: usize,
}

/// Every queue of the template, by logical id.
#[derive(Debug, Default)]
pub struct Queues {
    queues: BTreeMap<String, Arc<Queue>>,
}

impl Queues {
    /// The queues of `specs`, empty, each linked to its dead-letter queue.
    pub(crate) fn new(specs: &[QueueSpec]) -> Self {
        let queues: BTreeMap<String, Arc<Queue>> = specs
            .iter()
            .map(|spec| (spec.logical_id.clone(), Arc::new(Queue::new(spec.clone()))))
            .collect();
        for queue in queues.values() {
            let target = queue.spec.redrive.as_ref().map(|r| &r.dead_letter_queue);
            if let Some(dead_letter) = target.and_then(|id| queues.get(id)) {
                // Weak: a redrive cycle (A to B to A) must not keep the queues alive forever.
                let _ = queue.dead_letter.set(Arc::downgrade(dead_letter));
            }
        }
        Self { queues }
    }

    /// The queue `logical_id`.
    pub(crate) fn get(&self, logical_id: &str) -> Option<&Arc<Queue>> {
        self.queues.get(logical_id)
    }

    /// The queue whose ARN is `arn`.
    pub(crate) fn by_arn(&self, arn: &str) -> Option<&Arc<Queue>> {
        self.queues.values().find(|q| q.spec.arn == arn)
    }
}

/// One queue: its settings, its messages, and who waits for them.
#[derive(Debug)]
pub struct Queue {
    spec: QueueSpec,
    dead_letter: OnceLock<Weak<Queue>>,
    state: Mutex<State>,
    /// Woken at every send, so that a poller looks again (a delayed message may be due before
    /// what it sleeps for).
    changed: Notify,
    /// `CreatedTimestamp`, in epoch seconds: when the gateway started.
    created_secs: i64,
}

#[derive(Debug, Default)]
struct State {
    /// Messages that can be received now, in the order they became visible.
    visible: VecDeque<QueuedMessage>,
    /// Delayed and in-flight messages, by when they become visible.
    hidden: BTreeMap<(Instant, u64), Hidden>,
    /// Where each in-flight message sits in `hidden`, by its current receipt handle.
    receipts: HashMap<String, (Instant, u64)>,
    next_key: u64,
    /// No message expires before this: retention is only looked at from then on.
    next_expiry: Option<Instant>,
}

#[derive(Debug)]
struct Hidden {
    message: QueuedMessage,
    /// `Some` for a message in flight, `None` for a delayed one.
    receipt: Option<String>,
}

impl State {
    fn key(&mut self, at: Instant) -> (Instant, u64) {
        self.next_key += 1;
        (at, self.next_key)
    }

    /// Makes visible what is due at `now`, and drops what outlived `retention`.
    fn advance(&mut self, now: Instant, retention: Duration) {
        while let Some(entry) = self.hidden.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let hidden = entry.remove();
            if let Some(receipt) = &hidden.receipt {
                self.receipts.remove(receipt);
            }
            self.visible.push_back(hidden.message);
        }
        if self.next_expiry.is_some_and(|at| at <= now) {
            let alive = |m: &QueuedMessage| m.sent_at + retention > now;
            self.visible.retain(alive);
            let receipts = &mut self.receipts;
            self.hidden.retain(|_, h| {
                let keep = alive(&h.message);
                if let (false, Some(receipt)) = (keep, &h.receipt) {
                    receipts.remove(receipt);
                }
                keep
            });
            let oldest = self
                .visible
                .iter()
                .chain(self.hidden.values().map(|h| &h.message))
                .map(|m| m.sent_at)
                .min();
            self.next_expiry = oldest.map(|at| at + retention);
        }
    }

    fn push(
        &mut self,
        message: QueuedMessage,
        visible_at: Instant,
        now: Instant,
        retention: Duration,
    ) {
        let expiry = message.sent_at + retention;
        self.next_expiry = Some(self.next_expiry.map_or(expiry, |at| at.min(expiry)));
        if visible_at <= now {
            self.visible.push_back(message);
        } else {
            let key = self.key(visible_at);
            let hidden = Hidden {
                message,
                receipt: None,
            };
            self.hidden.insert(key, hidden);
        }
    }
}

impl Queue {
    fn new(spec: QueueSpec) -> Self {
        Self {
            spec,
            dead_letter: OnceLock::new(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            created_secs: now_ms() / 1000,
        }
    }

    /// The queue's template settings.
    pub fn spec(&self) -> &QueueSpec {
        &self.spec
    }

    /// `CreatedTimestamp` (and `LastModifiedTimestamp`), in epoch seconds.
    pub(crate) fn created_secs(&self) -> i64 {
        self.created_secs
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notified at every send.
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Enqueues a message; returns it as stored (id and digests).
    pub(crate) fn send(&self, message: NewMessage) -> QueuedMessage {
        let md5_of_attributes =
            (!message.attributes.is_empty()).then(|| md5_of_attributes(&message.attributes));
        let now = Instant::now();
        let stored = QueuedMessage {
            message_id: uuid::Uuid::new_v4().to_string(),
            md5_of_body: md5_hex(message.body.as_bytes()),
            body: message.body,
            attributes: message.attributes,
            md5_of_attributes,
            sender_id: message.sender_id,
            sent_timestamp_ms: now_ms(),
            receive_count: 0,
            first_receive_ms: None,
            dead_letter_source_arn: None,
            sent_at: now,
        };
        let delay = message.delay.unwrap_or(self.spec.delay);
        self.state()
            .push(stored.clone(), now + delay, now, self.spec.retention);
        self.changed.notify_waiters();
        stored
    }

    /// Receives up to `max` visible messages whose payload stays within `max_bytes` (the first
    /// always comes), hiding each for the visibility timeout. A message already received as
    /// often as the redrive policy allows goes to the dead-letter queue instead.
    pub(crate) fn receive(&self, max: usize, max_bytes: usize) -> Vec<Received> {
        let now = Instant::now();
        let now_epoch_ms = now_ms();
        let max_receives = self.spec.redrive.as_ref().map(|r| r.max_receive_count);
        let mut received = Vec::new();
        let mut dead = Vec::new();
        let mut bytes = 0;
        {
            let mut state = self.state();
            state.advance(now, self.spec.retention);
            while received.len() < max {
                let Some(front) = state.visible.front() else {
                    break;
                };
                let redriven = max_receives.is_some_and(|max| front.receive_count >= max);
                if !redriven && !received.is_empty() && bytes + front.batch_bytes() > max_bytes {
                    break;
                }
                let Some(mut message) = state.visible.pop_front() else {
                    break;
                };
                if redriven {
                    dead.push(message);
                    continue;
                }
                bytes += message.batch_bytes();
                message.receive_count += 1;
                message.first_receive_ms.get_or_insert(now_epoch_ms);
                let receipt_handle = receipt_handle(&message.message_id);
                let key = state.key(now + self.spec.visibility_timeout);
                state.receipts.insert(receipt_handle.clone(), key);
                state.hidden.insert(
                    key,
                    Hidden {
                        message: message.clone(),
                        receipt: Some(receipt_handle.clone()),
                    },
                );
                received.push(Received {
                    message,
                    receipt_handle,
                });
            }
        }
        if !dead.is_empty() {
            self.redrive(dead);
        }
        received
    }

    /// Moves messages to the dead-letter queue, as they are (id, body, count, first sending).
    fn redrive(&self, messages: Vec<QueuedMessage>) {
        let Some(dead_letter) = self.dead_letter.get().and_then(Weak::upgrade) else {
            // The template reader accepts only dead-letter queues of the template.
            return;
        };
        let now = Instant::now();
        {
            let mut state = dead_letter.state();
            for mut message in messages {
                message.dead_letter_source_arn = Some(self.spec.arn.clone());
                state.push(message, now, now, dead_letter.spec.retention);
            }
        }
        dead_letter.changed.notify_waiters();
    }

    /// Deletes the in-flight message `receipt_handle` names; `false` when that handle is no
    /// longer current (the message became visible again, or is gone).
    pub(crate) fn delete(&self, receipt_handle: &str) -> bool {
        let mut state = self.state();
        match state.receipts.remove(receipt_handle) {
            Some(key) => state.hidden.remove(&key).is_some(),
            None => false,
        }
    }

    /// The messages in each state, now.
    pub fn counts(&self) -> QueueCounts {
        let mut state = self.state();
        state.advance(Instant::now(), self.spec.retention);
        let in_flight = state.receipts.len();
        QueueCounts {
            visible: state.visible.len(),
            in_flight,
            delayed: state.hidden.len().saturating_sub(in_flight),
        }
    }

    /// Every message the queue holds now, in any state: visible ones first, in order.
    pub fn messages(&self) -> Vec<QueuedMessage> {
        let mut state = self.state();
        state.advance(Instant::now(), self.spec.retention);
        state
            .visible
            .iter()
            .cloned()
            .chain(state.hidden.values().map(|h| h.message.clone()))
            .collect()
    }

    /// When the next hidden message becomes visible (or the next may expire); `None` when
    /// nothing is hidden.
    pub(crate) fn next_change(&self) -> Option<Instant> {
        let state = self.state();
        state.hidden.keys().next().map(|(at, _)| *at)
    }

    /// Whether a message can be received now.
    pub(crate) fn has_visible(&self) -> bool {
        let mut state = self.state();
        state.advance(Instant::now(), self.spec.retention);
        !state.visible.is_empty()
    }
}

/// A receipt handle: new at each receive, as SQS's are.
fn receipt_handle(message_id: &str) -> String {
    format!("{message_id}#{}", uuid::Uuid::new_v4().simple())
}

/// The lowercase hex MD5 of `bytes`, as SQS gives `MD5OfMessageBody`.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// `MD5OfMessageAttributes` as SQS computes it: over the attributes sorted by name, each as
/// its name, data type, a transport byte (1 for text, 2 for binary) and value, every string
/// and value preceded by its length as 4 big-endian bytes.
pub(crate) fn md5_of_attributes(attributes: &BTreeMap<String, MessageAttribute>) -> String {
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let mut encoded = Vec::new();
    // A BTreeMap is in name order already (byte order, as SQS sorts).
    for (name, attribute) in attributes {
        field(&mut encoded, name.as_bytes());
        field(&mut encoded, attribute.data_type.as_bytes());
        match (&attribute.binary_value, &attribute.string_value) {
            (Some(binary), _) => {
                encoded.push(2);
                field(&mut encoded, binary);
            }
            (None, value) => {
                encoded.push(1);
                field(
                    &mut encoded,
                    value.as_deref().unwrap_or_default().as_bytes(),
                );
            }
        }
    }
    md5_hex(&encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(data_type: &str, value: &str) -> MessageAttribute {
        MessageAttribute {
            data_type: data_type.to_owned(),
            string_value: Some(value.to_owned()),
            binary_value: None,
        }
    }

    fn spec(id: &str, redrive: Option<&str>) -> QueueSpec {
        QueueSpec {
            logical_id: id.into(),
            name: id.into(),
            url: format!("http://127.0.0.1:1/000000000000/{id}"),
            arn: format!("arn:aws:sqs:us-east-1:000000000000:{id}"),
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(120),
            delay: Duration::ZERO,
            max_message_bytes: 1024,
            redrive: redrive.map(|dead_letter_queue| crate::template::RedriveSpec {
                dead_letter_queue: dead_letter_queue.into(),
                max_receive_count: 2,
            }),
        }
    }

    fn send(queue: &Queue, body: &str, delay: Option<u64>) -> QueuedMessage {
        queue.send(NewMessage {
            body: body.into(),
            delay: delay.map(Duration::from_secs),
            ..NewMessage::default()
        })
    }

    fn counts(visible: usize, in_flight: usize, delayed: usize) -> QueueCounts {
        QueueCounts {
            visible,
            in_flight,
            delayed,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_lives_as_in_sqs() {
        let queues = Queues::new(&[spec("Work", Some("Dead")), spec("Dead", None)]);
        let (work, dead) = (&queues.queues["Work"], &queues.queues["Dead"]);

        // Delayed, then visible.
        let sent = send(work, "job", Some(5));
        assert_eq!(work.counts(), counts(0, 0, 1));
        assert!(work.receive(10, MAX_BATCH_BYTES).is_empty());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(work.counts(), counts(1, 0, 0));

        // Received: hidden for the visibility timeout, then visible again with a new handle.
        let first = work.receive(10, MAX_BATCH_BYTES);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].message.message_id, sent.message_id);
        assert_eq!(first[0].message.receive_count, 1);
        assert_eq!(work.counts(), counts(0, 1, 0));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(work.counts(), counts(0, 1, 0));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(work.counts(), counts(1, 0, 0));
        let second = work.receive(10, MAX_BATCH_BYTES);
        assert_eq!(second[0].message.receive_count, 2);
        assert_eq!(
            second[0].message.first_receive_ms,
            first[0].message.first_receive_ms
        );
        assert!(
            !work.delete(&first[0].receipt_handle),
            "an old handle deletes nothing"
        );
        assert_eq!(work.counts(), counts(0, 1, 0));

        // Received maxReceiveCount times and not deleted: moved on the next receive.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(work.receive(10, MAX_BATCH_BYTES).is_empty());
        assert_eq!(work.counts(), counts(0, 0, 0));
        let moved = dead.messages();
        assert_eq!(moved.len(), 1);
        assert_eq!(
            (moved[0].message_id.as_str(), moved[0].receive_count),
            (sent.message_id.as_str(), 2)
        );
        assert_eq!(
            moved[0].dead_letter_source_arn.as_deref(),
            Some(work.spec().arn.as_str())
        );

        // Deleted with its current handle: gone.
        send(work, "other", None);
        let taken = work.receive(10, MAX_BATCH_BYTES);
        assert!(work.delete(&taken[0].receipt_handle));
        assert_eq!(work.counts(), counts(0, 0, 0));

        // Kept for the retention period from its first sending (65 s ago), wherever it is.
        tokio::time::advance(Duration::from_secs(54)).await;
        assert_eq!(dead.messages().len(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(dead.messages().is_empty(), "past the retention period");
    }

    #[tokio::test(start_paused = true)]
    async fn a_receive_stops_at_the_payload_limit() {
        let queues = Queues::new(&[spec("Work", None)]);
        let work = &queues.queues["Work"];
        for body in ["a", "b", "c"] {
            send(work, body, None);
        }
        let one = send(work, "d", None).batch_bytes();
        let taken = work.receive(10, 2 * one);
        let bodies: Vec<&str> = taken.iter().map(|r| r.message.body.as_str()).collect();
        assert_eq!(bodies, ["a", "b"]);
        assert_eq!(work.counts(), counts(2, 2, 0));
    }

    #[test]
    fn attribute_digests_are_those_sqs_computes() {
        // Values the SDKs that check this digest (Java's v1 client) agree with.
        let one = BTreeMap::from([("timestamp".to_owned(), text("Number", "1493147359900"))]);
        assert_eq!(md5_of_attributes(&one), "235c5c510d26fb653d073faed50ae77c");
        let two = BTreeMap::from([
            ("ordinal".to_owned(), text("Number", "1")),
            ("category".to_owned(), text("String", "test")),
        ]);
        assert_eq!(md5_of_attributes(&two), "d21ae90c49061e927f57df5f5d72be1f");
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }
}
