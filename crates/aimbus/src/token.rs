//! `aimbus token mint`, and the authenticator `serve` and `token` share.

use std::time::Duration;

use aimbus_core::{Config, JwtAlgorithm};
use aimbus_gateway::{Authenticator, Role, TokenRequest, load_or_create_secret};
use anyhow::{Context, bail};

use crate::cli::TokenCommand;

/// The gateway's authenticator: the HS256 secret from `AIMBUS_JWT_SECRET` or the secret
/// file (created when missing), or the configured public keys.
pub fn authenticator(config: &Config) -> Result<Authenticator, aimbus_gateway::Error> {
    let security = config.security();
    let secret = if security.enable_authentication && security.jwt_algorithm == JwtAlgorithm::HS256
    {
        let path = config.resolve_path(&security.jwt_secret_file);
        let from_env = std::env::var(aimbus_gateway::SECRET_ENV).ok();
        Some(load_or_create_secret(&path, from_env)?)
    } else {
        None
    };
    Authenticator::new(security, secret, &config.resolve_path("."))
}

pub fn run(
    config: &Config,
    authenticator: &Authenticator,
    command: TokenCommand,
) -> anyhow::Result<()> {
    let TokenCommand::Mint { sub, roles, ttl } = command;
    let roles = roles
        .iter()
        .map(|name| {
            Role::parse(name)
                .with_context(|| format!("unknown role `{name}`: use readonly, publisher or admin"))
        })
        .collect::<anyhow::Result<Vec<Role>>>()?;
    let ttl = match ttl {
        Some(text) => parse_ttl(&text)?,
        None => Duration::from_secs(u64::from(config.security().token_expiration_hours) * 3600),
    };
    let token = authenticator.mint(&TokenRequest {
        subject: sub,
        roles,
        ttl,
    })?;
    println!("{token}");
    Ok(())
}

/// `90s`, `15m`, `1h`, `7d`.
fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("cannot read the ttl `{text}`: use a number with s, m, h or d, such as 1h"),
    };
    let number: u64 = number.parse().with_context(|| {
        format!("cannot read the ttl `{text}`: use a number with s, m, h or d, such as 1h")
    })?;
    if number == 0 {
        bail!("the ttl must be longer than 0");
    }
    Ok(Duration::from_secs(number.saturating_mul(seconds_per)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_with_their_unit() {
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "h", "1", "1w", "-1h", "0m", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
