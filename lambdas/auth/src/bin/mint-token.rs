//! Signs an HS256 token with the local secret, for `make token USER=alice`:
//! `mint-token SECRET_FILE USER [TTL_SECONDS] [ISSUER] [AUDIENCE]`. Prints the token only.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(secret_file), Some(user)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mint-token SECRET_FILE USER [TTL_SECONDS] [ISSUER] [AUDIENCE]");
        return ExitCode::from(2);
    };
    let ttl: u64 = match args.get(2).map(|s| s.parse()) {
        None => 12 * 3600,
        Some(Ok(ttl)) => ttl,
        Some(Err(_)) => {
            eprintln!("mint-token: TTL_SECONDS must be a whole number");
            return ExitCode::from(2);
        }
    };
    let secret = match std::fs::read_to_string(secret_file) {
        Ok(secret) => secret.trim().to_owned(),
        Err(e) => {
            eprintln!("mint-token: cannot read {secret_file}: {e} (run `make dev` once, which creates it)");
            return ExitCode::from(1);
        }
    };
    let valid_user = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b));
    if !valid_user {
        eprintln!("mint-token: USER must be 1 to 64 of letters, digits, _ - . @");
        return ExitCode::from(2);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut claims = serde_json::json!({"sub": user, "name": user, "iat": now, "exp": now + ttl});
    if let Some(issuer) = args.get(3).filter(|s| !s.is_empty()) {
        claims["iss"] = issuer.as_str().into();
    }
    if let Some(audience) = args.get(4).filter(|s| !s.is_empty()) {
        claims["aud"] = audience.as_str().into();
    }
    let key = match EncodingKey::from_secret(secret.as_bytes()) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("mint-token: unusable secret: {e}");
            return ExitCode::from(1);
        }
    };
    match encode(&Header::new(Algorithm::HS256), &claims, &key) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint-token: {e}");
            ExitCode::from(1)
        }
    }
}
