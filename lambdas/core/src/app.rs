//! The use cases: what happens on `$connect`, `$disconnect` and each client action.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::fanout::{self, FanoutPolicy, FanoutReport};
use crate::model::{
    iso8601, AuditEntry, AuditEvent, Caller, ChatMessage, Connection, ConnectionId, Room,
};
use crate::ports::{AuditLog, Clock, ConnectionStore, IdSource, Notifier, NotifyError, StoreError};
use crate::protocol::{self, ClientError, Command, ErrorCode, Reply};

/// Shortest connection TTL allowed: API Gateway's maximum connection duration.
pub const MIN_CONNECTION_TTL: Duration = Duration::hours(2);

/// Tunables of the use cases, read from the stage settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long connection records live if `$disconnect` never comes (at least 2 h).
    pub connection_ttl: Duration,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// How fan-out to a room behaves.
    pub fanout: FanoutPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connection_ttl: Duration::hours(3),
            audit_retention: Duration::days(30),
            fanout: FanoutPolicy::default(),
        }
    }
}

/// A use case could not complete because an adapter failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The connection store or audit log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The adapters the use cases run on.
#[derive(Clone)]
pub struct Ports {
    /// Connections and memberships.
    pub store: Arc<dyn ConnectionStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Ids for messages and audit entries.
    pub ids: Arc<dyn IdSource>,
    /// The tunables.
    pub settings: Settings,
}

impl Ports {
    /// An audit entry for something that happens now.
    fn entry(&self, caller: &Caller, route: &str, size: usize, event: AuditEvent) -> AuditEntry {
        let at = self.clock.now();
        self.entry_at(at, self.ids.next_id(at), caller, route, size, event)
    }

    /// An audit entry with a given time and id (a message's own).
    fn entry_at(
        &self,
        at: DateTime<Utc>,
        id: String,
        caller: &Caller,
        route: &str,
        size: usize,
        event: AuditEvent,
    ) -> AuditEntry {
        AuditEntry {
            id,
            at,
            connection_id: caller.connection_id.clone(),
            user: caller.user.clone(),
            route: route.to_owned(),
            size,
            event,
            expires_at: at + self.settings.audit_retention,
        }
    }

    /// A chat message accepted now, with a fresh id, and the time it was accepted.
    fn message(
        &self,
        caller: &Caller,
        room: Option<Room>,
        text: String,
        direct: bool,
    ) -> (ChatMessage, DateTime<Utc>) {
        let at = self.clock.now();
        let message = ChatMessage {
            room,
            text,
            from: caller.connection_id.clone(),
            user: caller.user.clone(),
            id: self.ids.next_id(at),
            sent_at: iso8601(at),
            direct,
        };
        (message, at)
    }

    /// `$connect`: store the connection with its user, join the lobby, audit it.
    pub async fn connect(&self, caller: &Caller) -> Result<(), AppError> {
        let now = self.clock.now();
        let connection = Connection {
            id: caller.connection_id.clone(),
            user: caller.user.clone(),
            connected_at: now,
            expires_at: now + self.settings.connection_ttl,
        };
        let entry = self.entry(caller, "$connect", 0, AuditEvent::Connect);
        let lobby = Room::lobby();
        futures::try_join!(
            self.store.add(&connection, &lobby),
            self.audit.record(&entry)
        )?;
        Ok(())
    }

    /// `$disconnect`: forget the connection and its memberships, audit it.
    pub async fn disconnect(
        &self,
        caller: &Caller,
        status_code: Option<i64>,
        reason: Option<String>,
    ) -> Result<(), AppError> {
        let entry = self.entry(
            caller,
            "$disconnect",
            0,
            AuditEvent::Disconnect {
                status_code,
                reason,
            },
        );
        futures::try_join!(
            self.store.forget(&caller.connection_id),
            self.audit.record(&entry)
        )?;
        Ok(())
    }
}

/// What became of one client message: the caller's reply, and what logs and tests need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The action, when the message named a valid one.
    pub action: Option<&'static str>,
    /// The error code of the reply, if it is an error.
    pub error: Option<ErrorCode>,
    /// The fan-out, for `sendmessage`.
    pub fanout: Option<FanoutReport>,
    /// The frame for the caller, sent back as the route response; `None` when there is none.
    pub reply: Option<Reply>,
}

/// The message routes: every client action. The caller's reply is returned (API Gateway sends
/// it back as the route response); only deliveries to other connections use the notifier.
#[derive(Clone)]
pub struct Messaging {
    ports: Ports,
    notifier: Arc<dyn Notifier>,
}

/// Why an action could not be carried out.
enum Failure {
    Client(ClientError),
    Store(StoreError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl Messaging {
    /// The message use cases over the given adapters and notifier.
    pub fn new(ports: Ports, notifier: Arc<dyn Notifier>) -> Self {
        Self { ports, notifier }
    }

    /// The adapters, for `$connect` and `$disconnect` in the same process (the local gateway).
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Handles one text frame from a client. The reply or error frame for the caller is in
    /// [`Outcome::reply`], not posted: it travels back as the two-way route's response, which
    /// saves a signed @connections call per request. It never fails: errors become frames.
    pub async fn on_message(&self, caller: &Caller, body: &str) -> Outcome {
        let mut outcome = Outcome::default();
        let result = match protocol::parse(body) {
            Ok(command) => {
                outcome.action = Some(command.action());
                self.execute(caller, command, body.len(), &mut outcome)
                    .await
            }
            Err(error) => Err(Failure::Client(error)),
        };
        outcome.reply = match result {
            Ok(reply) => reply,
            Err(Failure::Client(error)) => {
                tracing::info!(code = ?error.code, message = %error.message, "client error");
                outcome.error = Some(error.code);
                Some(Reply::error(&error, &caller.request_id))
            }
            Err(Failure::Store(error)) => {
                // The details stay in the logs: clients only learn that it was our fault.
                tracing::error!(%error, "storage failed");
                outcome.error = Some(ErrorCode::Internal);
                let error = ClientError::new(
                    ErrorCode::Internal,
                    "the request could not be completed; quote the requestId when reporting it",
                );
                Some(Reply::error(&error, &caller.request_id))
            }
        };
        outcome
    }

    /// Runs a command; `Ok(None)` when the caller gets no reply (a room message reaches the
    /// sender by fan-out; a delivered whisper needs no answer).
    async fn execute(
        &self,
        caller: &Caller,
        command: Command,
        size: usize,
        outcome: &mut Outcome,
    ) -> Result<Option<Reply>, Failure> {
        let ports = &self.ports;
        let route = command.action();
        match command {
            Command::Ping => Ok(Some(Reply::Pong)),
            Command::WhoAmI => {
                let rooms = ports
                    .store
                    .rooms_of(&caller.connection_id, ports.clock.now())
                    .await?;
                Ok(Some(Reply::Identity {
                    connection_id: caller.connection_id.clone(),
                    user: caller.user.clone(),
                    rooms,
                }))
            }
            Command::Join(room) => {
                let expires_at = ports.clock.now() + ports.settings.connection_ttl;
                let entry = ports.entry(caller, route, size, AuditEvent::Join(room.clone()));
                futures::try_join!(
                    ports.store.join(&caller.connection_id, &room, expires_at),
                    ports.audit.record(&entry)
                )?;
                Ok(Some(Reply::Joined { room }))
            }
            Command::Leave(room) => {
                let entry = ports.entry(caller, route, size, AuditEvent::Leave(room.clone()));
                futures::try_join!(
                    ports.store.leave(&caller.connection_id, &room),
                    ports.audit.record(&entry)
                )?;
                Ok(Some(Reply::Left { room }))
            }
            Command::History { room, limit } => {
                let messages = ports
                    .audit
                    .recent_messages(&room, limit, ports.clock.now())
                    .await?;
                Ok(Some(Reply::History { room, messages }))
            }
            Command::SendMessage { room, text } => {
                let report = self.send_to_room(caller, room, text, size).await?;
                outcome.fanout = Some(report);
                Ok(None)
            }
            Command::Whisper { to, text } => {
                let (message, at) = ports.message(caller, None, text, true);
                let event = AuditEvent::Whisper {
                    to: to.clone(),
                    message: message.clone(),
                };
                let entry = ports.entry_at(at, message.id.clone(), caller, route, size, event);
                ports.audit.record(&entry).await?;
                let frame = Reply::Message(message).to_bytes();
                match fanout::post_with_retry(
                    self.notifier.as_ref(),
                    &to,
                    &frame,
                    ports.settings.fanout,
                )
                .await
                {
                    Ok(()) => Ok(None),
                    Err(NotifyError::Gone) => {
                        self.forget_stale(std::slice::from_ref(&to)).await;
                        Err(
                            ClientError::new(ErrorCode::Gone, format!("connection `{to}` is gone"))
                                .into(),
                        )
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
        }
    }

    /// `sendmessage`: check membership, record the message, deliver it to every member.
    async fn send_to_room(
        &self,
        caller: &Caller,
        room: Room,
        text: String,
        size: usize,
    ) -> Result<FanoutReport, Failure> {
        let ports = &self.ports;
        let members = ports.store.members(&room, ports.clock.now()).await?;
        if !members.contains(&caller.connection_id) {
            return Err(ClientError::new(
                ErrorCode::NotMember,
                format!("join room `{room}` before sending to it"),
            )
            .into());
        }
        let (message, at) = ports.message(caller, Some(room.clone()), text, false);
        let event = AuditEvent::Message(message.clone());
        let entry = ports.entry_at(at, message.id.clone(), caller, "sendmessage", size, event);
        // Recorded before delivery: a message someone saw is always in the history.
        ports.audit.record(&entry).await?;
        let frame = Reply::Message(message).to_bytes();
        let report = fanout::deliver(
            self.notifier.as_ref(),
            &members,
            &frame,
            ports.settings.fanout,
        )
        .await;
        self.forget_stale(&report.gone).await;
        tracing::info!(
            room = %room,
            members = members.len(),
            delivered = report.delivered,
            gone = report.gone.len(),
            failed = report.failed.len(),
            "fan-out done"
        );
        Ok(report)
    }

    /// Deletes the records of connections the @connections API says are gone.
    async fn forget_stale(&self, gone: &[ConnectionId]) {
        use futures::stream::{self, StreamExt};
        let store = &self.ports.store;
        stream::iter(gone)
            .for_each_concurrent(self.ports.settings.fanout.concurrency.max(1), |id| async move {
                if let Err(error) = store.forget(id).await {
                    tracing::warn!(connection = %id, %error, "could not forget a gone connection");
                }
            })
            .await;
    }
}
