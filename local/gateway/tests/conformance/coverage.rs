//! Which actions and error codes the cases exercised, checked against the protocol's own lists
//! once the cases have run: an action added to `Request` or a code added to `ErrorCode` without
//! a case fails the suite (the code already at compile time, in [`reach`]).

use std::collections::BTreeSet;
use std::sync::Mutex;

use realtime_core::{Action, ErrorCode};
use serde_json::Value;

/// Actions answered with their reply (not an error), and error codes received.
static SEEN: Mutex<Seen> = Mutex::new(Seen {
    actions: BTreeSet::new(),
    codes: BTreeSet::new(),
});

struct Seen {
    actions: BTreeSet<String>,
    codes: BTreeSet<String>,
}

/// Where the suite provokes an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Over the wire, on any target.
    Wire,
    /// Only on the local gateway (a local-only case sets it up).
    LocalOnly,
}

/// Every error code of the protocol, each with where the suite provokes it. The match is
/// exhaustive: a new `ErrorCode` does not compile until it is placed here (and a case for it
/// written, or the check below fails).
pub fn error_codes() -> Vec<(ErrorCode, Reach)> {
    use ErrorCode::*;
    let reach = |code: ErrorCode| match code {
        BadRequest | UnknownAction | Invalid | NotMember | Gone | RateLimited | LimitExceeded => {
            Reach::Wire
        }
        // Storage failing: a stalled DynamoDB Local (cases_local::storage_failure_is_internal).
        Internal => Reach::LocalOnly,
    };
    [
        BadRequest,
        UnknownAction,
        Invalid,
        NotMember,
        Gone,
        RateLimited,
        LimitExceeded,
        Internal,
    ]
    .into_iter()
    .map(|code| (code, reach(code)))
    .collect()
}

/// The wire name of a code (`bad_request`).
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("an error code serializes to a string")
}

/// Records a request and its reply: the action counts when it got its reply, not an error.
pub fn record(request: &Value, reply: &Value) {
    if reply["type"] == "error" {
        record_frame(reply);
    } else if let Some(action) = request["action"].as_str() {
        if reply["type"].is_string() {
            seen().actions.insert(action.to_owned());
        }
    }
}

/// Records a frame a case matched: an error frame's code.
pub fn record_frame(frame: &Value) {
    if frame["type"] == "error" {
        if let Some(code) = frame["code"].as_str() {
            seen().codes.insert(code.to_owned());
        }
    }
}

fn seen() -> std::sync::MutexGuard<'static, Seen> {
    SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What was never exercised: every action of [`Action::all`] must have been answered, and every
/// error code received, except local-only ones when `local` is false.
pub fn missing(local: bool) -> Vec<String> {
    let seen = seen();
    let mut missing: Vec<String> = Action::all()
        .map(Action::name)
        .filter(|name| !seen.actions.contains(*name))
        .map(|name| format!("action `{name}` (no case got its reply)"))
        .collect();
    for (code, reach) in error_codes() {
        let name = code_name(code);
        if (local || reach == Reach::Wire) && !seen.codes.contains(&name) {
            missing.push(format!("error code `{name}` (no case received it)"));
        }
    }
    missing
}
