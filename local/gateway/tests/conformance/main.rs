//! The conformance suite: the client protocol and the API Gateway behaviours the backend relies
//! on (connect and auth status codes, error frames, close codes, quotas, every action and error
//! code, @connections through the SDK), run as one suite against one target.
//!
//! - `E2E_URL` and `E2E_TOKEN` unset: the local gateway on the synthesized dev template, its
//!   real authorizer included (needs `make gateway-e2e-deps`). Part of `make test`.
//! - `E2E_URL=wss://API.execute-api.REGION.amazonaws.com/STAGE E2E_TOKEN=JWT`: a deployed stage,
//!   or a running local gateway (`ws://127.0.0.1:3001/dev`). `make e2e URL=… TOKEN=…` sets them.
//!
//! The cases talk to the target over the wire only (WebSocket, HTTP, the @connections SDK), so
//! the same functions run against both. Cases that only the local gateway can set up (a 2 s idle
//! timeout, a crashing handler, a stalled database, tokens signed with the stage's key) are
//! local-only and skip themselves elsewhere; @connections cases skip without AWS credentials.
//! @connections requests to a remote target are signed with `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` from the environment, for the region of the
//! `execute-api` host (else `E2E_REGION`, else us-east-1), at `https://HOST/STAGE` (else
//! `E2E_CONNECTIONS_URL`, for a custom domain). `E2E_CASES=word,word` runs only the cases whose
//! names contain one of those words.
//!
//! One `#[tokio::test]` runs every case in sequence against one target: nextest runs each test
//! in a process of its own, so one test per case would start one gateway (and one DynamoDB
//! Local) per case, or connect to a deployed stage as many times.

#[path = "../support/mod.rs"]
mod support;

/// A case of the table: `case!(Needs, function)`, named after the function.
macro_rules! case {
    ($needs:ident, $run:ident) => {
        $crate::runner::Case {
            name: stringify!($run),
            needs: $crate::runner::Needs::$needs,
            run: |target| Box::pin($run(target)),
        }
    };
}

mod cases_gateway;
mod cases_local;
mod cases_protocol;
mod conn;
mod coverage;
mod runner;
mod target;

#[tokio::test(flavor = "multi_thread")]
async fn conformance() {
    let cases: Vec<runner::Case> = [
        cases_protocol::cases(),
        cases_gateway::cases(),
        cases_local::cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let target = target::Target::from_env().await;
    runner::run(target, cases).await;
}
