//! Unit tests of `iam::sigv4`.

use super::*;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use axum::http::{HeaderValue, Request};

const KEY: &str = "AKIDLOCALHANDLER";
const SECRET: &str = "local+secret/Of=the/role";
const PUT_ITEM: &str = r#"{"TableName":"connections","Item":{"pk":{"S":"a"}}}"#;
type Checked = Result<Verified, SignatureError>;

/// 2026-12-01T00:00:00Z.
fn time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200)
}

/// A call as the SDK signs it at [`time`]: `headers` are the ones it signs besides its own.
struct Call {
    key: &'static str,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
    scope: [&'static str; 2],
    secret: &'static str,
    token: Option<String>,
}

fn sdk_call(uri: &str, target: Option<&str>, body: &'static str) -> Call {
    let mut headers = vec![("x-amz-user-agent", "aws-sdk-rust/1.7.0 ua/2.1".to_owned())];
    if !body.is_empty() {
        headers.push(("content-length", body.len().to_string()));
        headers.push(("content-type", "application/x-amz-json-1.0".to_owned()));
    }
    headers.extend(target.map(|target| ("x-amz-target", target.to_owned())));
    let (uri, scope, secret) = (uri.to_owned(), ["us-east-1", "dynamodb"], SECRET);
    Call {
        key: KEY,
        uri,
        headers,
        body,
        scope,
        secret,
        token: None,
    }
}

fn put_item() -> Call {
    let target = Some("DynamoDB_20120810.PutItem");
    sdk_call("http://127.0.0.1:8000/", target, PUT_ITEM)
}

impl Call {
    /// The request as the gateway receives it, signed and with the `host` hyper adds.
    fn send(&self, method: &str) -> Request<Vec<u8>> {
        let token = self.token.clone();
        let identity = Credentials::new(self.key, self.secret, token, None, "test").into();
        let [region, name] = self.scope;
        let params = v4::SigningParams::builder().identity(&identity);
        let settings = SigningSettings::default();
        let params = params
            .time(time())
            .region(region)
            .name(name)
            .settings(settings);
        let headers = self.headers.iter();
        let headers = headers.map(|(name, value)| (*name, value.as_str()));
        let body = SignableBody::Bytes(self.body.as_bytes());
        let signable = SignableRequest::new(method, &self.uri, headers, body).expect("ok");
        let signed = sign(signable, &params.build().expect("params").into()).expect("signed");
        let mut request = Request::builder().method(method).uri(&self.uri);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let host = self.uri.split('/').nth(2).expect("authority");
        let request = request.header("host", host).body(self.body.into());
        let mut request = request.expect("request");
        signed.into_parts().0.apply_to_request_http1x(&mut request);
        request
    }
}

fn check_at(request: &Request<Vec<u8>>, service: &str, now: SystemTime) -> Checked {
    let (method, uri) = (request.method().as_str(), request.uri());
    let (path, query, headers) = (uri.path(), uri.query(), request.headers());
    let body = request.body();
    let request = SignedRequest {
        method,
        path,
        query,
        headers,
        body,
    };
    let secret_for = |key: &str| (key == KEY).then(|| SECRET.to_owned());
    verify(&request, "us-east-1", service, now, secret_for)
}

fn check(request: &Request<Vec<u8>>, service: &str) -> Checked {
    check_at(request, service, time())
}

fn message(checked: Checked) -> (&'static str, String) {
    let error = checked.expect_err("refused");
    (error.code(), error.to_string())
}

#[test]
fn dynamodb_and_secrets_manager_calls_verify() {
    let mut call = put_item();
    call.token = Some("local-session-token".to_owned());
    let verified = check(&call.send("POST"), "dynamodb").expect("verified");
    assert_eq!(verified.access_key_id, KEY);
    assert_eq!(verified.session_token.unwrap(), "local-session-token");

    let target = Some("secretsmanager.GetSecretValue");
    let mut call = sdk_call("http://127.0.0.1:4510/sm/", target, r#"{"SecretId":"k"}"#);
    call.scope[1] = "secretsmanager";
    assert!(check(&call.send("POST"), "secretsmanager").is_ok());
}

#[test]
fn connections_calls_with_encoded_ids_verify() {
    for id in ["Ab1-_x%3D", "Q%2B%2Fx%3D%3D", "a_b-c"] {
        for (method, body) in [("POST", "{\"hello\":1}"), ("GET", ""), ("DELETE", "")] {
            let uri = format!("http://127.0.0.1:4510/dev/@connections/{id}");
            let mut call = sdk_call(&uri, None, body);
            call.scope[1] = "execute-api";
            let checked = check(&call.send(method), "execute-api");
            assert!(checked.is_ok(), "{method} {id}: {checked:?}");
        }
    }
    let path = canonical_uri("/dev/@connections/Ab1-_x%3D");
    assert_eq!(path, "/dev/%40connections/Ab1-_x%253D");
    assert_eq!(canonical_uri("/dev/./a//b/../c/"), "/dev/a/c/");
}

#[test]
fn query_strings_and_spaced_header_values_verify() {
    let query = "b=2&a=x%2Fy&a=1&c=d+e&flag&t=%7E%21";
    let uri = format!("http://127.0.0.1:4510/dev/items?{query}");
    let mut call = sdk_call(&uri, None, "");
    let spaced = "  two   spaced \t words  ".to_owned();
    call.headers.push(("x-custom", spaced));
    assert!(check(&call.send("GET"), "dynamodb").is_ok());
    let canonical = "a=1&a=x%2Fy&b=2&c=d%20e&flag=&t=~%21";
    assert_eq!(canonical_query(Some(query)), canonical);
}

#[test]
fn tampered_bodies_and_wrong_secrets_are_mismatches() {
    let mut request = put_item().send("POST");
    request.body_mut().push(b' ');
    let (code, message) = self::message(check(&request, "dynamodb"));
    assert_eq!(code, "InvalidSignatureException");
    let expected = "The request signature we calculated does not match the signature you \
        provided. Check your AWS Secret Access Key and signing method. Consult the service \
        documentation for details.\n\nThe Canonical String for this request should have \
        been\n'POST\n/\n\ncontent-length:51\n";
    assert!(message.starts_with(expected), "{message}");

    // A claimed payload hash does not stand in for the body.
    let mut call = put_item();
    let claimed = hex::encode(Sha256::digest(PUT_ITEM));
    call.headers.push(("x-amz-content-sha256", claimed));
    let mut request = call.send("POST");
    assert!(check(&request, "dynamodb").is_ok());
    *request.body_mut() = b"{}".to_vec();
    let mismatch = |checked| matches!(checked, Err(SignatureError::Mismatch { .. }));
    assert!(mismatch(check(&request, "dynamodb")));

    call.secret = "another secret";
    assert!(mismatch(check(&call.send("POST"), "dynamodb")));
}

#[test]
fn wrong_scopes_and_unknown_keys() {
    let mut call = put_item();
    call.scope[0] = "eu-west-1";
    let checked = check(&call.send("POST"), "dynamodb");
    let wrong_region = SignatureError::WrongRegion("eu-west-1".into());
    assert_eq!(checked, Err(wrong_region));
    let region = "Credential should be scoped to a valid region, not 'eu-west-1'.";
    assert_eq!(message(checked).1, region);

    let (code, message) = message(check(&put_item().send("POST"), "execute-api"));
    assert_eq!(code, "InvalidSignatureException");
    let service = "Credential should be scoped to correct service: 'execute-api'.";
    assert_eq!(message, service);

    let mut call = put_item();
    call.key = "AKIDUNKNOWN";
    let (code, message) = self::message(check(&call.send("POST"), "dynamodb"));
    assert_eq!(code, "UnrecognizedClientException");
    let unknown = "The security token included in the request is invalid.";
    assert_eq!(message, unknown);
}

#[test]
fn missing_and_malformed_headers() {
    let mut request = put_item().send("POST");
    let auth = request.headers_mut().remove("authorization");
    let (code, missing) = message(check(&request, "dynamodb"));
    assert_eq!(code, "MissingAuthenticationTokenException");
    assert_eq!(missing, "Missing Authentication Token");

    let auth = auth.expect("signed").to_str().expect("ascii").to_owned();
    let mut with = |auth: &str, date: &str| {
        let headers = request.headers_mut();
        headers.insert("authorization", HeaderValue::from_str(auth).expect("auth"));
        headers.insert("x-amz-date", HeaderValue::from_str(date).expect("date"));
        message(check(&request, "dynamodb")).1
    };
    let (unsigned, _) = auth.split_once(", Signature=").expect("signature");
    let terminator = "Credential should be scoped with a valid terminator: 'aws4_request', \
        not 'aws5'.";
    let day = "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of \
        date from HTTP: '20261130' != '20261201', from '20261201T000000Z'.";
    let values = [
        "Bearer abc".to_owned(),
        unsigned.to_owned(),
        auth.replace("-SHA256", "-SHA512"),
        auth.replace("/aws4_request", ""),
        auth.replace("/aws4_request", "/aws5"),
        auth.replace("/20261201/", "/20261130/"),
        auth.replace("host;", ""),
        auth.replace(", Signed", ", Signed, Sig"),
    ];
    let expected = [
        &missing,
        "Authorization header requires 'Signature' parameter. Authorization=AWS4",
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 for now).",
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region",
        terminator,
        day,
        "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        "'Signed' not a valid key=value pair (missing equal-sign) in Authorization header",
    ];
    for (value, expected) in values.iter().zip(expected) {
        let message = with(value, "20261201T000000Z");
        assert!(message.starts_with(expected), "{value}: {message}");
    }
    let date = "Date must be in ISO-8601 'basic format'. Got '2026-12-01'. See \
        http://en.wikipedia.org/wiki/ISO_8601";
    assert_eq!(with(&auth, "2026-12-01"), date);
    request.headers_mut().remove("x-amz-date");
    let (_, message) = self::message(check(&request, "dynamodb"));
    let date = "Authorization header requires existence of either a 'X-Amz-Date' or a \
        'Date' header. Authorization=AWS4-HMAC-SHA256 Credential=";
    assert!(message.starts_with(date), "{message}");
}

#[test]
fn signatures_more_than_15_minutes_off_are_refused() {
    let request = put_item().send("POST");
    let minutes = |minutes: u64| Duration::from_secs(minutes * 60);
    let at = |now| check_at(&request, "dynamodb", now).map_err(|error| error.to_string());
    assert!(at(time() + minutes(15)).is_ok() && at(time() - minutes(15)).is_ok());
    let expired = "Signature expired: 20261201T000000Z is now earlier than \
        20261201T000100Z (20261201T001600Z - 15 min.)";
    assert_eq!(at(time() + minutes(16)), Err(expired.to_owned()));
    let early = "Signature not yet current: 20261201T000000Z is still later than \
        20261130T235900Z (20261130T234400Z + 15 min.)";
    assert_eq!(at(time() - minutes(16)), Err(early.to_owned()));
}

/// What the handlers' own clients send (the SDK, not a copy of its settings) verifies.
#[tokio::test]
async fn real_sdk_clients_calls_verify() {
    use aws_sdk_apigatewaymanagement::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;
    use axum::{body::to_bytes, extract::Request as Received, http::StatusCode};
    use realtime_aws::clients;
    let (sent, mut received) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |request: Received| {
        let sent = sent.clone();
        async move {
            let (parts, body) = request.into_parts();
            let _ = sent.send((parts, to_bytes(body, 1 << 20).await.unwrap_or_default()));
            (StatusCode::BAD_REQUEST, "{}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
    let listener = listener.expect("bound");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (timeout, now) = (Duration::from_secs(5), SystemTime::now());
    let dynamodb = clients::local_dynamodb(&url, "us-east-1", timeout).get_item();
    let key = ("pk", AttributeValue::S("a b=c".into()));
    let _ = dynamodb.table_name("t").key(key.0, key.1).send().await;
    let config = clients::local_sdk_config(timeout).await;
    let connections = clients::management(&config, &format!("{url}/dev"), timeout);
    let post = connections.post_to_connection().connection_id("Ab1-_x=");
    let _ = post.data(Blob::new(b"hi".to_vec())).send().await;
    let delete = connections.delete_connection().connection_id("Q+/x==");
    let _ = delete.send().await;
    for (service, expected) in [
        ("dynamodb", "/"),
        ("execute-api", "/dev/@connections/Ab1-_x%3D"),
        ("execute-api", "/dev/@connections/Q%2B%2Fx%3D%3D"),
    ] {
        let (parts, body) = received.recv().await.expect("received");
        let (method, uri, headers) = (parts.method.as_str(), &parts.uri, &parts.headers);
        let (path, query, body) = (uri.path(), uri.query(), &body[..]);
        let request = SignedRequest {
            method,
            path,
            query,
            headers,
            body,
        };
        assert_eq!(path, expected);
        let secret_for = |key: &str| (key == "local").then(|| "local".to_owned());
        let checked = verify(&request, "us-east-1", service, now, secret_for);
        assert!(checked.is_ok(), "{path}: {checked:?}");
    }
}
