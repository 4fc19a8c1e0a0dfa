//! The local gateway as the benchmarks run it: as a separate process (the release build, as a
//! user runs it, ready when it writes its `--ready-file`), or in this process through the
//! `local-gateway` library where a phase reads the gateway's own counters (hot partitions).
//! What the harness knows of the template comes from the gateway's template reader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use local_gateway::quotas::Quotas;
use local_gateway::template::{ApiModel, IdentitySource, LocalContext, Template};
use serde::Deserialize;
use tokio::process::{Child, Command};

use crate::clients::Target;

/// How long the gateway may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the local token key lives (`make dev` and `make bench` create it).
pub const JWT_SECRET_FILE: &str = ".local/jwt-secret";

/// What a gateway run needs.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `target/release/local-gateway`.
    pub binary: PathBuf,
    /// The synthesized template.
    pub template: PathBuf,
    /// The stage to serve.
    pub stage: String,
    /// Where the handler binaries are (release).
    pub bin_dir: PathBuf,
    /// The DynamoDB Local every phase shares.
    pub dynamodb_endpoint: String,
    /// Processes per function (the gateway's `--max-processes-per-function`).
    pub max_processes: u16,
    /// Where the gateway's log goes.
    pub log_dir: PathBuf,
}

/// What the gateway writes to its `--ready-file`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ready {
    url: String,
    callback_url: String,
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    pid: u32,
    /// `ws://127.0.0.1:PORT/STAGE`.
    pub ws_url: String,
    /// `http://127.0.0.1:PORT/STAGE`, the @connections base.
    pub callback_url: String,
}

impl Gateway {
    /// Starts the gateway with `latency_ms` injected into every @connections call and `env`
    /// given to every function.
    pub async fn start(
        launch: &Launch,
        latency_ms: u64,
        env: &[(&str, &str)],
        name: &str,
    ) -> Result<Self> {
        let log_path = launch.log_dir.join(format!("gateway-{name}.log"));
        let ready_path = launch.log_dir.join(format!("gateway-{name}.ready.json"));
        let _ = std::fs::remove_file(&ready_path);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut command = Command::new(&launch.binary);
        command
            .arg("--template")
            .arg(&launch.template)
            .args(["--stage", &launch.stage, "--port", "0"])
            // The benchmarks measure the gateway and the handlers, not API Gateway's quotas
            // (the report says so).
            .arg("--relax-quotas")
            .arg("--bin-dir")
            .arg(&launch.bin_dir)
            .arg("--ready-file")
            .arg(&ready_path)
            .args([
                "--connections-api-latency-ms",
                &latency_ms.to_string(),
                "--dynamodb-endpoint",
                &launch.dynamodb_endpoint,
                "--max-processes-per-function",
                &launch.max_processes.to_string(),
            ]);
        for (key, value) in env {
            command.arg("--env").arg(format!("{key}={value}"));
        }
        let mut child = command
            // Handler and gateway logs at warn: Lambda ships logs out of process, and a log
            // line per event through the gateway's pipes would be measured as gateway work.
            .env("LOCAL_GATEWAY_LOG", "warn")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", launch.binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the gateway exited at once"))?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let ready = loop {
            // Written aside and renamed by the gateway: a file that parses is whole.
            if let Some(ready) = std::fs::read(&ready_path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Ready>(&bytes).ok())
            {
                break ready;
            }
            let exited = child.try_wait().ok().flatten().is_some();
            if exited || tokio::time::Instant::now() >= deadline {
                let _ = child.kill().await;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                bail!(
                    "the gateway did not become ready ({}); its log {}:\n{}",
                    if exited {
                        "it exited".to_owned()
                    } else {
                        format!("no ready file within {READY_TIMEOUT:?}")
                    },
                    log_path.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Self {
            child,
            pid,
            ws_url: ready.url,
            callback_url: ready.callback_url,
        })
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The gateway's resident memory now, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        crate::sys::rss_kib(self.pid)
            .ok_or_else(|| anyhow!("cannot read /proc/{}/status", self.pid))
    }

    /// SIGTERM (the gateway closes clients and runs `$disconnect` for a few seconds), then
    /// SIGKILL if it lingers. The handler processes die with it (PR_SET_PDEATHSIG).
    pub async fn stop(mut self) {
        crate::sys::terminate(&mut self.child, Duration::from_secs(20)).await;
    }
}

/// How an in-process gateway runs.
#[derive(Debug, Clone)]
pub struct InProcess {
    /// The template (maybe a bench-made variant of the synthesized one).
    pub template: PathBuf,
    /// @connections latency.
    pub latency: Duration,
    /// The quotas enforced.
    pub quotas: Quotas,
    /// Variables given to every function on top of the template's.
    pub env: BTreeMap<String, String>,
}

/// Starts a gateway inside this process, sharing the run's DynamoDB Local.
pub async fn in_process(launch: &Launch, run: InProcess) -> Result<local_gateway::Gateway> {
    let mut options = local_gateway::Options::new(run.template);
    options.stage = Some(launch.stage.clone());
    options.port = 0;
    options.bin_dir = launch.bin_dir.clone();
    options.connections_latency = run.latency;
    options.max_processes_per_function = usize::from(launch.max_processes);
    options.dynamodb = local_gateway::DynamoDb::External(launch.dynamodb_endpoint.clone());
    options.quotas = run.quotas;
    options.extra_env = run.env;
    options.jwt_secret_file = PathBuf::from(JWT_SECRET_FILE);
    local_gateway::Gateway::start(options)
        .await
        .map_err(|e| anyhow!("start the in-process gateway: {e}"))
}

/// What the harness reads from the template, through the gateway's reader.
#[derive(Debug, Clone)]
pub struct TemplateFacts {
    /// The connections table's name.
    pub connections_table: String,
    /// The audit table's name.
    pub audit_table: String,
    /// Every table of the template.
    pub tables: Vec<local_gateway::template::TableSpec>,
    /// The message function's memory (MB).
    pub message_memory_mb: u64,
    /// The message function's architecture.
    pub message_architecture: String,
    /// `FANOUT_CONCURRENCY` of the message function.
    pub fanout_concurrency: usize,
    /// The `$connect` authorizer's identity sources, and its function's issuer and audience.
    authorizer: Option<(Vec<IdentitySource>, Option<String>, Option<String>)>,
}

/// Reads the facts of `stage` from the template at `path`.
pub fn read_template(path: &Path, stage: &str) -> Result<TemplateFacts> {
    let template = Template::load(path)?;
    // Placeholders: the harness reads names and settings, not endpoints.
    let local = LocalContext {
        region: local_gateway::LOCAL_REGION.to_owned(),
        account_id: local_gateway::LOCAL_ACCOUNT_ID.to_owned(),
        api_id: local_gateway::LOCAL_API_ID.to_owned(),
        api_endpoint: "ws://127.0.0.1:1".to_owned(),
        services_endpoint: "http://127.0.0.1:1".to_owned(),
    };
    let api: ApiModel = template.api(stage, &local)?;
    let message = api
        .functions
        .values()
        .find(|f| f.binary == "message")
        .ok_or_else(|| anyhow!("no function with Metadata local:binary = message"))?;
    let env = |name: &str| message.environment.get(name);
    let connections_table = env("CONNECTIONS_TABLE")
        .ok_or_else(|| anyhow!("message function: no CONNECTIONS_TABLE"))?
        .clone();
    let audit_table = env("AUDIT_TABLE")
        .ok_or_else(|| anyhow!("message function: no AUDIT_TABLE"))?
        .clone();
    let authorizer = api
        .route("$connect")
        .and_then(|r| r.authorizer.as_ref())
        .map(|a| {
            let function = api.functions.get(&a.function);
            let var = |name: &str| function.and_then(|f| f.environment.get(name)).cloned();
            (
                a.identity_sources.clone(),
                var("JWT_ISSUER"),
                var("JWT_AUDIENCE"),
            )
        });
    Ok(TemplateFacts {
        connections_table,
        audit_table,
        tables: api.tables.clone(),
        message_memory_mb: message.memory_mb,
        // The reader keeps no architecture: the stack builds arm64 (cdk.json), say so.
        message_architecture: architecture(path, &message.logical_id),
        fanout_concurrency: env("FANOUT_CONCURRENCY")
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        authorizer,
    })
}

/// `Architectures[0]` of a function (the gateway runs what this machine builds and ignores it).
fn architecture(path: &Path, logical_id: &str) -> String {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|t| {
            t.pointer(&format!(
                "/Resources/{logical_id}/Properties/Architectures/0"
            ))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
        })
        .unwrap_or_else(|| "x86_64".to_owned())
}

/// Clients of the gateway at `url`, with credentials for each identity source of the
/// `$connect` authorizer (none without one): a token for `bench` signed with the local key, as
/// `mint-token` signs it.
pub fn target(url: String, facts: &TemplateFacts) -> Result<Target> {
    let mut target = Target {
        url,
        ..Target::default()
    };
    let Some((sources, issuer, audience)) = &facts.authorizer else {
        return Ok(target);
    };
    let secret = std::fs::read_to_string(JWT_SECRET_FILE)
        .with_context(|| format!("read {JWT_SECRET_FILE} (`make bench` creates it)"))?;
    let token = realtime_auth::local::mint(
        secret.trim().as_bytes(),
        "bench",
        realtime_auth::local::DEFAULT_TTL_SECS,
        issuer.as_deref(),
        audience.as_deref(),
    )
    .context("sign a local token")?;
    for source in sources {
        match source {
            IdentitySource::QueryString(name) => target.query.push((name.clone(), token.clone())),
            IdentitySource::Header(name) => target
                .headers
                .push((name.clone(), format!("Bearer {token}"))),
            IdentitySource::StageVariable(_) | IdentitySource::Context(_) => {}
        }
    }
    Ok(target)
}
