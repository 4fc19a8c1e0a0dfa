//! Who may connect: verifies the JWT a client presents at `$connect`.
//!
//! Two modes, chosen per stage: `hs256` (a shared secret, for teams without an identity
//! provider) and `jwks` (RS256 or ES256 keys published at a JWKS URL, e.g. a Cognito user
//! pool). Exactly one algorithm is accepted per verifier, so `alg: none` and HS/RS confusion
//! are refused before any key is looked at.

pub mod jwks;
pub mod jwt_crypto;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub use jsonwebtoken::Algorithm as JwtAlgorithm;
pub use jwks::JwksCache;

/// Tokens longer than this are refused unread (API Gateway caps headers at 10 KB anyway).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Why a token was refused. Shown in logs only; the client just gets 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the query string or the `Authorization` header.
    #[error("no token: pass ?token=JWT or an Authorization: Bearer header")]
    Missing,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is over {MAX_TOKEN_BYTES} bytes")]
    Oversized,
    /// Not three base64url parts with JSON inside, or claims of the wrong shape.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The header names an algorithm other than the configured one (`none` included).
    #[error("algorithm {found} is not accepted (expected {expected})")]
    WrongAlgorithm {
        /// What the token's header says.
        found: String,
        /// The configured algorithm.
        expected: String,
    },
    /// The signature does not match.
    #[error("the signature is not valid")]
    BadSignature,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// No key with the token's `kid`, even after refreshing the JWKS.
    #[error("no key with kid {0:?}")]
    UnknownKey(Option<String>),
    /// The JWKS could not be fetched or parsed.
    #[error("the signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user_id: String,
    /// A display name: `name`, else `preferred_username`, `cognito:username` or `email`.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default, rename = "cognito:username")]
    cognito_username: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

/// Where the verification keys come from.
enum Keys {
    /// One shared secret (HS256).
    Secret(DecodingKey),
    /// A JWKS URL, fetched once and refreshed on an unknown `kid`.
    Jwks(Box<JwksCache>),
}

/// Verifies tokens for one algorithm, issuer and audience.
pub struct Verifier {
    algorithm: Algorithm,
    keys: Keys,
    validation: Validation,
    leeway: u64,
}

impl Verifier {
    /// HS256 with a shared secret (at least 32 bytes, so it cannot be guessed).
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::KeysUnavailable(
                "the HS256 secret must be at least 32 bytes".into(),
            ));
        }
        let key = DecodingKey::from_secret(secret)
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        Ok(Self::new(Algorithm::HS256, Keys::Secret(key)))
    }

    /// RS256 or ES256 against a JWKS.
    pub fn jwks(algorithm: Algorithm, cache: JwksCache) -> Result<Self, AuthError> {
        if !matches!(algorithm, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::WrongAlgorithm {
                found: format!("{algorithm:?}"),
                expected: "RS256 or ES256".into(),
            });
        }
        Ok(Self::new(algorithm, Keys::Jwks(Box::new(cache))))
    }

    fn new(algorithm: Algorithm, keys: Keys) -> Self {
        // Before any token is checked: jsonwebtoken has no crypto backend of its own here.
        jwt_crypto::install();
        let mut validation = Validation::new(algorithm);
        validation.leeway = DEFAULT_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            algorithm,
            keys,
            validation,
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Requires this `iss`.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// Requires this audience in `aud`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self
    }

    /// The algorithm this verifier accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The JWKS cache, when in `jwks` mode.
    pub fn jwks_cache(&self) -> Option<&JwksCache> {
        match &self.keys {
            Keys::Jwks(cache) => Some(cache),
            Keys::Secret(_) => None,
        }
    }

    /// Checks a token and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Oversized);
        }
        let header = header_json(token)?;
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        let expected = format!("{:?}", self.algorithm);
        if alg != expected {
            return Err(AuthError::WrongAlgorithm {
                found: alg.chars().take(16).collect(),
                expected,
            });
        }
        let kid = header
            .get("kid")
            .and_then(|k| k.as_str())
            .map(str::to_owned);
        let data = match &self.keys {
            Keys::Secret(key) => jsonwebtoken::decode::<Claims>(token, key, &self.validation),
            Keys::Jwks(cache) => {
                let key = cache.key(kid.as_deref(), self.algorithm).await?;
                jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            }
        }
        .map_err(|e| classify(e.into_kind()))?;
        let claims = data.claims;
        if let Some(iat) = claims.iat {
            if iat > now_secs().saturating_add(self.leeway) {
                return Err(AuthError::IssuedInFuture);
            }
        }
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(AuthError::Malformed(
                "`sub` must be 1 to 256 characters".into(),
            ));
        }
        let name = claims
            .name
            .or(claims.preferred_username)
            .or(claims.cognito_username)
            .or(claims.email)
            .map(|n| n.chars().take(128).collect());
        Ok(Identity {
            user_id: claims.sub,
            name,
        })
    }
}

/// The token's header as JSON, read without trusting anything in it yet.
fn header_json(token: &str) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "a JWT has three dot-separated parts".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("the header is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the header is not a JSON object".into()))
}

fn classify(kind: ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm {
            found: "?".into(),
            expected: "the configured one".into(),
        },
        other => AuthError::Malformed(format!("{other:?}")),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token of a `$connect` request: `?token=` first (browsers cannot set headers on a
/// WebSocket), then `Authorization: Bearer`.
pub fn token_from<'a>(
    query_token: Option<&'a str>,
    authorization: Option<&'a str>,
) -> Result<&'a str, AuthError> {
    if let Some(token) = query_token.filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    authorization
        .and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
}

/// Local development tokens: HS256, signed with the local secret (`mint-token`, and the
/// ready-made tokens the local gateway prints).
pub mod local {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    /// How long a local token is valid unless told otherwise.
    pub const DEFAULT_TTL_SECS: u64 = 12 * 3600;

    /// Whether `user` may name a local user: 1 to 64 of letters, digits, `_ - . @`.
    pub fn valid_user(user: &str) -> bool {
        !user.is_empty()
            && user.len() <= 64
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
    }

    /// Signs a token for `user` (as `sub` and `name`), valid for `ttl_secs`, with the
    /// issuer and audience the authorizer requires, if any.
    pub fn mint(
        secret: &[u8],
        user: &str,
        ttl_secs: u64,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        // Minting can be the first use of jsonwebtoken in a process (the mint-token tool).
        super::jwt_crypto::install();
        let now = super::now_secs();
        let mut claims =
            serde_json::json!({"sub": user, "name": user, "iat": now, "exp": now + ttl_secs});
        if let Some(issuer) = issuer.filter(|s| !s.is_empty()) {
            claims["iss"] = issuer.into();
        }
        if let Some(audience) = audience.filter(|s| !s.is_empty()) {
            claims["aud"] = audience.into();
        }
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret)?,
        )
    }
}
