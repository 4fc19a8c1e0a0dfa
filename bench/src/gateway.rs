//! The local gateway as a separate process (the release build, as a user runs it), and what
//! the harness reads from the synthesized template: table names, memory, the authorizer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the gateway may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

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

/// A running gateway process.
pub struct Gateway {
    child: Child,
    pid: u32,
    /// `ws://127.0.0.1:PORT/STAGE`.
    pub ws_url: String,
    /// `http://127.0.0.1:PORT/STAGE`, the @connections base.
    pub callback_url: String,
    /// The token the gateway printed for its sample user, if it takes local tokens.
    pub printed_token: Option<String>,
}

impl Gateway {
    /// Starts the gateway with `latency_ms` injected into every @connections call.
    pub async fn start(launch: &Launch, latency_ms: u64, name: &str) -> Result<Self> {
        let log_path = launch.log_dir.join(format!("gateway-{name}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut child = Command::new(&launch.binary)
            .arg("--template")
            .arg(&launch.template)
            .args(["--stage", &launch.stage, "--port", "0"])
            // The benchmarks measure the gateway and the handlers, not API Gateway's quotas
            // (the report says so).
            .arg("--relax-quotas")
            .arg("--bin-dir")
            .arg(&launch.bin_dir)
            .args([
                "--connections-latency-ms",
                &latency_ms.to_string(),
                "--dynamodb-endpoint",
                &launch.dynamodb_endpoint,
                "--max-processes-per-function",
                &launch.max_processes.to_string(),
            ])
            // Handler and gateway logs at warn: Lambda ships logs out of process, and a log
            // line per event through the gateway's pipes would be measured as gateway work.
            .env("LOCAL_GATEWAY_LOG", "warn")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", launch.binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the gateway exited at once"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let mut lines = BufReader::new(stdout).lines();
        // The ready text ends with `@connections API: http://127.0.0.1:PORT/STAGE/@connections/{id}`.
        let mut printed_token = None;
        let callback_url = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if printed_token.is_none() {
                    printed_token = token_in(&line);
                }
                if let Some(url) = callback_from_ready_line(&line) {
                    return Ok::<_, std::io::Error>(Some(url));
                }
            }
            Ok(None)
        })
        .await;
        let callback_url = match callback_url {
            Ok(Ok(Some(url))) => url,
            other => {
                let _ = child.kill().await;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "the gateway did not become ready ({}); its log {}:\n{}",
                    match other {
                        Err(_) => format!("no ready line within {READY_TIMEOUT:?}"),
                        Ok(Err(e)) => e.to_string(),
                        _ => "it exited".to_owned(),
                    },
                    log_path.display(),
                    log.lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        };
        // Keep reading stdout so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let ws_url = callback_url.replacen("http://", "ws://", 1);
        Ok(Self {
            child,
            pid,
            ws_url,
            callback_url,
            printed_token,
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

/// The @connections base URL from the gateway's ready text, if `line` holds it.
fn callback_from_ready_line(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("@connections API:")?;
    let url = rest.split_whitespace().next()?;
    let (base, _) = url.split_once("/@connections")?;
    base.starts_with("http://").then(|| base.to_owned())
}

/// What the harness reads from the template.
#[derive(Debug, Clone)]
pub struct TemplateFacts {
    /// The connections table's name.
    pub connections_table: String,
    /// The message function's memory (MB).
    pub message_memory_mb: u64,
    /// The message function's architecture.
    pub message_architecture: String,
    /// `FANOUT_CONCURRENCY` of the message function.
    pub fanout_concurrency: usize,
    /// The `$connect` authorizer's identity sources, when there is one.
    pub authorizer_sources: Option<Vec<String>>,
}

fn resources(template: &Value) -> Result<&serde_json::Map<String, Value>> {
    template
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("the template has no Resources"))
}

/// Reads the facts from the template at `path`.
pub fn read_template(path: &Path) -> Result<TemplateFacts> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "read {} (run `make synth-dev` to synthesize it)",
            path.display()
        )
    })?;
    let template: Value = serde_json::from_str(&text).context("parse the template")?;
    let resources = resources(&template)?;
    let message = resources
        .values()
        .find(|r| {
            r.get("Type").and_then(Value::as_str) == Some("AWS::Lambda::Function")
                && r.pointer("/Metadata/local:binary").and_then(Value::as_str) == Some("message")
        })
        .ok_or_else(|| anyhow!("no function with Metadata local:binary = message"))?;
    let props = message
        .get("Properties")
        .ok_or_else(|| anyhow!("message function without Properties"))?;
    let variables = props.pointer("/Environment/Variables");
    let table_ref = variables
        .and_then(|v| v.pointer("/CONNECTIONS_TABLE/Ref"))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("message function: CONNECTIONS_TABLE is not a Ref"))?;
    let connections_table = resources
        .get(table_ref)
        .and_then(|t| t.pointer("/Properties/TableName"))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("table {table_ref} has no literal TableName"))?
        .to_owned();
    let fanout_concurrency = variables
        .and_then(|v| v.get("FANOUT_CONCURRENCY"))
        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
        .map_or(64, |n| usize::try_from(n).unwrap_or(64));
    let authorizer_sources = resources
        .values()
        .find(|r| {
            r.get("Type").and_then(Value::as_str) == Some("AWS::ApiGatewayV2::Route")
                && r.pointer("/Properties/RouteKey").and_then(Value::as_str) == Some("$connect")
        })
        .and_then(|route| route.pointer("/Properties/AuthorizerId/Ref"))
        .and_then(Value::as_str)
        .and_then(|id| resources.get(id))
        .map(|authorizer| {
            authorizer
                .pointer("/Properties/IdentitySource")
                .and_then(Value::as_array)
                .map(|sources| {
                    sources
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        });
    Ok(TemplateFacts {
        connections_table,
        message_memory_mb: props
            .get("MemorySize")
            .and_then(Value::as_u64)
            .unwrap_or(128),
        message_architecture: props
            .pointer("/Architectures/0")
            .and_then(Value::as_str)
            .unwrap_or("x86_64")
            .to_owned(),
        fanout_concurrency,
        authorizer_sources,
    })
}

/// How clients prove who they are when the template puts an authorizer on `$connect`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Query-string parameters to add.
    pub query: Vec<(String, String)>,
    /// Headers to add.
    pub headers: Vec<(String, String)>,
}

/// Credentials for each identity source of the `$connect` authorizer (none without one): the
/// token the gateway printed for its sample user when it takes local tokens, else one from
/// `make token USER=bench`.
pub fn credentials(
    facts: &TemplateFacts,
    repo: &Path,
    printed: Option<&str>,
) -> Result<Credentials> {
    let Some(sources) = &facts.authorizer_sources else {
        return Ok(Credentials::default());
    };
    let token = match printed {
        Some(token) => token.to_owned(),
        None => make_token(repo)?,
    };
    let mut credentials = Credentials::default();
    for source in sources {
        if let Some(name) = source.strip_prefix("route.request.querystring.") {
            credentials.query.push((name.to_owned(), token.clone()));
        } else if let Some(name) = source.strip_prefix("route.request.header.") {
            credentials
                .headers
                .push((name.to_owned(), format!("Bearer {token}")));
        }
    }
    Ok(credentials)
}

fn make_token(repo: &Path) -> Result<String> {
    let output = std::process::Command::new("make")
        .args(["--no-print-directory", "-s", "token", "USER=bench"])
        .current_dir(repo)
        .output()
        .context("run `make token USER=bench`")?;
    // The token comes alone on the first line; how to use it follows.
    let token = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .find(|l| l.split('.').count() == 3 && !l.contains(' '))
        .map(str::to_owned);
    match token.filter(|_| output.status.success()) {
        Some(token) => Ok(token),
        None => bail!(
            "the template has an authorizer on $connect, but the gateway printed no token and `make token USER=bench` gave none: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// The token in a ready line such as `npx wscat -c "ws://127.0.0.1:3001/dev?token=eyJ..."`.
fn token_in(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("token=")?;
    let token: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (token.split('.').count() == 3).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::{callback_from_ready_line, token_in};

    #[test]
    fn reads_the_printed_token() {
        assert_eq!(
            token_in(
                r#"  Connect as alice:  npx wscat -c "ws://127.0.0.1:3001/dev?token=aa.bb-_.cc""#
            ),
            Some("aa.bb-_.cc".to_owned())
        );
        assert_eq!(token_in("  More tokens:       make token USER=bob"), None);
        assert_eq!(token_in("?token=TOKEN"), None);
    }

    #[test]
    fn reads_the_callback_url_from_either_ready_text() {
        assert_eq!(
            callback_from_ready_line("@connections API: http://127.0.0.1:4000/dev/@connections/{id}   (Ctrl-C stops everything)"),
            Some("http://127.0.0.1:4000/dev".to_owned())
        );
        assert_eq!(
            callback_from_ready_line(
                "  @connections API:  http://127.0.0.1:4000/dev/@connections/{id}"
            ),
            Some("http://127.0.0.1:4000/dev".to_owned())
        );
        assert_eq!(
            callback_from_ready_line("  Connect:  npx wscat -c \"ws://127.0.0.1:4000/dev\""),
            None
        );
    }
}
