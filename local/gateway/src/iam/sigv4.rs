//! SigV4 verification of the AWS calls a handler process makes (DynamoDB, Secrets Manager,
//! @connections), with the checks and messages of the real services, in their order.
//!
//! The canonical request is rebuilt as the SDK's signer (`aws-sigv4`, default settings for
//! every service but S3) builds it, not from the spec's prose: the path is normalized and then
//! percent-encoded a second time, so the wire path `/dev/@connections/a%3D` is signed as
//! `/dev/%40connections/a%253D`; the query is form-decoded, re-encoded and sorted.
//!
//! Hand-written on `hmac`/`sha2` rather than `scratchstack-aws-signature`: that crate encodes
//! the path once, so it rejects every @connections call whose id holds a `=`, and it would
//! bring second copies of hmac and sha2 (0.12/0.10), regex, derive_builder and a tower
//! service for the key lookup, to replace what is here some 150 lines.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
const DATE_TIME: &str = "%Y%m%dT%H%M%SZ";
/// The `Authorization` parameters, in the order AWS reports them missing.
const PARAMS: [&str; 3] = ["Credential", "Signature", "SignedHeaders"];
/// How far the signing time may be from the gateway's clock, either way, as DynamoDB allows.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Everything but RFC 3986's unreserved characters, as the SDK encodes query parts.
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The same, keeping `/`: the SDK's second encoding of the (already encoded) path.
const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

/// A received request, as much of it as the signature covers, whatever server received it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The HTTP method, upper case.
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded.
    pub path: &'a str,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// All the request's headers, `host` included.
    pub headers: &'a HeaderMap,
    /// The whole body.
    pub body: &'a [u8],
}

/// Who signed a request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id of the credential scope, known to `secret_for`.
    pub access_key_id: String,
    /// The `X-Amz-Security-Token` sent (and, by the SDK, signed), for the caller to check.
    pub session_token: Option<String>,
}

/// Why a request's signature is refused; `Display` is AWS's message, [`Self::code`] its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Authorization` header, or one that is not SigV4 at all.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// A malformed `Authorization` or `X-Amz-Date` header; the message says what is wrong.
    #[error("{0}")]
    Incomplete(String),
    /// Signed more than 15 minutes before or after `now`: "Signature expired: …" or
    /// "Signature not yet current: …".
    #[error("{0}")]
    Skewed(String),
    /// `host` is not among the signed headers.
    #[error("'Host' must be a 'SignedHeader' in the AWS Authorization.")]
    HostNotSigned,
    /// The credential scope names another region (the one named here).
    #[error("Credential should be scoped to a valid region, not '{0}'.")]
    WrongRegion(String),
    /// The credential scope names another service than the one named here, the expected one.
    #[error("Credential should be scoped to correct service: '{0}'.")]
    WrongService(String),
    /// The credential scope's terminator is not `aws4_request`, or its date not the request's.
    #[error("{0}")]
    WrongScope(String),
    /// `secret_for` knows no such access key id.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The signature is not the one the secret gives; AWS then shows what it computed.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details.\n\nThe Canonical String for this request should have been\n\
         '{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
    )]
    Mismatch {
        /// The canonical request the gateway computed.
        canonical_request: String,
        /// The string to sign the gateway computed.
        string_to_sign: String,
    },
}

impl SignatureError {
    /// The AWS error type name, as JSON services put it in `__type` (without the namespace).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::Incomplete(_) => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            _ => "InvalidSignatureException",
        }
    }
}

/// Verifies `request`'s SigV4 `Authorization` header for the region and service (signing
/// name, e.g. `execute-api`) at time `now` (the gateway's clock, `SystemTime::now()` but in
/// tests), with the secret `secret_for` gives an access key id.
pub fn verify(
    request: &SignedRequest<'_>,
    expected_region: &str,
    expected_service: &str,
    now: SystemTime,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<Verified, SignatureError> {
    let header = |name: &str| {
        let value = request.headers.get(name)?;
        Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let auth = header("authorization").ok_or(SignatureError::MissingAuthenticationToken)?;
    let auth = auth.trim();
    // As DynamoDB: a header that is not even trying to be SigV4 counts as no token.
    if !auth.starts_with("AWS4-") {
        return Err(SignatureError::MissingAuthenticationToken);
    }
    let (algorithm, params) = auth.split_once(' ').unwrap_or((auth, ""));
    let [credential, signature, signed_headers] = parse_params(auth, params)?;
    let signed = header("x-amz-date");
    let mut missing = String::new();
    for (name, value) in PARAMS
        .iter()
        .zip([&credential, &signature, &signed_headers])
    {
        if value.is_none() {
            missing += &format!("Authorization header requires '{name}' parameter. ");
        }
    }
    if signed.is_none() {
        // The SDK always sends X-Amz-Date; the `Date` header AWS also takes is not read.
        missing += "Authorization header requires existence of either a 'X-Amz-Date' or a \
                    'Date' header. ";
    }
    let (Some(credential), Some(signature), Some(signed_headers), Some(signed)) =
        (credential, signature, signed_headers, signed.as_ref())
    else {
        let message = format!("{missing}Authorization={auth}");
        return Err(SignatureError::Incomplete(message));
    };

    check_time(signed, now)?;
    let mut signed_names = signed_headers.split(';');
    if !signed_names.any(|name| name.eq_ignore_ascii_case("host")) {
        return Err(SignatureError::HostNotSigned);
    }
    if algorithm != ALGORITHM {
        return Err(SignatureError::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now)."
        )));
    }
    let scope: Vec<&str> = credential.trim_end_matches('/').split('/').collect();
    let [access_key_id, day, region, service, terminator] = scope[..] else {
        return Err(SignatureError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        )));
    };
    // AWS lists every mismatch of the scope in one message; the first one is enough here.
    if region != expected_region {
        return Err(SignatureError::WrongRegion(region.to_owned()));
    }
    if service != expected_service {
        return Err(SignatureError::WrongService(expected_service.to_owned()));
    }
    if terminator != TERMINATOR {
        return Err(SignatureError::WrongScope(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not \
             '{terminator}'."
        )));
    }
    if Some(day) != signed.get(..8) {
        let http_day: String = signed.chars().take(8).collect();
        return Err(SignatureError::WrongScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{day}' != '{http_day}', from '{signed}'."
        )));
    }
    let secret = secret_for(access_key_id).ok_or(SignatureError::UnrecognizedClient)?;

    let canonical_request = canonical_request(request, &signed_headers);
    let string_to_sign = format!(
        "{ALGORITHM}\n{signed}\n{day}/{region}/{service}/{TERMINATOR}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [day, region, service, TERMINATOR]
        .iter()
        .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
            hmac(&key, part.as_bytes())
        });
    let matches = hex::decode(&signature)
        .ok()
        .zip(Hmac::<Sha256>::new_from_slice(&key).ok())
        .is_some_and(|(provided, mut mac)| {
            mac.update(string_to_sign.as_bytes());
            // Constant time, so the comparison does not leak how much of a guess was right.
            mac.verify_slice(&provided).is_ok()
        });
    if !matches {
        return Err(SignatureError::Mismatch {
            canonical_request,
            string_to_sign,
        });
    }
    Ok(Verified {
        access_key_id: access_key_id.to_owned(),
        session_token: header("x-amz-security-token"),
    })
}

/// The [`PARAMS`] of `auth`, in that order, from its `params` (after the algorithm).
fn parse_params(auth: &str, params: &str) -> Result<[Option<String>; 3], SignatureError> {
    let mut found = [None, None, None];
    for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = param.split_once('=') else {
            return Err(SignatureError::Incomplete(format!(
                "'{param}' not a valid key=value pair (missing equal-sign) in Authorization \
                 header: '{auth}'."
            )));
        };
        if let Some(slot) = PARAMS.iter().position(|name| *name == key.trim()) {
            found[slot] = Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        }
    }
    Ok(found)
}

/// Refuses a malformed `X-Amz-Date`, or one more than [`MAX_SKEW`] away from `now`.
fn check_time(signed: &str, now: SystemTime) -> Result<(), SignatureError> {
    let Ok(time) = NaiveDateTime::parse_from_str(signed, DATE_TIME) else {
        return Err(SignatureError::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{signed}'. See \
             http://en.wikipedia.org/wiki/ISO_8601"
        )));
    };
    let time = time.and_utc();
    let now = DateTime::<Utc>::from(now);
    let format = |time: DateTime<Utc>| time.format(DATE_TIME).to_string();
    let (earliest, latest) = (now - MAX_SKEW, now + MAX_SKEW);
    if time < earliest {
        return Err(SignatureError::Skewed(format!(
            "Signature expired: {signed} is now earlier than {} ({} - 15 min.)",
            format(earliest),
            format(now)
        )));
    }
    if time > latest {
        return Err(SignatureError::Skewed(format!(
            "Signature not yet current: {signed} is still later than {} ({} + 15 min.)",
            format(latest),
            format(now)
        )));
    }
    Ok(())
}

/// The canonical request as the SDK's signer writes it for `signed_headers` (`a;b;c`).
fn canonical_request(request: &SignedRequest<'_>, signed_headers: &str) -> String {
    let mut headers = String::new();
    for name in signed_headers.split(';') {
        let values = request.headers.get_all(name).iter();
        let values: Vec<String> = values
            .map(|value| trim_all(&String::from_utf8_lossy(value.as_bytes())))
            .collect();
        let name = name.to_ascii_lowercase();
        headers += &format!("{name}:{}\n", values.join(","));
    }
    // A claimed X-Amz-Content-Sha256 never stands in for the body (these services' SDKs send
    // none), or a changed body would pass; only S3's explicit opt-out is taken at its word.
    let payload = match request.headers.get("x-amz-content-sha256") {
        Some(value) if value == "UNSIGNED-PAYLOAD" => "UNSIGNED-PAYLOAD".to_owned(),
        _ => hex::encode(Sha256::digest(request.body)),
    };
    format!(
        "{}\n{}\n{}\n{headers}\n{signed_headers}\n{payload}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
    )
}

/// The path with dot and empty segments removed (RFC 3986 §5.2.4), then encoded again.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => drop(segments.pop()),
            segment => segments.push(segment),
        }
    }
    let directory = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut path = format!("/{}", segments.join("/"));
    if directory && !segments.is_empty() {
        path.push('/');
    }
    utf8_percent_encode(&path, PATH_SET).to_string()
}

/// The query's pairs form-decoded (`+` is a space), re-encoded and sorted.
fn canonical_query(query: Option<&str>) -> String {
    let decode = |part: &str| {
        let part = part.replace('+', " ");
        let part = percent_decode_str(&part).decode_utf8_lossy().into_owned();
        utf8_percent_encode(&part, QUERY_SET).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

/// Leading and trailing spaces removed and runs of spaces collapsed; other whitespace kept.
fn trim_all(value: &str) -> String {
    let words: Vec<&str> = value.split(' ').filter(|word| !word.is_empty()).collect();
    words.join(" ")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: the error cannot happen, and an empty MAC would only
    // make the signature mismatch.
    Hmac::<Sha256>::new_from_slice(key)
        .map(|mac| mac.chain_update(data).finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
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
}
