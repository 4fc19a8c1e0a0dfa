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
#[path = "tests/sigv4.rs"]
mod tests;
