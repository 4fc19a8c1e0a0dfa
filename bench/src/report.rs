//! The goals of the issue, kept as data and checked against the measurements, and RESULTS.md,
//! rendered from `bench/RESULTS.md.tmpl`: the code computes named values, the template holds
//! the prose and the tables' shape.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::gateway::TemplateFacts;
use crate::stats::Summary;
use crate::{cost, fanout, Phase, Results};

/// The page's template; `{{name}}` is a value, `{{#name}}...{{/name}}` a section.
const TEMPLATE: &str = include_str!("../RESULTS.md.tmpl");

/// Which way a figure must lie of its target.
#[derive(Debug, Clone, Copy)]
enum Comparator {
    AtLeast,
    AtMost,
}

/// One goal of the issue: the figure it judges, and why a miss is a miss (a template of
/// the same values as the page).
struct GoalSpec {
    benchmark: &'static str,
    goal: &'static str,
    figure: &'static str,
    comparator: Comparator,
    target: f64,
    why: &'static str,
}

const GOALS: &[GoalSpec] = &[
    GoalSpec {
        benchmark: "1. cold start",
        goal: "Rust at least 10x faster to first response",
        figure: "cold.speedup",
        comparator: Comparator::AtLeast,
        target: 10.0,
        why: "{{short}}x short of 10x: both wait for the same DynamoDB Local round trips (a transaction and a put, {{cold.rust_warm}} ms of the Rust handler's warm invocation), which no runtime can shorten",
    },
    GoalSpec {
        benchmark: "1. cold start",
        goal: "Rust max RSS under 20 MB",
        figure: "cold.rss_mb",
        comparator: Comparator::AtMost,
        target: 20.0,
        why: "{{over}} MB over",
    },
    GoalSpec {
        benchmark: "2. fan-out",
        goal: "N = 1,000: within 1.5x the ideal",
        figure: "fanout.vs_ideal_1000",
        comparator: Comparator::AtMost,
        target: 1.5,
        why: "{{fanout.over_ms}} ms over 1.5x ideal: the handler's own work (members Query, audit put, invocation) comes on top of the posts",
    },
    GoalSpec {
        benchmark: "2. fan-out",
        goal: "N = 1,000: at least 40x faster than sequential",
        figure: "fanout.speedup_1000",
        comparator: Comparator::AtLeast,
        target: 40.0,
        why: "{{short}}x short of 40x",
    },
    GoalSpec {
        benchmark: "3. gateway overhead",
        goal: "at least 10,000 pings/s",
        figure: "overhead.per_second",
        comparator: Comparator::AtLeast,
        target: 10_000.0,
        why: "{{short}}x short ({{overhead.per_second}} of 10,000/s): every ping is a Lambda invocation (event JSON over the Runtime API, one process per event at a time, {{processes}} processes), with clients, gateway and handlers sharing {{cores}} cores; raw echo does {{overhead.echo_per_second}}/s on the same cores; see \"Missed goals\" below",
    },
    GoalSpec {
        benchmark: "3. gateway overhead",
        goal: "median within 10x raw echo",
        figure: "overhead.ratio",
        comparator: Comparator::AtMost,
        target: 10.0,
        why: "{{ratio_over}}x over 10x: a ping is two loopback HTTP exchanges more than an echo (the event to the handler over the Runtime API, the invocation's response back) and JSON work in two processes; see \"Missed goals\" below",
    },
    GoalSpec {
        benchmark: "4. capacity",
        goal: "at most 4 KiB per connection",
        figure: "capacity.bytes",
        comparator: Comparator::AtMost,
        target: 4096.0,
        why: "{{over}} B ({{ratio}}x) over 4 KiB: see \"Missed goals\" below",
    },
    GoalSpec {
        benchmark: "6. footprint",
        goal: "zip at most 2 MB",
        figure: "footprint.zip_mb",
        comparator: Comparator::AtMost,
        target: 2.0,
        why: "{{over}} MB ({{ratio}}x) over: every handler links the AWS SDK (DynamoDB, and @connections or Secrets Manager), hyper, rustls with ring, tokio and the Lambda runtime, already built for size ({{footprint.profile}})",
    },
    GoalSpec {
        benchmark: "8. room of 15,000",
        goal: "queued tier: every member delivered",
        figure: "room.queued_share",
        comparator: Comparator::AtLeast,
        target: 1.0,
        why: "{{room.queued_delivered}} of {{room.members}} delivered within the phase's time limit",
    },
    GoalSpec {
        benchmark: "8. room of 15,000",
        goal: "queued tier: last delivery within 1.3x N / rate",
        figure: "room.queued_vs_bound",
        comparator: Comparator::AtMost,
        target: 1.3,
        why: "{{ratio_over}}x over 1.3x: see section 8",
    },
    GoalSpec {
        benchmark: "9. connect storm",
        goal: "hottest partition key under 1,000 WCU/s at 500 connects/s (sharded lobby)",
        figure: "storm.sharded_wcu",
        comparator: Comparator::AtMost,
        target: 1000.0,
        why: "{{over}} WCU/s over 1,000: see section 9",
    },
];

/// One goal of the issue, as judged in this run.
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

/// A figure a goal judges: its value and how the page states it.
struct Figure {
    value: f64,
    measured: String,
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

/// Why a phase has no figures.
fn not_measured<T>(phase: &Phase<T>) -> Option<String> {
    match phase {
        Phase::Failed(error) => Some(format!("the phase failed: {error}")),
        Phase::Skipped => Some("skipped in this run (--only)".to_owned()),
        Phase::Ok(_) => None,
    }
}

/// The phase each figure comes from (by its name's prefix), for "not measured" notes.
fn phase_note(r: &Results, figure: &str) -> Option<String> {
    match figure.split('.').next()? {
        "cold" => not_measured(&r.cold_start),
        "fanout" => not_measured(&r.fanout),
        "overhead" => not_measured(&r.overhead),
        "capacity" => not_measured(&r.capacity),
        "footprint" => not_measured(&r.footprint),
        "room" => not_measured(&r.room),
        "storm" => not_measured(&r.storm),
        _ => None,
    }
}

/// Each goal: met, or by how much it is missed and why.
pub fn goals(r: &Results) -> Vec<Goal> {
    let figures = figures(r);
    let values = values(r);
    GOALS
        .iter()
        .map(|spec| {
            let Some(figure) = figures.get(spec.figure) else {
                return Goal {
                    benchmark: spec.benchmark.to_owned(),
                    goal: spec.goal.to_owned(),
                    measured: String::new(),
                    status: "not measured".to_owned(),
                    note: phase_note(r, spec.figure)
                        .unwrap_or_else(|| "not in this run's plan".to_owned()),
                };
            };
            let (v, t) = (figure.value, spec.target);
            let met = match spec.comparator {
                Comparator::AtLeast => v >= t,
                Comparator::AtMost => v <= t,
            };
            let mut local = values.clone();
            local.insert("short".into(), format!("{:.1}", t / v.max(f64::EPSILON)));
            // Bytes and WCU read best whole, megabytes with two decimals.
            let over = if (v - t).abs() >= 100.0 {
                format!("{:.0}", v - t)
            } else {
                format!("{:.2}", v - t)
            };
            local.insert("over".into(), over);
            local.insert("ratio".into(), format!("{:.2}", v / t));
            local.insert("ratio_over".into(), format!("{:.2}", v / t));
            Goal {
                benchmark: spec.benchmark.to_owned(),
                goal: spec.goal.to_owned(),
                measured: figure.measured.clone(),
                status: if met { "met" } else { "missed" }.to_owned(),
                note: if met {
                    String::new()
                } else {
                    render(spec.why, &local, &BTreeMap::new())
                },
            }
        })
        .collect()
}

fn figures(r: &Results) -> BTreeMap<&'static str, Figure> {
    let mut f = BTreeMap::new();
    let mut put = |name, value: f64, measured: String| {
        f.insert(name, Figure { value, measured });
    };
    if let Some(c) = r.cold_start.ok() {
        put(
            "cold.speedup",
            c.speedup_median,
            format!(
                "{:.1}x (Rust {:.1} ms, Python {:.1} ms, medians)",
                c.speedup_median,
                c.rust_first_response_ms.median,
                c.python_first_response_ms.median
            ),
        );
        let mb = c.rust_max_rss_mib.max * 1.048_576;
        put(
            "cold.rss_mb",
            mb,
            format!(
                "{mb:.1} MB max of {} runs (median {:.1} MB)",
                c.rust_max_rss_mib.n,
                c.rust_max_rss_mib.median * 1.048_576
            ),
        );
    }
    if let Some((fo, s)) = r
        .fanout
        .ok()
        .and_then(|fo| fo.sizes.iter().find(|s| s.n == 1000).map(|s| (fo, s)))
    {
        put(
            "fanout.vs_ideal_1000",
            s.vs_ideal,
            format!(
                "{:.0} ms median = {:.2}x the ideal {:.0} ms (N / {} x {} ms)",
                s.handler_ms.median, s.vs_ideal, s.ideal_ms, fo.bound, fo.latency_ms
            ),
        );
        let sequential = s
            .sequential_ms
            .as_ref()
            .map(|q| q.median)
            .or(s.sequential_extrapolated_ms);
        put(
            "fanout.speedup_1000",
            s.speedup_vs_sequential,
            format!(
                "{:.1}x faster than sequential ({:.0} ms)",
                s.speedup_vs_sequential,
                sequential.unwrap_or(0.0)
            ),
        );
    }
    if let Some(o) = r.overhead.ok() {
        put(
            "overhead.per_second",
            o.gateway.per_second,
            format!(
                "{:.0} pings/s at {} clients",
                o.gateway.per_second, o.gateway.clients
            ),
        );
        put(
            "overhead.ratio",
            o.median_ratio,
            format!(
                "{:.1}x raw echo ({:.0} µs vs {:.0} µs, medians)",
                o.median_ratio, o.gateway.rtt_us.median, o.raw_echo.rtt_us.median
            ),
        );
    }
    if let Some(c) = r.capacity.ok() {
        put(
            "capacity.bytes",
            c.bytes_per_connection,
            format!(
                "{:.0} B per connection at {} connections ({:.0} connects/s)",
                c.bytes_per_connection, c.connections, c.connects_per_s
            ),
        );
    }
    if let Some(fp) = r.footprint.ok() {
        let (which, handlers) = match &fp.lambda_builds {
            Some(l) if l.current => (format!("Lambda {} build", l.architecture), &l.handlers),
            _ => ("host build".to_owned(), &fp.handlers),
        };
        if let Some(h) = handlers.iter().max_by_key(|h| h.zip_bytes) {
            let mb = h.zip_bytes as f64 / 1e6;
            put(
                "footprint.zip_mb",
                mb,
                format!("largest zip {mb:.3} MB ({}, {which})", h.name),
            );
        }
    }
    if let Some(queued) = r
        .room
        .ok()
        .and_then(|room| room.tier("queued").map(|t| (room, t)))
    {
        let (room, t) = queued;
        put(
            "room.queued_share",
            t.delivered_share,
            format!("{} of {} delivered", t.delivered, room.plan.members),
        );
        if t.delivered == room.plan.members {
            put(
                "room.queued_vs_bound",
                t.vs_bound,
                format!(
                    "{:.0} ms to the last delivery = {:.2}x N / rate ({:.0} ms)",
                    t.last_delivery_ms, t.vs_bound, room.bound_ms
                ),
            );
        }
    }
    if let Some(storm) = r.storm.ok() {
        if let Some(sharded) = storm.run("lobby=8") {
            let against = storm
                .run("lobby=1")
                .map(|u| {
                    format!(
                        "; unsharded {:.0} WCU/s at {:.0}/s, {:.0} at 500/s ({}), {:.1}x the sharded",
                        u.hottest_wcu,
                        u.connected_per_s,
                        u.hottest_wcu_at_rate,
                        u.hottest_key,
                        u.hottest_wcu / sharded.hottest_wcu.max(f64::EPSILON)
                    )
                })
                .unwrap_or_default();
            // Judged at the planned rate: the handlers on this machine may open fewer a second.
            put(
                "storm.sharded_wcu",
                sharded.hottest_wcu_at_rate,
                format!(
                    "{:.0} WCU/s at {:.0} connects/s, {:.0} scaled to 500/s ({}){against}",
                    sharded.hottest_wcu,
                    sharded.connected_per_s,
                    sharded.hottest_wcu_at_rate,
                    sharded.hottest_key
                ),
            );
        }
    }
    f
}

fn fmt0(v: f64) -> String {
    format!("{v:.0}")
}

fn fmt1(v: f64) -> String {
    format!("{v:.1}")
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(f64::EPSILON)
}

/// Every value the page and the goals' notes name.
fn values(r: &Results) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut set = |k: &str, value: String| {
        v.insert(k.to_owned(), value);
    };
    let m = &r.machine;
    set("date", m.date.clone());
    set("commit", m.commit.clone());
    set(
        "machine",
        format!(
            "{}, {} cores, {} GiB, Linux {}",
            m.cpu, m.cores, m.memory_gib, m.kernel
        ),
    );
    set("toolchains", format!("{}; {}", m.rustc, m.python));
    set("cores", m.cores.to_string());
    set("processes", r.plan.max_processes_per_function.to_string());
    match (r.make_seconds, r.build_seconds) {
        (Some(total), Some(build)) => {
            set("wall_label", "`make bench` wall time".into());
            set(
                "wall",
                format!(
                    "{total:.0} s: release builds {build} s, benchmarks {:.0} s",
                    r.harness_seconds
                ),
            );
        }
        _ => {
            set("wall_label", "harness run time".into());
            set(
                "wall",
                format!("{:.0} s (builds excluded)", r.harness_seconds),
            );
        }
    }
    let rows = |lines: Vec<String>| lines.join("\n");
    let triple_row = |label: &str, a: &Summary, b: &Summary, digits: usize| {
        format!(
            "| {label} | {} | {} | {:.1}x |",
            a.triple(digits),
            b.triple(digits),
            ratio(b.median, a.median)
        )
    };

    if let Some(c) = r.cold_start.ok() {
        set("cold.runs", c.rust_first_response_ms.n.to_string());
        set("cold.warmup", c.warmup_runs.to_string());
        set("cold.rust_warm", fmt1(c.rust_warm_ms.median));
        let init = |runtime| {
            Summary::of(
                &c.runs
                    .iter()
                    .filter(|x| x.runtime == runtime)
                    .map(|x| x.init_ms)
                    .collect::<Vec<_>>(),
            )
        };
        let (ri, pi) = (
            init(crate::coldstart::Runtime::Rust),
            init(crate::coldstart::Runtime::Python),
        );
        set(
            "cold.rows",
            rows(vec![
                triple_row(
                    "spawn to first response, ms",
                    &c.rust_first_response_ms,
                    &c.python_first_response_ms,
                    1,
                ),
                triple_row("spawn to first `next` (init), ms", &ri, &pi, 1),
                triple_row(
                    "peak RSS after first invocation, MiB",
                    &c.rust_max_rss_mib,
                    &c.python_max_rss_mib,
                    1,
                ),
                triple_row(
                    "second (warm) invocation, ms",
                    &c.rust_warm_ms,
                    &c.python_warm_ms,
                    1,
                ),
            ]),
        );
    }
    if let Some(f) = r.fanout.ok() {
        set("fanout.latency", f.latency_ms.to_string());
        set("fanout.bound", f.bound.to_string());
        set("fanout.connect_rate", fmt0(f.connect_rate_per_s));
        set("fanout.handler_rss", fmt1(f.message_handler_max_rss_mib));
        if let Some(s) = f.sizes.iter().find(|s| s.n == 1000) {
            set(
                "fanout.over_ms",
                fmt0(s.handler_ms.median - 1.5 * s.ideal_ms),
            );
        }
        let lines = f
            .sizes
            .iter()
            .map(|s| {
                let library = s
                    .library_ms
                    .as_ref()
                    .map_or("-".to_owned(), |l| fmt0(l.median));
                let (sequential, speedup) = match (&s.sequential_ms, s.sequential_extrapolated_ms) {
                    (Some(q), _) => (fmt0(q.median), format!("{:.1}x", s.speedup_vs_sequential)),
                    (None, Some(e)) => (
                        format!("{e:.0} (extrapolated)"),
                        format!("{:.1}x", s.speedup_vs_sequential),
                    ),
                    _ => ("-".to_owned(), "-".to_owned()),
                };
                format!(
                    "| {} | {:.1} | {} | {:.2}x | {library} | {sequential} | {speedup} |",
                    s.n,
                    s.ideal_ms,
                    s.handler_ms.triple(0),
                    s.vs_ideal
                )
            })
            .collect();
        set("fanout.rows", rows(lines));
    }
    set(
        "fanout_bound",
        r.fanout.ok().map_or(64, |f| f.bound).to_string(),
    );
    if let Some(o) = r.overhead.ok() {
        let (g, e) = (&o.gateway, &o.raw_echo);
        set("overhead.round_trips", g.rtt_us.n.to_string());
        set("overhead.warmup", (r.plan.round_trips / 10).to_string());
        set("overhead.clients", g.clients.to_string());
        set("overhead.window", g.window_s.to_string());
        set("overhead.per_second", fmt0(g.per_second));
        set("overhead.echo_per_second", fmt0(e.per_second));
        let cpu = g.cpu_us_per_message;
        let total = cpu.server + cpu.handlers + cpu.clients;
        set("overhead.cpu_server", fmt0(cpu.server));
        set("overhead.cpu_handlers", fmt0(cpu.handlers));
        set("overhead.cpu_clients", fmt0(cpu.clients));
        set("overhead.cpu_total", fmt0(total));
        set("overhead.cpu_echo", fmt0(e.cpu_us_per_message.server));
        set(
            "overhead.cpu_cap",
            fmt0(m.cores as f64 * 1e6 / total.max(1.0)),
        );
        set("overhead.cpu_needed", fmt0(m.cores as f64 * 1e6 / 10_000.0));
        set(
            "overhead.rows",
            rows(vec![
                format!("| round trip median, µs | {:.0} | {:.0} | {:.1}x |", e.rtt_us.median, g.rtt_us.median, o.median_ratio),
                format!("| round trip p99, µs | {:.0} | {:.0} | {:.1}x |", e.rtt_us.p99, g.rtt_us.p99, ratio(g.rtt_us.p99, e.rtt_us.p99)),
                format!("| round trip min / max, µs | {:.0} / {:.0} | {:.0} / {:.0} | |", e.rtt_us.min, e.rtt_us.max, g.rtt_us.min, g.rtt_us.max),
                format!("| messages/s at {} clients | {:.0} | {:.0} | {:.2}x |", g.clients, e.per_second, g.per_second, ratio(g.per_second, e.per_second)),
                format!(
                    "| round trip under that load, median / p99, µs | {:.0} / {:.0} | {:.0} / {:.0} | |",
                    e.loaded_rtt_us.median, e.loaded_rtt_us.p99, g.loaded_rtt_us.median, g.loaded_rtt_us.p99
                ),
                format!("| CPU per message under load, µs: server process | {:.0} | {:.0} (gateway) | |", e.cpu_us_per_message.server, cpu.server),
                format!("| CPU per message under load, µs: handler processes | - | {:.0} (message) | |", cpu.handlers),
                format!("| CPU per message under load, µs: clients (harness) | {:.0} | {:.0} | |", e.cpu_us_per_message.clients, cpu.clients),
            ]),
        );
    }
    if let Some(c) = r.capacity.ok() {
        set("capacity.connections", c.connections.to_string());
        set("capacity.parallel", c.parallel.to_string());
        set("capacity.bytes", fmt0(c.bytes_per_connection));
        set(
            "capacity.floor_note",
            c.raw_echo_bytes_per_connection.map_or(String::new(), |floor| {
                format!(
                    "; the raw echo server, on the same library with the same buffers, in {floor:.0} B: about {:.0} B is the gateway's own (the connection record, its outbox and the task's state)",
                    c.bytes_per_connection - floor
                )
            }),
        );
        let mut lines = vec![
            format!(
                "| connections held | {} (lobby members in DynamoDB: {}) |",
                c.connections, c.lobby_members
            ),
            format!(
                "| gateway RSS before / after | {:.1} MiB / {:.1} MiB |",
                c.rss_before_kib as f64 / 1024.0,
                c.rss_after_kib as f64 / 1024.0
            ),
            format!(
                "| RSS per connection | {:.0} B ({:.2} KiB) |",
                c.bytes_per_connection,
                c.bytes_per_connection / 1024.0
            ),
            format!(
                "| connection rate through `$connect` | {:.0} /s |",
                c.connects_per_s
            ),
        ];
        if let Some(floor) = c.raw_echo_bytes_per_connection {
            lines.push(format!(
                "| floor: the raw echo server (same library and buffers) holding as many, per connection | {floor:.0} B ({:.2} KiB) |",
                floor / 1024.0
            ));
        }
        lines.push(format!(
            "| one upgrade incl. `$connect`, ms (min / median / max) | {} |",
            c.connect_ms.triple(1)
        ));
        set("capacity.rows", rows(lines));
    }
    if let Some(b) = r.broadcast.ok() {
        set("broadcast.clients", b.clients.to_string());
        set("broadcast.rounds", b.last_arrival_ms.n.to_string());
        set("broadcast.last", b.last_arrival_ms.triple(1));
        set("broadcast.first", b.first_arrival_ms.triple(1));
    }
    if let Some(fp) = r.footprint.ok() {
        set("footprint.target", fp.target.clone());
        set("footprint.profile", fp.profile.clone());
        set("footprint.table", footprint_table(fp));
        set(
            "footprint.host_note",
            if fp.lambda_builds.as_ref().is_some_and(|l| l.current) {
                String::new()
            } else {
                " This run judged the host build: x86_64, and built in one cargo invocation with the gateway and the harness, whose features then reach the dependencies they share with the handlers. What the stack deploys is cargo-lambda's build of each handler for arm64; run `make synth-bundled` (part of `make test`) on a clean tree before `make bench` to have those measured and counted.".to_owned()
            },
        );
    }
    if let Some(c) = r.cost.ok() {
        set("cost.section", cost_section(c));
    }
    if let Some(room) = r.room.ok() {
        let p = &room.plan;
        set("room.members", p.members.to_string());
        set("room.processes", p.client_processes.to_string());
        set("room.latency", p.latency_ms.to_string());
        set("room.rate", p.throttle_per_second.to_string());
        set("room.burst", p.throttle_burst.to_string());
        set("room.bound", fmt0(room.bound_ms));
        set("room.concurrency", p.queued_max_concurrency.to_string());
        set(
            "room.per_process",
            (p.throttle_per_second as usize / p.queued_max_concurrency.max(1)).to_string(),
        );
        if let Some(t) = room.tier("queued") {
            set("room.queued_delivered", t.delivered.to_string());
        }
        let lines = room
            .tiers
            .iter()
            .map(|t| {
                let ack = match &t.ack {
                    Some(a)
                        if a.get("queued").and_then(serde_json::Value::as_bool) == Some(true) =>
                    {
                        "`sent`, queued".to_owned()
                    }
                    Some(a) => format!(
                        "`{}`",
                        a.get("type")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("?")
                    ),
                    None => "none".to_owned(),
                };
                format!(
                    "| {} | {ack} | {} / {} ({:.1} %) | {:.0} | {:.2}x | {} | {:.0} |",
                    t.tier,
                    t.delivered,
                    p.members,
                    t.delivered_share * 100.0,
                    t.last_delivery_ms,
                    t.vs_bound,
                    t.throttled_calls.map_or("-".to_owned(), |n| n.to_string()),
                    t.connect_rate_per_s
                )
            })
            .collect();
        set("room.rows", rows(lines));
    }
    if let Some(storm) = r.storm.ok() {
        set("storm.rate", storm.plan.rate_per_s.to_string());
        set("storm.seconds", storm.plan.seconds.to_string());
        let lines = storm
            .runs
            .iter()
            .map(|s| {
                format!(
                    "| `{}` | {} / {} | {} | {:.0} | `{}` | {:.0} | {:.0} | `{}` | {:.0} |",
                    s.room_shards,
                    s.attempted,
                    s.connected,
                    s.refused_by_quota,
                    s.connected_per_s,
                    s.hottest_key,
                    s.hottest_wcu,
                    s.hottest_wcu_at_rate,
                    s.hottest_lobby_key,
                    s.hottest_lobby_wcu
                )
            })
            .collect();
        set("storm.rows", rows(lines));
        let keys = |shards: &str| {
            storm.run(shards).map_or("-".to_owned(), |s| {
                s.hot_keys
                    .iter()
                    .map(|(k, w)| format!("`{k}` {w:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        };
        set("storm.keys_sharded", keys("lobby=8"));
        set("storm.keys_unsharded", keys("lobby=1"));
    }
    v
}

fn footprint_table(f: &crate::footprint::Footprint) -> String {
    let mb = |bytes: u64| format!("{:.3} MB", bytes as f64 / 1e6);
    let mut lines = Vec::new();
    match &f.lambda_builds {
        Some(l) => {
            lines.push(format!(
                "| handler | host binary | host zip | Lambda ({}) binary | Lambda zip |\n|---|---|---|---|---|",
                l.architecture
            ));
            for h in &f.handlers {
                let lambda = l.handlers.iter().find(|x| x.name == h.name);
                lines.push(format!(
                    "| {} | {} | {} | {} | {} |",
                    h.name,
                    mb(h.binary_bytes),
                    mb(h.zip_bytes),
                    lambda.map_or("-".to_owned(), |x| mb(x.binary_bytes)),
                    lambda.map_or("-".to_owned(), |x| mb(x.zip_bytes)),
                ));
            }
            let from = match (&l.commit, l.current) {
                (Some(c), true) => format!("from this commit (`{c}`)"),
                (Some(c), false) => {
                    format!("from `{c}`, not this run's commit: shown, not counted for the goal")
                }
                (None, _) => "from an unknown commit: shown, not counted for the goal".to_owned(),
            };
            lines.push(format!(
                "\nLambda builds from the bundled synth in `{}`, built {} {from}.",
                l.dir, l.built_at
            ));
        }
        None => {
            lines.push("| handler | host binary | host zip |\n|---|---|---|".to_owned());
            for h in &f.handlers {
                lines.push(format!(
                    "| {} | {} | {} |",
                    h.name,
                    mb(h.binary_bytes),
                    mb(h.zip_bytes)
                ));
            }
            lines.push("\nNo bundled synth on disk: run `make synth-bundled` before `make bench` to add the Lambda builds.".to_owned());
        }
    }
    lines.join("\n")
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

/// The cost section (also what the README quotes).
pub fn cost_section(c: &cost::Cost) -> String {
    let mut lines = vec![
        format!(
            "Per one million `sendmessage` requests to a room of N members (the sender included), from the message handler's measured time to last delivery at {} ms @connections latency (an upper bound of its billed duration), {} MB {} as configured in the stack. Prices assumed: {}.\n",
            c.latency_ms, c.memory_mb, c.architecture, c.prices_as_of
        ),
        format!(
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
        ),
        "| room size | billed ms | Lambda | API Gateway | DynamoDB | total per million sendmessage | per million delivered |\n|---|---|---|---|---|---|---|".to_owned(),
    ];
    for row in &c.rows {
        lines.push(format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} |",
            row.room_size,
            row.billed_ms,
            money(row.lambda_usd),
            money(row.apigw_usd),
            money(row.dynamodb_usd),
            money(row.total_usd),
            money(row.per_million_delivered_usd)
        ));
    }
    lines.join("\n")
}

/// What becomes of a `{{#name}}...{{/name}}` section.
enum Section {
    /// Shown as written.
    Keep,
    /// Shown as this text instead.
    Replace(String),
    /// Left out.
    Drop,
}

fn phase_section<T>(phase: &Phase<T>) -> Section {
    match phase {
        Phase::Ok(_) => Section::Keep,
        Phase::Skipped => Section::Replace("Skipped in this run (`--only`).\n".to_owned()),
        Phase::Failed(error) => Section::Replace(format!(
            "Not measured: the phase failed: `{}`\n",
            error.replace('`', "'")
        )),
    }
}

/// Renders `template`: sections first (a section's marker lines vanish with their newline),
/// then `{{name}}` values; a name without a value stays visible as `{{name}}`.
fn render(
    template: &str,
    values: &BTreeMap<String, String>,
    sections: &BTreeMap<&str, Section>,
) -> String {
    let mut text = template.to_owned();
    for (name, section) in sections {
        let (open, close) = (format!("{{{{#{name}}}}}\n"), format!("{{{{/{name}}}}}\n"));
        while let Some(start) = text.find(&open) {
            let Some(end) = text[start..].find(&close).map(|i| start + i) else {
                break;
            };
            let body = text[start + open.len()..end].to_owned();
            let replacement = match section {
                Section::Keep => body,
                Section::Replace(other) => other.clone(),
                Section::Drop => String::new(),
            };
            text.replace_range(start..end + close.len(), &replacement);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let name = &rest[start + 2..start + len];
        match values.get(name) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// RESULTS.md.
pub fn markdown(r: &Results) -> String {
    let mut values = values(r);
    let goal_rows: Vec<String> = r
        .goals
        .iter()
        .map(|g| {
            let status = if g.note.is_empty() {
                g.status.clone()
            } else {
                format!("{}: {}", g.status, g.note)
            };
            format!(
                "| {} | {} | {} | {status} |",
                g.benchmark, g.goal, g.measured
            )
        })
        .collect();
    values.insert("goal_rows".into(), goal_rows.join("\n"));
    let missed = |prefix: &str| {
        r.goals
            .iter()
            .any(|g| g.benchmark.starts_with(prefix) && g.status == "missed")
    };
    let keep_if = |yes: bool| if yes { Section::Keep } else { Section::Drop };
    let sections = BTreeMap::from([
        ("quick", keep_if(r.plan.quick)),
        ("cold_start", phase_section(&r.cold_start)),
        ("fanout", phase_section(&r.fanout)),
        ("overhead", phase_section(&r.overhead)),
        ("capacity", phase_section(&r.capacity)),
        ("broadcast", phase_section(&r.broadcast)),
        ("footprint", phase_section(&r.footprint)),
        ("cost", phase_section(&r.cost)),
        ("room", phase_section(&r.room)),
        ("storm", phase_section(&r.storm)),
        (
            "missed_overhead",
            keep_if(missed("3.") && r.overhead.ok().is_some()),
        ),
        (
            "missed_capacity",
            keep_if(missed("4.") && r.capacity.ok().is_some()),
        ),
        (
            "missed_footprint",
            keep_if(missed("6.") && r.footprint.ok().is_some()),
        ),
        (
            "missed",
            keep_if(missed("3.") || missed("4.") || missed("6.")),
        ),
    ]);
    render(TEMPLATE, &values, &sections)
}

#[cfg(test)]
mod tests {
    use super::{render, Section};
    use std::collections::BTreeMap;

    #[test]
    fn renders_values_and_sections() {
        let values = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        let sections = BTreeMap::from([
            ("kept", Section::Keep),
            ("gone", Section::Drop),
            ("failed", Section::Replace("no\n".to_owned())),
        ]);
        let text = "x {{a}} {{b}}\n{{#kept}}\nk {{a}}\n{{/kept}}\n{{#gone}}\ng\n{{/gone}}\n{{#failed}}\nf\n{{/failed}}\nend\n";
        assert_eq!(
            render(text, &values, &sections),
            "x 1 {{b}}\nk 1\nno\nend\n"
        );
    }
}
