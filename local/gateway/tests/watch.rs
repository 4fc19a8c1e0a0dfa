//! `--watch` end to end: a gateway watching a copy of a small handler (tests/fixtures/
//! watch-handler, std only, built in its own temporary folder) and its template, with a client
//! connection held across every reload. An edit of the handler changes the next reply on the
//! same connection, while an invocation in flight finishes on the old binary; an edit that does
//! not compile is reported with the compiler's message and the old binary keeps answering; a
//! route added to the template is served without a restart, and a change of a stack source
//! runs the synth (whose failure keeps the template); a change a running gateway cannot take
//! over is refused and named; a file saved by renaming is seen every time; a changed web file
//! reaches an open page's event stream.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use local_gateway::{DynamoDb, Gateway, Options, Reload, Watch, WatchOptions};
use serde_json::{json, Value};
use support::{Client, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A build of the copy takes about a second; a cold one (first of the run) a few.
const RELOAD_WAIT: Duration = Duration::from_secs(120);

/// The copy of the handler, its template and its build.
struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// Copies the fixture into a new temporary folder and builds it once.
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("local-gateway-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/watch-handler");
        std::fs::create_dir_all(dir.join("handler/src")).expect("temp dir");
        std::fs::create_dir_all(dir.join("web")).expect("web dir");
        for file in ["Cargo.toml", "src/main.rs"] {
            std::fs::copy(fixture.join(file), dir.join("handler").join(file)).expect("copy");
        }
        std::fs::write(
            dir.join("web/index.html"),
            "<!doctype html><title>t</title>\n",
        )
        .expect("web file");
        let workspace = Self { dir };
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(workspace.build_command())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the fixture handler builds");
        workspace
    }

    fn build_command(&self) -> String {
        format!(
            "CARGO_TARGET_DIR='{}' cargo build --quiet --offline --manifest-path '{}'",
            self.dir.join("target").display(),
            self.dir.join("handler/Cargo.toml").display()
        )
    }

    fn binary(&self) -> PathBuf {
        self.dir.join("target/debug/watch-handler")
    }

    fn template_path(&self) -> PathBuf {
        self.dir.join("Realtime-dev.template.json")
    }

    /// Writes the template: a WebSocket API whose `$default` and `extra_routes` are two-way
    /// routes to the handler, which gets `REPLY_SUFFIX=suffix`.
    fn write_template(&self, extra_routes: &[&str], suffix: &str, extra: Value) {
        let mut resources = json!({
            "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {
                "Name": "watch", "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": "$request.body.action"}},
            "Stage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {
                "ApiId": {"Ref": "Api"}, "StageName": "dev"}},
            "WatchFunction": {"Type": "AWS::Lambda::Function",
                "Properties": {"FunctionName": "watch-dev", "Timeout": 20,
                    "Environment": {"Variables": {"REPLY_SUFFIX": suffix}}},
                "Metadata": {"local:binary": self.binary().display().to_string()}},
            "Integration": {"Type": "AWS::ApiGatewayV2::Integration", "Properties": {
                "ApiId": {"Ref": "Api"}, "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::Join": ["", ["arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/", {"Fn::GetAtt": ["WatchFunction", "Arn"]}, "/invocations"]]}}},
        });
        let map = resources.as_object_mut().expect("object");
        for key in std::iter::once("$default").chain(extra_routes.iter().copied()) {
            let id = format!("Route{}", key.replace('$', ""));
            map.insert(
                format!("{id}Response"),
                json!({"Type": "AWS::ApiGatewayV2::RouteResponse", "Properties": {
                    "ApiId": {"Ref": "Api"}, "RouteId": {"Ref": id}, "RouteResponseKey": "$default"}}),
            );
            map.insert(
                id,
                json!({"Type": "AWS::ApiGatewayV2::Route", "Properties": {
                    "ApiId": {"Ref": "Api"}, "RouteKey": key, "RouteResponseSelectionExpression": "$default",
                    "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integration"}]]}}}),
            );
        }
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
        let template = json!({"Resources": resources});
        // Written aside and renamed, as cdk synth leaves a whole file.
        let aside = self.dir.join("template.json.tmp");
        std::fs::write(&aside, serde_json::to_vec_pretty(&template).expect("JSON")).expect("write");
        std::fs::rename(&aside, self.template_path()).expect("rename");
    }

    /// Replaces the handler's `REPLY` line.
    fn set_reply(&self, line: &str) {
        let path = self.dir.join("handler/src/main.rs");
        let source = std::fs::read_to_string(&path).expect("read the handler");
        let edited: Vec<&str> = source
            .lines()
            .map(|l| {
                if l.starts_with("const REPLY") {
                    line
                } else {
                    l
                }
            })
            .collect();
        std::fs::write(&path, edited.join("\n") + "\n").expect("edit the handler");
    }

    /// A gateway serving the template (no tables: no DynamoDB is needed) and watching the copy
    /// (its folder).
    async fn start(&self) -> (Gateway, Watch) {
        self.start_watching(vec![self.dir.join("handler")]).await
    }

    /// A gateway serving the template and watching `rust` as the Rust sources.
    async fn start_watching(&self, rust: Vec<PathBuf>) -> (Gateway, Watch) {
        self.start_with(WatchOptions {
            rust,
            stack: Vec::new(),
            web: Some(self.dir.join("web")),
            build: self.build_command(),
            synth: None,
            debounce: Duration::from_millis(100),
        })
        .await
    }

    /// A gateway serving the template and watching as `watch` says.
    async fn start_with(&self, watch: WatchOptions) -> (Gateway, Watch) {
        let mut options = Options::new(self.template_path());
        options.port = 0;
        options.stage = Some("dev".into());
        // Nothing calls it: the template has no table.
        options.dynamodb = DynamoDb::External("http://127.0.0.1:9".into());
        options.web_dir = Some(self.dir.join("web"));
        let gateway = Gateway::start(options).await.expect("the gateway starts");
        let watch = gateway.watch(watch).expect("watching starts");
        (gateway, watch)
    }
}

impl Workspace {
    /// A new copy, its template (the handler on `$default`), and a gateway watching it.
    async fn serving(name: &str) -> (Self, Gateway, Watch) {
        let workspace = Self::new(name);
        workspace.write_template(&[], "", json!({}));
        let (gateway, watch) = workspace.start().await;
        (workspace, gateway, watch)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client connection (this API has no `whoami` route for [`Client::connect`] to ask).
async fn connect(gateway: &Gateway) -> Client {
    let (ws, response) = tokio_tungstenite::connect_async(gateway.websocket_url())
        .await
        .expect("WebSocket upgrade accepted");
    assert_eq!(response.status(), 101);
    Client {
        ws,
        id: String::new(),
    }
}

/// The reply to one message on `client`'s connection.
async fn reply(client: &mut Client, message: Value) -> String {
    client.send(message).await;
    client
        .next_text(WAIT)
        .await
        .expect("a reply on the same connection")
}

async fn next_reload(watch: &mut Watch) -> Reload {
    tokio::time::timeout(RELOAD_WAIT, watch.next())
        .await
        .expect("a reload in time")
        .expect("the watch runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_handler_answers_the_next_message_on_the_same_connection() {
    let (workspace, gateway, mut watch) = Workspace::serving("edit").await;
    let mut client = connect(&gateway).await;
    assert_eq!(
        reply(&mut client, json!({"action": "hi"})).await,
        "v1 $default "
    );

    // In flight across the swap (the handler takes 6 s over it, the build about 1 s).
    client.send(json!({"action": "slow"})).await;
    workspace.set_reply(r#"const REPLY: &str = "v2";"#);
    match next_reload(&mut watch).await {
        Reload::Handlers {
            functions,
            connections,
            ..
        } => {
            assert_eq!(functions, ["watch-dev"]);
            assert_eq!(
                connections, 1,
                "the client's connection is open at the swap"
            );
        }
        other => panic!("expected the handler swapped, got: {other}"),
    }
    assert_eq!(
        client.next_text(WAIT).await.as_deref(),
        Some("v1 $default "),
        "the invocation in flight finishes on the old binary"
    );
    assert_eq!(
        reply(&mut client, json!({"action": "hi"})).await,
        "v2 $default "
    );
    assert_eq!(gateway.connection_count(), 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_does_not_compile_is_reported_and_the_old_binary_keeps_answering() {
    let (workspace, gateway, mut watch) = Workspace::serving("broken").await;
    let mut client = connect(&gateway).await;
    assert_eq!(reply(&mut client, json!({})).await, "v1 $default ");

    // A missing semicolon.
    workspace.set_reply(r#"const REPLY: &str = "v2""#);
    match next_reload(&mut watch).await {
        Reload::BuildFailed { crates, output, .. } => {
            assert_eq!(crates, ["watch-handler"]);
            assert!(
                output.contains("expected `;`"),
                "the compiler's message: {output}"
            );
        }
        other => panic!("expected a failed build, got: {other}"),
    }
    assert_eq!(reply(&mut client, json!({})).await, "v1 $default ");

    // Mended, the next build goes live.
    workspace.set_reply(r#"const REPLY: &str = "v3";"#);
    assert!(matches!(
        next_reload(&mut watch).await,
        Reload::Handlers { .. }
    ));
    assert_eq!(reply(&mut client, json!({})).await, "v3 $default ");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_template_is_served_without_a_restart_and_what_cannot_change_live_is_named() {
    let (workspace, gateway, mut watch) = Workspace::serving("stack").await;
    let mut client = connect(&gateway).await;
    assert_eq!(
        reply(&mut client, json!({"action": "extra"})).await,
        "v1 $default ",
        "no route `extra` yet: $default takes it"
    );

    // A new route, and a new environment for the function.
    workspace.write_template(&["extra"], "b", json!({}));
    match next_reload(&mut watch).await {
        Reload::Stack {
            change,
            connections,
            ..
        } => {
            assert_eq!(change.items, ["routes +extra", "functions ~watch-dev"]);
            assert_eq!(connections, 1);
        }
        other => panic!("expected the template applied, got: {other}"),
    }
    assert_eq!(
        reply(&mut client, json!({"action": "extra"})).await,
        "v1 extra b"
    );

    // A queue cannot be added live: refused whole, named, the template before keeps serving.
    workspace.write_template(
        &[],
        "c",
        json!({"Jobs": {"Type": "AWS::SQS::Queue", "Properties": {}}}),
    );
    match next_reload(&mut watch).await {
        Reload::StackFailed { problem, .. } => {
            assert!(
                problem.contains("SQS queues changed (+Jobs)")
                    && problem.contains("start it again"),
                "{problem}"
            );
        }
        other => panic!("expected the template refused, got: {other}"),
    }
    assert_eq!(
        reply(&mut client, json!({"action": "extra"})).await,
        "v1 extra b"
    );
    assert_eq!(gateway.connection_count(), 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_web_file_reaches_the_open_pages() {
    let (workspace, gateway, mut watch) = Workspace::serving("web").await;
    let mut stream = tokio::net::TcpStream::connect(gateway.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /_local/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("request");
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    // The response head first: the stream is open before the file changes.
    while !seen.contains("\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the head in time")
            .expect("read");
        assert!(n > 0, "the stream stays open: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("text/event-stream"), "{seen}");

    std::fs::write(
        workspace.dir.join("web/index.html"),
        "<!doctype html><title>2</title>\n",
    )
    .expect("edit");
    assert!(matches!(next_reload(&mut watch).await, Reload::Web { .. }));
    while !seen.contains("event: reload") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the event in time")
            .expect("read");
        assert!(n > 0, "the stream stays open: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_file_saved_by_renaming_a_new_one_over_it_is_seen_every_time() {
    let workspace = Workspace::new("rename");
    workspace.write_template(&[], "", json!({}));
    let manifest = workspace.dir.join("handler/Cargo.toml");
    // The manifest named as a file (as `make dev` names Cargo.toml and cdk.json), not its folder.
    let (gateway, mut watch) = workspace
        .start_watching(vec![manifest.clone(), workspace.dir.join("handler/src")])
        .await;
    let original = std::fs::read_to_string(&manifest).expect("read the manifest");
    for n in 0..2 {
        // As `sed -i` and many editors save: a new file renamed over the old one.
        let aside = workspace.dir.join("handler/Cargo.toml.new");
        std::fs::write(&aside, format!("{original}\n# saved {n}\n")).expect("write");
        std::fs::rename(&aside, &manifest).expect("rename");
        assert!(
            matches!(next_reload(&mut watch).await, Reload::Handlers { .. }),
            "save {n} of the manifest reloads"
        );
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_source_change_runs_the_synth_and_a_failed_synth_keeps_the_template() {
    let workspace = Workspace::new("synth");
    // What the "synth" writes: the template with a route `extra`.
    workspace.write_template(&["extra"], "", json!({}));
    let next = workspace.dir.join("next.template.json");
    std::fs::rename(workspace.template_path(), &next).expect("keep the next template");
    workspace.write_template(&[], "", json!({}));
    let stack = workspace.dir.join("stack");
    std::fs::create_dir_all(&stack).expect("stack dir");
    std::fs::write(stack.join("app.txt"), "v1\n").expect("stack source");
    // A stand-in for `make synth-dev`: fails while the source says `broken`.
    let synth = format!(
        "if grep -q broken '{source}'; then echo 'synth error: the stack is broken' >&2; exit 1; fi; cp '{next}' '{template}'",
        source = stack.join("app.txt").display(),
        next = next.display(),
        template = workspace.template_path().display()
    );
    let (gateway, mut watch) = workspace
        .start_with(WatchOptions {
            rust: Vec::new(),
            stack: vec![stack.clone()],
            web: None,
            build: "false".into(),
            synth: Some(synth),
            debounce: Duration::from_millis(100),
        })
        .await;
    let mut client = connect(&gateway).await;

    std::fs::write(stack.join("app.txt"), "broken\n").expect("edit");
    match next_reload(&mut watch).await {
        Reload::StackFailed { problem, .. } => {
            assert!(
                problem.contains("synth error: the stack is broken"),
                "{problem}"
            );
            assert!(problem.contains("the synth failed"), "{problem}");
        }
        other => panic!("expected the synth's failure, got: {other}"),
    }
    assert_eq!(
        reply(&mut client, json!({"action": "extra"})).await,
        "v1 $default ",
        "the template before keeps serving"
    );

    std::fs::write(stack.join("app.txt"), "v2\n").expect("edit");
    match next_reload(&mut watch).await {
        Reload::Stack { synth, change, .. } => {
            assert!(synth.is_some(), "the synth ran");
            assert_eq!(change.items, ["routes +extra"]);
        }
        other => panic!("expected the synthesized template applied, got: {other}"),
    }
    assert_eq!(
        reply(&mut client, json!({"action": "extra"})).await,
        "v1 extra "
    );
    gateway.shutdown().await;
}
