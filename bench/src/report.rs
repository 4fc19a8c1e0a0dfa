//! The goals of the issue, kept as data (`bench/goals.json`) and judged against the
//! measurements, and RESULTS.md, rendered from `bench/RESULTS.md.tmpl`. Both read the results
//! as `results.json` holds them, through minijinja: the code measures, the files say.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

/// The page's template; its context is `results.json`.
const TEMPLATE: &str = include_str!("../RESULTS.md.tmpl");

/// The goals: each names its phase, the figure (an expression), its target and two templates.
const GOALS: &str = include_str!("../goals.json");

/// One goal of `goals.json`.
#[derive(Debug, Deserialize)]
struct GoalSpec {
    benchmark: String,
    goal: String,
    /// The key of its phase in the results: `p` in the expressions is that phase's result.
    phase: String,
    /// An expression bound to `s` before the figure is read (e.g. the row of N = 1,000).
    #[serde(default)]
    with: Option<String>,
    /// The expression of the judged value; undefined when the run did not measure it.
    figure: String,
    at_least: Option<f64>,
    at_most: Option<f64>,
    /// How the page states the figure (`value` is the figure).
    measured: String,
    /// Why a miss is a miss (`short`, `over`, `times` say by how much).
    why: String,
}

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

/// The renderer both files use: numbers are formatted by filters, never by the data.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // `fanout.ok.bound` of a skipped phase is undefined, not an error: sections test for it.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // Block tags on their own line leave no blank line behind.
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("f", |v: f64, digits: usize| format!("{v:.digits$}"));
    env.add_filter("mb", |bytes: f64| format!("{:.3} MB", bytes / 1e6));
    env.add_filter("money", |v: f64| match v {
        v if v >= 100.0 => format!("${v:.0}"),
        v if v >= 1.0 => format!("${v:.2}"),
        v => format!("${v:.3}"),
    });
    env.add_filter("triple", |s: Value, digits: usize| {
        let get = |k| s.get_attr(k).ok().and_then(|v| f64::try_from(v).ok());
        let [min, median, max] = ["min", "median", "max"].map(|k| get(k).unwrap_or(0.0));
        format!("{min:.digits$} / {median:.digits$} / {max:.digits$}")
    });
    env.add_function("ratio", |a: f64, b: f64| a / b.max(f64::EPSILON));
    env
}

/// Why a phase has no figures, from its serialized [`crate::Phase`].
fn not_measured(spec: GoalSpec, phase: &serde_json::Value) -> Goal {
    let note = match phase.get("failed").and_then(serde_json::Value::as_str) {
        _ if phase.get("ok").is_some() => "not in this run's plan".to_owned(),
        Some(error) => format!("the phase failed: {error}"),
        None => "skipped in this run (--only)".to_owned(),
    };
    Goal {
        benchmark: spec.benchmark,
        goal: spec.goal,
        measured: String::new(),
        status: "not measured".to_owned(),
        note,
    }
}

/// Each goal: met, or by how much it is missed and why.
pub fn goals(results: &serde_json::Value) -> Result<Vec<Goal>> {
    let specs: Vec<GoalSpec> = serde_json::from_str(GOALS).context("bench/goals.json")?;
    let env = environment();
    specs
        .into_iter()
        .map(|spec| judge(&env, results, spec))
        .collect()
}

fn judge(env: &Environment<'_>, results: &serde_json::Value, spec: GoalSpec) -> Result<Goal> {
    let context = |what: &str| format!("goal {:?}: {what}", spec.goal);
    let phase = &results[spec.phase.as_str()];
    let Some(measured) = phase.get("ok") else {
        return Ok(not_measured(spec, phase));
    };
    let mut ctx = BTreeMap::from([
        ("r", Value::from(Serde(results))),
        ("p", Value::from(Serde(measured))),
    ]);
    let eval = |ctx: &BTreeMap<&str, Value>, expr: &str| {
        env.compile_expression(expr)
            .and_then(|e| e.eval(ctx))
            .with_context(|| context(expr))
    };
    if let Some(with) = &spec.with {
        let s = eval(&ctx, with)?;
        ctx.insert("s", s);
    }
    let value = eval(&ctx, &spec.figure)?;
    let (met, v, t) = match (f64::try_from(value).ok(), spec.at_least, spec.at_most) {
        (Some(v), Some(t), _) => (v >= t, v, t),
        (Some(v), None, Some(t)) => (v <= t, v, t),
        _ => return Ok(not_measured(spec, phase)),
    };
    ctx.insert("value", Value::from(v));
    ctx.insert("short", Value::from(t / v.max(f64::EPSILON)));
    ctx.insert("times", Value::from(v / t));
    // Bytes and WCU read best whole, megabytes with two decimals.
    let digits = if (v - t).abs() >= 100.0 { 0 } else { 2 };
    ctx.insert("over", Value::from(format!("{:.digits$}", v - t)));
    let render = |source: &str| {
        env.render_str(source, &ctx)
            .with_context(|| context(source))
    };
    Ok(Goal {
        measured: render(&spec.measured)?,
        status: if met { "met" } else { "missed" }.to_owned(),
        note: if met {
            String::new()
        } else {
            render(&spec.why)?
        },
        benchmark: spec.benchmark,
        goal: spec.goal,
    })
}

/// RESULTS.md from the results (goals included) as `results.json` holds them.
pub fn markdown(results: &serde_json::Value) -> Result<String> {
    let mut env = environment();
    env.add_template("RESULTS.md", TEMPLATE)
        .context("bench/RESULTS.md.tmpl")?;
    env.get_template("RESULTS.md")
        .and_then(|t| t.render(Serde(results)))
        .context("render bench/RESULTS.md.tmpl")
}

#[cfg(test)]
mod tests {
    use super::{goals, markdown};
    use serde_json::json;

    /// The last full run, as committed: every goal is judged, and the page renders whole.
    #[test]
    fn judges_and_renders_a_full_run() {
        let mut results: serde_json::Value =
            serde_json::from_str(include_str!("../results.json")).expect("results.json");
        // Fields the page reads that a run older than them lacks.
        let cold = &mut results["cold_start"]["ok"];
        for runtime in ["rust", "python"] {
            if cold.get(format!("{runtime}_init_ms")).is_none() {
                cold[format!("{runtime}_init_ms")] = cold[format!("{runtime}_warm_ms")].clone();
            }
        }
        let cost = &mut results["cost"]["ok"];
        if cost.get("prices").is_none() {
            cost["prices"] = serde_json::to_value(crate::cost::PRICES).expect("prices");
        }
        let judged = goals(&results).expect("goals");
        let unjudged: Vec<_> = judged
            .iter()
            .filter(|g| g.status == "not measured")
            .collect();
        assert!(unjudged.is_empty(), "{unjudged:#?}");
        results["goals"] = serde_json::to_value(&judged).expect("goals as JSON");
        let page = markdown(&results).expect("render");
        for section in [
            "## 1. Cold start",
            "## 9. Connect storm",
            "| 1000 |",
            "`ROOM_SHARDS`",
        ] {
            assert!(page.contains(section), "{section}");
        }
        assert!(!page.contains("{{") && !page.contains("{%") && !page.contains("Skipped"));
    }

    /// A run of one phase: the others say why they have no figures, the goals too.
    #[test]
    fn renders_a_partial_run() {
        let mut results = json!({
            "machine": {"date": "d", "commit": "c", "cpu": "cpu", "cores": 2, "memory_gib": 1.5,
                        "kernel": "k", "rustc": "rustc", "python": "py"},
            "plan": {"quick": true, "round_trips": 10, "max_processes_per_function": 4},
            "harness_seconds": 12.3, "make_seconds": null, "build_seconds": null,
            "footprint": {"ok": {"target": "t", "profile": "opt-level = z", "lambda_builds": null,
                "handlers": [{"name": "connect", "binary_bytes": 4_000_000, "zip_bytes": 2_100_000}]}},
            "cold_start": "skipped", "broadcast": "skipped", "overhead": "skipped",
            "fanout": {"failed": "no `gateway`"}, "capacity": "skipped", "cost": "skipped",
            "room": "skipped", "storm": "skipped",
        });
        let judged = goals(&results).expect("goals");
        let zip = judged
            .iter()
            .find(|g| g.benchmark == "6. footprint")
            .expect("footprint");
        assert_eq!(zip.status, "missed");
        assert_eq!(zip.measured, "largest zip 2.100 MB (connect, host build)");
        assert!(zip.note.starts_with("0.10 MB (1.05x) over"), "{}", zip.note);
        let fanout = judged
            .iter()
            .find(|g| g.benchmark == "2. fan-out")
            .expect("fan-out");
        assert_eq!(fanout.note, "the phase failed: no `gateway`");
        results["goals"] = serde_json::to_value(&judged).expect("goals as JSON");
        let page = markdown(&results).expect("render");
        assert!(page.contains("**QUICK RUN"));
        assert!(page.contains("| harness run time | 12 s (builds excluded) |"));
        assert!(page.contains("| connect | 4.000 MB | 2.100 MB |"));
        assert!(page.contains("Not measured: the phase failed: `no 'gateway'`"));
        assert!(page.contains("**Footprint.**"));
        assert!(!page.contains("**Capacity.**"));
        assert!(!page.contains("{{") && !page.contains("{%"));
    }
}
