//! The inner loop of `make dev`, measured on the real tree: a gateway watching the workspace as
//! `make dev` does (debug handlers, `cargo build --workspace --bins`), clients connected, then
//! one line of a handler edited, several times. Each run is timed from the write of the file to
//! the answer of the first `ping` served after the swap (by a process of the new binary: the
//! pool keeps none of the old generation). Two kinds of edit: the `message` handler's own crate
//! (one crate compiled, one binary linked) and the shared domain crate `realtime-core` (every
//! handler relinked). The edit is a comment line the run adds and removes: the compiler and the
//! linker do the same work as for a changed line of code. The file is restored at the end, its
//! modification time included (the tree's other builds stay fresh), and a line left by an
//! interrupted run is removed at the start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use local_gateway::{Gateway, Reload, Watch, WatchOptions};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::Summary;

/// The handler's own crate: one crate compiled, one binary linked.
const HANDLER_FILE: &str = "lambdas/message/src/main.rs";
/// The domain crate every handler links.
const DOMAIN_FILE: &str = "lambdas/core/src/messaging.rs";
/// The line the runs add; anything carrying it is removed before and after.
const MARKER: &str = "// make bench (reload): an edit, removed when the run ends";
/// A build of the workspace in debug, when the domain crate changed, takes about a minute here.
const RELOAD_WAIT: Duration = Duration::from_secs(300);

/// What the phase needs.
pub struct Settings {
    /// The repository root (the workspace the gateway watches and builds).
    pub repo: PathBuf,
    /// The synthesized dev template.
    pub template: PathBuf,
    /// The run's DynamoDB Local.
    pub dynamodb_endpoint: String,
    /// Edits of the handler's crate.
    pub handler_runs: usize,
    /// Edits of the domain crate.
    pub domain_runs: usize,
    /// Client connections held across every swap.
    pub connections: usize,
}

/// One kind of edit, measured.
#[derive(Debug, Serialize)]
pub struct EditResult {
    /// The file edited, from the repository root.
    pub file: String,
    /// From the write to the first answer of the new binary, in ms.
    pub edit_to_served_ms: Summary,
    /// The build's share of it, in ms.
    pub build_ms: Summary,
    /// The functions each swap refreshed.
    pub functions: Vec<String>,
}

/// The phase's figures.
#[derive(Debug, Serialize)]
pub struct ReloadResult {
    /// An edit of the `message` handler's crate.
    pub handler: EditResult,
    /// An edit of the domain crate every handler links.
    pub domain: EditResult,
    /// Client connections held.
    pub connections: usize,
    /// Connections that were closed, or did not answer, after all the swaps (goal: 0).
    pub dropped: usize,
}

/// Runs the phase.
pub async fn run(settings: &Settings) -> Result<ReloadResult> {
    for file in [HANDLER_FILE, DOMAIN_FILE] {
        let file = settings.repo.join(file);
        restore(&file, &strip_marker(&std::fs::read_to_string(&file)?))?;
    }
    // Start from binaries that match the sources: a build now, before the clock runs.
    build(&settings.repo).await?;
    let gateway = start(settings).await?;
    let mut watch = gateway
        .watch(WatchOptions {
            rust: vec![
                settings.repo.join("Cargo.toml"),
                settings.repo.join("Cargo.lock"),
                settings.repo.join("lambdas"),
            ],
            stack: Vec::new(),
            web: None,
            build: BUILD.to_owned(),
            synth: None,
            debounce: Duration::from_millis(200),
        })
        .map_err(|e| anyhow!("watch the workspace: {e}"))?;
    let mut clients = Vec::new();
    let token = gateway
        .local_token("bench")
        .context("the stage's authorizer takes local tokens")?;
    for _ in 0..settings.connections {
        clients.push(Client::connect(&gateway, &token).await?);
    }
    for client in &mut clients {
        client.ping().await?;
    }
    let (repo, client) = (&settings.repo, &mut clients[0]);
    let handler = edits(
        &mut watch,
        client,
        repo,
        HANDLER_FILE,
        settings.handler_runs,
    )
    .await;
    let domain = match &handler {
        Ok(_) => edits(&mut watch, client, repo, DOMAIN_FILE, settings.domain_runs).await,
        Err(_) => Err(anyhow!("not run")),
    };
    let mut dropped = 0;
    for client in &mut clients {
        if client.ping().await.is_err() {
            dropped += 1;
        }
    }
    drop(watch);
    gateway.shutdown().await;
    Ok(ReloadResult {
        handler: handler?,
        domain: domain?,
        connections: settings.connections,
        dropped,
    })
}

/// The build `make dev` runs on a change.
const BUILD: &str = "cargo build --workspace --bins --quiet";

async fn build(repo: &Path) -> Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(BUILD)
        .current_dir(repo)
        .status()
        .await?;
    if !status.success() {
        bail!("`{BUILD}` failed ({status})");
    }
    Ok(())
}

async fn start(settings: &Settings) -> Result<Gateway> {
    let mut options = local_gateway::Options::new(settings.template.clone());
    options.stage = Some("dev".into());
    options.port = 0;
    options.bin_dir = settings.repo.join("target/debug");
    options.dynamodb = local_gateway::DynamoDb::External(settings.dynamodb_endpoint.clone());
    options.jwt_secret_file = settings.repo.join(crate::gateway::JWT_SECRET_FILE);
    Gateway::start(options)
        .await
        .map_err(|e| anyhow!("start the gateway: {e}"))
}

/// `runs` edits of `file`, each timed to the first answer of the new binary; the file is
/// restored (and that change built and swapped in) before returning.
async fn edits(
    watch: &mut Watch,
    client: &mut Client,
    repo: &Path,
    relative: &str,
    runs: usize,
) -> Result<EditResult> {
    let file = &repo.join(relative);
    let original = std::fs::read_to_string(file)?;
    let modified = std::fs::metadata(file)?.modified()?;
    let mut served = Vec::new();
    let mut builds = Vec::new();
    let mut functions = Vec::new();
    let outcome = async {
        for run in 0..runs {
            let edited = format!("{original}{MARKER} {run}\n");
            let written = Instant::now();
            std::fs::write(file, edited)?;
            let (build, swapped) = swapped(watch).await?;
            client.ping().await?;
            served.push(written.elapsed().as_secs_f64() * 1000.0);
            builds.push(build.as_secs_f64() * 1000.0);
            functions = swapped;
        }
        anyhow::Ok(())
    }
    .await;
    restore(file, &original)?;
    // Its time as well: to cargo the file is then as old as before, and the other builds of
    // the tree (release, arm64) stay fresh. Its own build finds nothing to do.
    std::fs::File::options()
        .write(true)
        .open(file)?
        .set_modified(modified)?;
    outcome?;
    settled(watch).await?;
    Ok(EditResult {
        file: relative.to_owned(),
        edit_to_served_ms: Summary::of(&served),
        build_ms: Summary::of(&builds),
        functions,
    })
}

/// Waits for the next swap of handlers: its build time and the functions swapped.
async fn swapped(watch: &mut Watch) -> Result<(Duration, Vec<String>)> {
    loop {
        match next_reload(watch).await? {
            Reload::Handlers {
                build, functions, ..
            } if !functions.is_empty() => return Ok((build, functions)),
            Reload::BuildFailed { output, .. } => bail!("the build failed:\n{output}"),
            // A save that changed no binary (an editor's second write): wait for the next.
            _ => {}
        }
    }
}

/// Waits for the build of the restored file to end (it finds nothing to do, or relinks).
async fn settled(watch: &mut Watch) -> Result<()> {
    loop {
        match next_reload(watch).await? {
            Reload::Handlers { .. } => return Ok(()),
            Reload::BuildFailed { output, .. } => bail!(
                "the restored tree does not build:
{output}"
            ),
            _ => {}
        }
    }
}

async fn next_reload(watch: &mut Watch) -> Result<Reload> {
    tokio::time::timeout(RELOAD_WAIT, watch.next())
        .await
        .map_err(|_| anyhow!("no reload within {RELOAD_WAIT:?}"))?
        .context("the watch stopped")
}

fn strip_marker(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with(MARKER))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn restore(file: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(file)? != text {
        std::fs::write(file, text).with_context(|| format!("restore {}", file.display()))?;
    }
    Ok(())
}

/// One client connection that pings.
struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Client {
    async fn connect(gateway: &Gateway, token: &str) -> Result<Self> {
        let url = format!("{}?token={token}", gateway.websocket_url());
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { ws })
    }

    /// A `ping`, answered by `pong` within 30 s.
    async fn ping(&mut self) -> Result<()> {
        self.ws.send(Message::text(r#"{"action":"ping"}"#)).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no pong within 30 s"))?
                .context("the connection closed")??;
            if let Message::Text(text) = frame {
                if text.contains("\"pong\"") {
                    return Ok(());
                }
            }
        }
    }
}
