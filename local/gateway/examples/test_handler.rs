//! A handler for the gateway's end-to-end tests that misbehaves on request. It speaks the
//! Lambda Runtime API over plain HTTP/1.1 without `lambda_runtime`, so it also checks that
//! the gateway serves any Runtime API client.
//!
//! MESSAGE events, by `action`: `crash` aborts the process, `sleep` outlives any timeout,
//! `fail` reports a handler error, `nap` answers after 300 ms, `big` answers a body of `size`
//! bytes, `orphan` starts a `sleep 600` child, writes its pid to `pidfile` and then outlives
//! any timeout; anything else answers at once. The answer is `{"statusCode":200,"body":...}` describing the event's route key, body and
//! authorizer context, the process id, its invocation count and `$TEST_MARKER`.
//! `extra-keys` answers a result with a key outside the proxy response format.
//! `$connect`: `?reject=STATUS` answers that status, anything else 200.
//! REQUEST authorizer events: `?token=allow` allows (context user=alice), `deny` denies,
//! `null-context`, `object-context` and `huge-context` allow with a context value that is
//! null, an object, or 9,000 characters long.
//! SQS events (from an event source mapping), by each record's body: `fail` is named in
//! `batchItemFailures`, `crash` aborts the process, `error` reports a handler error for the
//! batch, `unknown-id` and `empty-id` answer a `batchItemFailures` entry that names no record of
//! the batch, `sleep:MS` waits MS milliseconds; anything else succeeds.
//! With `$TEST_EVENT_LOG` set, every event is appended to that file as one JSON line; after an
//! SQS batch, the line `{"end":"sqs","pid":PID}` follows, so that a test can count batches in
//! flight at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

fn main() {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").unwrap_or_else(|_| {
        eprintln!("test-handler: AWS_LAMBDA_RUNTIME_API is not set");
        std::process::exit(2)
    });
    let mut invocations = 0u64;
    loop {
        let (headers, body) = match request(&api, "GET", "/2018-06-01/runtime/invocation/next", b"")
        {
            Ok(answer) => answer,
            Err(error) => {
                eprintln!("test-handler: next failed: {error}");
                std::process::exit(1)
            }
        };
        invocations += 1;
        let request_id = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("lambda-runtime-aws-request-id"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (path, answer) = match handle(&event, invocations) {
            Ok(answer) => (
                format!("/2018-06-01/runtime/invocation/{request_id}/response"),
                answer,
            ),
            Err(error) => (
                format!("/2018-06-01/runtime/invocation/{request_id}/error"),
                error,
            ),
        };
        if let Err(error) = request(&api, "POST", &path, answer.to_string().as_bytes()) {
            eprintln!("test-handler: posting the result failed: {error}");
            std::process::exit(1)
        }
    }
}

fn handle(event: &Value, invocations: u64) -> Result<Value, Value> {
    log_line(event);
    if event["Records"][0]["eventSource"] == "aws:sqs" {
        let answer = sqs_batch(event);
        log_line(&json!({"end": "sqs", "pid": std::process::id()}));
        return answer;
    }
    if event["type"] == "REQUEST" {
        let token = event["queryStringParameters"]["token"]
            .as_str()
            .unwrap_or_default();
        let effect = if token == "deny" { "Deny" } else { "Allow" };
        let context = match token {
            "null-context" => json!({"user": null}),
            "object-context" => json!({"user": {"name": "alice"}}),
            "huge-context" => json!({"user": "a".repeat(9000)}),
            "allow" => json!({"user": "alice", "level": 3}),
            _ => json!({}),
        };
        let effect = if context.as_object().is_some_and(|c| c.is_empty()) {
            "Deny"
        } else {
            effect
        };
        return Ok(json!({
            "principalId": "alice-id",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}
            ]},
            "context": context
        }));
    }
    let route = event["requestContext"]["routeKey"]
        .as_str()
        .unwrap_or_default();
    if route == "$connect" {
        let status = event["queryStringParameters"]["reject"]
            .as_str()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(200);
        return Ok(json!({"statusCode": status, "body": "from test-handler"}));
    }
    let body: Value = event["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    match body["action"].as_str().unwrap_or_default() {
        "crash" => std::process::abort(),
        "sleep" => {
            std::thread::sleep(Duration::from_secs(30));
            Ok(json!({"statusCode": 200}))
        }
        "fail" => Err(json!({"errorMessage": "asked to fail", "errorType": "TestFailure"})),
        "nap" => {
            std::thread::sleep(Duration::from_millis(300));
            Ok(echo(event, route, invocations))
        }
        "extra-keys" => Ok(json!({"statusCode": 200, "body": "x", "unexpected": true})),
        "big" => {
            let size = body["size"].as_u64().unwrap_or(0) as usize;
            Ok(json!({"statusCode": 200, "body": "x".repeat(size)}))
        }
        "orphan" => {
            let child = std::process::Command::new("sleep").arg("600").spawn();
            if let (Ok(child), Some(path)) = (child, body["pidfile"].as_str()) {
                let _ = std::fs::write(path, child.id().to_string());
            }
            std::thread::sleep(Duration::from_secs(30));
            Ok(json!({"statusCode": 200}))
        }
        _ => Ok(echo(event, route, invocations)),
    }
}

/// Appends `line` to `$TEST_EVENT_LOG`, when set.
fn log_line(line: &Value) {
    if let Ok(path) = std::env::var("TEST_EVENT_LOG") {
        let line = format!("{line}\n");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// A batch of SQS records, each handled as its body asks.
fn sqs_batch(event: &Value) -> Result<Value, Value> {
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    let mut failures = Vec::new();
    for record in &records {
        let body = record["body"].as_str().unwrap_or_default();
        match body {
            "crash" => std::process::abort(),
            "error" => {
                return Err(
                    json!({"errorMessage": "asked to fail the batch", "errorType": "TestFailure"}),
                )
            }
            "fail" => failures.push(json!({"itemIdentifier": record["messageId"]})),
            "unknown-id" => failures.push(json!({"itemIdentifier": "not-a-message-of-this-batch"})),
            "empty-id" => failures.push(json!({"itemIdentifier": ""})),
            _ => {
                if let Some(ms) = body.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
        }
    }
    Ok(json!({"batchItemFailures": failures}))
}

/// A route response describing the event and this process.
fn echo(event: &Value, route: &str, invocations: u64) -> Value {
    let echo = json!({
        "routeKey": route,
        "body": event["body"],
        "authorizer": event["requestContext"]["authorizer"],
        "invocations": invocations,
        "pid": std::process::id(),
        "marker": std::env::var("TEST_MARKER").ok(),
    });
    json!({"statusCode": 200, "body": echo.to_string()})
}

/// Response headers and body.
type Answer = (Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 request on a fresh connection.
fn request(api: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(api)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut headers = Vec::new();
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
            headers.push((name, value));
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok((headers, body))
}
