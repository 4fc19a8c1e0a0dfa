//! The client side, as API Gateway serves it: the upgrade waits for `$connect`, each text
//! frame goes to its route, errors come back as API Gateway's own frames, and the socket
//! closes on oversized or binary messages, idle timeout and maximum duration.
//!
//! [`handshake`] takes a client from its upgrade request through `$connect`; [`session`]
//! serves the socket from then on; [`proxy`] reads what the handlers answer.

mod handshake;
mod proxy;
mod session;

pub(crate) use handshake::{upgrade_root, upgrade_stage};
pub use session::{DELETED, GOING_AWAY, TOO_BIG, UNSUPPORTED_DATA};
