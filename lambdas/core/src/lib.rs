//! The domain of the realtime backend: the client protocol, the use cases, and the ports they
//! need. It knows nothing of Lambda or AWS, so it is tested in microseconds and reused by the
//! local gateway.

pub mod app;
pub mod deadline;
pub mod error;
pub mod fanout;
pub mod memory;
pub mod messaging;
pub mod model;
pub mod ports;
pub mod protocol;
pub mod queued;
pub mod random;
pub mod rate;
pub mod shards;

pub use app::{AppError, Ports, Settings};
pub use deadline::Deadline;
pub use error::{ClientError, ErrorCode};
pub use messaging::{Messaging, Outcome};
pub use model::{
    AuditEntry, AuditEvent, Caller, ChatMessage, Connection, ConnectionId, HistoryPage, MessageId,
    Room,
};
pub use protocol::{Action, Reply};
