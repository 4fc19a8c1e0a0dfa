//! What the suite runs against: a WebSocket URL and one token, the @connections endpoint with
//! the credentials to sign for it, and, for the local gateway only, the gateway itself.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use local_gateway::Gateway;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::conn::Conn;
use crate::support;

/// The region when neither the host nor `E2E_REGION` names one.
const DEFAULT_REGION: &str = "us-east-1";

/// A target of the suite.
pub struct Target {
    /// What the report calls it.
    pub name: String,
    /// The WebSocket URL without a query string: `wss://HOST/STAGE` or `ws://127.0.0.1:PORT/dev`.
    pub ws_url: String,
    /// A token the stage's `$connect` authorizer accepts; sent as `?token=`, the identity source
    /// of the stack's authorizer (`route.request.querystring.token`).
    pub token: String,
    /// The @connections API, or why the cases that need it are skipped.
    pub management: Result<Management, String>,
    /// The local gateway, when the suite started it.
    pub local: Option<Local>,
}

/// The @connections API of the target.
pub struct Management {
    /// `https://HOST/STAGE` (`http://` for a `ws://` target).
    pub endpoint: String,
    /// The region requests are signed for.
    pub region: String,
    /// Who signs them.
    pub credentials: Credentials,
}

/// What only the local target has.
pub struct Local {
    /// The gateway the suite started, on the real template with its authorizer.
    pub gateway: Gateway,
    /// Gateways for the local-only cases, each started by the first case that asks for it.
    idle: OnceCell<Gateway>,
    faults: OnceCell<Gateway>,
}

impl Target {
    /// `E2E_URL` and `E2E_TOKEN` both set: that target; both unset: the local gateway, started
    /// here.
    pub async fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (var("E2E_URL"), var("E2E_TOKEN")) {
            (Some(url), Some(token)) => Self::remote(&url, token.trim()),
            (None, None) => Self::start_local().await,
            (Some(_), None) => panic!(
                "E2E_URL is set but E2E_TOKEN is not: a remote target needs a token its authorizer accepts (see the README, `make e2e`)"
            ),
            (None, Some(_)) => panic!(
                "E2E_TOKEN is set but E2E_URL is not: set both for a remote target, neither for the local gateway"
            ),
        }
    }

    fn remote(url: &str, token: &str) -> Self {
        // A query string (say, a pasted `?token=`) is not part of the endpoint.
        let ws_url = url
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let http = if let Some(rest) = ws_url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = ws_url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            panic!("E2E_URL must start with wss:// or ws://, not {url:?}");
        };
        // Behind a custom domain the @connections API is still the execute-api one.
        let endpoint = std::env::var("E2E_CONNECTIONS_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .map_or(http, |v| v.trim_end_matches('/').to_owned());
        let region = region_of(&endpoint)
            .or_else(|| std::env::var("E2E_REGION").ok().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let management = env_credentials()
            .map(|credentials| Management {
                endpoint,
                region,
                credentials,
            })
            .ok_or_else(|| "no AWS credentials".to_owned());
        Self {
            name: ws_url.clone(),
            ws_url,
            token: token.to_owned(),
            management,
            local: None,
        }
    }

    async fn start_local() -> Self {
        let template = support::write_template(&support::real_template_with_authorizer());
        let gateway = support::start(template, |_| {}).await;
        let token = gateway
            .local_token("conformance")
            .expect("the real template's authorizer takes tokens signed with the local secret");
        Self {
            name: format!(
                "the local gateway ({}, real template and authorizer)",
                gateway.websocket_url()
            ),
            ws_url: gateway.websocket_url(),
            token,
            management: Ok(Management {
                endpoint: gateway.callback_url(),
                region: local_gateway::LOCAL_REGION.to_owned(),
                // The local developer key, as the handlers and `support::management` sign.
                credentials: Credentials::new("local", "local", None, None, "conformance"),
            }),
            local: Some(Local {
                gateway,
                idle: OnceCell::new(),
                faults: OnceCell::new(),
            }),
        }
    }

    /// The URL with the target's token.
    pub fn url(&self) -> String {
        self.url_with_token(&self.token)
    }

    /// The URL with another token.
    pub fn url_with_token(&self, token: &str) -> String {
        format!("{}?token={token}", self.ws_url)
    }

    /// A new connection with the target's token (waits until its `whoami` is answered, so
    /// the handshake is complete and @connections reaches it).
    pub async fn connect(&self) -> Conn {
        Conn::new(support::Client::connect_to(&self.url()).await)
    }

    /// The claims of the target's token (read, not verified: the authorizer verifies it).
    pub fn claims(&self) -> Value {
        claims_of(&self.token)
    }

    /// The user the authorizer vouches for: the token's `sub`.
    pub fn user(&self) -> String {
        self.claims()["sub"]
            .as_str()
            .expect("the token has a `sub` claim")
            .to_owned()
    }

    /// An @connections client signed with the target's credentials.
    pub fn management(&self) -> aws_sdk_apigatewaymanagement::Client {
        let management = self
            .management
            .as_ref()
            .expect("the runner skips @connections cases without credentials");
        management_client(
            &management.endpoint,
            &management.region,
            management.credentials.clone(),
        )
    }

    /// The local gateway (local-only cases run only when there is one).
    pub fn local(&self) -> &Local {
        self.local
            .as_ref()
            .expect("the runner skips local-only cases on a remote target")
    }

    /// Stops whatever the suite started.
    pub async fn shutdown(self) {
        if let Some(local) = self.local {
            for variant in [local.idle.into_inner(), local.faults.into_inner()]
                .into_iter()
                .flatten()
            {
                variant.shutdown().await;
            }
            local.gateway.shutdown().await;
        }
    }
}

impl Local {
    /// A gateway with a 2 s idle timeout, on the real template without its authorizer.
    pub async fn idle(&self) -> &Gateway {
        self.idle
            .get_or_init(|| async {
                let template = support::write_template(&support::real_template());
                support::start(template, |o| o.idle_timeout = Duration::from_secs(2)).await
            })
            .await
    }

    /// A gateway for faults: the real template without its authorizer plus a test route
    /// `crash` (the test handler exits mid-invocation), and a 2 s limit on every AWS call of
    /// the handlers (3 s by default), so that a stalled DynamoDB is answered `internal` soon.
    pub async fn faults(&self) -> &Gateway {
        self.faults
            .get_or_init(|| async {
                let mut template = support::real_template();
                support::add_test_routes(&mut template, &["crash"]);
                support::start(support::write_template(&template), |o| {
                    o.extra_env.insert("SDK_TIMEOUT_MS".into(), "2000".into());
                })
                .await
            })
            .await
    }
}

/// An @connections client for `endpoint`, signing for `region` with `credentials`.
pub fn management_client(
    endpoint: &str,
    region: &str,
    credentials: Credentials,
) -> aws_sdk_apigatewaymanagement::Client {
    use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .http_client(realtime_aws::clients::http_client())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// `REGION` of `https://API.execute-api.REGION.amazonaws.com/...`.
fn region_of(endpoint: &str) -> Option<String> {
    let host = endpoint.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut labels = host.split('.');
    let (_api, service, region) = (labels.next()?, labels.next()?, labels.next()?);
    (service == "execute-api" && !region.is_empty()).then(|| region.to_owned())
}

/// The caller's credentials from the environment (no profile or SSO lookup: export them, e.g.
/// `eval "$(aws configure export-credentials --format env)"`).
fn env_credentials() -> Option<Credentials> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Some(Credentials::new(
        var("AWS_ACCESS_KEY_ID")?,
        var("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

/// The claims of a JWT, unverified (`Null` when it is not one).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

#[test]
fn the_region_comes_from_an_execute_api_host_only() {
    assert_eq!(
        region_of("https://abc123.execute-api.eu-west-1.amazonaws.com/dev").as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(region_of("http://127.0.0.1:3001/dev"), None);
    assert_eq!(region_of("https://chat.example.com/dev"), None);
}

/// wss:// targets need TLS in the client: without the feature, tungstenite refuses the URL
/// before connecting; with it, a closed port is an I/O error.
#[tokio::test]
async fn wss_urls_are_supported() {
    match tokio_tungstenite::connect_async("wss://127.0.0.1:1/dev").await {
        Err(tokio_tungstenite::tungstenite::Error::Io(_)) => {}
        other => panic!("expected a refused TCP connection, got {other:?}"),
    }
}
