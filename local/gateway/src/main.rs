//! `local-gateway`: serves the stack's WebSocket API on 127.0.0.1 with the real handlers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use local_gateway::{DynamoDb, Gateway, Options};
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
    /// Milliseconds added to every @connections call, to study fan-out as against AWS
    #[arg(long, default_value_t = 0, value_name = "MS")]
    connections_latency_ms: u64,
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
        max_processes_per_function: usize::from(cli.max_processes_per_function),
        dynamodb: match cli.dynamodb_endpoint {
            Some(endpoint) => DynamoDb::External(endpoint),
            None => DynamoDb::Start {
                persist_dir: cli.persist_dir,
                jar_dir: None,
            },
        },
        extra_env: cli.extra_env.into_iter().collect(),
        ..Options::new(template)
    };
    let gateway = match Gateway::start(options).await {
        Ok(gateway) => gateway,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Local gateway ready. Connect with:\n  wscat -c {}",
        gateway.websocket_url()
    );
    println!(
        "@connections API: {}/@connections/{{id}}   (Ctrl-C stops everything)",
        gateway.callback_url()
    );
    if let Err(error) = shutdown_signal().await {
        eprintln!("error: cannot listen for signals: {error}");
    }
    gateway.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}
