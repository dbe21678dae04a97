//! Bearer-token authentication. The algorithm is pinned by configuration, never taken
//! from the token; `exp`, `iss` and `aud` are required; the token's `sub` is the system id
//! the caller speaks for and a configured claim lists its roles.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aimbus_core::secret_file::{random_hex, read_or_create_private};
use aimbus_core::{JwtAlgorithm, SecurityConfig};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::Error;
use crate::problem::Problem;

/// The environment variable whose value, when set, is the HS256 secret.
pub const SECRET_ENV: &str = "AIMBUS_JWT_SECRET";
/// Shortest HS256 secret accepted: 256 bits, as long as the MAC.
const MIN_SECRET_BYTES: usize = 32;

/// What a caller may do. Reads need any role; sending messages needs `publisher` (or
/// `admin`); registry writes need `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Readonly,
    Publisher,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Readonly => "readonly",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        [Role::Readonly, Role::Publisher, Role::Admin]
            .into_iter()
            .find(|role| role.as_str() == name)
    }
}

/// Who is calling: the system the token speaks for and its roles. `subject` is `None`
/// only when authentication is disabled, and then every role is granted.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Option<String>,
    pub roles: Vec<Role>,
}

impl Caller {
    /// Refuses with 403 unless the caller holds `needed` or `admin`.
    pub fn require(&self, needed: Role) -> Result<(), Problem> {
        let allowed = match needed {
            // Any valid token may read.
            Role::Readonly => !self.roles.is_empty(),
            Role::Publisher => self
                .roles
                .iter()
                .any(|r| matches!(r, Role::Publisher | Role::Admin)),
            Role::Admin => self.roles.contains(&Role::Admin),
        };
        if allowed {
            Ok(())
        } else {
            let held: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
            Err(Problem::forbidden(format!(
                "this needs the `{}` role; the token has [{}]",
                needed.as_str(),
                held.join(", ")
            )))
        }
    }
}

/// What `aimbus token mint` asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub subject: String,
    pub roles: Vec<Role>,
    pub ttl: Duration,
}

/// Verifies bearer tokens (and mints HS256 ones for local use).
#[derive(Clone)]
pub struct Authenticator {
    enabled: bool,
    algorithm: Algorithm,
    /// HS256: the one key. RS256/EdDSA: by `kid`.
    keys: BTreeMap<String, DecodingKey>,
    secret: Option<Vec<u8>>,
    validation: Validation,
    issuer: String,
    audience: String,
    role_claim: String,
    max_token_bytes: usize,
    /// Tokens verified lately, by their hash. A caller sends the same token with every
    /// request, and checking its signature and claims each time cost more than the rest
    /// of a request's authentication. An entry serves only within its token's own
    /// validity window, and for at most [`VERIFIED_FOR`].
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

/// How long a verified token is taken on trust before it is checked again.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Verified tokens remembered at most.
const VERIFIED_TOKENS: u64 = 10_000;

/// A token's caller, and the seconds (leeway included) within which it is valid.
struct Verified {
    caller: Caller,
    not_before: i64,
    expires: i64,
}

impl Authenticator {
    /// Reads the keys `config` names. `secret` is the HS256 secret (see
    /// [`load_or_create_secret`]); `base_dir` is where relative key paths start.
    pub fn new(
        config: &SecurityConfig,
        secret: Option<Vec<u8>>,
        base_dir: &Path,
    ) -> Result<Authenticator, Error> {
        let algorithm = match config.jwt_algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        };
        let mut keys = BTreeMap::new();
        if config.enable_authentication {
            if algorithm == Algorithm::HS256 {
                let secret = secret.as_deref().ok_or_else(|| {
                    Error::Secret(format!(
                        "none given: set {SECRET_ENV} or security.jwt_secret_file"
                    ))
                })?;
                keys.insert(String::new(), DecodingKey::from_secret(secret));
            }
            for (kid, path) in &config.jwt_public_keys {
                let path = base_dir.join(path);
                let key_error = |reason: String| Error::PublicKey {
                    kid: kid.clone(),
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(&path).map_err(|e| key_error(e.to_string()))?;
                let key = match algorithm {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                }
                .map_err(|e| key_error(e.to_string()))?;
                keys.insert(kid.clone(), key);
            }
        }
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[config.jwt_issuer.as_str()]);
        validation.set_audience(&[config.jwt_audience.as_str()]);
        validation.leeway = config.jwt_leeway_seconds;
        validation.validate_nbf = true;
        Ok(Authenticator {
            enabled: config.enable_authentication,
            algorithm,
            keys,
            secret,
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            role_claim: config.jwt_role_claim.clone(),
            max_token_bytes: config.max_token_bytes,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                .time_to_live(VERIFIED_FOR)
                .build(),
        })
    }

    /// The caller an `Authorization` value (`Bearer <token>`) names, from whichever
    /// protocol carried it (an HTTP header, gRPC's `authorization` metadata), or 401
    /// saying what is wrong with its token.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Caller, Problem> {
        if !self.enabled {
            return Ok(Caller {
                subject: None,
                roles: vec![Role::Readonly, Role::Publisher, Role::Admin],
            });
        }
        let header = header.ok_or_else(|| Problem::unauthenticated("no Authorization header"))?;
        if header.len() > self.max_token_bytes + "Bearer ".len() {
            return Err(Problem::unauthenticated(format!(
                "the token is longer than {} bytes",
                self.max_token_bytes
            )));
        }
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Problem::unauthenticated("expected `Authorization: Bearer <token>`"))?;
        self.verify(token.trim())
    }

    fn verify(&self, token: &str) -> Result<Caller, Problem> {
        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        let now = chrono::Utc::now().timestamp();
        if let Some(hit) = self.verified.get(&hash) {
            if (hit.not_before..=hit.expires).contains(&now) {
                return Ok(hit.caller.clone());
            }
        }
        let (caller, not_before, expires) = self.verify_fully(token)?;
        let verified = Verified {
            caller: caller.clone(),
            not_before,
            expires,
        };
        self.verified.insert(hash, Arc::new(verified));
        Ok(caller)
    }

    /// Checks the token's signature and claims: its caller, and the window (leeway
    /// included) within which it is valid.
    fn verify_fully(&self, token: &str) -> Result<(Caller, i64, i64), Problem> {
        let refused = |e: jsonwebtoken::errors::Error| {
            Problem::unauthenticated(format!("invalid token: {e}"))
        };
        let header = jsonwebtoken::decode_header(token).map_err(refused)?;
        if header.alg != self.algorithm {
            return Err(Problem::unauthenticated(format!(
                "invalid token: signed with {:?}; only {:?} is accepted",
                header.alg, self.algorithm
            )));
        }
        let key = if self.algorithm == Algorithm::HS256 {
            self.keys.get("")
        } else {
            let kid = header
                .kid
                .as_deref()
                .ok_or_else(|| Problem::unauthenticated("invalid token: no `kid` in its header"))?;
            Some(self.keys.get(kid).ok_or_else(|| {
                Problem::unauthenticated(format!("invalid token: unknown key id `{kid}`"))
            })?)
        };
        let key = key.ok_or_else(|| Problem::unauthenticated("no verification key configured"))?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map_err(refused)?
            .claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Problem::unauthenticated("invalid token: `sub` must name a system"))?;
        let roles = match claims.get(&self.role_claim) {
            Some(Value::String(role)) => vec![role.as_str()],
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        // Unknown role names grant nothing.
        let mut roles: Vec<Role> = roles.into_iter().filter_map(Role::parse).collect();
        roles.sort();
        roles.dedup();
        // As jsonwebtoken judges them: valid from nbf - leeway to exp + leeway.
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(i64::MAX);
        let seconds = |claim: &str| claims.get(claim).and_then(Value::as_f64).map(|s| s as i64);
        let expires = seconds("exp").map_or(i64::MIN, |exp| exp.saturating_add(leeway));
        let not_before = seconds("nbf").map_or(i64::MIN, |nbf| nbf.saturating_sub(leeway));
        let caller = Caller {
            subject: Some(subject.to_owned()),
            roles,
        };
        Ok((caller, not_before, expires))
    }

    /// Mints an HS256 token with the configured issuer and audience.
    pub fn mint(&self, request: &TokenRequest) -> Result<String, Error> {
        let secret = match (&self.secret, self.algorithm) {
            (Some(secret), Algorithm::HS256) => secret,
            _ => {
                return Err(Error::Mint(
                    "only HS256 tokens can be minted here; sign RS256/EdDSA tokens with your own private key"
                        .into(),
                ));
            }
        };
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX);
        let roles: Vec<&str> = request.roles.iter().map(|r| r.as_str()).collect();
        let mut claims = Map::new();
        claims.insert("sub".into(), request.subject.clone().into());
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ttl).into());
        claims.insert(self.role_claim.clone(), roles.into());
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .map_err(|e| Error::Mint(e.to_string()))
    }
}

/// The HS256 secret: `env_value` (the [`SECRET_ENV`] variable) when given, else the
/// contents of `path`, which is created with a random secret (mode 0600) when missing,
/// so a fresh install is never left with a guessable default.
pub fn load_or_create_secret(path: &Path, env_value: Option<String>) -> Result<Vec<u8>, Error> {
    let secret = match env_value {
        Some(value) => value,
        None => read_or_create_private(path, || {
            tracing::info!(path = %path.display(), "creating a random jwt secret");
            random_hex(32)
        })
        .map_err(|e| Error::Secret(format!("{}: {e}", path.display())))?
        .trim()
        .to_owned(),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::Secret(format!(
            "{} bytes is too short: use at least {MIN_SECRET_BYTES} (for example `openssl rand -hex 32`)",
            secret.len()
        )));
    }
    Ok(secret.into_bytes())
}
