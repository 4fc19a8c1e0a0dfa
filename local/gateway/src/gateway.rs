//! Wires it all together: reads the template, starts DynamoDB Local and creates the tables,
//! serves the template's secrets and queues through a local Secrets Manager and SQS, prepares
//! the function pools, polls the queues for their event source mappings, and serves WebSocket
//! clients, the @connections API and the web client on one loopback port.
//! Shutdown runs in the order that loses nothing: the queues' pollers stop taking batches,
//! clients are closed (their `$disconnect` still runs, and may still call @connections),
//! messages and batches in flight finish, then the server, the handler processes, the local
//! AWS services and DynamoDB Local stop.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::database::Database;
use crate::functions::{missing_binary, EventSources, HostSettings, MappingError};
use crate::iam::actions::Arns;
use crate::iam::{Guard, RoleError};
use crate::listener::{ClientInfo, RecordingListener};
use crate::options::{DynamoDb, Options};
use crate::reload::{function_pool, ReloadError, Reloader, StackChange};
use crate::services::partitions::{HotPartitions, Partitions};
use crate::services::secrets::{read_secret_file, SecretFileError, SecretStore};
use crate::services::sqs::queues::{QueueCounts, QueuedMessage, Queues};
use crate::services::AwsServices;
use crate::state::{Limits, Shared, Stack};
use crate::tables::{self, TableError, LOCAL_ACCESS_KEY};
use crate::template::{ApiModel, LocalContext, Template, TemplateError};
use crate::watch::{Watch, WatchError, WatchOptions};
use crate::web::WebRoot;
use crate::{management, websocket};

/// The region everything local pretends to run in.
pub const LOCAL_REGION: &str = "us-east-1";
/// The account id of local ARNs.
pub const LOCAL_ACCOUNT_ID: &str = "000000000000";
/// What `Ref` of the API gives locally.
pub const LOCAL_API_ID: &str = "local";

/// How long shutdown waits for the `$disconnect`s of the connections it closes: a little more
/// than one integration timeout, since they queue for the function's processes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The template is missing or not usable.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Another process holds the port.
    #[error("port {0} on 127.0.0.1 is already in use: stop what runs there, or pass --port with another port")]
    PortInUse(u16),
    /// The port could not be bound for another reason.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// A handler binary the template names does not exist.
    #[error("handler binary {path} (function {function}) not found: build the handlers first (`cargo build --bins`, which `make dev` runs), or pass --bin-dir")]
    MissingBinary {
        /// The expected path.
        path: PathBuf,
        /// The function's logical id.
        function: String,
    },
    /// DynamoDB Local did not start.
    #[error(transparent)]
    DynamoDb(#[from] dynamodb_local::Error),
    /// A table could not be created.
    #[error("cannot create the template's tables in DynamoDB: {0}")]
    Tables(#[from] TableError),
    /// The local value of the template's secrets is missing or unusable.
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    /// A function's role cannot be enforced.
    #[error("cannot enforce the template's IAM roles: {0}")]
    Roles(#[from] RoleError),
    /// An event source mapping Lambda would refuse to create.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The local AWS services could not listen.
    #[error("cannot start the local DynamoDB, Secrets Manager and SQS endpoint: {0}")]
    Services(std::io::Error),
    /// The web client's folder does not exist.
    #[error("cannot serve the web client from {}: {source}", path.display())]
    WebDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    database: Option<Database>,
    dynamodb_endpoint: String,
    services: AwsServices,
    queues: Arc<Queues>,
    event_sources: Arc<EventSources>,
    partitions: Arc<Partitions>,
    reloader: Arc<Reloader>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts everything; returns once clients can connect.
    pub async fn start(options: Options) -> Result<Self, StartError> {
        let template = Template::load(&options.template)?;
        let listener = bind(options.port).await?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            port: options.port,
            source,
        })?;
        // Bound before the template is read: the queues' URLs name its port.
        let services_listener = AwsServices::bind().await.map_err(StartError::Services)?;
        let services_addr = services_listener
            .local_addr()
            .map_err(StartError::Services)?;
        let local = local_context(addr, services_addr);
        let api = read_api(&template, &options, &local)?;
        let web = web_root(&options)?;
        let guard = Arc::new(enforce_roles(&api)?);
        let queues = Arc::new(Queues::new(&api.queues));
        EventSources::check(&api.event_source_mappings, &queues, &guard)?;
        let secrets = secret_store(&api, &options)?;
        let (database, dynamodb_endpoint) = start_database(&options, &api, addr).await?;
        let partitions = Arc::new(Partitions::new(&api.tables, options.partitions, |table| {
            guard.arns.table(table)
        }));
        let services = AwsServices::start(
            services_listener,
            guard.clone(),
            secrets,
            &dynamodb_endpoint,
            partitions.clone(),
            queues.clone(),
        )
        .await
        .map_err(StartError::Services)?;
        let settings = host_settings(&options, &services);
        let callback_url = format!("http://{addr}/{}", api.stage.name);
        let functions = api
            .functions
            .values()
            .map(|spec| {
                let pool =
                    function_pool(spec, &settings, &options.extra_env, &guard, &callback_url);
                (spec.logical_id.clone(), Arc::new(pool))
            })
            .collect();
        let limits = Limits {
            idle_timeout: options.idle_timeout,
            max_duration: options.max_duration,
            connections_latency: options.connections_latency,
            upgrade_delay: options.upgrade_delay,
            max_in_flight: options.max_in_flight_per_connection.max(1),
            quotas: options.quotas,
        };
        let stack = Stack::new(api, &local, addr, functions);
        let event_sources = Arc::new(EventSources::start(
            &stack.api.event_source_mappings,
            &queues,
            &stack.functions,
            LOCAL_REGION,
            options.max_processes_per_function,
        ));
        info!(
            stage = %stack.api.stage.name,
            routes = stack.api.routes.len(),
            functions = stack.functions.len(),
            tables = stack.api.tables.len(),
            secrets = stack.api.secrets.len(),
            queues = stack.api.queues.len(),
            quotas = %options.quotas.describe(),
            dynamodb = %dynamodb_endpoint,
            aws_services = %services.endpoint,
            "local gateway listening on ws://{addr}/{}", stack.api.stage.name
        );
        let shared = Arc::new(Shared::new(stack, local.clone(), addr, limits, web, guard));
        let (stop_server, server) = serve(listener, shared.clone());
        let reloader = Arc::new(Reloader {
            shared: shared.clone(),
            template: options.template.clone(),
            local,
            settings,
            extra_env: options.extra_env.clone(),
            dynamodb_endpoint: dynamodb_endpoint.clone(),
            restart_tables: database.as_ref().map(Database::restart_tables),
            event_sources: event_sources.clone(),
            busy: tokio::sync::Mutex::new(()),
        });
        Ok(Self {
            shared,
            addr,
            stop_server: Some(stop_server),
            server: Some(server),
            database,
            dynamodb_endpoint,
            services,
            queues,
            event_sources,
            partitions,
            reloader,
        })
    }

    /// Starts a new generation of processes for every function whose binary file changed
    /// since its processes started (a rebuild): invocations in flight finish on the old
    /// binary, the next ones run the new one, and no client connection is touched. Returns
    /// the names of the functions refreshed.
    pub fn refresh_binaries(&self) -> Vec<String> {
        self.reloader.refresh_binaries()
    }

    /// Reads the template again and serves what changed (routes, functions, environment,
    /// timeouts, authorizer and stage settings, roles, new tables) under the open connections.
    /// A change a running gateway cannot take over refuses the whole reload, one line each.
    pub async fn reload_template(&self) -> Result<StackChange, ReloadError> {
        self.reloader.apply_template().await
    }

    /// Watches the sources named in `options`: rebuilds and refreshes the changed handlers,
    /// re-synthesizes and applies the template, tells the web client to reload. Reports each
    /// reload on the returned watch; watching stops when it is dropped.
    pub fn watch(&self, options: WatchOptions) -> Result<Watch, WatchError> {
        Watch::start(self.reloader.clone(), options)
    }

    /// The peak write and read units per second each DynamoDB partition key has taken so far
    /// (hottest first), against DynamoDB's per-partition limits.
    pub fn hot_partitions(&self) -> HotPartitions {
        self.partitions.report()
    }

    /// The calls API Gateway's quotas refused so far (the @connections account throttle, the
    /// new-connection rate), for load tests and benchmarks to report.
    pub fn refusals(&self) -> crate::quotas::Refusals {
        self.shared.throttles.refusals()
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stage served.
    pub fn stage(&self) -> &str {
        &self.shared.stage
    }

    /// The URL clients connect to (`ws://127.0.0.1:PORT/STAGE`).
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.stage())
    }

    /// The @connections base URL handlers get as `CALLBACK_URL`.
    pub fn callback_url(&self) -> String {
        format!("http://{}/{}", self.addr, self.stage())
    }

    /// The process id of the DynamoDB Local the gateway runs (the current one, after a
    /// restart); `None` with an external DynamoDB, or while it is down.
    pub fn dynamodb_pid(&self) -> Option<u32> {
        self.database.as_ref().and_then(Database::pid)
    }

    /// DynamoDB Local's own endpoint, for the developer's tools and tests (the handlers reach
    /// it through the gateway, which checks their calls first).
    pub fn dynamodb_endpoint(&self) -> &str {
        &self.dynamodb_endpoint
    }

    /// How many client connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.len()
    }

    /// What the gateway holds for its clients right now, and the posts it refused.
    pub fn load(&self) -> crate::connections::Load {
        self.shared.connections.load()
    }

    /// The local Secrets Manager (and DynamoDB and SQS) endpoint handlers get as
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER` (and `..._DYNAMODB`, `..._SQS`), where their calls
    /// are checked.
    pub fn secrets_manager_endpoint(&self) -> &str {
        &self.services.endpoint
    }

    /// The URL of the queue `logical_id` (what `Ref` of it gives): on the local SQS.
    pub fn queue_url(&self, logical_id: &str) -> Option<String> {
        self.queues.get(logical_id).map(|q| q.spec().url.clone())
    }

    /// How many messages the queue `logical_id` holds now: visible, in flight, delayed.
    pub fn queue_counts(&self, logical_id: &str) -> Option<QueueCounts> {
        self.queues.get(logical_id).map(|q| q.counts())
    }

    /// Every message the queue `logical_id` holds now (a dead-letter queue's, say).
    pub fn queue_messages(&self, logical_id: &str) -> Option<Vec<QueuedMessage>> {
        self.queues.get(logical_id).map(|q| q.messages())
    }

    /// How many batches the event source mapping `logical_id` has invoked its function with.
    pub fn event_source_invocations(&self, logical_id: &str) -> Option<u64> {
        self.event_sources.invocation_count(logical_id)
    }

    /// The latest AWS calls of the handlers that their roles did not allow, oldest first.
    pub fn denials(&self) -> Vec<crate::iam::Denial> {
        self.shared.guard.denials()
    }

    /// The credentials the function `logical_id`'s processes sign with.
    pub fn function_credentials(&self, logical_id: &str) -> Option<crate::iam::Credentials> {
        self.shared.guard.credentials(logical_id)
    }

    /// The web client's address (`http://127.0.0.1:PORT/`), when the gateway serves it.
    pub fn web_url(&self) -> Option<String> {
        self.shared
            .web
            .as_ref()
            .map(|_| format!("http://{}/", self.addr))
    }

    /// Whether `$connect` has an authorizer: clients need a token.
    pub fn requires_token(&self) -> bool {
        self.shared
            .stack()
            .api
            .route("$connect")
            .is_some_and(|r| r.authorizer.is_some())
    }

    /// A token for `user` that the `$connect` authorizer accepts, when it verifies HS256
    /// tokens with a secret of the template (its environment holds the secret's ARN or name):
    /// signed with the local secret, with the claims of `mint-token`. `None` otherwise (no
    /// authorizer, or one that checks tokens of an identity provider).
    pub fn local_token(&self, user: &str) -> Option<String> {
        let stack = self.shared.stack();
        let authorizer = stack.api.route("$connect")?.authorizer.as_ref()?;
        let function = stack.api.functions.get(&authorizer.function)?;
        let secret = match function
            .environment
            .values()
            .find_map(|v| self.services.secrets.value(v))?
        {
            Ok(secret) => secret,
            Err(error) => {
                warn!("cannot sign a local token: {error}");
                return None;
            }
        };
        match crate::tokens::sign(&secret, user, function) {
            Ok(token) => Some(token),
            Err(error) => {
                warn!("cannot sign a local token: {error}");
                None
            }
        }
    }

    /// The process ids of the function `logical_id`'s live handler processes.
    pub fn process_ids(&self, logical_id: &str) -> Vec<u32> {
        self.shared
            .stack()
            .functions
            .get(logical_id)
            .map(|pool| pool.process_ids())
            .unwrap_or_default()
    }

    /// How many invocations the function `logical_id` has received so far.
    pub fn invocation_count(&self, logical_id: &str) -> Option<u64> {
        self.shared
            .stack()
            .functions
            .get(logical_id)
            .map(|pool| pool.invocation_count())
    }

    /// Closes every client (running `$disconnect`), then stops the server, the handler
    /// processes and DynamoDB Local.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        self.event_sources.stop();
        self.shared.connections.close_all(websocket::GOING_AWAY);
        let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        if tokio::time::timeout_at(grace, self.shared.connections.tasks_finished())
            .await
            .is_err()
        {
            warn!("some connections did not finish closing in {SHUTDOWN_GRACE:?}");
        }
        if tokio::time::timeout_at(grace, self.event_sources.finished())
            .await
            .is_err()
        {
            warn!("some queue batches did not finish in {SHUTDOWN_GRACE:?}: their processes are stopped");
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                // A handler's kept-alive connection holds graceful shutdown open: cut it.
                server.abort();
            }
        }
        for pool in self.shared.stack().functions.values() {
            pool.shutdown().await;
        }
        self.services.stop();
        if let Some(database) = self.database.take() {
            database.stop().await;
        }
        let report = self.partitions.report();
        if let Some(summary) = report.summary() {
            match report.hottest() {
                Some(hottest) if report.over_limit(hottest) => warn!("{summary}"),
                _ => info!("{summary}"),
            }
        }
        info!("local gateway stopped");
    }
}

/// The HTTP routes: WebSocket upgrades at `/` and `/STAGE`, @connections under the stage, and
/// plain GETs of `/` and `/FILE` for the web client.
fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(websocket::upgrade_root))
        .route(
            crate::web::RELOAD_EVENTS_PATH,
            get(crate::web::reload_events),
        )
        .route("/{stage}", get(websocket::upgrade_stage))
        .route("/{stage}/@connections/{*id}", connections_api(&shared))
        // The form of AWS's own curl examples: the `@` percent-encoded.
        .route("/{stage}/%40connections/{*id}", connections_api(&shared))
        .with_state(shared)
}

/// The values that stand in for the deployed stack's, for a gateway listening at `addr`.
fn local_context(addr: SocketAddr, services_addr: SocketAddr) -> LocalContext {
    LocalContext {
        region: LOCAL_REGION.to_owned(),
        account_id: LOCAL_ACCOUNT_ID.to_owned(),
        api_id: LOCAL_API_ID.to_owned(),
        api_endpoint: format!("ws://{addr}"),
        services_endpoint: format!("http://{services_addr}"),
    }
}

/// The API of the stage to serve (the template's only stage unless one is named), once every
/// handler binary it names is known to exist.
fn read_api(
    template: &Template,
    options: &Options,
    local: &LocalContext,
) -> Result<ApiModel, StartError> {
    let stage = match &options.stage {
        Some(stage) => stage.clone(),
        None => match template.stage_names().as_slice() {
            [only] => only.clone(),
            _ => "dev".to_owned(),
        },
    };
    let api = template.api(&stage, local)?;
    if let Some((path, function)) = missing_binary(&options.bin_dir, api.functions.values()) {
        return Err(StartError::MissingBinary { path, function });
    }
    Ok(api)
}

fn web_root(options: &Options) -> Result<Option<WebRoot>, StartError> {
    let Some(dir) = &options.web_dir else {
        return Ok(None);
    };
    WebRoot::new(dir)
        .map(Some)
        .map_err(|source| StartError::WebDir {
            path: dir.clone(),
            source,
        })
}

/// The guard of every function's AWS calls, from the roles of the template; what it cannot
/// check is said at start, one line each.
fn enforce_roles(api: &ApiModel) -> Result<Guard, StartError> {
    let arns = Arns::new(LOCAL_REGION, LOCAL_ACCOUNT_ID);
    let (guard, notes) = Guard::new(api.functions.values(), arns, LOCAL_ACCESS_KEY)?;
    for note in notes {
        warn!("IAM: {note}");
    }
    Ok(guard)
}

/// The template's secrets. The secret file is read once now, to refuse a missing or weak
/// secret before anything starts; the local Secrets Manager reads it again at each request.
fn secret_store(api: &ApiModel, options: &Options) -> Result<SecretStore, StartError> {
    let secret_file = if api.secrets.is_empty() {
        None
    } else {
        read_secret_file(&options.jwt_secret_file, &api.secrets)?;
        Some(options.jwt_secret_file.as_path())
    };
    Ok(SecretStore::new(&api.secrets, secret_file))
}

/// DynamoDB Local (or the external one) with the template's tables; its endpoint.
async fn start_database(
    options: &Options,
    api: &ApiModel,
    addr: SocketAddr,
) -> Result<(Option<Database>, String), StartError> {
    let (database, endpoint) = match &options.dynamodb {
        DynamoDb::External(endpoint) => (None, endpoint.clone()),
        DynamoDb::Start {
            persist_dir,
            jar_dir,
        } => {
            if let Some(dir) = persist_dir {
                std::fs::create_dir_all(dir).map_err(dynamodb_local::Error::Spawn)?;
            }
            let options = dynamodb_local::Options {
                port: None,
                data_dir: persist_dir.clone(),
                jar_dir: jar_dir.clone(),
                // Only the gateway's own pages (the web client) may call it from a browser.
                cors_origin: Some(format!("http://{addr}")),
            };
            let database = Database::start(options, api.tables.clone()).await?;
            let endpoint = database.endpoint().to_owned();
            (Some(database), endpoint)
        }
    };
    let client = tables::local_client(&endpoint, LOCAL_REGION);
    tables::create_all(&client, &api.tables).await?;
    Ok((database, endpoint))
}

/// What every function's processes get: the binary folder, the process bound, and the
/// variables that point the handler's SDK at the local stand-ins of AWS.
fn host_settings(options: &Options, services: &AwsServices) -> HostSettings {
    let common_env: BTreeMap<String, String> = [
        ("AWS_REGION", LOCAL_REGION),
        ("AWS_DEFAULT_REGION", LOCAL_REGION),
        // DynamoDB, Secrets Manager and SQS calls reach the gateway's stand-ins, which check
        // them against the function's role: the same SDK calls as in Lambda.
        ("AWS_ENDPOINT_URL_DYNAMODB", services.endpoint.as_str()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            services.endpoint.as_str(),
        ),
        ("AWS_ENDPOINT_URL_SQS", services.endpoint.as_str()),
        // No instance metadata service exists here: do not let the SDK wait for one.
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    HostSettings {
        bin_dir: options.bin_dir.clone(),
        max_processes: options.max_processes_per_function,
        common_env,
    }
}

/// Serves the gateway's routes on `listener` until the returned sender fires.
fn serve(listener: TcpListener, shared: Arc<Shared>) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop_server, stopped) = oneshot::channel::<()>();
    let app = app(shared).into_make_service_with_connect_info::<ClientInfo>();
    let server = tokio::spawn(async move {
        let result = axum::serve(RecordingListener(listener), app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = result {
            warn!("the gateway's server stopped: {error}");
        }
    });
    (stop_server, server)
}

/// The @connections API: each call checked (stage, signature, IAM) before its handler runs.
fn connections_api(shared: &Arc<Shared>) -> axum::routing::MethodRouter<Arc<Shared>> {
    get(management::get_connection)
        .post(management::post_to_connection)
        .delete(management::delete_connection)
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            management::check,
        ))
}

async fn bind(port: u16) -> Result<TcpListener, StartError> {
    // Loopback only: the gateway checks no signature and must not be reachable from the network.
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => StartError::PortInUse(port),
            _ => StartError::Bind { port, source },
        })
}
