//! `local-gateway`: serves the stack's WebSocket API on 127.0.0.1 with the real handlers.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use local_gateway::quotas::{AccountRate, Quotas};
use local_gateway::services::partitions::PartitionLimits;
use local_gateway::{DynamoDb, Gateway, Options, Reload, Watch, WatchOptions};
use tracing_subscriber::EnvFilter;

/// Runs the real handler binaries behind an API-Gateway-faithful WebSocket endpoint.
#[derive(Debug, Parser)]
#[command(name = "local-gateway", version)]
struct Cli {
    /// The synthesized template [default: cdk.out/Realtime-STAGE.template.json]
    #[arg(long)]
    template: Option<PathBuf>,
    /// The stage to serve (also the first URL path segment)
    #[arg(long, default_value = "dev")]
    stage: String,
    /// The port on 127.0.0.1 (0 picks a free one)
    #[arg(long, default_value_t = 3001)]
    port: u16,
    /// Where the handler binaries named in the template are
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Seconds without a client message before a connection closes (API Gateway: 600)
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    idle_timeout: u64,
    /// Seconds before any connection closes (API Gateway: 7200)
    #[arg(long, default_value_t = 7200, value_name = "SECONDS")]
    max_duration: u64,
    /// Milliseconds added to every @connections response, to study fan-out as against AWS
    /// (about 20 there); not a quota: --relax-quotas leaves it
    #[arg(
        long = "connections-api-latency-ms",
        alias = "connections-latency-ms",
        default_value_t = 0,
        value_name = "MS"
    )]
    connections_latency_ms: u64,
    /// Messages of one connection routed at once; its socket is not read meanwhile
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    max_in_flight_per_connection: u16,
    /// Milliseconds the upgrade is held after $connect accepts (posts to the connection get 410
    /// meanwhile), to widen the window in which API Gateway answers 410 for a new connection
    #[arg(long, default_value_t = 0, value_name = "MS")]
    upgrade_delay_ms: u64,
    /// Relax every API Gateway quota below (for load tests and benchmarks)
    #[arg(long)]
    relax_quotas: bool,
    /// New connections accepted per second, 429 past it (API Gateway: 500; 0: no limit)
    #[arg(long, default_value_t = 500, value_name = "N")]
    new_connections_per_second: u32,
    /// Do not apply the stage's route throttling settings from the template
    #[arg(long)]
    no_stage_throttling: bool,
    /// Longest upgrade URL in characters, 414 past it (API Gateway: 4096; 0: no limit)
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_url_length: usize,
    /// Largest authorizer result in bytes, 500 past it (API Gateway: 8192; 0: no limit)
    #[arg(long, default_value_t = 8192, value_name = "BYTES")]
    max_authorizer_result_bytes: usize,
    /// @connections calls per second for the whole gateway, 429 LimitExceededException past it
    /// (API Gateway's account throttle: 10000; 0: no limit) [default: 10000; given, it holds
    /// even with --relax-quotas]
    #[arg(long, value_name = "N")]
    connections_api_rate: Option<u32>,
    /// @connections calls at once before the rate applies (API Gateway: 5000) [default: 5000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    connections_api_burst: Option<u32>,
    /// Refuse a DynamoDB call past a partition key's throughput, as DynamoDB does
    /// (ThrottlingException); without it, a hot key is only warned about
    #[arg(long)]
    throttle_hot_partitions: bool,
    /// Write units per second one DynamoDB partition key takes (DynamoDB: 1000)
    #[arg(long, default_value_t = 1000, value_name = "WCU")]
    partition_wcu: u32,
    /// Read units per second one DynamoDB partition key takes (DynamoDB: 3000)
    #[arg(long, default_value_t = 3000, value_name = "RCU")]
    partition_rcu: u32,
    /// Keep DynamoDB Local's data in this folder between runs (default: in memory)
    #[arg(long, value_name = "DIR")]
    persist_dir: Option<PathBuf>,
    /// The most processes one function runs at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    max_processes_per_function: u16,
    /// Use a DynamoDB that already runs at this URL instead of starting DynamoDB Local
    #[arg(long, value_name = "URL")]
    dynamodb_endpoint: Option<String>,
    /// Give every function this variable on top of the template's (repeatable)
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    extra_env: Vec<(String, String)>,
    /// The local value of the template's Secrets Manager secrets (the HS256 key of the
    /// $connect authorizer); `make dev` creates it
    #[arg(long, value_name = "FILE", default_value = ".local/jwt-secret")]
    jwt_secret_file: PathBuf,
    /// Serve the web client from this folder at http://127.0.0.1:PORT/ [default: web, when it exists]
    #[arg(long, value_name = "DIR")]
    web_dir: Option<PathBuf>,
    /// The user of the ready-made token printed at start (when the authorizer takes local tokens)
    #[arg(long, value_name = "USER", default_value = "alice", value_parser = parse_user)]
    sample_user: String,
    /// Once ready, write {url, callbackUrl, servicesEndpoint, dynamodbEndpoint, stage, pid} as
    /// JSON to this file (written aside and renamed, so a reader never sees half of it): the
    /// ready signal for scripts and benchmarks
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Rebuild and swap changed handlers, re-synthesize and apply a changed stack, and tell
    /// open web pages of changed files, all under the open connections (`make dev` does)
    #[arg(long)]
    watch: bool,
    /// With --watch: the Rust sources, comma-separated (none: `--watch-rust` alone)
    #[arg(long, value_name = "PATHS", value_delimiter = ',', num_args = 0.., default_value = "Cargo.toml,Cargo.lock,lambdas,local")]
    watch_rust: Vec<PathBuf>,
    /// With --watch: the stack's sources, comma-separated (none: `--watch-stack` alone)
    #[arg(long, value_name = "PATHS", value_delimiter = ',', num_args = 0.., default_value = "lib,bin,cdk,cdk.json")]
    watch_stack: Vec<PathBuf>,
    /// With --watch: the shell command that builds the handlers
    #[arg(
        long,
        value_name = "COMMAND",
        default_value = "cargo build --workspace --bins"
    )]
    build_command: String,
    /// With --watch: the shell command that writes the template again [default: make
    /// --no-print-directory synth-dev STAGE=<stage>]
    #[arg(long, value_name = "COMMAND")]
    synth_command: Option<String>,
}

fn non_empty(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| !p.as_os_str().is_empty())
        .cloned()
        .collect()
}

/// How long the sources must stay quiet before a reload: one save, one reload.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

fn parse_user(text: &str) -> Result<String, String> {
    if local_gateway::tokens::valid_user(text) {
        Ok(text.to_owned())
    } else {
        Err("1 to 64 of letters, digits, _ - . @".to_owned())
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LOCAL_GATEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let connections_api = connections_api(&cli);
    let watch =
        cli.watch.then(|| WatchOptions {
            rust: non_empty(&cli.watch_rust),
            stack: non_empty(&cli.watch_stack),
            web: None,
            build: cli.build_command.clone(),
            synth: Some(cli.synth_command.clone().unwrap_or_else(|| {
                format!("make --no-print-directory synth-dev STAGE={}", cli.stage)
            })),
            debounce: WATCH_DEBOUNCE,
        });
    let template = cli
        .template
        .unwrap_or_else(|| PathBuf::from(format!("cdk.out/Realtime-{}.template.json", cli.stage)));
    let options = Options {
        stage: Some(cli.stage),
        port: cli.port,
        bin_dir: cli.bin_dir,
        idle_timeout: Duration::from_secs(cli.idle_timeout),
        max_duration: Duration::from_secs(cli.max_duration),
        connections_latency: Duration::from_millis(cli.connections_latency_ms),
        upgrade_delay: Duration::from_millis(cli.upgrade_delay_ms),
        max_in_flight_per_connection: usize::from(cli.max_in_flight_per_connection),
        max_processes_per_function: usize::from(cli.max_processes_per_function),
        dynamodb: match cli.dynamodb_endpoint {
            Some(endpoint) => DynamoDb::External(endpoint),
            None => DynamoDb::Start {
                persist_dir: cli.persist_dir,
                jar_dir: None,
            },
        },
        extra_env: cli.extra_env.into_iter().collect(),
        quotas: if cli.relax_quotas {
            Quotas {
                connections_api,
                ..Quotas::relaxed()
            }
        } else {
            Quotas {
                new_connections_per_second: NonZeroU32::new(cli.new_connections_per_second),
                stage_throttling: !cli.no_stage_throttling,
                max_url_length: (cli.max_url_length > 0).then_some(cli.max_url_length),
                max_authorizer_result_bytes: (cli.max_authorizer_result_bytes > 0)
                    .then_some(cli.max_authorizer_result_bytes),
                connections_api,
            }
        },
        partitions: PartitionLimits {
            write_units: cli.partition_wcu,
            read_units: cli.partition_rcu,
            throttle: cli.throttle_hot_partitions,
        },
        jwt_secret_file: cli.jwt_secret_file,
        web_dir: cli
            .web_dir
            .or_else(|| Some(PathBuf::from("web")).filter(|dir| dir.is_dir())),
        ..Options::new(template)
    };
    let watch = watch.map(|watch| WatchOptions {
        web: options.web_dir.clone(),
        ..watch
    });
    let gateway = match Gateway::start(options).await {
        Ok(gateway) => gateway,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    print_ready(&gateway, &cli.sample_user);
    if let Some(path) = &cli.ready_file {
        if let Err(error) = write_ready_file(&gateway, path) {
            eprintln!(
                "error: cannot write the ready file {}: {error}",
                path.display()
            );
            gateway.shutdown().await;
            return ExitCode::FAILURE;
        }
    }
    let mut watching = match watch.map(|options| gateway.watch(options)).transpose() {
        Ok(watching) => watching,
        Err(error) => {
            eprintln!("error: {error} (run without --watch, or `make dev WATCH=0`)");
            gateway.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    if watching.is_some() {
        println!("  Watching:          handler sources, the stack and web/: changes reload under the open connections");
    }
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            result = &mut signal => {
                if let Err(error) = result {
                    eprintln!("error: cannot listen for signals: {error}");
                }
                break;
            }
            Some(reload) = next_reload(&mut watching) => match reload {
                Reload::BuildFailed { .. } | Reload::StackFailed { .. } => eprintln!("{reload}"),
                _ => println!("{reload}"),
            },
        }
    }
    drop(watching);
    gateway.shutdown().await;
    ExitCode::SUCCESS
}

/// The next reload of the watch; never resolves without one (or once it has stopped).
async fn next_reload(watching: &mut Option<Watch>) -> Option<Reload> {
    if let Some(reload) = match watching {
        Some(watch) => watch.next().await,
        None => None,
    } {
        return Some(reload);
    }
    std::future::pending().await
}

/// The @connections account throttle the flags ask for: API Gateway's unless set; off with
/// --relax-quotas, unless a flag of its own sets it; a rate of 0 turns it off.
fn connections_api(cli: &Cli) -> Option<AccountRate> {
    let explicit = cli.connections_api_rate.is_some() || cli.connections_api_burst.is_some();
    if cli.relax_quotas && !explicit {
        return None;
    }
    let default = AccountRate::API_GATEWAY;
    let per_second = match cli.connections_api_rate {
        Some(rate) => NonZeroU32::new(rate)?,
        None => default.per_second,
    };
    let burst = cli
        .connections_api_burst
        .and_then(NonZeroU32::new)
        .unwrap_or(default.burst);
    Some(AccountRate { per_second, burst })
}

/// Tells how to connect: with a ready token when the authorizer takes local ones.
fn print_ready(gateway: &Gateway, user: &str) {
    let url = gateway.websocket_url();
    let web = gateway.web_url();
    let mut lines = vec![format!(
        "Local gateway ready: stage {} on {} (Ctrl-C stops everything).",
        gateway.stage(),
        gateway.local_addr()
    )];
    match gateway.local_token(user) {
        Some(token) => {
            lines.push(format!(
                "  Connect as {user}:  npx wscat -c \"{url}?token={token}\""
            ));
            if let Some(web) = &web {
                lines.push(format!("  Web client:        {web}?token={token}"));
            }
            lines.push(format!(
                "  More tokens:       make token USER=bob   (valid {} h, signed with the local secret)",
                local_gateway::tokens::TOKEN_TTL.as_secs() / 3600
            ));
        }
        None if gateway.requires_token() => {
            lines.push(format!(
                "  Connect:           npx wscat -c \"{url}?token=TOKEN\"   ($connect needs a token of the stage's identity provider)"
            ));
            if let Some(web) = &web {
                lines.push(format!("  Web client:        {web}?token=TOKEN"));
            }
        }
        None => {
            lines.push(format!("  Connect:           npx wscat -c \"{url}\""));
            if let Some(web) = &web {
                lines.push(format!("  Web client:        {web}"));
            }
        }
    }
    lines.push(format!(
        "  @connections API:  {}/@connections/{{id}}",
        gateway.callback_url()
    ));
    println!("{}", lines.join("\n"));
}

/// The ready file: what a script needs to reach the gateway, as one JSON object.
fn write_ready_file(gateway: &Gateway, path: &std::path::Path) -> std::io::Result<()> {
    let ready = serde_json::json!({
        "url": gateway.websocket_url(),
        "callbackUrl": gateway.callback_url(),
        "servicesEndpoint": gateway.secrets_manager_endpoint(),
        "dynamodbEndpoint": gateway.dynamodb_endpoint(),
        "stage": gateway.stage(),
        "pid": std::process::id(),
    });
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".{}.tmp", std::process::id()));
    let aside = PathBuf::from(aside);
    std::fs::write(&aside, format!("{ready}\n"))?;
    std::fs::rename(&aside, path)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}
