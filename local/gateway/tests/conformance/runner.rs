//! Runs the cases one after another against one target, each in a task of its own (a panic is
//! that case's failure) within a time limit, prints one line per case and the counts, and fails
//! if any case failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::coverage;
use crate::target::Target;

/// A case: `Ok` passed; `Err` or a panic failed, with a message saying what the target did and
/// what was expected.
pub type CaseFn = for<'a> fn(&'a Target) -> BoxFuture<'a, Result<(), String>>;

/// What a case needs beyond a WebSocket URL and a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing more: it runs on every target.
    Wire,
    /// The @connections API, signed with the caller's AWS credentials.
    Management,
    /// The local gateway (it sets up what only the gateway can).
    Local,
}

pub struct Case {
    pub name: &'static str,
    pub needs: Needs,
    pub run: CaseFn,
}

/// The longest one case may take (the rooms-limit case paces its joins to the rate limit).
const CASE_LIMIT: Duration = Duration::from_secs(120);

/// The name of the coverage check, run after the cases.
const COVERAGE: &str = "every_action_and_error_code_was_exercised";

pub async fn run(target: Target, cases: Vec<Case>) {
    let only: Vec<String> = std::env::var("E2E_CASES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let selected = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "two cases have the same name");

    println!("conformance: {} cases against {}", cases.len(), target.name);
    let started = Instant::now();
    let target = Arc::new(target);
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    // Each line is printed as it comes and again at the end, after the handlers' logs.
    let mut report = Vec::new();
    let mut say = |line: String| {
        println!("{line}");
        report.push(line);
    };
    for case in cases.iter().filter(|c| selected(c.name)) {
        let skip = match case.needs {
            Needs::Wire => None,
            Needs::Management => target.management.as_ref().err().cloned(),
            Needs::Local => target.local.is_none().then(|| "local-only".to_owned()),
        };
        if let Some(reason) = skip {
            say(format!("skipped ({reason}): {}", case.name));
            skipped += 1;
            continue;
        }
        let began = Instant::now();
        match run_one(&target, case).await {
            Ok(()) => {
                say(format!(
                    "ok: {} ({:.1} s)",
                    case.name,
                    began.elapsed().as_secs_f64()
                ));
                passed += 1;
            }
            Err(message) => {
                say(format!(
                    "FAILED: {} ({:.1} s): {message}",
                    case.name,
                    began.elapsed().as_secs_f64()
                ));
                failed.push(case.name.to_owned());
            }
        }
    }
    if only.is_empty() {
        let missing = coverage::missing(target.local.is_some());
        if missing.is_empty() {
            say(format!("ok: {COVERAGE}"));
            passed += 1;
        } else {
            say(format!(
                "FAILED: {COVERAGE}: never exercised: {}; add a case for each (tests/conformance)",
                missing.join(", ")
            ));
            failed.push(COVERAGE.to_owned());
        }
    } else {
        say(format!("skipped (E2E_CASES is set): {COVERAGE}"));
        skipped += 1;
    }
    let counts = format!(
        "conformance against {}: {passed} passed, {skipped} skipped, {} failed ({:.1} s)",
        target.name,
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    match Arc::try_unwrap(target) {
        Ok(target) => target.shutdown().await,
        Err(_) => println!("a case still holds the target: not shutting it down"),
    }
    println!("\n{}\n{counts}", report.join("\n"));
    assert!(failed.is_empty(), "failed: {}", failed.join(", "));
}

/// One case in a task of its own, so that a panic fails that case only.
async fn run_one(target: &Arc<Target>, case: &Case) -> Result<(), String> {
    let run = case.run;
    let target = Arc::clone(target);
    let mut task = tokio::spawn(async move { run(&target).await });
    match tokio::time::timeout(CASE_LIMIT, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) if error.is_panic() => Err(panic_message(error.into_panic())),
        Ok(Err(error)) => Err(format!("the case's task ended: {error}")),
        Err(_) => {
            task.abort();
            let _ = task.await;
            Err(format!("did not finish within {CASE_LIMIT:?}"))
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}
