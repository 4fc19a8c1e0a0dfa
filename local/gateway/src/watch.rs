//! `--watch`: the inner loop of `make dev`. File events of the sources (debounced by
//! `notify-debouncer-full`, so that one save is one reload) run the build or the synth the
//! gateway was given, then apply the result under the open connections: a rebuilt handler
//! starts a new generation of processes, a new template is served, a changed web file tells
//! the open pages. A failed build or synth changes nothing: the old code keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::reload::{ReloadError, Reloader, StackChange};

/// What to watch and what to run.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Rust sources (files or folders): a change runs `build`, then swaps the handlers whose
    /// binaries it rebuilt.
    pub rust: Vec<PathBuf>,
    /// Stack sources: a change runs `synth`, then applies the template.
    pub stack: Vec<PathBuf>,
    /// The web client's folder: a change tells the open pages (it is served from disk).
    pub web: Option<PathBuf>,
    /// The build, as a shell command line (`cargo build --workspace --bins`).
    pub build: String,
    /// The synth, as a shell command line; `None`: stack sources are not watched.
    pub synth: Option<String>,
    /// How long the files must stay quiet before a reload starts.
    pub debounce: Duration,
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The file watcher could not be set up (inotify's limits, a missing folder).
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        /// What was to be watched.
        path: PathBuf,
        /// Why not.
        source: notify_debouncer_full::notify::Error,
    },
}

/// One reload, as the terminal shows it (its `Display` is the line).
#[derive(Debug, Clone)]
pub enum Reload {
    /// The build succeeded; `functions` (by name) now run the new binaries (none: no binary
    /// changed).
    Handlers {
        /// The source files that changed.
        changed: Vec<PathBuf>,
        /// How long the build took.
        build: Duration,
        /// The functions swapped, by name.
        functions: Vec<String>,
        /// Client connections open when the new code went live.
        connections: usize,
        /// Whether the build also rebuilt the gateway's own binary, which runs only after a
        /// restart.
        gateway_rebuilt: bool,
    },
    /// The build failed: the old binaries keep serving.
    BuildFailed {
        /// The source files that changed.
        changed: Vec<PathBuf>,
        /// How long the build took.
        build: Duration,
        /// The crates the compiler names as failed (`could not compile `NAME``).
        crates: Vec<String>,
        /// The build's output (the compiler's messages).
        output: String,
    },
    /// The template was applied (or was the same).
    Stack {
        /// The files that changed.
        changed: Vec<PathBuf>,
        /// How long the synth took (`None`: the template itself changed).
        synth: Option<Duration>,
        /// What the new template changed.
        change: StackChange,
        /// Client connections open when it went live.
        connections: usize,
    },
    /// The synth failed or the template cannot be applied: the old one keeps serving.
    StackFailed {
        /// The files that changed.
        changed: Vec<PathBuf>,
        /// What went wrong, with what to do (the synth's output, or one line per change a
        /// running gateway cannot take over).
        problem: String,
    },
    /// Web client files changed; open pages were told.
    Web {
        /// The files that changed.
        changed: Vec<PathBuf>,
    },
}

impl std::fmt::Display for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = chrono::Local::now().format("%H:%M:%S");
        match self {
            Self::Handlers {
                changed,
                build,
                functions,
                connections,
                gateway_rebuilt,
            } => {
                write!(
                    f,
                    "reload: {} changed; built in {:.1} s; ",
                    files(changed),
                    build.as_secs_f64()
                )?;
                if functions.is_empty() {
                    f.write_str("no handler binary changed")?;
                } else {
                    write!(
                        f,
                        "{} live at {at} ({connections} connection{} kept)",
                        functions.join(", "),
                        plural(*connections)
                    )?;
                }
                if *gateway_rebuilt {
                    f.write_str("; the gateway itself was rebuilt: restart `make dev` to run it")?;
                }
                Ok(())
            }
            Self::BuildFailed {
                changed,
                build,
                crates,
                output,
            } => write!(
                f,
                "{}\nreload: {} changed; build FAILED in {:.1} s ({}): the previous binaries keep serving",
                output.trim_end(),
                files(changed),
                build.as_secs_f64(),
                if crates.is_empty() {
                    "see the output above".to_owned()
                } else {
                    format!("crate {}", crates.join(", "))
                }
            ),
            Self::Stack {
                changed,
                synth,
                change,
                connections,
            } => write!(
                f,
                "reload: {} changed; {}stack {change}; live at {at} ({connections} connection{} kept)",
                files(changed),
                synth.map_or(String::new(), |d| format!(
                    "synthesized in {:.1} s; ",
                    d.as_secs_f64()
                )),
                plural(*connections)
            ),
            Self::StackFailed { changed, problem } => write!(
                f,
                "{}\nreload: {} changed; stack NOT applied: the previous template keeps serving",
                problem.trim_end(),
                files(changed)
            ),
            Self::Web { changed } => write!(
                f,
                "reload: {} changed; served from disk, open pages told to reload",
                files(changed)
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The changed files, shortened: the first two names and how many more.
fn files(changed: &[PathBuf]) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let names: Vec<String> = changed
        .iter()
        .take(2)
        .map(|p| p.strip_prefix(&cwd).unwrap_or(p).display().to_string())
        .collect();
    match changed.len() {
        0 => "nothing".to_owned(),
        n if n <= 2 => names.join(", "),
        n => format!("{} and {} more", names.join(", "), n - 2),
    }
}

/// A running watch: the reloads it made, in order. Dropping it stops watching.
pub struct Watch {
    reloads: mpsc::UnboundedReceiver<Reload>,
    task: JoinHandle<()>,
    // Kept for its threads: dropped, the watcher stops.
    _debouncer: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which kind of source a changed path is.
#[derive(Debug, Default)]
struct Batch {
    rust: Vec<PathBuf>,
    stack: Vec<PathBuf>,
    template: Vec<PathBuf>,
    web: Vec<PathBuf>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.rust.is_empty()
            && self.stack.is_empty()
            && self.template.is_empty()
            && self.web.is_empty()
    }
}

struct Sources {
    rust: Vec<PathBuf>,
    stack: Vec<PathBuf>,
    template: PathBuf,
    web: Option<PathBuf>,
}

impl Sources {
    fn sort(&self, path: PathBuf, batch: &mut Batch) {
        if path == self.template {
            push_new(&mut batch.template, path);
        } else if !is_source(&path) {
            // Editor swap files, backups, build output: not what a developer changed.
        } else if under(&path, &self.rust) && is_rust(&path) {
            push_new(&mut batch.rust, path);
        } else if under(&path, &self.stack) {
            push_new(&mut batch.stack, path);
        } else if self.web.as_ref().is_some_and(|dir| path.starts_with(dir)) {
            push_new(&mut batch.web, path);
        }
    }
}

fn push_new(list: &mut Vec<PathBuf>, path: PathBuf) {
    if !list.contains(&path) {
        list.push(path);
    }
}

fn under(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| path.starts_with(root))
}

fn is_rust(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rs")
        || path
            .file_name()
            .is_some_and(|n| n == "Cargo.toml" || n == "Cargo.lock")
}

/// Not an editor's temporary file, nor anything under a build output folder.
fn is_source(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let temporary = name.starts_with(".#")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp");
    let generated = path.components().any(|c| {
        matches!(
            c.as_os_str().to_str(),
            Some("target" | "node_modules" | "cdk.out" | ".git")
        )
    });
    !temporary && !generated
}

/// The absolute form of `path` (the watcher reports absolute paths).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Watch {
    pub(crate) fn start(
        reloader: Arc<Reloader>,
        options: WatchOptions,
    ) -> Result<Self, WatchError> {
        let (events_tx, events) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let mut debouncer = new_debouncer(
            options.debounce,
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) => {
                    let paths: Vec<PathBuf> = events
                        .into_iter()
                        .filter(|e| !e.kind.is_access())
                        .flat_map(|e| e.event.paths)
                        .collect();
                    if !paths.is_empty() {
                        let _ = events_tx.send(paths);
                    }
                }
                Err(errors) => {
                    for error in errors {
                        warn!("watching the sources: {error}");
                    }
                }
            },
        )
        .map_err(|source| WatchError::Watch {
            path: PathBuf::from("."),
            source,
        })?;
        let template = absolute(&reloader.template);
        let sources = Sources {
            rust: options.rust.iter().map(|p| absolute(p)).collect(),
            stack: if options.synth.is_some() {
                options.stack.iter().map(|p| absolute(p)).collect()
            } else {
                Vec::new()
            },
            web: options.web.as_deref().map(absolute),
            template: template.clone(),
        };
        // The template's folder, not the file (see below).
        let template_dir = template
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut watched = vec![(template_dir, RecursiveMode::NonRecursive)];
        for path in sources
            .rust
            .iter()
            .chain(&sources.stack)
            .chain(sources.web.iter())
        {
            // A file is watched through its folder: an editor or `sed -i` that saves by
            // renaming a new file over it would end a watch on the file itself.
            let watch = if path.is_dir() {
                (path.clone(), RecursiveMode::Recursive)
            } else {
                let folder = path
                    .parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
                (folder, RecursiveMode::NonRecursive)
            };
            if !watched.contains(&watch) {
                watched.push(watch);
            }
        }
        for (path, mode) in watched {
            if !path.exists() {
                continue;
            }
            debouncer
                .watch(&path, mode)
                .map_err(|source| WatchError::Watch {
                    path: path.clone(),
                    source,
                })?;
        }
        let (reloads_tx, reloads) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(reloader, options, sources, events, reloads_tx));
        Ok(Self {
            reloads,
            task,
            _debouncer: Box::new(debouncer),
        })
    }

    /// The next reload; `None` once watching has stopped.
    pub async fn next(&mut self) -> Option<Reload> {
        self.reloads.recv().await
    }
}

/// Turns file events into reloads, one batch at a time: events that arrive while a build runs
/// make the next batch.
async fn run(
    reloader: Arc<Reloader>,
    options: WatchOptions,
    sources: Sources,
    mut events: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    reloads: mpsc::UnboundedSender<Reload>,
) {
    while let Some(paths) = events.recv().await {
        let mut batch = Batch::default();
        for path in paths {
            sources.sort(path, &mut batch);
        }
        while let Ok(more) = events.try_recv() {
            for path in more {
                sources.sort(path, &mut batch);
            }
        }
        if batch.is_empty() {
            continue;
        }
        for reload in handle(&reloader, &options, batch).await {
            if reloads.send(reload).is_err() {
                return;
            }
        }
    }
}

/// Builds, synthesizes and applies what `batch` needs, in that order (a synth after a build
/// sees its binaries); the reloads made.
async fn handle(reloader: &Reloader, options: &WatchOptions, batch: Batch) -> Vec<Reload> {
    let mut done = Vec::new();
    if !batch.web.is_empty() {
        reloader.shared.web_changed();
        done.push(Reload::Web { changed: batch.web });
    }
    if !batch.rust.is_empty() {
        let started = Instant::now();
        let own_binary = own_binary_modified();
        let outcome = run_command(&options.build).await;
        let build = started.elapsed();
        done.push(match outcome {
            Ok(_) => Reload::Handlers {
                functions: reloader.refresh_binaries(),
                connections: reloader.shared.connections.len(),
                changed: batch.rust,
                build,
                gateway_rebuilt: own_binary_modified() != own_binary,
            },
            Err(output) => Reload::BuildFailed {
                crates: failed_crates(&output),
                changed: batch.rust,
                build,
                output,
            },
        });
    }
    let mut synth = None;
    let mut changed = batch.template;
    if let (false, Some(command)) = (batch.stack.is_empty(), &options.synth) {
        let started = Instant::now();
        if let Err(output) = run_command(command).await {
            done.push(Reload::StackFailed {
                changed: batch.stack,
                problem: format!("{}\nthe synth failed", output.trim_end()),
            });
            return done;
        }
        synth = Some(started.elapsed());
        changed.extend(batch.stack);
    }
    if changed.is_empty() {
        return done;
    }
    match reloader.apply_template().await {
        // The synth's own write of the template comes back as an event: nothing to say then.
        Ok(change) if change.is_empty() && synth.is_none() => {}
        Ok(change) => done.push(Reload::Stack {
            changed,
            synth,
            change,
            connections: reloader.shared.connections.len(),
        }),
        Err(error) => done.push(Reload::StackFailed {
            changed,
            problem: match error {
                ReloadError::NotLive(lines) => lines
                    .iter()
                    .map(|l| format!("cannot apply live: {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => other.to_string(),
            },
        }),
    }
    done
}

/// When the running program's file was last written (the gateway's own binary, or a test's).
fn own_binary_modified() -> Option<std::time::SystemTime> {
    std::env::current_exe()
        .ok()?
        .metadata()
        .ok()?
        .modified()
        .ok()
}

/// Runs a shell command line; `Err` holds its output (stderr, then stdout) when it fails.
async fn run_command(command: &str) -> Result<(), String> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| format!("cannot run `{command}`: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    text.push_str(&format!("`{command}` failed ({})", output.status));
    Err(text)
}

/// The crates cargo names in `error: could not compile `NAME``.
fn failed_crates(output: &str) -> Vec<String> {
    let mut crates = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("error: could not compile `") else {
            continue;
        };
        if let Some((name, _)) = rest.split_once('`') {
            if !crates.iter().any(|c| c == name) {
                crates.push(name.to_owned());
            }
        }
    }
    crates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_crates_are_read_from_cargo_output() {
        let output = "   Compiling message v0.1.0\nerror[E0308]: mismatched types\nerror: could not compile `message` (bin \"message\") due to 1 previous error\nerror: could not compile `fanout` (bin \"fanout\")\nerror: could not compile `message` (bin \"message\" test)\n";
        assert_eq!(failed_crates(output), ["message", "fanout"]);
        assert!(failed_crates("warning: unused\n").is_empty());
    }

    #[test]
    fn changes_are_sorted_by_what_they_need() {
        let sources = Sources {
            rust: vec![PathBuf::from("/w/lambdas"), PathBuf::from("/w/Cargo.toml")],
            stack: vec![PathBuf::from("/w/lib")],
            template: PathBuf::from("/w/cdk.out/Realtime-dev.template.json"),
            web: Some(PathBuf::from("/w/web")),
        };
        let mut batch = Batch::default();
        for path in [
            "/w/lambdas/message/src/main.rs",
            "/w/lambdas/message/src/main.rs",
            "/w/lambdas/message/src/.main.rs.swp",
            "/w/lambdas/message/README.md",
            "/w/Cargo.toml",
            "/w/lib/stack.ts",
            "/w/lib/node_modules/x/index.ts",
            "/w/cdk.out/Realtime-dev.template.json",
            "/w/cdk.out/manifest.json",
            "/w/web/app.js",
            "/w/elsewhere.rs",
        ] {
            sources.sort(PathBuf::from(path), &mut batch);
        }
        let names = |list: &[PathBuf]| {
            list.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&batch.rust),
            ["/w/lambdas/message/src/main.rs", "/w/Cargo.toml"]
        );
        assert_eq!(names(&batch.stack), ["/w/lib/stack.ts"]);
        assert_eq!(
            names(&batch.template),
            ["/w/cdk.out/Realtime-dev.template.json"]
        );
        assert_eq!(names(&batch.web), ["/w/web/app.js"]);
    }
}
