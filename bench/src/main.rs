//! `make bench`: measures the system side by side with what users run instead, and writes
//! `bench/results.json` and `bench/RESULTS.md`. Every figure is a median (with min and max)
//! of repeated runs or a ratio measured in the same run as its comparison: never a timed
//! pass/fail test. Everything listens on 127.0.0.1; every load is bounded in count and time.

mod broadcast;
mod capacity;
mod clients;
mod coldstart;
mod cost;
mod ddb;
mod fanout;
mod footprint;
mod gateway;
mod machine;
mod overhead;
mod reload;
mod report;
mod room;
mod stats;
mod storm;
mod swarm;
mod sys;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::clients::Target;
use crate::gateway::{Gateway, Launch};

/// The benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every benchmark and writes results.json and RESULTS.md.
    Run(Box<RunArgs>),
    /// A raw WebSocket echo server on 127.0.0.1 (the floor of the overhead benchmark); prints its port.
    EchoServer,
    /// Holds a share of a room's clients for `run` (JSON lines on stdin and stdout).
    Clients(swarm::ChildArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The repository root (for git, `make token`, node_modules).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Where results.json and RESULTS.md go (logs go to OUT/logs).
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// The release binaries (handlers and local-gateway).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The synthesized template.
    #[arg(long, default_value = "cdk.out/Realtime-dev.template.json")]
    template: PathBuf,
    /// The stage the template serves.
    #[arg(long, default_value = "dev")]
    stage: String,
    /// The Python of the baseline's venv (awslambdaric and boto3 installed).
    #[arg(long, default_value = "bench/.venv/bin/python")]
    python: PathBuf,
    /// Small sizes, for trying the harness out (the results say so).
    #[arg(long)]
    quick: bool,
    /// The gateway's processes per function.
    #[arg(long, default_value_t = 4)]
    max_processes: u16,
    /// Run only these phases (comma-separated: footprint, cold-start, broadcast, overhead,
    /// fan-out, capacity, room, storm, reload), e.g. to study one; the others are marked skipped.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// When `make bench` started (epoch seconds), to report its whole wall time.
    #[arg(long)]
    make_started: Option<i64>,
    /// How long `make bench`'s release builds took, s.
    #[arg(long)]
    build_seconds: Option<u64>,
    /// Clients of the throughput run (default 100; 20 with --quick).
    #[arg(long)]
    load_clients: Option<usize>,
}

/// How much of everything.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Small sizes (not a real run).
    pub quick: bool,
    /// Cold starts per runtime (measured).
    pub cold_runs: usize,
    /// Cold starts per runtime discarded first.
    pub cold_warmup: usize,
    /// Fan-out room sizes.
    pub fanout_sizes: Vec<usize>,
    /// Injected @connections latency, ms.
    pub fanout_latency_ms: u64,
    /// Sequential round trips of the overhead benchmark.
    pub round_trips: usize,
    /// Clients of the throughput run.
    pub load_clients: usize,
    /// Measured window of the throughput run, s.
    pub load_window_s: u64,
    /// Idle connections of the capacity benchmark.
    pub capacity_connections: usize,
    /// Broadcast clients.
    pub broadcast_clients: usize,
    /// Broadcast rounds.
    pub broadcast_rounds: usize,
    /// The gateway's processes per function.
    pub max_processes_per_function: u16,
    /// The room of 15,000.
    pub room: room::Plan,
    /// The connect storm.
    pub storm: storm::Plan,
    /// Edits of the `message` handler's crate under a watching gateway.
    pub reload_handler_runs: usize,
    /// Edits of the domain crate (every handler relinked).
    pub reload_domain_runs: usize,
    /// Client connections held across the swaps.
    pub reload_connections: usize,
    #[serde(skip)]
    fanout_steps: Vec<fanout::Step>,
}

impl Plan {
    fn new(quick: bool, max_processes: u16) -> Self {
        let step = |n, handler_rounds, library_rounds, sequential_rounds| fanout::Step {
            n,
            handler_rounds,
            library_rounds,
            sequential_rounds,
        };
        let fanout_steps = if quick {
            vec![step(1, 2, 0, 0), step(100, 2, 1, 1), step(300, 2, 1, 0)]
        } else {
            vec![
                step(1, 5, 0, 0),
                step(100, 5, 3, 3),
                step(1000, 5, 3, 1),
                step(5000, 3, 1, 0),
            ]
        };
        Self {
            quick,
            cold_runs: if quick { 3 } else { 10 },
            cold_warmup: 1,
            fanout_sizes: fanout_steps.iter().map(|s| s.n).collect(),
            fanout_latency_ms: 20,
            round_trips: if quick { 300 } else { 2000 },
            load_clients: if quick { 20 } else { 100 },
            load_window_s: if quick { 2 } else { 5 },
            capacity_connections: if quick { 1000 } else { 10_000 },
            broadcast_clients: if quick { 100 } else { 500 },
            broadcast_rounds: if quick { 3 } else { 7 },
            max_processes_per_function: max_processes,
            room: room::Plan {
                members: if quick { 1500 } else { 15_000 },
                client_processes: 3,
                // 10,000/s and a burst of 5,000 on AWS; scaled to what 2 cores post with room
                // to spare, so that the throttle, not the CPU, bounds the fan-out, and with a
                // burst small beside N so that it does not hide the rate.
                throttle_per_second: if quick { 500 } else { 2000 },
                throttle_burst: if quick { 50 } else { 300 },
                latency_ms: 20,
                // Two cores: four fan-out processes keep the posts in flight without starving
                // the gateway and the clients.
                queued_max_concurrency: 4,
            },
            storm: storm::Plan {
                rate_per_s: 500,
                seconds: if quick { 3 } else { 10 },
            },
            reload_handler_runs: if quick { 1 } else { 5 },
            reload_domain_runs: if quick { 1 } else { 3 },
            reload_connections: if quick { 10 } else { 50 },
            fanout_steps,
        }
    }
}

/// Everything a run measured; a phase that failed holds its error instead.
#[derive(Debug, Serialize)]
pub struct Results {
    /// Machine, date, commit.
    pub machine: machine::Machine,
    /// Sizes used.
    pub plan: Plan,
    /// Wall time of the harness, s (builds excluded).
    pub harness_seconds: f64,
    /// Wall time of `make bench` up to the writing of the results (builds included), s.
    pub make_seconds: Option<f64>,
    /// Of which the release builds, s.
    pub build_seconds: Option<u64>,
    /// Benchmark 6.
    pub footprint: Phase<footprint::Footprint>,
    /// Benchmark 1.
    pub cold_start: Phase<coldstart::ColdStart>,
    /// Benchmark 5.
    pub broadcast: Phase<broadcast::Broadcast>,
    /// Benchmark 3.
    pub overhead: Phase<overhead::Overhead>,
    /// Benchmark 2.
    pub fanout: Phase<fanout::Fanout>,
    /// Benchmark 4.
    pub capacity: Phase<capacity::Capacity>,
    /// Benchmark 7.
    pub cost: Phase<cost::Cost>,
    /// Benchmark 8: a room of 15,000, both fan-out tiers.
    pub room: Phase<room::Room>,
    /// Benchmark 9: the connect storm, sharded and unsharded.
    pub storm: Phase<storm::Storm>,
    /// Benchmark 10: `make dev`'s reload, edit to served.
    pub reload: Phase<reload::ReloadResult>,
    /// Each goal of the issue: met, or by how much missed and why.
    pub goals: Vec<report::Goal>,
}

/// A phase's result or why it has none.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase<T> {
    /// Measured.
    Ok(T),
    /// Failed with this error.
    Failed(String),
    /// Not run (`--only`).
    Skipped,
}

impl<T> Phase<T> {
    /// The result, if measured.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Phase::Ok(value) => Some(value),
            Phase::Failed(_) | Phase::Skipped => None,
        }
    }

    fn from_result(result: Result<T>, name: &str) -> Self {
        match result {
            Ok(value) => Phase::Ok(value),
            Err(error) => {
                let text = format!("{error:#}");
                eprintln!("bench: {name} FAILED: {text}");
                Phase::Failed(text)
            }
        }
    }
}

/// Whether `--only` (if given) names this phase (`overhead` names `gateway overhead`).
fn wanted(name: &str) -> bool {
    let name = name.replace(' ', "-");
    ONLY.get()
        .is_none_or(|only| only.is_empty() || only.iter().any(|o| name.contains(o.as_str())))
}

async fn phase<T>(name: &str, work: impl Future<Output = Result<T>>) -> Phase<T> {
    if !wanted(name) {
        return Phase::Skipped;
    }
    eprintln!("bench: ---- {name} ----");
    let started = Instant::now();
    let result = Phase::from_result(work.await, name);
    eprintln!(
        "bench: {name} took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// The phases `--only` asks for (all when empty), set once at the start of a run.
static ONLY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::EchoServer => overhead::echo_server().await.map(|()| true),
            Command::Clients(args) => swarm::child(args).await.map(|()| true),
            Command::Run(args) => run(*args).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; `Ok(false)` when a phase failed (the files are still written).
async fn run(args: RunArgs) -> Result<bool> {
    let started = Instant::now();
    let repo = std::fs::canonicalize(&args.repo).context("the repository root")?;
    let abs = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            repo.join(p)
        }
    };
    let out = abs(&args.out);
    let bin_dir = abs(&args.bin_dir);
    let template = abs(&args.template);
    let python = abs(&args.python);
    let log_dir = out.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("create {}", log_dir.display()))?;
    let nofile = sys::raise_nofile()?;
    let _ = ONLY.set(args.only.clone());
    let mut plan = Plan::new(args.quick, args.max_processes);
    if let Some(clients) = args.load_clients {
        plan.load_clients = clients;
    }
    if nofile < plan.capacity_connections as u64 + 1000 {
        eprintln!(
            "bench: warning: the open-file limit is {nofile}: {} connections may not fit",
            plan.capacity_connections
        );
    }
    let machine = machine::Machine::describe(&repo, &python);
    eprintln!(
        "bench: {} ({} cores), commit {}, {}",
        machine.cpu,
        machine.cores,
        machine.commit,
        if plan.quick {
            "QUICK sizes"
        } else {
            "full sizes"
        }
    );
    let facts = gateway::read_template(&template, &args.stage)?;

    let footprint = phase("footprint", async {
        footprint::measure(&bin_dir, &repo, &machine.commit)
    })
    .await;

    // One DynamoDB Local for every phase; tables are dropped between phases.
    // DynamoDB Local's jar and the gateway's defaults (.local/jwt-secret, web/) are found from here.
    std::env::set_current_dir(&repo).context("enter the repository root")?;
    let dynamodb = dynamodb_local::DynamoDbLocal::start(dynamodb_local::Options::default())
        .await
        .context("start DynamoDB Local")?;
    let endpoint = dynamodb.endpoint();
    let db = ddb::client(&endpoint).await;

    let cold_start = phase(
        "cold start",
        coldstart::measure(
            &coldstart::Setup {
                rust_binary: bin_dir.join("connect"),
                python: python.clone(),
                tables: facts.tables.clone(),
                connections_table: facts.connections_table.clone(),
                audit_table: facts.audit_table.clone(),
                python_dir: repo.join("bench/baselines/python"),
                dynamodb_endpoint: endpoint.clone(),
                log_dir: log_dir.clone(),
            },
            plan.cold_runs,
            plan.cold_warmup,
        ),
    )
    .await;

    let launch = Launch {
        binary: bin_dir.join("local-gateway"),
        template: template.clone(),
        stage: args.stage.clone(),
        bin_dir: bin_dir.clone(),
        dynamodb_endpoint: endpoint.clone(),
        max_processes: args.max_processes,
        log_dir: log_dir.clone(),
    };

    // Gateway without latency: broadcast, then overhead.
    let (broadcast, overhead) = if !wanted("local broadcast") && !wanted("gateway overhead") {
        (Phase::Skipped, Phase::Skipped)
    } else {
        let both = on_gateway(&db, &launch, &facts, 0, "plain", async |gateway, target| {
            let (table, clients) = (&facts.connections_table, plan.broadcast_clients);
            let broadcast = broadcast::measure(target, &db, table, clients, plan.broadcast_rounds);
            let broadcast = phase("local broadcast", broadcast).await;
            let overhead = overhead::measure(target, gateway.pid(), &plan);
            Ok((broadcast, phase("gateway overhead", overhead).await))
        });
        match both.await {
            Ok(both) => both,
            Err(error) => (
                Phase::from_result(Err(anyhow::anyhow!("{error:#}")), "local broadcast"),
                Phase::from_result(Err(error), "gateway overhead"),
            ),
        }
    };
    // Gateway with the @connections latency: fan-out.
    let latency = plan.fanout_latency_ms;
    let fanout = on_gateway(
        &db,
        &launch,
        &facts,
        latency,
        "fanout",
        async |gateway, target| {
            let steps = &plan.fanout_steps;
            fanout::measure(gateway, target, &facts, &endpoint, latency, steps).await
        },
    );
    let fanout = phase("fan-out", fanout).await;
    // A fresh gateway for capacity, so its memory baseline is its own; its clients close
    // after it stopped (10,000 `$disconnect`s are not measured).
    let capacity = phase("capacity", async {
        let (n, table) = (plan.capacity_connections, &facts.connections_table);
        let (mut capacity, held) = on_gateway(
            &db,
            &launch,
            &facts,
            0,
            "capacity",
            async |gateway, target| capacity::measure(gateway, target, &db, table, n, 64).await,
        )
        .await?;
        drop(held);
        match capacity::floor(n, 64).await {
            Ok(each) => capacity.raw_echo_bytes_per_connection = Some(each),
            Err(error) => eprintln!("bench: capacity floor failed: {error:#}"),
        }
        Ok(capacity)
    })
    .await;
    // The room and the storm run the gateway in this process, after the phases that measure
    // a gateway process of its own.
    let room = phase("room", room::measure(&launch, &facts, &db, &plan.room)).await;
    let storm = phase("storm", storm::measure(&launch, &facts, &db, &plan.storm)).await;
    let reload_settings = reload::Settings {
        repo: std::env::current_dir()?,
        template: template.clone(),
        dynamodb_endpoint: endpoint.clone(),
        handler_runs: plan.reload_handler_runs,
        domain_runs: plan.reload_domain_runs,
        connections: plan.reload_connections,
    };
    let reload = phase("reload", reload::run(&reload_settings)).await;
    dynamodb.stop().await;

    let cost = match fanout {
        Phase::Skipped => Phase::Skipped,
        _ => Phase::from_result(cost::measure(&facts, fanout.ok()), "cost"),
    };
    let mut results = Results {
        machine,
        plan,
        harness_seconds: 0.0,
        make_seconds: None,
        build_seconds: args.build_seconds,
        footprint,
        cold_start,
        broadcast,
        overhead,
        fanout,
        capacity,
        cost,
        room,
        storm,
        reload,
        goals: Vec::new(),
    };
    results.harness_seconds = started.elapsed().as_secs_f64();
    results.make_seconds = args
        .make_started
        .map(|at| (chrono::Utc::now().timestamp_millis() as f64 / 1000.0 - at as f64).max(0.0));
    // The goals and the page read the results as results.json holds them.
    results.goals = report::goals(&serde_json::to_value(&results)?)?;
    let value = serde_json::to_value(&results).context("serialize the results")?;
    let json_path = out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&value)? + "\n")
        .with_context(|| format!("write {}", json_path.display()))?;
    let md_path = out.join("RESULTS.md");
    std::fs::write(&md_path, report::markdown(&value)?)
        .with_context(|| format!("write {}", md_path.display()))?;
    eprintln!(
        "bench: wrote {} and {} in {:.0} s",
        json_path.display(),
        md_path.display(),
        results.harness_seconds
    );
    let failed = value
        .as_object()
        .is_some_and(|phases| phases.values().any(|p| p.get("failed").is_some()));
    Ok(!failed)
}

/// Drops every table (the last phase's state), starts a gateway process, which creates them
/// anew, runs `work` on it and stops it. The phases here measure the message handler's own
/// fan-out: the queued tier is the room phase's subject, so the functions get a threshold
/// above every room.
async fn on_gateway<T>(
    db: &aws_sdk_dynamodb::Client,
    launch: &Launch,
    facts: &gateway::TemplateFacts,
    latency_ms: u64,
    name: &str,
    work: impl AsyncFnOnce(&Gateway, &Target) -> Result<T>,
) -> Result<T> {
    ddb::drop_all_tables(db).await?;
    let env = [("QUEUED_FANOUT_ABOVE", "10000000")];
    let gateway = Gateway::start(launch, latency_ms, &env, name).await?;
    let result = match gateway::target(gateway.ws_url.clone(), facts) {
        Ok(target) => work(&gateway, &target).await,
        Err(error) => Err(error),
    };
    gateway.stop().await;
    result
}
