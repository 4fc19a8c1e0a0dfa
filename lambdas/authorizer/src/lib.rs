//! The `$connect` authorizer: verifies the client's JWT and answers with an IAM policy for
//! exactly the method ARN, plus the user in the context that API Gateway attaches to every
//! later event of the connection.

use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use lambda_runtime::LambdaEvent;
use realtime_auth::{token_from, JwksCache, JwtAlgorithm, Verifier};
use realtime_aws::ConfigError;
use serde_json::{json, Value};

/// The authorizer could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A variable is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secret or the keys could not be loaded.
    #[error("cannot load the verification key: {0}")]
    Keys(String),
}

/// How tokens are verified, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// `AUTH_MODE=hs256`: the secret's ARN in `JWT_SECRET_ARN`, read from Secrets Manager.
    Hs256 {
        /// The secret's ARN.
        secret_arn: String,
        /// `JWT_ISSUER`, if set.
        issuer: Option<String>,
        /// `JWT_AUDIENCE`, if set.
        audience: Option<String>,
    },
    /// `AUTH_MODE=jwks`: `JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_ALGORITHM` (RS256 or ES256).
    Jwks {
        /// Where the keys are published.
        url: String,
        /// RS256 or ES256.
        algorithm: JwtAlgorithm,
        /// The required issuer.
        issuer: String,
        /// The required audience.
        audience: String,
    },
}

impl AuthConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| lookup(name).ok_or(ConfigError::Missing(name));
        match lookup("AUTH_MODE").as_deref() {
            Some("hs256") => Ok(AuthConfig::Hs256 {
                secret_arn: required("JWT_SECRET_ARN")?,
                issuer: lookup("JWT_ISSUER"),
                audience: lookup("JWT_AUDIENCE"),
            }),
            Some("jwks") => Ok(AuthConfig::Jwks {
                url: required("JWKS_URL")?,
                algorithm: match lookup("JWT_ALGORITHM").as_deref() {
                    None | Some("RS256") => JwtAlgorithm::RS256,
                    Some("ES256") => JwtAlgorithm::ES256,
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            name: "JWT_ALGORITHM",
                            value: other.to_owned(),
                            expected: "RS256 or ES256",
                        })
                    }
                },
                issuer: required("JWT_ISSUER")?,
                audience: required("JWT_AUDIENCE")?,
            }),
            Some(other) => Err(ConfigError::Invalid {
                name: "AUTH_MODE",
                value: other.to_owned(),
                expected: "hs256 or jwks",
            }),
            None => Err(ConfigError::Missing("AUTH_MODE")),
        }
    }
}

/// Builds the verifier: reads the HS256 secret from Secrets Manager once, or prefetches the
/// JWKS (a failure there is logged and retried on the first token).
pub async fn verifier(config: &AuthConfig) -> Result<Verifier, InitError> {
    match config {
        AuthConfig::Hs256 {
            secret_arn,
            issuer,
            audience,
        } => {
            let sdk = realtime_aws::clients::sdk_config(Duration::from_secs(3));
            let client = aws_sdk_secretsmanager::Client::new(&sdk);
            let secret = client
                .get_secret_value()
                .secret_id(secret_arn)
                .send()
                .await
                .map_err(|e| {
                    InitError::Keys(format!("GetSecretValue: {}", e.into_service_error()))
                })?;
            let secret = secret
                .secret_string()
                .ok_or_else(|| InitError::Keys("the secret has no SecretString".into()))?;
            let mut verifier =
                Verifier::hs256(secret.as_bytes()).map_err(|e| InitError::Keys(e.to_string()))?;
            if let Some(issuer) = issuer {
                verifier = verifier.with_issuer(issuer);
            }
            if let Some(audience) = audience {
                verifier = verifier.with_audience(audience);
            }
            Ok(verifier)
        }
        AuthConfig::Jwks {
            url,
            algorithm,
            issuer,
            audience,
        } => {
            let cache = JwksCache::new(url, Duration::from_secs(3))
                .map_err(|e| InitError::Keys(e.to_string()))?;
            if let Err(error) = cache.prefetch(*algorithm).await {
                tracing::warn!(%error, "JWKS prefetch failed; will retry on the first token");
            }
            Ok(Verifier::jwks(*algorithm, cache)
                .map_err(|e| InitError::Keys(e.to_string()))?
                .with_issuer(issuer)
                .with_audience(audience))
        }
    }
}

fn policy(effect: IamPolicyEffect, method_arn: &str) -> ApiGatewayCustomAuthorizerPolicy {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![method_arn.to_owned()];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    policy
}

/// Verifies the request's token. Allow: a policy for exactly `methodArn`, the user id as
/// `principalId` and in the context with the display name. Anything wrong: Deny (403).
pub async fn authorize(
    verifier: &Verifier,
    event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>,
) -> Result<ApiGatewayCustomAuthorizerResponse<Value>, lambda_runtime::Error> {
    let request = event.payload;
    let method_arn = request.method_arn.clone().unwrap_or_default();
    let query = request.query_string_parameters.first("token");
    let header = request
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    let verified = match token_from(query, header) {
        Ok(token) => verifier.verify(token).await,
        Err(e) => Err(e),
    };
    let mut response = ApiGatewayCustomAuthorizerResponse::<Value>::default();
    match verified {
        Ok(identity) => {
            tracing::info!(user = %identity.user_id, "allowed");
            response.principal_id = Some(identity.user_id.clone());
            response.policy_document = policy(IamPolicyEffect::Allow, &method_arn);
            // API Gateway passes context values as strings; null is not allowed.
            response.context = json!({
                "userId": identity.user_id,
                "name": identity.name.unwrap_or_default(),
            });
        }
        Err(reason) => {
            tracing::info!(%reason, "denied");
            response.principal_id = Some("anonymous".to_owned());
            response.policy_document = policy(IamPolicyEffect::Deny, &method_arn);
            response.context = json!({});
        }
    }
    Ok(response)
}
