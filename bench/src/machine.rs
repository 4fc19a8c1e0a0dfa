//! What the numbers were measured on: machine, date, commit, toolchain.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// The machine and the code under test.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Cores the harness may use.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Python of the baseline (`python --version`).
    pub python: String,
    /// Start of the run (UTC, ISO-8601).
    pub date: String,
    /// `git rev-parse HEAD`, with `-dirty` when tracked files other than the results changed.
    pub commit: String,
}

fn output(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Machine {
    /// Reads /proc, git and the toolchains.
    pub fn describe(repo: &Path, python: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0);
        // The results files are not code: a run that rewrote them is still of a clean tree.
        let dirty = !output(
            "git",
            &[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!bench/RESULTS.md",
                ":!bench/results.json",
            ],
            repo,
        )
        .is_empty();
        let mut commit = output("git", &["rev-parse", "--short=12", "HEAD"], repo);
        if dirty {
            commit.push_str("-dirty");
        }
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            rustc: output("rustc", &["--version"], repo),
            python: output(&python.display().to_string(), &["--version"], repo),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            commit,
        }
    }
}
