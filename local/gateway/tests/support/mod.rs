//! What the gateway's end-to-end test files share: the handler binaries and template on disk,
//! a gateway on a free port, raw HTTP, and a WebSocket client.
#![allow(dead_code)] // each test file uses a part of this

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use futures::{SinkExt, StreamExt};
use local_gateway::{Gateway, Options};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(15);
pub const HOW_TO_BUILD: &str = "run `make gateway-e2e-deps` (builds the handler binaries and examples, synthesizes cdk.out/Realtime-dev.template.json)";

// ---------- what the tests need on disk ----------

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target folder this test was built in (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-HASH -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .to_owned()
}

/// The folder of the handler binaries: `LOCAL_GATEWAY_BIN_DIR`, else the target folder.
pub fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("LOCAL_GATEWAY_BIN_DIR").map_or_else(target_dir, PathBuf::from);
    for name in ["connect", "disconnect", "message"] {
        assert!(
            dir.join(name).is_file(),
            "handler binary {} is missing: {HOW_TO_BUILD}",
            dir.join(name).display()
        );
    }
    dir
}

pub fn test_handler() -> PathBuf {
    let path = target_dir().join("examples/test-handler");
    assert!(
        path.is_file(),
        "{} is missing: {HOW_TO_BUILD}",
        path.display()
    );
    path
}

pub fn real_template_path() -> PathBuf {
    let path = repo_root().join("cdk.out/Realtime-dev.template.json");
    assert!(
        path.is_file(),
        "{} is missing: {HOW_TO_BUILD}",
        path.display()
    );
    path
}

/// The synthesized template as it is, `$connect` authorizer included.
pub fn real_template_with_authorizer() -> Value {
    serde_json::from_slice(&std::fs::read(real_template_path()).expect("read template"))
        .expect("template is JSON")
}

/// The synthesized template with its `$connect` authorizer (if any) switched off: these tests
/// are about the gateway and the chat, not about tokens (the authorizer's tests are below).
pub fn real_template() -> Value {
    let mut template = real_template_with_authorizer();
    for resource in resources(&mut template).values_mut() {
        if resource["Type"] == "AWS::ApiGatewayV2::Route" {
            let properties = resource["Properties"].as_object_mut().expect("Properties");
            properties.insert("AuthorizationType".into(), json!("NONE"));
            properties.remove("AuthorizerId");
        }
    }
    template
}

/// A copy of the synthesized template as the tests use it (see [`real_template`]).
pub fn real_template_copy() -> PathBuf {
    write_template(&real_template())
}

/// Writes a changed copy of the template (same file name, so the same stack name).
/// The folder name [`write_template`] gives its copies, and that [`start`] removes.
const WRITTEN_TEMPLATE_PREFIX: &str = "local-gateway-e2e-template-";

pub fn write_template(template: &Value) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{WRITTEN_TEMPLATE_PREFIX}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("Realtime-dev.template.json");
    std::fs::write(&path, serde_json::to_vec_pretty(template).expect("JSON"))
        .expect("write template");
    path
}

pub fn resources(template: &mut Value) -> &mut serde_json::Map<String, Value> {
    template["Resources"].as_object_mut().expect("Resources")
}

pub fn api_id(template: &Value) -> String {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::ApiGatewayV2::Api")
        .map(|(id, _)| id.clone())
        .expect("a WebSocket API")
}

/// Adds the test handler as a function with its own integration (1 s timeout), and two-way
/// routes to it (what it returns goes back to the caller).
pub fn add_test_routes(template: &mut Value, route_keys: &[&str]) {
    let api = api_id(template);
    let handler = test_handler();
    let res = resources(template);
    res.insert(
        "TestFunction".into(),
        json!({
            "Type": "AWS::Lambda::Function",
            "Properties": {"FunctionName": "realtime-dev-test", "Timeout": 1},
            "Metadata": {"local:binary": handler.display().to_string()}
        }),
    );
    res.insert(
        "TestIntegration".into(),
        json!({
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": {"Ref": api}, "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::Join": ["", ["arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/", {"Fn::GetAtt": ["TestFunction", "Arn"]}, "/invocations"]]}
            }
        }),
    );
    for key in route_keys {
        res.retain(|_, r| r["Properties"]["RouteKey"] != *key);
        let route = format!("TestRoute{}", key.replace('$', ""));
        // Two-way takes both halves, as in API Gateway: the selection expression on the route
        // and a `$default` route response referring to it.
        res.insert(
            format!("{route}Response"),
            json!({
                "Type": "AWS::ApiGatewayV2::RouteResponse",
                "Properties": {"ApiId": {"Ref": api}, "RouteId": {"Ref": route}, "RouteResponseKey": "$default"}
            }),
        );
        res.insert(
            route,
            json!({
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": {"Ref": api}, "RouteKey": key, "RouteResponseSelectionExpression": "$default",
                    "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "TestIntegration"}]]}
                }
            }),
        );
    }
}

/// Puts the test handler (see [`add_test_routes`], which must run first) in front of
/// `$connect` as its REQUEST authorizer, with the identity source `?token=`.
pub fn add_test_authorizer(template: &mut Value) {
    let api = api_id(template);
    let connect_route = resources(template)
        .iter()
        .find(|(_, r)| r["Properties"]["RouteKey"] == "$connect")
        .map(|(id, _)| id.clone())
        .expect("$connect route");
    let res = resources(template);
    res.insert(
        "TestAuthorizer".into(),
        json!({
            "Type": "AWS::ApiGatewayV2::Authorizer",
            "Properties": {
                "ApiId": {"Ref": api}, "AuthorizerType": "REQUEST", "Name": "test",
                "IdentitySource": ["route.request.querystring.token"],
                "AuthorizerUri": {"Fn::Join": ["", ["arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/", {"Fn::GetAtt": ["TestFunction", "Arn"]}, "/invocations"]]}
            }
        }),
    );
    let route = &mut res[&connect_route]["Properties"];
    route["AuthorizationType"] = json!("CUSTOM");
    route["AuthorizerId"] = json!({"Ref": "TestAuthorizer"});
}

/// The local secret of the tests' gateways. Fixed, so that parallel test processes can share
/// one file; ending in a newline as an editor leaves it (the gateway and `mint-token` both
/// trim it); readable by its owner only.
pub fn secret_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join("local-gateway-test-jwt-secret");
        let content = "local-gateway-tests-only-6f1d2c9a8b7e4f3a5d6c7b8a9e0f1d2c3b4a5f6e\n";
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
            // Written aside and renamed: a reader never sees half a file.
            let aside = path.with_extension(std::process::id().to_string());
            std::fs::write(&aside, content).expect("write the secret");
            std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the secret");
            std::fs::rename(&aside, &path).expect("rename the secret");
        }
        path
    })
}

/// The secret's value, as the authorizer gets it from Secrets Manager.
pub fn secret() -> String {
    std::fs::read_to_string(secret_file())
        .expect("read the secret")
        .trim()
        .to_owned()
}

// ---------- the gateway ----------

pub async fn start(template: PathBuf, tweak: impl FnOnce(&mut Options)) -> Gateway {
    let mut options = Options::new(template.clone());
    options.port = 0;
    options.stage = Some("dev".into());
    options.bin_dir = bin_dir();
    options.jwt_secret_file = secret_file().to_owned();
    tweak(&mut options);
    let gateway = Gateway::start(options).await.expect("the gateway starts");
    // The template is read once at start: a copy written for this test (by
    // `write_template`, in a folder of its own) can go. Only such a folder: the repository
    // itself may live under the temporary folder (a fresh clone in CI).
    if let Some(dir) = template.parent() {
        let written = dir.starts_with(std::env::temp_dir())
            && dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(WRITTEN_TEMPLATE_PREFIX));
        if written {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    gateway
}

pub async fn start_real() -> Gateway {
    start(real_template_copy(), |_| {}).await
}

pub async fn start_with_test_routes(keys: &[&str]) -> Gateway {
    let mut template = real_template();
    add_test_routes(&mut template, keys);
    start(write_template(&template), |o| {
        o.extra_env
            .insert("TEST_MARKER".into(), "from-the-gateway".into());
    })
    .await
}

pub fn management(gateway: &Gateway) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "e2e"))
        .endpoint_url(gateway.callback_url())
        .http_client(realtime_aws::clients::http_client())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// One HTTP/1.1 request over a fresh connection: status, headers, body.
pub async fn http(
    gateway: &Gateway,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let host = gateway.local_addr().to_string();
    http_to(&host, method, path, &[("Host", &host)], body).await
}

/// One HTTP/1.1 request to `addr` with these headers (`Host` included).
pub async fn http_to(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// [`http`] signed for `execute-api` with the developer's key (allowed everything), as a tool
/// with the developer's AWS credentials calls the @connections API.
pub async fn signed_http(
    gateway: &Gateway,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let host = gateway.local_addr().to_string();
    let identity = Credentials::new("local", "local", None, None, "e2e").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("execute-api")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let url = format!("http://{host}{path}");
    let signable = SignableRequest::new(
        method,
        &url,
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(body),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    let signed: Vec<(String, String)> = instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut headers = vec![("Host", host.as_str())];
    headers.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    http_to(&host, method, path, &headers, body).await
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// ---------- a WebSocket client ----------

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub id: String,
}

impl Client {
    pub async fn connect(gateway: &Gateway) -> Self {
        Self::connect_to(&gateway.websocket_url()).await
    }

    pub async fn connect_to(url: &str) -> Self {
        let (ws, response) = connect_async(url)
            .await
            .expect("WebSocket upgrade accepted");
        assert_eq!(response.status(), 101);
        let mut client = Self {
            ws,
            id: String::new(),
        };
        client.send(json!({"action": "whoami"})).await;
        let identity = client.recv_where(|v| v["type"] == "identity").await;
        client.id = identity["connectionId"]
            .as_str()
            .expect("connectionId")
            .to_owned();
        client
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends a text message split into frames of 32 KiB, as a client must for API Gateway.
    pub async fn send_fragmented(&mut self, text: &str) {
        let chunks: Vec<_> = text.as_bytes().chunks(32 * 1024).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
            self.ws
                .send(Message::Frame(frame))
                .await
                .expect("send frame");
        }
    }

    /// The next text frame as JSON, within `within`; `None` when nothing came.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        let text = self.next_text(within).await?;
        Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The next text frame as it came, within `within`; `None` when nothing came.
    pub async fn next_text(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                Some(Ok(Message::Close(frame))) => {
                    panic!("connection closed while waiting for a frame: {frame:?}")
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("socket error: {error}"),
                None => panic!("connection ended while waiting for a frame"),
            }
        }
    }

    /// Skips frames until one matches.
    pub async fn recv_where(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.next(deadline - Instant::now()).await {
                Some(value) if matches(&value) => return value,
                Some(value) => seen.push(value),
                None => break,
            }
        }
        panic!("no matching frame within {WAIT:?}; got {seen:?}");
    }

    pub async fn request(&mut self, request: Value, reply_type: &str) -> Value {
        self.send(request).await;
        self.recv_where(|v| v["type"] == reply_type || v["type"] == "error")
            .await
    }

    /// Reads until the server's close frame.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("a close frame in time")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("socket error instead of a close frame: {error}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}

pub fn close_code(frame: Option<CloseFrame>) -> u16 {
    frame.map(|f| u16::from(f.code)).unwrap_or(1005)
}

// ---------- the real authorizer's tokens ----------

/// The local values the template's intrinsics resolve to.
pub fn local_context() -> local_gateway::template::LocalContext {
    local_gateway::template::LocalContext {
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        api_id: "local".into(),
        api_endpoint: "ws://127.0.0.1:3001".into(),
        services_endpoint: "http://127.0.0.1:4566".into(),
    }
}

/// The synthesized template's `$connect` authorizer function (logical id): the stack must
/// attach one, with the token in the query string.
pub fn real_authorizer_function() -> String {
    let api = local_gateway::template::Template::load(&real_template_path())
        .expect("the synthesized template parses")
        .api("dev", &local_context())
        .expect("the synthesized template is usable");
    let authorizer = api.routes["$connect"]
        .authorizer
        .as_ref()
        .expect("the synthesized template puts an authorizer on $connect");
    assert_eq!(
        authorizer.identity_sources,
        [local_gateway::template::IdentitySource::QueryString(
            "token".into()
        )]
    );
    assert_eq!(api.functions[&authorizer.function].binary, "authorizer");
    authorizer.function.clone()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// An HS256 token with these claims.
pub fn sign(claims: &Value, key: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    realtime_auth::jwt_crypto::install();
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()).expect("key"),
    )
    .expect("sign")
}

/// A valid token for `user`, signed here with the local secret.
pub fn token_for(user: &str) -> String {
    let now = now_secs();
    sign(
        &json!({"sub": user, "name": user, "iat": now, "exp": now + 600}),
        &secret(),
    )
}

/// The status and body of a refused upgrade.
pub async fn refused<R>(request: R) -> (u16, Value)
where
    R: tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
{
    match connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(other) => panic!("expected a refused upgrade, got {other}"),
    }
}

/// The logical id of the synthesized template's function that runs `binary`.
pub fn real_function_id(binary: &str) -> String {
    let template = real_template_with_authorizer();
    let ids: Vec<String> = resources_of(&template)
        .filter(|(_, r)| r["Metadata"]["local:binary"] == binary)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "one function runs {binary}: {ids:?}");
    ids[0].clone()
}

fn resources_of(template: &Value) -> impl Iterator<Item = (&String, &Value)> {
    template["Resources"].as_object().expect("Resources").iter()
}

/// A client whose frames a task of its own reads as they come (so that it never holds up a
/// fan-out), while the test sends through it.
pub struct Reader {
    /// The connection id.
    pub id: String,
    sink: futures::stream::SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>,
    frames: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Starts reading `client`'s frames.
    pub fn new(client: Client) -> Self {
        let (sink, mut stream) = client.ws.split();
        let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let frames = frames.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    if let Message::Text(text) = message {
                        let value =
                            serde_json::from_str(&text).unwrap_or(Value::String(text.to_string()));
                        frames.lock().expect("frames").push(value);
                    }
                }
            })
        };
        Self {
            id: client.id,
            sink,
            frames,
            task,
        }
    }

    /// Sends a frame.
    pub async fn send(&mut self, value: Value) {
        self.sink
            .send(Message::text(value.to_string()))
            .await
            .expect("send");
    }

    /// Every frame read so far.
    pub fn frames(&self) -> Vec<Value> {
        self.frames.lock().expect("frames").clone()
    }

    /// Waits until a frame matches, within [`WAIT`].
    pub async fn wait_for(&self, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(found) = self.frames().into_iter().find(|v| matches(v)) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no matching frame within {WAIT:?}; got {:?}", self.frames());
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
