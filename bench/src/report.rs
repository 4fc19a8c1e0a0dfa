//! The goals of the issue checked against the measurements, the cost table, and RESULTS.md.

use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::gateway::TemplateFacts;
use crate::{cost, fanout, Phase, Results};

/// 20 MB, the cold-start memory goal (decimal megabytes).
const RSS_GOAL_BYTES: f64 = 20e6;
/// 2 MB, the zip goal (decimal megabytes).
const ZIP_GOAL_BYTES: f64 = 2e6;
/// 4 KiB, the per-connection goal.
const CONNECTION_GOAL_BYTES: f64 = 4096.0;

/// One goal of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The benchmark it belongs to.
    pub benchmark: String,
    /// What the issue asks.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// `met`, `missed` or `not measured`.
    pub status: String,
    /// By how much it is missed and why (empty when met).
    pub note: String,
}

fn goal(benchmark: &str, wanted: &str, measured: String, met: Option<bool>, note: String) -> Goal {
    Goal {
        benchmark: benchmark.to_owned(),
        goal: wanted.to_owned(),
        measured,
        status: match met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not measured",
        }
        .to_owned(),
        note: if met == Some(true) {
            String::new()
        } else {
            note
        },
    }
}

fn failed<T>(phase: &Phase<T>) -> String {
    match phase {
        Phase::Failed(error) => format!("the phase failed: {error}"),
        Phase::Skipped => "skipped in this run (--only)".to_owned(),
        Phase::Ok(_) => String::new(),
    }
}

/// The cost table from the fan-out durations at room sizes 1, 100 and 1,000.
pub fn cost(facts: &TemplateFacts, fanout: Option<&fanout::Fanout>) -> Result<cost::Cost> {
    let fanout = fanout.ok_or_else(|| anyhow!("needs the fan-out durations, which failed"))?;
    let rows = [1usize, 100, 1000]
        .into_iter()
        .filter_map(|n| {
            let size = fanout.sizes.iter().find(|s| s.n == n)?;
            Some(cost::row(
                n,
                size.handler_ms.median,
                facts.message_memory_mb,
                &facts.message_architecture,
            ))
        })
        .collect();
    Ok(cost::Cost {
        prices_as_of: cost::PRICES_AS_OF.to_owned(),
        memory_mb: facts.message_memory_mb,
        architecture: facts.message_architecture.clone(),
        latency_ms: fanout.latency_ms,
        rows,
    })
}

/// Each goal: met, or by how much it is missed and why.
pub fn goals(r: &Results) -> Vec<Goal> {
    let mut goals = Vec::new();

    let (measured, met, note) = match r.cold_start.ok() {
        Some(c) => (
            format!(
                "{:.1}x (Rust {:.1} ms, Python {:.1} ms, medians)",
                c.speedup_median, c.rust_first_response_ms.median, c.python_first_response_ms.median
            ),
            Some(c.speedup_median >= 10.0),
            format!(
                "{:.1}x short of 10x: both wait for the same DynamoDB Local round trips (a transaction and a put, {:.1} ms of the Rust handler's warm invocation), which no runtime can shorten",
                10.0 / c.speedup_median.max(f64::EPSILON),
                c.rust_warm_ms.median
            ),
        ),
        None => (String::new(), None, failed(&r.cold_start)),
    };
    goals.push(goal(
        "1. cold start",
        "Rust at least 10x faster to first response",
        measured,
        met,
        note,
    ));

    let (measured, met, note) = match r.cold_start.ok() {
        Some(c) => {
            let bytes = c.rust_max_rss_mib.max * 1024.0 * 1024.0;
            (
                format!(
                    "{:.1} MB max of {} runs (median {:.1} MB)",
                    bytes / 1e6,
                    c.rust_max_rss_mib.n,
                    c.rust_max_rss_mib.median * 1.048_576
                ),
                Some(bytes < RSS_GOAL_BYTES),
                format!("{:.1} MB over", (bytes - RSS_GOAL_BYTES) / 1e6),
            )
        }
        None => (String::new(), None, failed(&r.cold_start)),
    };
    goals.push(goal(
        "1. cold start",
        "Rust max RSS under 20 MB",
        measured,
        met,
        note,
    ));

    let at_1000 = r
        .fanout
        .ok()
        .and_then(|f| f.sizes.iter().find(|s| s.n == 1000).map(|s| (f, s)));
    let (measured, met, note) = match at_1000 {
        Some((f, s)) => (
            format!(
                "{:.0} ms median = {:.2}x the ideal {:.0} ms (N / {} x {} ms)",
                s.handler_ms.median, s.vs_ideal, s.ideal_ms, f.bound, f.latency_ms
            ),
            Some(s.vs_ideal <= 1.5),
            format!(
                "{:.0} ms over 1.5x ideal: the handler's own work (members Query, audit put, invocation) comes on top of the posts",
                s.handler_ms.median - 1.5 * s.ideal_ms
            ),
        ),
        None => (String::new(), None, if r.fanout.ok().is_some() { "N = 1,000 not in this run's plan".to_owned() } else { failed(&r.fanout) }),
    };
    goals.push(goal(
        "2. fan-out",
        "N = 1,000: within 1.5x the ideal",
        measured,
        met,
        note,
    ));
    let (measured, met, note) = match at_1000 {
        Some((_, s)) => (
            format!(
                "{:.1}x faster than sequential ({:.0} ms)",
                s.speedup_vs_sequential,
                s.sequential_ms
                    .as_ref()
                    .map(|q| q.median)
                    .or(s.sequential_extrapolated_ms)
                    .unwrap_or(0.0)
            ),
            Some(s.speedup_vs_sequential >= 40.0),
            format!(
                "{:.1}x short of 40x",
                40.0 / s.speedup_vs_sequential.max(f64::EPSILON)
            ),
        ),
        None => (String::new(), None, failed(&r.fanout)),
    };
    goals.push(goal(
        "2. fan-out",
        "N = 1,000: at least 40x faster than sequential",
        measured,
        met,
        note,
    ));

    let (measured, met, note) = match r.overhead.ok() {
        Some(o) => (
            format!("{:.0} pings/s at {} clients", o.gateway.per_second, o.gateway.clients),
            Some(o.gateway.per_second >= 10_000.0),
            format!(
                "{:.1}x short ({:.0} of 10,000/s): every ping is a Lambda invocation (event JSON over the Runtime API, one process per event at a time, {} processes), with clients, gateway and handlers sharing {} cores; raw echo does {:.0}/s on the same cores; see \"Missed goals\" below",
                10_000.0 / o.gateway.per_second.max(f64::EPSILON),
                o.gateway.per_second,
                r.plan.max_processes_per_function,
                r.machine.cores,
                o.raw_echo.per_second
            ),
        ),
        None => (String::new(), None, failed(&r.overhead)),
    };
    goals.push(goal(
        "3. gateway overhead",
        "at least 10,000 pings/s",
        measured,
        met,
        note,
    ));
    let (measured, met, note) = match r.overhead.ok() {
        Some(o) => (
            format!(
                "{:.1}x raw echo ({:.0} µs vs {:.0} µs, medians)",
                o.median_ratio, o.gateway.rtt_us.median, o.raw_echo.rtt_us.median
            ),
            Some(o.median_ratio <= 10.0),
            format!(
                "{:.1}x over 10x: a ping is two loopback HTTP exchanges more than an echo (the event to the handler over the Runtime API, the invocation's response back) and JSON work in two processes; see \"Missed goals\" below",
                o.median_ratio / 10.0
            ),
        ),
        None => (String::new(), None, failed(&r.overhead)),
    };
    goals.push(goal(
        "3. gateway overhead",
        "median within 10x raw echo",
        measured,
        met,
        note,
    ));

    let (measured, met, note) = match r.capacity.ok() {
        Some(c) => (
            format!(
                "{:.0} B per connection at {} connections ({:.0} connects/s)",
                c.bytes_per_connection, c.connections, c.connects_per_s
            ),
            Some(c.bytes_per_connection <= CONNECTION_GOAL_BYTES),
            format!(
                "{:.0} B ({:.1}x) over 4 KiB: see \"Missed goals\" below",
                c.bytes_per_connection - CONNECTION_GOAL_BYTES,
                c.bytes_per_connection / CONNECTION_GOAL_BYTES
            ),
        ),
        None => (String::new(), None, failed(&r.capacity)),
    };
    goals.push(goal(
        "4. capacity",
        "at most 4 KiB per connection",
        measured,
        met,
        note,
    ));

    let (measured, met, note) = match r.footprint.ok() {
        Some(f) => footprint_goal(f),
        None => (String::new(), None, failed(&r.footprint)),
    };
    goals.push(goal(
        "6. footprint",
        "zip at most 2 MB",
        measured,
        met,
        note,
    ));
    goals
}

fn summary_row(out: &mut String, label: &str, s: &crate::stats::Summary, digits: usize) {
    let _ = writeln!(out, "| {label} | {} |", s.triple(digits));
}

fn phase_failed<T>(out: &mut String, phase: &Phase<T>) -> bool {
    if let Phase::Skipped = phase {
        let _ = writeln!(out, "Skipped in this run (`--only`).\n");
        return true;
    }
    if let Phase::Failed(error) = phase {
        let _ = writeln!(
            out,
            "Not measured: the phase failed: `{}`\n",
            error.replace('`', "'")
        );
        true
    } else {
        false
    }
}

fn money(v: f64) -> String {
    if v >= 100.0 {
        format!("${v:.0}")
    } else if v >= 1.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.3}")
    }
}

/// RESULTS.md.
pub fn markdown(r: &Results) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(
        out,
        "Written by `make bench` (the harness in `bench/`, raw numbers in `bench/results.json`). \
         Every figure is a median with min / max of repeated runs, or a ratio of two things measured \
         in the same run on the same machine. These machines are small and shared: compare ratios, \
         not absolute times. The local gateway runs with API Gateway's quotas relaxed \
         (`--relax-quotas`: no new-connection rate, stage throttling, URL or authorizer result \
         limits), so that the figures measure the code.\n"
    );
    if r.plan.quick {
        let _ = writeln!(out, "**QUICK RUN: reduced sizes, not the benchmark.**\n");
    }
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| date | {} |", m.date);
    let _ = writeln!(out, "| commit | `{}` |", m.commit);
    let _ = writeln!(
        out,
        "| machine | {}, {} cores, {} GiB, Linux {} |",
        m.cpu, m.cores, m.memory_gib, m.kernel
    );
    let _ = writeln!(out, "| toolchains | {}; {} |", m.rustc, m.python);
    match (r.make_seconds, r.build_seconds) {
        (Some(total), Some(build)) => {
            let _ = writeln!(
                out,
                "| `make bench` wall time | {total:.0} s: release builds {build} s, benchmarks {:.0} s |\n",
                r.harness_seconds
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "| harness run time | {:.0} s (builds excluded) |\n",
                r.harness_seconds
            );
        }
    }

    let _ = writeln!(out, "## Goals\n");
    let _ = writeln!(
        out,
        "| benchmark | goal | measured | status |\n|---|---|---|---|"
    );
    for g in &r.goals {
        let status = if g.note.is_empty() {
            g.status.clone()
        } else {
            format!("{}: {}", g.status, g.note)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            g.benchmark, g.goal, g.measured, status
        );
    }
    out.push('\n');

    // 1
    let _ = writeln!(
        out,
        "## 1. Cold start: Rust `connect` vs Python boto3 under awslambdaric\n"
    );
    if !phase_failed(&mut out, &r.cold_start) {
        if let Some(c) = r.cold_start.ok() {
            let _ = writeln!(
                out,
                "Process spawn to the first completed invocation, through a Lambda Runtime API served by \
                 the harness; one `$connect` event of the captured shape; both handlers write the same \
                 items (a TransactWriteItems of the connection and its lobby membership, one audit PutItem) \
                 to the same DynamoDB Local, and the harness checks the items are there. {} measured runs \
                 each, alternating, after {} discarded warm-up run each. Peak RSS is the process's VmHWM \
                 right after the first response (init plus one invocation). The Rust binary is the host \
                 release build (`target/release/connect`); the baseline is `bench/baselines/python/handler.py` \
                 with pinned awslambdaric and boto3 (`bench/baselines/python/requirements.txt`).\n",
                c.rust_first_response_ms.n, c.warmup_runs
            );
            let _ = writeln!(out, "| min / median / max | Rust `connect` | Python boto3 | Python / Rust (medians) |\n|---|---|---|---|");
            let med = |a: &crate::stats::Summary, b: &crate::stats::Summary| {
                b.median / a.median.max(f64::EPSILON)
            };
            let _ = writeln!(
                out,
                "| spawn to first response, ms | {} | {} | {:.1}x |",
                c.rust_first_response_ms.triple(1),
                c.python_first_response_ms.triple(1),
                c.speedup_median
            );
            let ri = crate::stats::Summary::of(
                &c.runs
                    .iter()
                    .filter(|x| x.runtime == crate::coldstart::Runtime::Rust)
                    .map(|x| x.init_ms)
                    .collect::<Vec<_>>(),
            );
            let pi = crate::stats::Summary::of(
                &c.runs
                    .iter()
                    .filter(|x| x.runtime == crate::coldstart::Runtime::Python)
                    .map(|x| x.init_ms)
                    .collect::<Vec<_>>(),
            );
            let _ = writeln!(
                out,
                "| spawn to first `next` (init), ms | {} | {} | {:.1}x |",
                ri.triple(1),
                pi.triple(1),
                med(&ri, &pi)
            );
            let _ = writeln!(
                out,
                "| peak RSS after first invocation, MiB | {} | {} | {:.1}x |",
                c.rust_max_rss_mib.triple(1),
                c.python_max_rss_mib.triple(1),
                med(&c.rust_max_rss_mib, &c.python_max_rss_mib)
            );
            let _ = writeln!(
                out,
                "| second (warm) invocation, ms | {} | {} | {:.1}x |\n",
                c.rust_warm_ms.triple(1),
                c.python_warm_ms.triple(1),
                med(&c.rust_warm_ms, &c.python_warm_ms)
            );
        }
    }

    // 2
    let _ = writeln!(out, "## 2. Fan-out: one `sendmessage` to a room of N\n");
    if !phase_failed(&mut out, &r.fanout) {
        if let Some(f) = r.fanout.ok() {
            let _ = writeln!(
                out,
                "Real WebSocket clients through the local gateway, with {} ms added by the gateway to every \
                 @connections call. The members are real connections (registered by `$connect`, so all are \
                 in the lobby; N = 1 is a room of its own). *Handler* is end to end: one client sends \
                 `sendmessage`, the time runs until the last member's client has read the message (members \
                 Query, audit PutItem, {} posts in flight). *Library* is the core crate's \
                 `realtime_core::fanout::deliver` with the same bound and the same @connections client, \
                 called from the harness on the same members; *sequential* is the same call with one post \
                 in flight (one post after another, as the seed did). Ideal = max(1, N / {}) x {} ms. \
                 Sequential at the largest N is extrapolated from the per-post time measured at the largest \
                 sequential N (marked *extrapolated*): it would take minutes.\n",
                f.latency_ms, f.bound, f.bound, f.latency_ms
            );
            let _ = writeln!(out, "| N | ideal, ms | handler, ms (min / median / max) | handler / ideal | library, ms (median) | sequential, ms (median) | sequential / handler |\n|---|---|---|---|---|---|---|");
            for s in &f.sizes {
                let library = s
                    .library_ms
                    .as_ref()
                    .map_or("-".to_owned(), |l| format!("{:.0}", l.median));
                let sequential = match (&s.sequential_ms, s.sequential_extrapolated_ms) {
                    (Some(q), _) => format!("{:.0}", q.median),
                    (None, Some(e)) => format!("{e:.0} (extrapolated)"),
                    _ => "-".to_owned(),
                };
                let speedup = if s.sequential_ms.is_some() || s.sequential_extrapolated_ms.is_some()
                {
                    format!("{:.1}x", s.speedup_vs_sequential)
                } else {
                    "-".to_owned()
                };
                let _ = writeln!(
                    out,
                    "| {} | {:.1} | {} | {:.2}x | {} | {} | {} |",
                    s.n,
                    s.ideal_ms,
                    s.handler_ms.triple(0),
                    s.vs_ideal,
                    library,
                    sequential,
                    speedup
                );
            }
            let _ = writeln!(out, "\nMembers connected at {:.0} connects/s through `$connect`; peak RSS of a message handler process after the largest fan-out: {:.1} MiB.\n", f.connect_rate_per_s, f.message_handler_max_rss_mib);
        }
    }

    // 3
    let _ = writeln!(
        out,
        "## 3. Gateway overhead: `ping` through gateway, Runtime API and handler vs raw echo\n"
    );
    if !phase_failed(&mut out, &r.overhead) {
        if let Some(o) = r.overhead.ok() {
            let _ = writeln!(
                out,
                "Raw echo: a WebSocket echo server on the same library (axum on tungstenite, the gateway's \
                 buffer settings) in its own process: the floor of a round trip on this machine. Gateway: \
                 `{{\"action\":\"ping\"}}` goes to the message handler (a Lambda invocation over the Runtime \
                 API), whose `pong` comes back as the route response (`ping` is a two-way route, as \
                 every message route is: no @connections call). One client, {} sequential round trips \
                 after {} warm-up; then {} clients with one request in flight each for {} s after 1 s of \
                 warm-up. The gateway runs at most {} processes per function.\n",
                o.gateway.rtt_us.n, r.plan.round_trips / 10, o.gateway.clients, o.gateway.window_s, r.plan.max_processes_per_function
            );
            let _ = writeln!(
                out,
                "| | raw echo | gateway + handler | gateway / raw |\n|---|---|---|---|"
            );
            let _ = writeln!(
                out,
                "| round trip median, µs | {:.0} | {:.0} | {:.1}x |",
                o.raw_echo.rtt_us.median, o.gateway.rtt_us.median, o.median_ratio
            );
            let _ = writeln!(
                out,
                "| round trip p99, µs | {:.0} | {:.0} | {:.1}x |",
                o.raw_echo.rtt_us.p99,
                o.gateway.rtt_us.p99,
                o.gateway.rtt_us.p99 / o.raw_echo.rtt_us.p99.max(f64::EPSILON)
            );
            let _ = writeln!(
                out,
                "| round trip min / max, µs | {:.0} / {:.0} | {:.0} / {:.0} | |",
                o.raw_echo.rtt_us.min,
                o.raw_echo.rtt_us.max,
                o.gateway.rtt_us.min,
                o.gateway.rtt_us.max
            );
            let _ = writeln!(
                out,
                "| messages/s at {} clients | {:.0} | {:.0} | {:.2}x |",
                o.gateway.clients,
                o.raw_echo.per_second,
                o.gateway.per_second,
                o.gateway.per_second / o.raw_echo.per_second.max(f64::EPSILON)
            );
            let _ = writeln!(out, "| round trip under that load, median / p99, µs | {:.0} / {:.0} | {:.0} / {:.0} | |", o.raw_echo.loaded_rtt_us.median, o.raw_echo.loaded_rtt_us.p99, o.gateway.loaded_rtt_us.median, o.gateway.loaded_rtt_us.p99);
            let (g, e) = (o.gateway.cpu_us_per_message, o.raw_echo.cpu_us_per_message);
            let _ = writeln!(
                out,
                "| CPU per message under load, µs: server process | {:.0} | {:.0} (gateway) | |",
                e.server, g.server
            );
            let _ = writeln!(
                out,
                "| CPU per message under load, µs: handler processes | - | {:.0} (message) | |",
                g.handlers
            );
            let _ = writeln!(
                out,
                "| CPU per message under load, µs: clients (harness) | {:.0} | {:.0} | |\n",
                e.clients, g.clients
            );
        }
    }

    // 4
    let _ = writeln!(out, "## 4. Capacity: concurrent idle connections\n");
    if !phase_failed(&mut out, &r.capacity) {
        if let Some(c) = r.capacity.ok() {
            let _ = writeln!(
                out,
                "A fresh gateway; 200 connections opened and closed first (handler processes started, \
                 allocator warmed), then {} connections opened with {} upgrades in flight, each through \
                 `$connect` (the real handler writing to DynamoDB Local), and held idle. Memory is the \
                 gateway process's VmRSS (handler processes and DynamoDB Local excluded; the kernel's \
                 socket buffers are not in RSS).\n",
                c.connections, c.parallel
            );
            let _ = writeln!(out, "| | |\n|---|---|");
            let _ = writeln!(
                out,
                "| connections held | {} (lobby members in DynamoDB: {}) |",
                c.connections, c.lobby_members
            );
            let _ = writeln!(
                out,
                "| gateway RSS before / after | {:.1} MiB / {:.1} MiB |",
                c.rss_before_kib as f64 / 1024.0,
                c.rss_after_kib as f64 / 1024.0
            );
            let _ = writeln!(
                out,
                "| RSS per connection | {:.0} B ({:.2} KiB) |",
                c.bytes_per_connection,
                c.bytes_per_connection / 1024.0
            );
            let _ = writeln!(
                out,
                "| connection rate through `$connect` | {:.0} /s |",
                c.connects_per_s
            );
            if let Some(floor) = c.raw_echo_bytes_per_connection {
                let _ = writeln!(
                    out,
                    "| floor: the raw echo server (same library and buffers) holding as many, per connection | {floor:.0} B ({:.2} KiB) |",
                    floor / 1024.0
                );
            }
            let _ = writeln!(
                out,
                "| one upgrade incl. `$connect`, ms (min / median / max) | {} |\n",
                c.connect_ms.triple(1)
            );
        }
    }

    // 5
    let _ = writeln!(out, "## 5. Local broadcast\n");
    if !phase_failed(&mut out, &r.broadcast) {
        if let Some(b) = r.broadcast.ok() {
            let _ = writeln!(out, "{} connected clients (all in the lobby), one `sendmessage` to the lobby, no injected latency; {} rounds after one unmeasured.\n", b.clients, b.last_arrival_ms.n);
            let _ = writeln!(out, "| ms (min / median / max) | |\n|---|---|");
            summary_row(&mut out, "send to last client", &b.last_arrival_ms, 1);
            summary_row(&mut out, "send to first client", &b.first_arrival_ms, 1);
            out.push('\n');
        }
    }

    // 6
    let _ = writeln!(out, "## 6. Footprint\n");
    if !phase_failed(&mut out, &r.footprint) {
        if let Some(f) = r.footprint.ok() {
            footprint_section(&mut out, f);
        }
    }

    // 7
    let _ = writeln!(out, "## 7. Cost on paper\n");
    if !phase_failed(&mut out, &r.cost) {
        if let Some(c) = r.cost.ok() {
            let _ = writeln!(out, "{}", cost_section(c));
        }
    }

    out.push_str(&missed_goals(r));
    out
}

/// Measured, met, note of the zip goal: the Lambda builds count when they are of this commit,
/// else the host's.
fn footprint_goal(f: &crate::footprint::Footprint) -> (String, Option<bool>, String) {
    let (which, handlers) = match &f.lambda_builds {
        Some(l) if l.current => (format!("Lambda {} build", l.architecture), &l.handlers),
        _ => ("host build".to_owned(), &f.handlers),
    };
    let Some(h) = handlers.iter().max_by_key(|h| h.zip_bytes) else {
        return (String::new(), None, "no handlers".to_owned());
    };
    (
        format!(
            "largest zip {:.3} MB ({}, {which})",
            h.zip_bytes as f64 / 1e6,
            h.name
        ),
        Some(handlers.iter().all(|h| (h.zip_bytes as f64) <= ZIP_GOAL_BYTES)),
        format!(
            "{:.2} MB ({:.2}x) over: every handler links the AWS SDK (DynamoDB, and @connections or \
             Secrets Manager), hyper, rustls with ring, tokio and the Lambda runtime, already built \
             for size ({})",
            (h.zip_bytes as f64 - ZIP_GOAL_BYTES) / 1e6,
            h.zip_bytes as f64 / ZIP_GOAL_BYTES,
            f.profile
        ),
    )
}

fn footprint_section(out: &mut String, f: &crate::footprint::Footprint) {
    let mb = |bytes: u64| format!("{:.3} MB", bytes as f64 / 1e6);
    let _ = writeln!(
        out,
        "Each zip holds the binary as `bootstrap`, deflated at zlib's level 6 as the CDK CLI packs \
         the stack's asset folders for upload. *Host* is \
         the release build the other benchmarks run ({}; `[profile.release]`: {}). *Lambda* is what \
         the stack deploys: cargo-lambda's build for the stack's architecture, read from the last \
         bundled synth (`make synth-bundled`, part of `make test`) when one is on disk; `make bench` \
         does not rebuild it, and counts it for the goal only when it was built from this run's \
         commit with a clean tree.\n",
        f.target, f.profile
    );
    match &f.lambda_builds {
        Some(l) => {
            let _ = writeln!(
                out,
                "| handler | host binary | host zip | Lambda ({}) binary | Lambda zip |\n|---|---|---|---|---|",
                l.architecture
            );
            for h in &f.handlers {
                let lambda = l.handlers.iter().find(|x| x.name == h.name);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    h.name,
                    mb(h.binary_bytes),
                    mb(h.zip_bytes),
                    lambda.map_or("-".to_owned(), |x| mb(x.binary_bytes)),
                    lambda.map_or("-".to_owned(), |x| mb(x.zip_bytes)),
                );
            }
            let from = match (&l.commit, l.current) {
                (Some(c), true) => format!("from this commit (`{c}`)"),
                (Some(c), false) => {
                    format!("from `{c}`, not this run's commit: shown, not counted for the goal")
                }
                (None, _) => "from an unknown commit: shown, not counted for the goal".to_owned(),
            };
            let _ = writeln!(
                out,
                "\nLambda builds from the bundled synth in `{}`, built {} {from}.\n",
                l.dir, l.built_at
            );
        }
        None => {
            let _ = writeln!(out, "| handler | host binary | host zip |\n|---|---|---|");
            for h in &f.handlers {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    h.name,
                    mb(h.binary_bytes),
                    mb(h.zip_bytes)
                );
            }
            let _ = writeln!(
                out,
                "\nNo bundled synth on disk: run `make synth-bundled` before `make bench` to add the Lambda builds.\n"
            );
        }
    }
}

/// The cost section (also what the README quotes).
pub fn cost_section(c: &cost::Cost) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Per one million `sendmessage` requests to a room of N members (the sender included), from the \
         message handler's measured time to last delivery at {} ms @connections latency (an upper bound \
         of its billed duration), {} MB {} as configured in the stack. Prices assumed: {}.\n",
        c.latency_ms, c.memory_mb, c.architecture, c.prices_as_of
    );
    let _ = writeln!(
        out,
        "- Lambda: ${:.2} per million requests, ${:.10} per GB-second (arm64; x86_64 ${:.10})\n\
         - API Gateway WebSocket: ${:.2} per million messages, counting the request in and each of the N posts out (32 KB units); connection minutes (${:.2} per million) are per connection, not per message, and left out\n\
         - DynamoDB on demand: ${:.3} per million write units (the audit PutItem: 1), ${:.3} per million read units (the members Query, eventually consistent: half a unit per 4 KB of {}-byte membership items)\n",
        cost::LAMBDA_PER_REQUEST * 1e6,
        cost::LAMBDA_ARM_PER_GB_S,
        cost::LAMBDA_X86_PER_GB_S,
        cost::APIGW_PER_MESSAGE * 1e6,
        cost::APIGW_PER_CONNECTION_MINUTE * 1e6,
        cost::DYNAMODB_PER_WRU * 1e6,
        cost::DYNAMODB_PER_RRU * 1e6,
        cost::MEMBERSHIP_ITEM_BYTES
    );
    let _ = writeln!(out, "| room size | billed ms | Lambda | API Gateway | DynamoDB | total per million sendmessage | per million delivered |\n|---|---|---|---|---|---|---|");
    for row in &c.rows {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} |",
            row.room_size,
            row.billed_ms,
            money(row.lambda_usd),
            money(row.apigw_usd),
            money(row.dynamodb_usd),
            money(row.total_usd),
            money(row.per_million_delivered_usd)
        );
    }
    out
}

/// Why each missed goal is missed, from this run's numbers, and what was already done about
/// it; empty when every measured goal is met.
fn missed_goals(r: &Results) -> String {
    let goals = goals(r);
    let missed = |prefix: &str| {
        goals
            .iter()
            .any(|g| g.benchmark.starts_with(prefix) && g.status == "missed")
    };
    let mut out = String::new();
    if !goals.iter().any(|g| g.status == "missed") {
        return out;
    }
    let _ = writeln!(out, "## Missed goals\n");

    if missed("3.") {
        if let Some(o) = r.overhead.ok() {
            let g = o.gateway.cpu_us_per_message;
            let total = g.server + g.handlers + g.clients;
            let _ = writeln!(
                out,
                "**Gateway overhead.** In this run one ping cost {:.0} µs of CPU in the gateway, \
                 {:.0} µs in the message handler and {:.0} µs in the clients ({:.0} µs in all; the \
                 raw echo server spends {:.0} µs a message). On {} cores that caps throughput near \
                 {:.0} pings/s whatever the scheduling: 10,000/s needs the whole path under {:.0} µs \
                 of CPU. A ping is a Lambda invocation: the gateway answers the handler's pending \
                 `next` with the event over loopback HTTP, the handler parses it, runs and POSTs its \
                 response, and the gateway sends the body on as a frame: two HTTP exchanges and two \
                 process wake-ups, where the echo is one process reading and writing one socket.\n",
                g.server,
                g.handlers,
                g.clients,
                total,
                o.raw_echo.cpu_us_per_message.server,
                r.machine.cores,
                r.machine.cores as f64 * 1e6 / total.max(1.0),
                r.machine.cores as f64 * 1e6 / 10_000.0
            );
        }
        let _ = writeln!(
            out,
            "Done already: the reply is the route response of a two-way route, so a ping makes no \
             signed @connections call (before that change, on 2026-11-28, this benchmark measured \
             4,511 pings/s and 15.1x raw echo, with 302 µs of handler CPU per ping), and the gateway \
             is built at `opt-level = 3`. What is left would mean leaving the Runtime API, calling \
             handler code inside the gateway, which would no longer run the deployed binaries the \
             way Lambda does. On AWS the 10,000/s is an account-wide throttle spread over many Lambda \
             environments, each with its own CPU; here the gateway, every handler process and the \
             clients share {} cores.\n",
            r.machine.cores
        );
    }

    if missed("4.") {
        if let Some(c) = r.capacity.ok() {
            let _ = write!(
                out,
                "**Capacity.** The gateway holds an idle connection in {:.0} B",
                c.bytes_per_connection
            );
            match c.raw_echo_bytes_per_connection {
                Some(floor) => {
                    let _ = writeln!(
                        out,
                        "; the raw echo server, on the same library with the same buffers, in \
                         {floor:.0} B: about {:.0} B is the gateway's own (the connection record, \
                         its outbox and the task's state).\n",
                        c.bytes_per_connection - floor
                    );
                }
                None => {
                    let _ = writeln!(out, ".\n");
                }
            }
        }
    }

    if missed("6.") {
        if let Some(f) = r.footprint.ok() {
            let _ = write!(
                out,
                "**Footprint.** The handlers are already built for size (`[profile.release]`: {}); \
                 what remains is what every handler needs: the AWS SDK clients, hyper with rustls on \
                 ring, tokio and the Lambda runtime.",
                f.profile
            );
            if !f.lambda_builds.as_ref().is_some_and(|l| l.current) {
                let _ = write!(
                    out,
                    " This run judged the host build: x86_64, and built in one cargo invocation with \
                     the gateway and the harness, whose features then reach the dependencies they \
                     share with the handlers. What the stack deploys is cargo-lambda's build of each \
                     handler for arm64; run `make synth-bundled` (part of `make test`) on a clean \
                     tree before `make bench` to have those measured and counted."
                );
            }
            let _ = writeln!(out, "\n");
        }
    }
    out
}
