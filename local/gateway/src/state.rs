//! What every request handler shares: the stack (API model and function pools, swapped whole
//! by a reload), the open connections and the limits, plus the shutdown flag they all watch.
//! It sits below the handlers (WebSocket, @connections, authorizer) and the gateway that
//! builds it, so none of them imports another to reach it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::connections::{Connection, Connections};
use crate::events::{self, ApiContext};
use crate::functions::{FunctionPool, InvokeError};
use crate::iam::Guard;
use crate::quotas::{Quotas, Throttles};
use crate::template::{ApiModel, LocalContext, Route};
use crate::web::WebRoot;

/// The limits a connection lives by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) idle_timeout: Duration,
    pub(crate) max_duration: Duration,
    pub(crate) connections_latency: Duration,
    pub(crate) upgrade_delay: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) quotas: Quotas,
}

/// What one version of the template serves: its API and a process pool per function. A
/// request reads the stack once and keeps that version to its end, so a reload never mixes
/// the routes of one template with the functions of another.
pub(crate) struct Stack {
    pub(crate) api: ApiModel,
    pub(crate) events: ApiContext,
    pub(crate) functions: HashMap<String, Arc<FunctionPool>>,
}

impl Stack {
    /// The stack of `api` served at `addr` by `functions`.
    pub(crate) fn new(
        api: ApiModel,
        local: &LocalContext,
        addr: SocketAddr,
        functions: HashMap<String, Arc<FunctionPool>>,
    ) -> Self {
        let events = ApiContext {
            api_id: local.api_id.clone(),
            stage: api.stage.name.clone(),
            domain_name: addr.to_string(),
            stage_variables: api.stage.variables.clone(),
        };
        Self {
            api,
            events,
            functions,
        }
    }

    /// Invokes a route's function; `Ok(None)` for a route without an integration.
    async fn invoke_unless(
        &self,
        route: &Route,
        event: Vec<u8>,
        abandon: impl std::future::Future<Output = ()>,
    ) -> Result<Option<Bytes>, InvokeError> {
        let Some(target) = &route.target else {
            return Ok(None);
        };
        let Some(pool) = self.functions.get(&target.function) else {
            // The template reader registers every targeted function: this cannot happen.
            return Err(InvokeError::ShuttingDown);
        };
        pool.invoke_unless(event, target.timeout, abandon)
            .await
            .map(Some)
    }
}

/// What every request handler shares.
pub(crate) struct Shared {
    stack: ArcSwap<Stack>,
    /// The stage served (a reload that would change it is refused).
    pub(crate) stage: String,
    pub(crate) local: LocalContext,
    pub(crate) connections: Arc<Connections>,
    pub(crate) limits: Limits,
    addr: SocketAddr,
    pub(crate) local_port: u16,
    pub(crate) web: Option<WebRoot>,
    /// The quotas' token buckets.
    pub(crate) throttles: Throttles,
    /// Checks the @connections calls of the handlers (and of the developer).
    pub(crate) guard: Arc<Guard>,
    /// Cancelled when the shutdown begins.
    shutdown: CancellationToken,
    /// Counts the changes of the web client's files, for the open pages to hear of.
    web_version: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// The state of a gateway serving `stack` at `addr`.
    pub(crate) fn new(
        stack: Stack,
        local: LocalContext,
        addr: SocketAddr,
        limits: Limits,
        web: Option<WebRoot>,
        guard: Arc<Guard>,
    ) -> Self {
        let throttles = Throttles::new(&limits.quotas, &stack.api.stage, stack.api.routes.keys());
        Self {
            throttles,
            stage: stack.api.stage.name.clone(),
            stack: ArcSwap::from_pointee(stack),
            local,
            connections: Arc::new(Connections::default()),
            limits,
            addr,
            local_port: addr.port(),
            web,
            guard,
            shutdown: CancellationToken::new(),
            web_version: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The address the gateway listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stack being served now; a request holds on to it to its end.
    pub(crate) fn stack(&self) -> Arc<Stack> {
        self.stack.load_full()
    }

    /// Serves `stack` from now on (requests under way finish with the one they hold); returns
    /// the one it replaces.
    pub(crate) fn replace_stack(&self, stack: Stack) -> Arc<Stack> {
        self.throttles.set_routes(
            &self.limits.quotas,
            &stack.api.stage,
            stack.api.routes.keys(),
        );
        self.stack.swap(Arc::new(stack))
    }

    /// Tells the open pages of the web client that its files changed.
    pub(crate) fn web_changed(&self) {
        self.web_version.send_modify(|version| *version += 1);
    }

    /// Hears of every later change of the web client's files.
    pub(crate) fn web_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.web_version.subscribe()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Starts the shutdown: new upgrades are refused and queued messages given up.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Invokes a route of `stack` (the version the request began with); `Ok(None)` for a
    /// route without an integration.
    pub(crate) async fn invoke(
        &self,
        stack: &Stack,
        route: &Route,
        event: Vec<u8>,
    ) -> Result<Option<Bytes>, InvokeError> {
        stack
            .invoke_unless(route, event, std::future::pending())
            .await
    }

    /// Invokes a client message's route. At shutdown, a message still waiting for a process is
    /// given up: its sender is being disconnected, and the `$disconnect`s must not queue behind
    /// messages whose answers nobody can receive.
    pub(crate) async fn invoke_message(
        &self,
        stack: &Stack,
        route: &Route,
        event: Vec<u8>,
    ) -> Result<Option<Bytes>, InvokeError> {
        stack
            .invoke_unless(route, event, self.shutdown.cancelled())
            .await
    }

    /// Runs `$disconnect` for a closed connection (best effort, as in API Gateway).
    pub(crate) async fn disconnect(&self, connection: &Connection, code: u16, reason: &str) {
        let stack = self.stack();
        let Some(route) = stack.api.route("$disconnect") else {
            return;
        };
        let request_id = events::new_id();
        let event = events::disconnect(
            &stack.events,
            &connection.facts(),
            &request_id,
            code,
            reason,
        );
        if let Err(error) = self.invoke(&stack, route, event).await {
            warn!(
                connection_id = connection.id(),
                request_id, "$disconnect failed: {error}"
            );
        }
    }
}
