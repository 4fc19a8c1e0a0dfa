//! The signing keys of an identity provider, fetched from its JWKS URL once per process and
//! refreshed when a token names a key we do not have (keys rotate).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use crate::AuthError;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A cache of verification keys by `kid`.
pub struct JwksCache {
    url: hyper::Uri,
    client: HttpsClient,
    timeout: Duration,
    /// Unknown kids trigger at most one refresh per this interval, so that tokens with
    /// random kids cannot make us hammer the identity provider.
    min_refresh: Duration,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl JwksCache {
    /// A cache for `url`: https, or http on loopback (for tests and local use).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, AuthError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| AuthError::KeysUnavailable(format!("JWKS URL {url:?} is not a URL")))?;
        let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => {
                return Err(AuthError::KeysUnavailable(format!(
                    "JWKS URL {url:?} must be https (http only on loopback)"
                )))
            }
        }
        // ring, like the AWS SDK clients here: one crypto stack in the binary.
        let provider = rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| AuthError::KeysUnavailable(format!("no TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            url: uri,
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
            min_refresh: Duration::from_secs(30),
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
        })
    }

    /// Changes the minimum time between refreshes (tests use zero).
    pub fn with_min_refresh(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// The key for `kid`, fetching the JWKS if it is not known yet.
    pub async fn key(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<DecodingKey, AuthError> {
        let Some(kid) = kid else {
            return Err(AuthError::UnknownKey(None));
        };
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have refreshed while this one waited for the lock.
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Err(AuthError::UnknownKey(Some(kid.chars().take(64).collect())));
        }
        let fetched = self.fetch(algorithm).await;
        *last_fetch = Some(Instant::now());
        let fetched = fetched?;
        tracing::info!(keys = fetched.len(), "JWKS refreshed");
        let mut keys = self.keys.write().await;
        *keys = fetched;
        keys.get(kid)
            .cloned()
            .ok_or_else(|| AuthError::UnknownKey(Some(kid.chars().take(64).collect())))
    }

    /// Fetches now, ahead of the first token (at init), so the first connection is fast.
    pub async fn prefetch(&self, algorithm: Algorithm) -> Result<usize, AuthError> {
        let mut last_fetch = self.last_fetch.lock().await;
        let fetched = self.fetch(algorithm).await?;
        *last_fetch = Some(Instant::now());
        let count = fetched.len();
        *self.keys.write().await = fetched;
        Ok(count)
    }

    /// GETs the JWKS and keeps the signing keys usable with `algorithm`.
    async fn fetch(&self, algorithm: Algorithm) -> Result<HashMap<String, DecodingKey>, AuthError> {
        let unavailable = |what: String| AuthError::KeysUnavailable(what);
        let response = tokio::time::timeout(self.timeout, self.client.get(self.url.clone()))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "no answer from the JWKS URL within {:?}",
                    self.timeout
                ))
            })?
            .map_err(|e| unavailable(format!("JWKS request failed: {e}")))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "JWKS URL answered {}",
                response.status()
            )));
        }
        let body = tokio::time::timeout(
            self.timeout,
            Limited::new(response.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| unavailable("the JWKS body did not arrive in time".into()))?
        .map_err(|e| unavailable(format!("JWKS body: {e}")))?
        .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("the JWKS is not valid: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            if let Some(alg) = jwk.common.key_algorithm {
                if format!("{alg:?}") != format!("{algorithm:?}") {
                    continue;
                }
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, key);
                }
                Err(error) => tracing::warn!(kid, %error, "skipping an unusable JWK"),
            }
        }
        Ok(keys)
    }
}
