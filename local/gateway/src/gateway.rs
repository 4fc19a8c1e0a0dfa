//! Wires it all together: reads the template, starts DynamoDB Local and creates the tables,
//! serves the template's secrets through a local Secrets Manager, prepares the function pools,
//! and serves WebSocket clients, the @connections API and the web client on one loopback port.
//! Shutdown runs in the order that loses nothing: clients are closed (their `$disconnect`
//! still runs, and may still call @connections), messages in flight finish, then the server,
//! the handler processes, the Secrets Manager and DynamoDB Local stop.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::connections::{Connection, Connections};
use crate::database::Database;
use crate::events::{self, ApiContext};
use crate::functions::{FunctionPool, HostSettings, InvokeError};
use crate::intrinsics::LocalContext;
use crate::secrets::{SecretFileError, SecretStore, SecretsServer};
use crate::tables::{self, TableError, LOCAL_ACCESS_KEY};
use crate::template::{ApiModel, Route, Template, TemplateError, CALLBACK_URL_VAR};
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

/// Where the gateway gets its DynamoDB from.
#[derive(Debug, Clone)]
pub enum DynamoDb {
    /// Start DynamoDB Local (data in memory, or kept in `persist_dir`).
    Start {
        /// Keep the data in this folder between runs.
        persist_dir: Option<PathBuf>,
        /// The folder holding `DynamoDBLocal.jar`; the npm package's when `None`.
        jar_dir: Option<PathBuf>,
    },
    /// Use one that already runs at this endpoint.
    External(String),
}

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// The synthesized template.
    pub template: PathBuf,
    /// The stage to serve; the template's only stage when `None`.
    pub stage: Option<String>,
    /// The loopback port (0 picks a free one).
    pub port: u16,
    /// Where handler binaries named in the template live.
    pub bin_dir: PathBuf,
    /// Close a connection after this long without a message from the client.
    pub idle_timeout: Duration,
    /// Close a connection after this long, whatever it does.
    pub max_duration: Duration,
    /// Delay added to every @connections call.
    pub connections_latency: Duration,
    /// Messages of one connection routed at once; its socket is not read while that many are
    /// in flight, so a pipelining client waits for itself and not others for it.
    pub max_in_flight_per_connection: usize,
    /// How long the upgrade is held after `$connect` accepts, with posts to the connection
    /// answered 410 meanwhile: widens the window API Gateway has on AWS, where the handshake
    /// completes some tens of milliseconds after `$connect` returns.
    pub upgrade_delay: Duration,
    /// The most processes one function runs at once.
    pub max_processes_per_function: usize,
    /// The DynamoDB to use.
    pub dynamodb: DynamoDb,
    /// Variables given to every function on top of the template's (local-only settings).
    pub extra_env: BTreeMap<String, String>,
    /// The local value of every Secrets Manager secret of the template (the HS256 key of the
    /// `$connect` authorizer): the file's content, trimmed. Read only when the template has a
    /// secret; then it must exist.
    pub jwt_secret_file: PathBuf,
    /// Serve the web client from this folder (`GET /`, `GET /app.js`, ...); none when `None`.
    pub web_dir: Option<PathBuf>,
}

impl Options {
    /// API Gateway's defaults, for the template at `template`.
    pub fn new(template: PathBuf) -> Self {
        Self {
            template,
            stage: None,
            port: 3001,
            bin_dir: PathBuf::from("target/debug"),
            idle_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(7200),
            connections_latency: Duration::ZERO,
            upgrade_delay: Duration::ZERO,
            max_in_flight_per_connection: 10,
            max_processes_per_function: 4,
            dynamodb: DynamoDb::Start {
                persist_dir: None,
                jar_dir: None,
            },
            extra_env: BTreeMap::new(),
            jwt_secret_file: PathBuf::from(".local/jwt-secret"),
            web_dir: None,
        }
    }
}

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
    /// The local Secrets Manager could not listen.
    #[error("cannot start the local Secrets Manager: {0}")]
    SecretsServer(std::io::Error),
    /// The web client's folder does not exist.
    #[error("cannot serve the web client from {}: {source}", path.display())]
    WebDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The limits a connection lives by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) idle_timeout: Duration,
    pub(crate) max_duration: Duration,
    pub(crate) connections_latency: Duration,
    pub(crate) upgrade_delay: Duration,
    pub(crate) max_in_flight: usize,
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
    shutting_down: AtomicBool,
    shutdown_begun: tokio::sync::Notify,
}

impl Shared {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Starts the shutdown: new upgrades are refused and queued messages given up.
    fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown_begun.notify_waiters();
    }

    /// Resolves once the shutdown has begun.
    async fn shutdown_begun(&self) {
        loop {
            let notified = self.shutdown_begun.notified();
            if self.is_shutting_down() {
                return;
            }
            notified.await;
        }
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
        self.invoke_unless(route, event, self.shutdown_begun())
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

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    database: Option<Database>,
    dynamodb_endpoint: String,
    secrets: SecretsServer,
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
        let stage = match &options.stage {
            Some(stage) => stage.clone(),
            None => match template.stage_names().as_slice() {
                [only] => only.clone(),
                _ => "dev".to_owned(),
            },
        };
        let listener = bind(options.port).await?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            port: options.port,
            source,
        })?;
        let local = LocalContext {
            region: LOCAL_REGION.to_owned(),
            account_id: LOCAL_ACCOUNT_ID.to_owned(),
            api_id: LOCAL_API_ID.to_owned(),
            api_endpoint: format!("ws://{addr}"),
        };
        let api = template.api(&stage, &local)?;
        for function in api.functions.values() {
            let path = crate::functions::binary_path(&options.bin_dir, &function.binary);
            if !path.is_file() {
                return Err(StartError::MissingBinary {
                    path,
                    function: function.logical_id.clone(),
                });
            }
        }
        // Read once now, to refuse a missing or weak secret before anything starts; the local
        // Secrets Manager reads it again at each request.
        let secret_file = if api.secrets.is_empty() {
            None
        } else {
            crate::secrets::read_secret_file(&options.jwt_secret_file, &api.secrets)?;
            Some(options.jwt_secret_file.as_path())
        };
        let web = match &options.web_dir {
            Some(dir) => Some(WebRoot::new(dir).map_err(|source| StartError::WebDir {
                path: dir.clone(),
                source,
            })?),
            None => None,
        };
        let secrets = SecretsServer::start(SecretStore::new(&api.secrets, secret_file))
            .await
            .map_err(StartError::SecretsServer)?;

        let (database, dynamodb_endpoint) = match &options.dynamodb {
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
        let client = tables::local_client(&dynamodb_endpoint, LOCAL_REGION);
        tables::create_all(&client, &api.tables).await?;

        let callback_url = format!("http://{addr}/{}", api.stage.name);
        let common_env: BTreeMap<String, String> = [
            ("AWS_REGION", LOCAL_REGION),
            ("AWS_DEFAULT_REGION", LOCAL_REGION),
            ("AWS_ACCESS_KEY_ID", LOCAL_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", LOCAL_ACCESS_KEY),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint.as_str()),
            // GetSecretValue reaches the gateway's own Secrets Manager: the same SDK call as in Lambda.
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                secrets.endpoint.as_str(),
            ),
            // No instance metadata service exists here: do not let the SDK wait for one.
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = HostSettings {
            bin_dir: options.bin_dir.clone(),
            max_processes: options.max_processes_per_function,
            common_env,
        };
        let functions = api
            .functions
            .values()
            .map(|spec| {
                let mut spec = spec.clone();
                spec.environment.extend(options.extra_env.clone());
                spec.environment
                    .insert(CALLBACK_URL_VAR.to_owned(), callback_url.clone());
                (
                    spec.logical_id.clone(),
                    Arc::new(FunctionPool::new(spec, &settings)),
                )
            })
            .collect();

        let events = ApiContext {
            api_id: LOCAL_API_ID.to_owned(),
            stage: api.stage.name.clone(),
            domain_name: addr.to_string(),
            stage_variables: api.stage.variables.clone(),
        };
        let shared = Arc::new(Shared {
            api,
            events,
            local,
            connections: Arc::new(Connections::default()),
            functions,
            limits: Limits {
                idle_timeout: options.idle_timeout,
                max_duration: options.max_duration,
                connections_latency: options.connections_latency,
                upgrade_delay: options.upgrade_delay,
                max_in_flight: options.max_in_flight_per_connection.max(1),
            },
            local_port: addr.port(),
            web,
            shutting_down: AtomicBool::new(false),
            shutdown_begun: tokio::sync::Notify::new(),
        });

        let (stop_server, stopped) = oneshot::channel::<()>();
        let app = app(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            let result = axum::serve(
                // Small frames and responses must leave at once, not wait for Nagle.
                listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                app,
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
            if let Err(error) = result {
                warn!("the gateway's server stopped: {error}");
            }
        });
        info!(
            stage = %shared.api.stage.name,
            routes = shared.api.routes.len(),
            functions = shared.functions.len(),
            tables = shared.api.tables.len(),
            secrets = shared.api.secrets.len(),
            dynamodb = %dynamodb_endpoint,
            secrets_manager = %secrets.endpoint,
            "local gateway listening on ws://{addr}/{}", shared.api.stage.name
        );
        Ok(Self {
            shared,
            addr,
            stop_server: Some(stop_server),
            server: Some(server),
            database,
            dynamodb_endpoint,
            secrets,
        })
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stage served.
    pub fn stage(&self) -> &str {
        &self.shared.api.stage.name
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

    /// The DynamoDB endpoint the handlers use.
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

    /// The local Secrets Manager endpoint handlers get as `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub fn secrets_manager_endpoint(&self) -> &str {
        &self.secrets.endpoint
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
            .api
            .route("$connect")
            .is_some_and(|r| r.authorizer.is_some())
    }

    /// A token for `user` that the `$connect` authorizer accepts, when it verifies HS256
    /// tokens with a secret of the template (its environment holds the secret's ARN or name):
    /// signed with the local secret, with the claims of `mint-token`. `None` otherwise (no
    /// authorizer, or one that checks tokens of an identity provider).
    pub fn local_token(&self, user: &str) -> Option<String> {
        let authorizer = self.shared.api.route("$connect")?.authorizer.as_ref()?;
        let function = self.shared.api.functions.get(&authorizer.function)?;
        let secret = match function
            .environment
            .values()
            .find_map(|v| self.secrets.store.value(v))?
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
            .functions
            .get(logical_id)
            .map(|pool| pool.process_ids())
            .unwrap_or_default()
    }

    /// How many invocations the function `logical_id` has received so far.
    pub fn invocation_count(&self, logical_id: &str) -> Option<u64> {
        self.shared
            .functions
            .get(logical_id)
            .map(|pool| pool.invocation_count())
    }

    /// Closes every client (running `$disconnect`), then stops the server, the handler
    /// processes and DynamoDB Local.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        self.shared.connections.close_all(websocket::GOING_AWAY);
        if tokio::time::timeout(SHUTDOWN_GRACE, self.shared.connections.tasks_finished())
            .await
            .is_err()
        {
            warn!("some connections did not finish closing in {SHUTDOWN_GRACE:?}");
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
        for pool in self.shared.functions.values() {
            pool.shutdown().await;
        }
        self.secrets.stop();
        if let Some(database) = self.database.take() {
            database.stop().await;
        }
        info!("local gateway stopped");
    }
}

/// The HTTP routes: WebSocket upgrades at `/` and `/STAGE`, @connections under the stage, and
/// plain GETs of `/` and `/FILE` for the web client.
fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(websocket::upgrade_root))
        .route("/{stage}", get(websocket::upgrade_stage))
        .route(
            "/{stage}/@connections/{*id}",
            get(management::get_connection)
                .post(management::post_to_connection)
                .delete(management::delete_connection),
        )
        .with_state(shared)
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
