//! The client actions: one text frame in, exactly one reply out, and deliveries to others
//! through the notifier.

use std::sync::Arc;

use chrono::{DateTime, Duration};

use crate::app::{AppError, Ports};
use crate::deadline::Deadline;
use crate::error::{ClientError, ErrorCode};
use crate::fanout::{self, FanoutPolicy, FanoutReport};
use crate::model::{AuditEvent, Caller, ConnectionId, HistoryPage, Room};
use crate::ports::{FanoutQueue, Notifier, NotifyError};
use crate::protocol::{self, Action, Command, Parsed, Reply, MAX_FRAME_BYTES, MAX_REF_CHARS};
use crate::queued::FanoutJob;

/// Attempts to take a rate-limit token when concurrent requests of the same connection keep
/// winning the compare-and-set.
const ADMIT_ATTEMPTS: u32 = 3;

/// What became of one client message: the caller's one reply, and what logs and tests need.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The action, when the message named a valid one.
    pub action: Option<Action>,
    /// The request's `ref`, echoed in the reply.
    pub reference: Option<String>,
    /// The API Gateway request id (for the reply that replaces one too large to send).
    pub request_id: String,
    /// The frame for the caller, sent back as the route response.
    pub reply: Reply,
    /// The fan-out, for `sendmessage`.
    pub fanout: Option<FanoutReport>,
}

impl Outcome {
    /// The error code of the reply, if it is an error.
    pub fn error(&self) -> Option<ErrorCode> {
        match &self.reply {
            Reply::Error { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The reply as the caller receives it, with its `ref`. Never over API Gateway's message
    /// quota: a larger one would not be delivered at all, so `internal` goes instead.
    pub fn frame(&self) -> String {
        let frame = self.reply.to_json(self.reference.as_deref());
        if frame.len() <= MAX_FRAME_BYTES {
            return frame;
        }
        tracing::error!(
            bytes = frame.len(),
            "the reply is over the 128 KiB message quota: answered as internal"
        );
        Reply::error(&ClientError::internal(), &self.request_id).to_json(self.reference.as_deref())
    }
}

/// What a command did: the caller's reply and, for a room message, the fan-out.
struct Done {
    reply: Reply,
    fanout: Option<FanoutReport>,
}

impl From<Reply> for Done {
    fn from(reply: Reply) -> Self {
        Self {
            reply,
            fanout: None,
        }
    }
}

/// The message routes: every client action. The caller's reply is returned (API Gateway sends
/// it back as the route response); only deliveries to other connections use the notifier.
#[derive(Clone)]
pub struct Messaging {
    ports: Ports,
    notifier: Arc<dyn Notifier>,
    queued: Option<QueuedTier>,
}

/// Where large rooms' deliveries go, and from what size.
#[derive(Clone)]
struct QueuedTier {
    queue: Arc<dyn FanoutQueue>,
    above: usize,
}

impl Messaging {
    /// The message use cases over the given adapters and notifier; every room is delivered
    /// within the sender's invocation.
    pub fn new(ports: Ports, notifier: Arc<dyn Notifier>) -> Self {
        Self {
            ports,
            notifier,
            queued: None,
        }
    }

    /// Rooms of more than `above` members are delivered through `queue` (the queued tier)
    /// instead: the sender's ack then says `queued`.
    pub fn with_queue(mut self, queue: Arc<dyn FanoutQueue>, above: usize) -> Self {
        self.queued = Some(QueuedTier { queue, above });
        self
    }

    /// The adapters, for `$connect` and `$disconnect` in the same process (the local gateway).
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Handles one text frame from a client, within the invocation's `deadline`. The reply
    /// or error frame for the caller is in [`Outcome::reply`], not posted: it travels back as
    /// the two-way route's response, which saves a signed @connections call per request. It
    /// never fails: errors become frames.
    pub async fn on_message(&self, caller: &Caller, body: &str, deadline: Deadline) -> Outcome {
        let Parsed { reference, command } = protocol::parse(body);
        let action = command.as_ref().ok().map(Command::action);
        let result = match command {
            Ok(command) => self.execute(caller, command, body.len(), deadline).await,
            Err(error) => Err(error.into()),
        };
        let (reply, fanout) = match result {
            Ok(done) => (done.reply, done.fanout),
            Err(AppError::Client(error)) => {
                tracing::info!(code = ?error.code, message = %error.message, "client error");
                (Reply::error(&error, &caller.request_id), None)
            }
            Err(AppError::Store(error)) => {
                // The details stay in the logs: clients only learn that it was our fault.
                tracing::error!(%error, "storage failed");
                (
                    Reply::error(&ClientError::internal(), &caller.request_id),
                    None,
                )
            }
        };
        Outcome {
            action,
            reference,
            request_id: caller.request_id.clone(),
            reply,
            fanout,
        }
    }

    /// Runs a command: the one reply for the caller, and what it did.
    async fn execute(
        &self,
        caller: &Caller,
        command: Command,
        size: usize,
        deadline: Deadline,
    ) -> Result<Done, AppError> {
        let ports = &self.ports;
        let action = command.action();
        if action.is_rate_limited() {
            self.admit(&caller.connection_id).await?;
        }
        let route = action.name();
        match command {
            Command::Ping => Ok(Reply::Pong.into()),
            Command::WhoAmI => {
                let rooms = ports
                    .store
                    .rooms_of(&caller.connection_id, ports.clock.now())
                    .await?;
                Ok(Reply::Identity {
                    connection_id: caller.connection_id.clone(),
                    user: caller.user.clone(),
                    rooms,
                }
                .into())
            }
            Command::Join(room) => self.join(caller, room, size).await,
            Command::Leave(room) => {
                let entry = ports.entry(caller, route, size, AuditEvent::Leave(room.clone()));
                futures::try_join!(
                    ports.store.leave(&caller.connection_id, &room),
                    ports.audit.record(&entry)
                )?;
                Ok(Reply::Left { room }.into())
            }
            Command::History { room, limit, page } => self.history(room, limit, page).await,
            Command::SendMessage { room, text } => {
                self.send_to_room(caller, room, text, size, deadline).await
            }
            Command::Whisper { to, text } => self.whisper(caller, to, text, size, deadline).await,
        }
    }

    /// Takes one token of the connection's rate limit, or refuses with `rate_limited`.
    async fn admit(&self, id: &ConnectionId) -> Result<(), AppError> {
        let ports = &self.ports;
        let policy = ports.settings.rate_limit;
        for _ in 0..ADMIT_ATTEMPTS {
            let now = ports.clock.now();
            let state = ports.rates.rate_state(id).await?;
            let next = policy
                .admit(state, now.timestamp_millis())
                .map_err(ClientError::rate_limited)?;
            // The state means nothing once its time has passed: let TTL take it soon after.
            let expires_at =
                DateTime::from_timestamp_millis(next).unwrap_or(now) + Duration::minutes(1);
            if ports
                .rates
                .replace_rate_state(id, state, next, expires_at)
                .await?
            {
                return Ok(());
            }
        }
        // Other requests of this connection keep taking the tokens first: it is busy enough.
        let wait = u64::try_from(policy.interval_ms()).unwrap_or(1);
        Err(ClientError::rate_limited(wait).into())
    }

    /// `join`: idempotent, within the rooms-per-connection limit.
    async fn join(&self, caller: &Caller, room: Room, size: usize) -> Result<Done, AppError> {
        let ports = &self.ports;
        let now = ports.clock.now();
        let max = ports.settings.max_rooms_per_connection;
        let rooms = ports.store.rooms_of(&caller.connection_id, now).await?;
        if !rooms.contains(&room) && rooms.len() >= max {
            return Err(ClientError::new(
                ErrorCode::LimitExceeded,
                format!("a connection may be in at most {max} rooms (the lobby included); leave one before joining `{room}`"),
            )
            .into());
        }
        let expires_at = now + ports.settings.connection_ttl;
        let entry = ports.entry(
            caller,
            Action::Join.name(),
            size,
            AuditEvent::Join(room.clone()),
        );
        futures::try_join!(
            ports.store.join(&caller.connection_id, &room, expires_at),
            ports.audit.record(&entry)
        )?;
        Ok(Reply::Joined { room }.into())
    }

    /// `history`: a page of at most `limit` messages that fits one reply frame.
    async fn history(&self, room: Room, limit: u32, page: HistoryPage) -> Result<Done, AppError> {
        let ports = &self.ports;
        // One more than asked for tells whether there are more.
        let mut messages = ports
            .audit
            .messages(&room, &page, limit + 1, ports.clock.now())
            .await?;
        // The latest page and `before` keep the newest messages, `after` the oldest.
        let keep_newest = !matches!(page, HistoryPage::After(_));
        let envelope = Reply::History {
            room: room.clone(),
            messages: Vec::new(),
            more: true,
        }
        // The longest a ref can be once written: control characters escaped to six bytes.
        .to_json(Some(&"\u{1}".repeat(MAX_REF_CHARS)))
        .len();
        let budget = MAX_FRAME_BYTES.saturating_sub(envelope);
        let sizes = messages.iter().map(protocol::encoded_message_len);
        let fit = if keep_newest {
            how_many_fit(sizes.rev(), limit as usize, budget)
        } else {
            how_many_fit(sizes, limit as usize, budget)
        };
        // Fewer fit than were read (at most `limit` fit, one more was read): there are more.
        let more = fit < messages.len();
        if more {
            if keep_newest {
                messages.drain(..messages.len() - fit);
            } else {
                messages.truncate(fit);
            }
        }
        Ok(Reply::History {
            room,
            messages,
            more,
        }
        .into())
    }

    /// `sendmessage`: check membership, record the message, deliver it to every member.
    async fn send_to_room(
        &self,
        caller: &Caller,
        room: Room,
        text: String,
        size: usize,
        deadline: Deadline,
    ) -> Result<Done, AppError> {
        let ports = &self.ports;
        let now = ports.clock.now();
        // One consistent read of the caller's own membership: it sees a join made just before,
        // and a non-member costs no read of the room.
        if !ports
            .store
            .is_member(&caller.connection_id, &room, now)
            .await?
        {
            return Err(ClientError::new(
                ErrorCode::NotMember,
                format!("join room `{room}` before sending to it"),
            )
            .into());
        }
        // With a queued tier, no more members are read than it takes to choose the tier.
        let above = self.queued.as_ref().map_or(usize::MAX, |tier| tier.above);
        let read = ports.store.members_up_to(&room, now, above).await?;
        if let (false, Some(tier)) = (read.complete, &self.queued) {
            return self
                .send_queued(caller, room, text, size, deadline, tier)
                .await;
        }
        let mut members = read.ids;
        // The room's read may lag the caller's own join: the sender always gets its copy.
        if !members.contains(&caller.connection_id) {
            members.push(caller.connection_id.clone());
        }
        let message = self
            .record_room_message(caller, &room, text, size, deadline)
            .await?;
        let frame = Reply::Message(message.clone()).to_bytes();
        let policy = ports.settings.fanout;
        let mut report =
            fanout::deliver(self.notifier.as_ref(), &members, &frame, policy, deadline).await;
        (report.gone, report.skipped) = self
            .forget_gone(std::mem::take(&mut report.gone), deadline)
            .await;
        tracing::info!(
            room = %room,
            members = members.len(),
            delivered = report.delivered,
            gone = report.gone.len(),
            skipped = report.skipped.len(),
            throttled = report.throttled.len(),
            failed = report.failed.len(),
            not_attempted = report.not_attempted.len(),
            "fan-out done"
        );
        if !report.not_attempted.is_empty() {
            tracing::warn!(
                not_attempted = report.not_attempted.len(),
                "the invocation's deadline came before every member was posted to"
            );
        }
        Ok(Done {
            reply: Reply::Sent {
                room: Some(room),
                to: None,
                id: message.id,
                sent_at: message.sent_at,
                queued: false,
            },
            fanout: Some(report),
        })
    }

    /// A room message accepted now, recorded before any delivery (a message someone saw is
    /// always in the history), unless the invocation has no time left to deliver it.
    async fn record_room_message(
        &self,
        caller: &Caller,
        room: &Room,
        text: String,
        size: usize,
        deadline: Deadline,
    ) -> Result<crate::model::ChatMessage, AppError> {
        let ports = &self.ports;
        refuse_if_out_of_time(deadline, ports.settings.fanout)?;
        let message = ports.message(caller, Some(room.clone()), text, false);
        let entry = ports.entry_at(
            message.sent_at,
            caller,
            Action::SendMessage.name(),
            size,
            AuditEvent::Message(message.clone()),
        );
        ports.audit.record(&entry).await?;
        Ok(message)
    }

    /// `sendmessage` to a room above the threshold: record it, enqueue one job per shard,
    /// ack it as queued.
    async fn send_queued(
        &self,
        caller: &Caller,
        room: Room,
        text: String,
        size: usize,
        deadline: Deadline,
        tier: &QueuedTier,
    ) -> Result<Done, AppError> {
        let ports = &self.ports;
        let message = self
            .record_room_message(caller, &room, text, size, deadline)
            .await?;
        let frame = Reply::Message(message.clone()).to_json(None);
        let shards = ports.store.shards(&room);
        let jobs = FanoutJob::for_message(&message.id, &room, &frame, shards);
        if let Err(error) = tier.queue.enqueue(&jobs, std::time::Duration::ZERO).await {
            tracing::error!(room = %room, %error, "the message could not be queued for delivery");
            return Err(ClientError::new(
                ErrorCode::Internal,
                "the message is in the room's history but could not be queued for delivery; quote the requestId when reporting it",
            )
            .into());
        }
        tracing::info!(room = %room, shards, "fan-out queued");
        Ok(Reply::Sent {
            room: Some(room),
            to: None,
            id: message.id,
            sent_at: message.sent_at,
            queued: true,
        }
        .into())
    }

    /// `whisper`: record it, deliver it to its one target.
    async fn whisper(
        &self,
        caller: &Caller,
        to: ConnectionId,
        text: String,
        size: usize,
        deadline: Deadline,
    ) -> Result<Done, AppError> {
        let ports = &self.ports;
        refuse_if_out_of_time(deadline, ports.settings.fanout)?;
        let message = ports.message(caller, None, text, true);
        let event = AuditEvent::Whisper {
            to: to.clone(),
            message: message.clone(),
        };
        let entry = ports.entry_at(message.sent_at, caller, Action::Whisper.name(), size, event);
        ports.audit.record(&entry).await?;
        let frame = Reply::Message(message.clone()).to_bytes();
        let policy = ports.settings.fanout;
        match fanout::post_with_retry(self.notifier.as_ref(), &to, &frame, policy, deadline).await {
            Ok(()) => Ok(Reply::Sent {
                room: None,
                to: Some(to),
                id: message.id,
                sent_at: message.sent_at,
                queued: false,
            }
            .into()),
            Err(NotifyError::Gone) => {
                self.forget_gone(vec![to.clone()], deadline).await;
                Err(ClientError::new(
                    ErrorCode::Gone,
                    format!("connection `{to}` is not connected"),
                )
                .into())
            }
            Err(error) => {
                tracing::error!(target = %to, %error, "whisper failed");
                Err(ClientError::new(
                    ErrorCode::Internal,
                    "the message could not be delivered; quote the requestId when reporting it",
                )
                .into())
            }
        }
    }

    /// Deletes the records of connections the @connections API called gone (see
    /// [`fanout::forget_gone`]).
    async fn forget_gone(
        &self,
        gone: Vec<ConnectionId>,
        deadline: Deadline,
    ) -> (Vec<ConnectionId>, Vec<ConnectionId>) {
        let ports = &self.ports;
        let registered_before = ports.clock.now() - ports.settings.new_connection_grace;
        fanout::forget_gone(
            ports.store.as_ref(),
            gone,
            registered_before,
            ports.settings.fanout,
            deadline,
        )
        .await
    }
}

/// Refuses a message before it is recorded when the invocation has no time left to post it:
/// a `sent` for a message nobody could be sent would be an ack of nothing. (Under load the
/// local gateway queues events, and on AWS a slow invocation can get here late.)
fn refuse_if_out_of_time(deadline: Deadline, policy: FanoutPolicy) -> Result<(), ClientError> {
    if !deadline.is_within(policy.deadline_margin) {
        return Ok(());
    }
    tracing::warn!("too little of the invocation is left to deliver a message: refused unrecorded");
    Err(ClientError::new(
        ErrorCode::Internal,
        "the server is too busy to deliver this message now; it was not sent: try again",
    ))
}

/// How many messages of a page fit, taken in `sizes`' order: at most `limit`, within `budget`
/// bytes, and always the first (a page must move on; any one message fits a frame).
fn how_many_fit(sizes: impl Iterator<Item = usize>, limit: usize, mut budget: usize) -> usize {
    let mut fit = 0;
    for size in sizes.take(limit) {
        if size > budget && fit > 0 {
            break;
        }
        budget = budget.saturating_sub(size);
        fit += 1;
    }
    fit
}
