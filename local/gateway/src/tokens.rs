//! Ready-made tokens for local use: when the `$connect` authorizer verifies HS256 tokens with
//! a secret of the template, the gateway knows that secret (it serves it), so it can sign a
//! token the authorizer accepts, exactly as `mint-token` does.

use std::time::Duration;

pub use realtime_auth::local::valid_user;

use crate::template::FunctionSpec;

/// How long a printed token is valid (as `mint-token`'s default).
pub const TOKEN_TTL: Duration = Duration::from_secs(realtime_auth::local::DEFAULT_TTL_SECS);

/// Signs an HS256 token for `user` with `secret`, with the issuer and audience the
/// authorizer function requires (`JWT_ISSUER`, `JWT_AUDIENCE` in its environment).
pub(crate) fn sign(
    secret: &str,
    user: &str,
    authorizer: &FunctionSpec,
) -> Result<String, jsonwebtoken::errors::Error> {
    let env = |name: &str| authorizer.environment.get(name).map(String::as_str);
    realtime_auth::local::mint(
        secret.as_bytes(),
        user,
        TOKEN_TTL.as_secs(),
        env("JWT_ISSUER"),
        env("JWT_AUDIENCE"),
    )
}
