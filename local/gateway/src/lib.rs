//! The local gateway: runs the real handler binaries behind a WebSocket endpoint that
//! behaves like API Gateway, read from the synthesized CDK template, with DynamoDB Local.
//!
//! Start it with [`Gateway::start`]; the `local-gateway` binary is a thin CLI around it.

#![warn(missing_docs)]

mod authorizer;
pub mod connections;
mod database;
pub mod events;
pub mod functions;
mod gateway;
pub mod iam;
mod listener;
mod management;
mod options;
pub mod quotas;
mod reload;
pub mod routing;
pub mod services;
mod state;
pub mod tables;
pub mod template;
pub mod tokens;
mod watch;
mod web;
mod websocket;

pub use gateway::{Gateway, StartError, LOCAL_ACCOUNT_ID, LOCAL_API_ID, LOCAL_REGION};
pub use options::{DynamoDb, Options};
pub use reload::{ReloadError, StackChange};
pub use watch::{Reload, Watch, WatchError, WatchOptions};
pub use websocket::{DELETED, GOING_AWAY, TOO_BIG, UNSUPPORTED_DATA};
