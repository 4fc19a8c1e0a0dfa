//! Token verification: every way a token can be wrong, in both modes, with the JWKS served
//! from a loopback HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use realtime_auth::{token_from, AuthError, JwksCache, Verifier, MAX_TOKEN_BYTES};
use serde_json::{json, Value};
use tokio::sync::RwLock;

const SECRET: &[u8] = b"a-test-secret-that-is-long-enough-0123456789";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Makes sure the ring provider signs and checks everything here, as in the Lambda: the
/// test build also enables jsonwebtoken's `rust_crypto` (other crates' dev-dependencies),
/// which would become the default if jsonwebtoken were used before `install`. Called by the
/// helpers every test starts with (`claims`, `key_file`; the verifiers install it too).
fn ring() {
    assert!(
        realtime_auth::jwt_crypto::install(),
        "the ring provider must be jsonwebtoken's default"
    );
}

fn claims() -> Value {
    ring();
    json!({"sub": "user-1", "name": "Alice", "iss": "https://issuer.test", "aud": "realtime", "iat": now(), "exp": now() + 600})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn key_file(name: &str) -> Vec<u8> {
    ring();
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn rsa_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_der(&key_file(name))
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_der(&key_file("ec.der"))
}

fn signed(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).unwrap()
}

fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn hs_verifier() -> Verifier {
    Verifier::hs256(SECRET)
        .unwrap()
        .with_issuer("https://issuer.test")
        .with_audience("realtime")
}

/// A JWKS endpoint on loopback whose key set can be changed, counting requests.
struct Idp {
    url: String,
    keys: Arc<RwLock<Vec<Jwk>>>,
    hits: Arc<AtomicUsize>,
}

async fn idp(keys: Vec<Jwk>) -> Idp {
    let keys = Arc::new(RwLock::new(keys));
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, h) = (keys.clone(), hits.clone());
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let (k, h) = (k.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                Json(JwkSet {
                    keys: k.read().await.clone(),
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp { url, keys, hits }
}

fn jwks_verifier(url: &str, alg: Algorithm) -> Verifier {
    let cache = JwksCache::new(url, Duration::from_secs(2))
        .unwrap()
        .with_min_refresh(Duration::ZERO);
    Verifier::jwks(alg, cache)
        .unwrap()
        .with_issuer("https://issuer.test")
        .with_audience("realtime")
}

#[tokio::test]
async fn a_good_hs256_token_names_the_user() {
    let identity = hs_verifier().verify(&hs(&claims())).await.expect("valid");
    assert_eq!(identity.user_id, "user-1");
    assert_eq!(identity.name.as_deref(), Some("Alice"));
}

#[tokio::test]
async fn time_claims_are_checked_with_a_small_leeway() {
    let v = hs_verifier();
    assert_eq!(
        v.verify(&hs(&with(claims(), "exp", json!(now() - 120))))
            .await,
        Err(AuthError::Expired)
    );
    assert!(
        v.verify(&hs(&with(claims(), "exp", json!(now() - 5))))
            .await
            .is_ok(),
        "within leeway"
    );
    assert_eq!(
        v.verify(&hs(&with(claims(), "nbf", json!(now() + 120))))
            .await,
        Err(AuthError::NotYetValid)
    );
    assert_eq!(
        v.verify(&hs(&with(claims(), "iat", json!(now() + 120))))
            .await,
        Err(AuthError::IssuedInFuture)
    );
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(
        matches!(v.verify(&hs(&no_exp)).await, Err(AuthError::Malformed(_))),
        "exp is required"
    );
}

#[tokio::test]
async fn issuer_and_audience_must_match() {
    let v = hs_verifier();
    assert_eq!(
        v.verify(&hs(&with(claims(), "iss", json!("https://evil.test"))))
            .await,
        Err(AuthError::WrongIssuer)
    );
    assert_eq!(
        v.verify(&hs(&with(claims(), "aud", json!("other")))).await,
        Err(AuthError::WrongAudience)
    );
    assert!(v
        .verify(&hs(&with(claims(), "aud", json!(["other", "realtime"]))))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_wrong_secret_is_a_bad_signature() {
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another-secret-another-secret-0123").unwrap(),
    )
    .unwrap();
    assert_eq!(
        hs_verifier().verify(&token).await,
        Err(AuthError::BadSignature)
    );
    // A tampered payload with the original signature fails too.
    let good = hs(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(with(claims(), "sub", json!("admin")).to_string());
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert_eq!(
        hs_verifier().verify(&forged).await,
        Err(AuthError::BadSignature)
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims())
    );
    assert!(matches!(
        hs_verifier().verify(&token).await,
        Err(AuthError::WrongAlgorithm { .. })
    ));
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    // The classic attack: sign HS256 with the server's public RSA key as the "secret".
    let idp = idp(vec![public_jwk(
        &rsa_key("rsa.der"),
        Algorithm::RS256,
        "k1",
    )])
    .await;
    let v = jwks_verifier(&idp.url, Algorithm::RS256);
    let public_as_secret = serde_json::to_vec(&idp.keys.read().await[0]).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&public_as_secret).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&token).await,
        Err(AuthError::WrongAlgorithm { .. })
    ));
    // And an RS256 token is refused by an HS256 verifier.
    let rs = signed(Algorithm::RS256, "k1", &rsa_key("rsa.der"), &claims());
    assert!(matches!(
        hs_verifier().verify(&rs).await,
        Err(AuthError::WrongAlgorithm { .. })
    ));
}

#[tokio::test]
async fn malformed_and_oversized_tokens_are_refused() {
    let v = hs_verifier();
    for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.x", "e30.e30.x"] {
        assert!(
            matches!(
                v.verify(token).await,
                Err(AuthError::Malformed(_) | AuthError::WrongAlgorithm { .. })
            ),
            "{token:?}"
        );
    }
    let oversized = format!("{}.{}.x", "a".repeat(MAX_TOKEN_BYTES), "b");
    assert_eq!(v.verify(&oversized).await, Err(AuthError::Oversized));
    let wrong_types = hs(&with(claims(), "sub", json!(42)));
    assert!(matches!(
        v.verify(&wrong_types).await,
        Err(AuthError::Malformed(_))
    ));
}

#[tokio::test]
async fn rs256_and_es256_verify_against_the_jwks() {
    let rsa = rsa_key("rsa.der");
    let ec = ec_key();
    let idp = idp(vec![
        public_jwk(&rsa, Algorithm::RS256, "rsa-1"),
        public_jwk(&ec, Algorithm::ES256, "ec-1"),
    ])
    .await;
    let rs = jwks_verifier(&idp.url, Algorithm::RS256);
    assert_eq!(
        rs.verify(&signed(Algorithm::RS256, "rsa-1", &rsa, &claims()))
            .await
            .unwrap()
            .user_id,
        "user-1"
    );
    let es = jwks_verifier(&idp.url, Algorithm::ES256);
    assert_eq!(
        es.verify(&signed(Algorithm::ES256, "ec-1", &ec, &claims()))
            .await
            .unwrap()
            .user_id,
        "user-1"
    );
    // Signed by a key the IdP does not publish under that kid.
    let forged = signed(
        Algorithm::RS256,
        "rsa-1",
        &rsa_key("rsa-other.der"),
        &claims(),
    );
    assert_eq!(rs.verify(&forged).await, Err(AuthError::BadSignature));
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        2,
        "each verifier fetched once, then used its cache"
    );
}

#[tokio::test]
async fn an_unknown_kid_refreshes_once_then_fails() {
    let rsa = rsa_key("rsa.der");
    let other = rsa_key("rsa-other.der");
    let idp = idp(vec![public_jwk(&rsa, Algorithm::RS256, "old")]).await;
    let v = jwks_verifier(&idp.url, Algorithm::RS256);
    v.verify(&signed(Algorithm::RS256, "old", &rsa, &claims()))
        .await
        .expect("old key");
    // The IdP rotates: a token with the new kid triggers one refresh and then verifies.
    idp.keys
        .write()
        .await
        .push(public_jwk(&other, Algorithm::RS256, "new"));
    v.verify(&signed(Algorithm::RS256, "new", &other, &claims()))
        .await
        .expect("refreshed");
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
    let unknown = signed(Algorithm::RS256, "nobody", &rsa, &claims());
    assert_eq!(
        v.verify(&unknown).await,
        Err(AuthError::UnknownKey(Some("nobody".into())))
    );
    let no_kid = encode(&Header::new(Algorithm::RS256), &claims(), &rsa).unwrap();
    assert_eq!(v.verify(&no_kid).await, Err(AuthError::UnknownKey(None)));
}

#[tokio::test]
async fn refreshes_are_rate_limited() {
    let rsa = rsa_key("rsa.der");
    let idp = idp(vec![public_jwk(&rsa, Algorithm::RS256, "k")]).await;
    let cache = JwksCache::new(&idp.url, Duration::from_secs(2)).unwrap();
    let v = Verifier::jwks(Algorithm::RS256, cache).unwrap();
    for i in 0..5 {
        let token = signed(Algorithm::RS256, &format!("random-{i}"), &rsa, &claims());
        assert!(matches!(
            v.verify(&token).await,
            Err(AuthError::UnknownKey(_))
        ));
    }
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        1,
        "random kids cannot hammer the IdP"
    );
}

#[tokio::test]
async fn an_unreachable_or_broken_jwks_is_reported() {
    let rsa = rsa_key("rsa.der");
    let token = signed(Algorithm::RS256, "k", &rsa, &claims());
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", closed.local_addr().unwrap());
    drop(closed);
    let v = jwks_verifier(&url, Algorithm::RS256);
    assert!(matches!(
        v.verify(&token).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert!(
        JwksCache::new("http://example.com/jwks", Duration::from_secs(1)).is_err(),
        "plain http only on loopback"
    );
    assert!(
        Verifier::hs256(b"short").is_err(),
        "short secrets are refused"
    );
}

#[test]
fn the_token_comes_from_the_query_string_or_a_bearer_header() {
    assert_eq!(token_from(Some("q"), Some("Bearer h")), Ok("q"));
    assert_eq!(token_from(None, Some("Bearer h")), Ok("h"));
    assert_eq!(token_from(Some(""), Some("bearer  h ")), Ok("h"));
    assert_eq!(token_from(None, Some("Basic xyz")), Err(AuthError::Missing));
    assert_eq!(token_from(None, None), Err(AuthError::Missing));
}

#[test]
fn key_algorithm_names_match() {
    // The JWKS filter compares names; make sure the two enums agree on them.
    assert_eq!(
        format!("{:?}", KeyAlgorithm::RS256),
        format!("{:?}", Algorithm::RS256)
    );
    assert_eq!(
        format!("{:?}", KeyAlgorithm::ES256),
        format!("{:?}", Algorithm::ES256)
    );
}
