//! Signs an HS256 token with the local secret, for `make token USER=alice`:
//! `mint-token SECRET_FILE USER [TTL_SECONDS] [ISSUER] [AUDIENCE]`. Prints the token only.

use std::process::ExitCode;

use realtime_auth::local::{mint, valid_user, DEFAULT_TTL_SECS};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(secret_file), Some(user)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mint-token SECRET_FILE USER [TTL_SECONDS] [ISSUER] [AUDIENCE]");
        return ExitCode::from(2);
    };
    let ttl: u64 = match args.get(2).map(|s| s.parse()) {
        None => DEFAULT_TTL_SECS,
        Some(Ok(ttl)) => ttl,
        Some(Err(_)) => {
            eprintln!("mint-token: TTL_SECONDS must be a whole number");
            return ExitCode::from(2);
        }
    };
    if !valid_user(user) {
        eprintln!("mint-token: USER must be 1 to 64 of letters, digits, _ - . @");
        return ExitCode::from(2);
    }
    let secret = match std::fs::read_to_string(secret_file) {
        Ok(secret) => secret.trim().to_owned(),
        Err(e) => {
            eprintln!("mint-token: cannot read {secret_file}: {e} (run `make dev` once, which creates it)");
            return ExitCode::from(1);
        }
    };
    let issuer = args.get(3).map(String::as_str);
    let audience = args.get(4).map(String::as_str);
    match mint(secret.as_bytes(), user, ttl, issuer, audience) {
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
