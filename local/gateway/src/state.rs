//! What every request handler shares: the API model, the open connections, the function
//! pools and the limits, plus the shutdown flag they all watch. It sits below the handlers
//! (WebSocket, @connections, authorizer) and the gateway that builds it, so none of them
//! imports another to reach it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) api: ApiModel,
    pub(crate) events: ApiContext,
    pub(crate) local: LocalContext,
    pub(crate) connections: Arc<Connections>,
    pub(crate) functions: HashMap<String, Arc<FunctionPool>>,
    pub(crate) limits: Limits,
    pub(crate) local_port: u16,
    pub(crate) web: Option<WebRoot>,
    /// The quotas' token buckets.
    pub(crate) throttles: Throttles,
    /// Checks the @connections calls of the handlers (and of the developer).
    pub(crate) guard: Arc<Guard>,
    /// Cancelled when the shutdown begins.
    shutdown: CancellationToken,
}

impl Shared {
    /// The state of a gateway serving `api` at `addr`.
    pub(crate) fn new(
        api: ApiModel,
        local: LocalContext,
        addr: SocketAddr,
        functions: HashMap<String, Arc<FunctionPool>>,
        limits: Limits,
        web: Option<WebRoot>,
        guard: Arc<Guard>,
    ) -> Self {
        let events = ApiContext {
            api_id: local.api_id.clone(),
            stage: api.stage.name.clone(),
            domain_name: addr.to_string(),
            stage_variables: api.stage.variables.clone(),
        };
        let throttles = Throttles::new(&limits.quotas, &api.stage, api.routes.keys());
        Self {
            throttles,
            api,
            events,
            local,
            connections: Arc::new(Connections::default()),
            functions,
            limits,
            local_port: addr.port(),
            web,
            guard,
            shutdown: CancellationToken::new(),
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Starts the shutdown: new upgrades are refused and queued messages given up.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Invokes a route's function; `Ok(None)` for a route without an integration.
    pub(crate) async fn invoke(
        &self,
        route: &Route,
        event: Vec<u8>,
    ) -> Result<Option<Bytes>, InvokeError> {
        self.invoke_unless(route, event, std::future::pending())
            .await
    }

    /// Invokes a client message's route. At shutdown, a message still waiting for a process is
    /// given up: its sender is being disconnected, and the `$disconnect`s must not queue behind
    /// messages whose answers nobody can receive.
    pub(crate) async fn invoke_message(
        &self,
        route: &Route,
        event: Vec<u8>,
    ) -> Result<Option<Bytes>, InvokeError> {
        self.invoke_unless(route, event, self.shutdown.cancelled())
            .await
    }

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

    /// Runs `$disconnect` for a closed connection (best effort, as in API Gateway).
    pub(crate) async fn disconnect(&self, connection: &Connection, code: u16, reason: &str) {
        let Some(route) = self.api.route("$disconnect") else {
            return;
        };
        let request_id = events::new_id();
        let event =
            events::disconnect(&self.events, &connection.facts(), &request_id, code, reason);
        if let Err(error) = self.invoke(route, event).await {
            warn!(
                connection_id = connection.id(),
                request_id, "$disconnect failed: {error}"
            );
        }
    }
}
