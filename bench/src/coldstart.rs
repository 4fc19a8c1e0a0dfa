//! Benchmark 1, cold start: process spawn to the first completed invocation, through the
//! local gateway's Runtime API ([`RuntimeEndpoint`]), for the Rust `connect` handler and the Python
//! boto3 baseline under awslambdaric, both against the same DynamoDB Local. Also the peak
//! resident memory of each, and a second (warm) invocation of the same process.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use local_gateway::events::{self, ApiContext, ConnectionFacts};
use local_gateway::functions::RuntimeEndpoint;
use serde::Serialize;

use crate::stats::Summary;

/// How long one invocation may take before the run counts as failed.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which handler a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Runtime {
    /// `target/release/connect`.
    Rust,
    /// `python -m awslambdaric handler.connect` with boto3.
    Python,
}

impl Runtime {
    fn label(self) -> &'static str {
        match self {
            Runtime::Rust => "rust",
            Runtime::Python => "python",
        }
    }
}

/// Where the two handlers are.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The Rust `connect` release binary.
    pub rust_binary: PathBuf,
    /// The venv's python.
    pub python: PathBuf,
    /// The template's tables, made with the gateway's table builder.
    pub tables: Vec<local_gateway::template::TableSpec>,
    /// The template's connections table.
    pub connections_table: String,
    /// The template's audit table.
    pub audit_table: String,
    /// `bench/baselines/python` (holds `handler.py`).
    pub python_dir: PathBuf,
    /// DynamoDB Local.
    pub dynamodb_endpoint: String,
    /// Where the processes' output goes.
    pub log_dir: PathBuf,
}

/// One cold start.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Which handler.
    pub runtime: Runtime,
    /// Spawn to the first `GET /next` (init), ms.
    pub init_ms: f64,
    /// Spawn to the first response posted (cold start), ms.
    pub first_response_ms: f64,
    /// Event handed over to response of the second invocation (warm), ms.
    pub warm_ms: f64,
    /// VmHWM right after the first response, KiB.
    pub hwm_after_first_kib: u64,
    /// ru_maxrss from wait4 after both invocations, KiB.
    pub maxrss_kib: u64,
    /// The items the handler should have written are in DynamoDB.
    pub verified: bool,
}

/// Both series and their comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    /// Every measured run (warm-up runs excluded).
    pub runs: Vec<Run>,
    /// Rust: spawn to first response, ms.
    pub rust_first_response_ms: Summary,
    /// Python: spawn to first response, ms.
    pub python_first_response_ms: Summary,
    /// Rust: spawn to the first `GET next` (init), ms.
    pub rust_init_ms: Summary,
    /// Python: spawn to the first `GET next` (init), ms.
    pub python_init_ms: Summary,
    /// Rust: peak RSS after the first invocation, MiB.
    pub rust_max_rss_mib: Summary,
    /// Python: peak RSS after the first invocation, MiB.
    pub python_max_rss_mib: Summary,
    /// Rust warm invocation, ms.
    pub rust_warm_ms: Summary,
    /// Python warm invocation, ms.
    pub python_warm_ms: Summary,
    /// Python median / Rust median of the cold start.
    pub speedup_median: f64,
    /// Discarded warm-up runs per runtime (page cache, DynamoDB Local's JIT, .pyc files).
    pub warmup_runs: usize,
}

/// A `$connect` event as the local gateway builds it (the captured shape), for a client on
/// loopback.
pub fn connect_event(connection_id: &str, request_id: &str) -> Vec<u8> {
    const API_ID: &str = "abcdef1234";
    let api = ApiContext {
        api_id: API_ID.to_owned(),
        stage: "dev".to_owned(),
        domain_name: format!("{API_ID}.execute-api.us-east-1.amazonaws.com"),
        stage_variables: BTreeMap::new(),
    };
    let connection = ConnectionFacts {
        id: connection_id,
        connected_at_ms: events::now_ms(),
        source_ip: Ipv4Addr::LOCALHOST.into(),
        user_agent: Some("bench"),
        authorizer: None,
    };
    let trace = events::trace_id();
    let headers: Vec<(String, String)> = [
        ("Host", api.domain_name.as_str()),
        (
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        ),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("User-Agent", "bench"),
        ("X-Amzn-Trace-Id", trace.as_str()),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    events::connect(&api, &connection, request_id, &headers, &[])
}

/// The environment both handlers get: the same tables, DynamoDB Local, the Lambda variables.
fn environment(
    setup: &Setup,
    runtime_api: SocketAddr,
    runtime: Runtime,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("CONNECTIONS_TABLE", setup.connections_table.as_str()),
        ("AUDIT_TABLE", setup.audit_table.as_str()),
        ("AUDIT_RETENTION_DAYS", "7"),
        // The baseline writes the lobby membership under one key, as the Rust handler did
        // before sharding: the same items, so that the runtimes are compared on equal work.
        ("ROOM_SHARDS", "lobby=1"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench-connect"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench-connect"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("RUST_LOG", "warn"),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert(
        "AWS_ENDPOINT_URL_DYNAMODB".into(),
        setup.dynamodb_endpoint.clone(),
    );
    env.insert("AWS_LAMBDA_RUNTIME_API".into(), runtime_api.to_string());
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    match runtime {
        Runtime::Rust => {
            env.insert(
                "AWS_EXECUTION_ENV".into(),
                "AWS_Lambda_provided.al2023".into(),
            );
            env.insert("_HANDLER".into(), "bootstrap".into());
        }
        Runtime::Python => {
            env.insert("AWS_EXECUTION_ENV".into(), "AWS_Lambda_python3.11".into());
            env.insert("_HANDLER".into(), "handler.connect".into());
            env.insert(
                "LAMBDA_TASK_ROOT".into(),
                setup.python_dir.display().to_string(),
            );
            env.insert("PYTHONUNBUFFERED".into(), "1".into());
        }
    }
    env
}

fn command(setup: &Setup, runtime: Runtime, env: &BTreeMap<String, String>) -> Result<Command> {
    let mut command = match runtime {
        Runtime::Rust => Command::new(&setup.rust_binary),
        Runtime::Python => {
            let mut c = Command::new(&setup.python);
            c.args(["-m", "awslambdaric", "handler.connect"])
                .current_dir(&setup.python_dir);
            c
        }
    };
    let log = |name: &str| -> Result<File> {
        let path = setup.log_dir.join(name);
        File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))
    };
    let label = runtime.label();
    command
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log(&format!("coldstart-{label}.log"))?)
        .stderr(log(&format!("coldstart-{label}.log"))?);
    Ok(command)
}

/// Invokes the process with a `$connect` event for `connection_id`; fails on anything but
/// a 200 answer. Returns when the answer came.
async fn invoke(
    endpoint: &RuntimeEndpoint,
    runtime: Runtime,
    connection_id: &str,
) -> Result<Instant> {
    let event = connect_event(connection_id, &events::new_id());
    let body = endpoint
        .invoke(event, INVOKE_TIMEOUT)
        .await
        .with_context(|| format!("{runtime:?} handler"))?;
    let status = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("statusCode").and_then(serde_json::Value::as_u64));
    if status != Some(200) {
        bail!(
            "{runtime:?} handler answered {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(Instant::now())
}

/// One cold start and one warm invocation of a fresh process, on the gateway's Runtime API.
async fn run_once(setup: &Setup, runtime: Runtime, db: &aws_sdk_dynamodb::Client) -> Result<Run> {
    let arn = format!(
        "arn:aws:lambda:{}:{}:function:bench-connect",
        local_gateway::LOCAL_REGION,
        local_gateway::LOCAL_ACCOUNT_ID
    );
    let endpoint = RuntimeEndpoint::bind("bench-connect", &arn)
        .await
        .context("bind the runtime API")?;
    let env = environment(setup, endpoint.addr(), runtime);
    let mut command = command(setup, runtime, &env)?;
    let (first_id, second_id) = (events::new_id(), events::new_id());

    let spawned = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("start the {runtime:?} handler"))?;
    let pid = child.id();
    // From here on the process must be reaped whatever happens.
    let outcome = async {
        let first_at = invoke(&endpoint, runtime, &first_id).await?;
        let hwm = crate::sys::hwm_kib(pid).unwrap_or(0);
        let handed = Instant::now();
        let second_at = invoke(&endpoint, runtime, &second_id).await?;
        Ok::<_, anyhow::Error>((first_at, hwm, second_at - handed))
    }
    .await;
    crate::sys::signal(pid, libc::SIGKILL);
    let maxrss = tokio::task::spawn_blocking(move || crate::sys::reap_with_rusage(pid))
        .await
        .context("reaper task")??;
    drop(child);
    let (first_at, hwm, warm) = outcome?;

    let mut verified = true;
    for id in [&first_id, &second_id] {
        let conn = format!("CONN#{id}");
        let (connections, audit) = (&setup.connections_table, &setup.audit_table);
        verified &= crate::ddb::item_exists(db, connections, &conn, "META").await?;
        verified &= crate::ddb::item_exists(db, connections, "ROOM#lobby", &conn).await?;
        verified &= crate::ddb::item_exists(db, connections, &conn, "ROOM#lobby").await?;
        verified &= crate::ddb::count_partition(db, audit, &conn).await? == 1;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Run {
        runtime,
        init_ms: endpoint.first_next().map_or(0.0, |at| ms(at - spawned)),
        first_response_ms: ms(first_at - spawned),
        warm_ms: ms(warm),
        hwm_after_first_kib: hwm,
        maxrss_kib: maxrss,
        verified,
    })
}

/// Runs `warmup` discarded and then `runs` measured cold starts of each handler, alternating
/// which goes first so that neither always follows the other.
pub async fn measure(setup: &Setup, runs: usize, warmup: usize) -> Result<ColdStart> {
    let db = crate::ddb::client(&setup.dynamodb_endpoint).await;
    local_gateway::tables::create_all(&db, &setup.tables)
        .await
        .context("create the template's tables")?;
    let mut measured = Vec::new();
    for round in 0..warmup + runs {
        let order = if round % 2 == 0 {
            [Runtime::Rust, Runtime::Python]
        } else {
            [Runtime::Python, Runtime::Rust]
        };
        for runtime in order {
            let run = run_once(setup, runtime, &db).await?;
            if !run.verified {
                bail!("{runtime:?} handler answered 200 but its DynamoDB items are not all there");
            }
            eprintln!(
                "bench: cold start {:>6} {}: first response {:7.1} ms, init {:7.1} ms, warm {:6.1} ms, peak RSS {:6.1} MiB{}",
                runtime.label(),
                round,
                run.first_response_ms,
                run.init_ms,
                run.warm_ms,
                run.hwm_after_first_kib as f64 / 1024.0,
                if round < warmup { " (warm-up, discarded)" } else { "" }
            );
            if round >= warmup {
                measured.push(run);
            }
        }
    }
    let series = |runtime: Runtime, f: fn(&Run) -> f64| {
        Summary::of(
            &measured
                .iter()
                .filter(|r| r.runtime == runtime)
                .map(f)
                .collect::<Vec<_>>(),
        )
    };
    let rust = series(Runtime::Rust, |r| r.first_response_ms);
    let python = series(Runtime::Python, |r| r.first_response_ms);
    Ok(ColdStart {
        speedup_median: python.median / rust.median.max(f64::EPSILON),
        rust_first_response_ms: rust,
        python_first_response_ms: python,
        rust_init_ms: series(Runtime::Rust, |r| r.init_ms),
        python_init_ms: series(Runtime::Python, |r| r.init_ms),
        rust_max_rss_mib: series(Runtime::Rust, |r| r.hwm_after_first_kib as f64 / 1024.0),
        python_max_rss_mib: series(Runtime::Python, |r| r.hwm_after_first_kib as f64 / 1024.0),
        rust_warm_ms: series(Runtime::Rust, |r| r.warm_ms),
        python_warm_ms: series(Runtime::Python, |r| r.warm_ms),
        runs: measured,
        warmup_runs: warmup,
    })
}
