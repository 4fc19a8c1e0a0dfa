//! Runs a command with one DynamoDB Local for all of it: `with-dynamodb CMD ARGS...`.
//! The endpoint is passed as `TEST_DYNAMODB_ENDPOINT`; DynamoDB Local stops when the command
//! ends, whatever its outcome, and the command's exit code is returned.

use std::process::ExitCode;

use dynamodb_local::{DynamoDbLocal, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: with-dynamodb COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let db = match DynamoDbLocal::start(Options::default()).await {
        Ok(db) => db,
        Err(error) => {
            eprintln!("with-dynamodb: {error}");
            return ExitCode::from(1);
        }
    };
    eprintln!("with-dynamodb: DynamoDB Local on {}", db.endpoint());
    let status = tokio::process::Command::new(&program)
        .args(args)
        .env("TEST_DYNAMODB_ENDPOINT", db.endpoint())
        .status()
        .await;
    db.stop().await;
    match status {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(error) => {
            eprintln!("with-dynamodb: could not run {program}: {error}");
            ExitCode::from(1)
        }
    }
}
