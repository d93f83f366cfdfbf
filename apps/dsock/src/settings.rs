//! The app's `settings` in `ringsocket.json`, checked once at start.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// What the operator configures.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// The API token backends present (`?token=` or `Authorization: Bearer`).
    token: String,
    /// JWT verification, if clients may connect with `?jwt=`.
    #[serde(default)]
    jwt: Option<RawJwt>,
    /// Channels every connection joins.
    #[serde(default)]
    default_channels: Vec<String>,
    /// Seconds a claim lives when neither `expiration` nor `duration` is given.
    #[serde(default = "default_claim_ttl")]
    claim_ttl_s: u64,
    /// The `endpoint_id`s that serve the API (`/send`, `/claim`, …); the others serve
    /// clients (`/connect`, `/ping`).
    #[serde(default = "default_api_endpoints")]
    api_endpoints: Vec<u16>,
    /// Many nodes: the Redis they share.
    #[serde(default)]
    redis: Option<RawRedis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    /// `redis://host:port/db`.
    url: String,
    /// Prefix of every key and of the bus channel.
    #[serde(default = "default_prefix")]
    prefix: String,
    /// Seconds a node's registrations outlive its last renewal (its connections leave
    /// `/info` this long after it dies).
    #[serde(default = "default_ttl")]
    ttl_s: u64,
}

fn default_prefix() -> String {
    "dsock:".into()
}
fn default_ttl() -> u64 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    /// `HS256` (with `secret`) or `RS256` (with `public_key_pem`).
    algorithm: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    public_key_pem: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    leeway_s: u64,
}

fn default_claim_ttl() -> u64 {
    60
}
fn default_api_endpoints() -> Vec<u16> {
    vec![1]
}
fn default_leeway() -> u64 {
    5
}

/// Where Redis is and how its keys are named.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key and of the bus channel.
    pub prefix: String,
    /// Seconds a node's registrations outlive its last renewal.
    pub ttl_s: u64,
}

/// How JWTs are verified: one pinned algorithm and its key.
pub struct JwtConfig {
    /// The only algorithm accepted (a token's own `alg` never chooses).
    pub algorithm: Algorithm,
    /// The key.
    pub key: DecodingKey,
    /// Clock skew allowed, in seconds.
    pub leeway_s: u64,
}

/// The checked settings.
pub struct Settings {
    /// The API token (never empty).
    pub token: String,
    /// JWT verification, if configured.
    pub jwt: Option<JwtConfig>,
    /// Channels every connection joins.
    pub default_channels: Vec<String>,
    /// Default claim lifetime, in seconds.
    pub claim_ttl_s: u64,
    /// Endpoints serving the API.
    pub api_endpoints: Vec<u16>,
    /// The Redis the nodes share, if any.
    pub redis: Option<RedisConfig>,
}

impl Settings {
    /// Parses and checks `json` (the app's `settings`).
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| format!("settings: {e}"))?;
        if raw.token.is_empty() {
            return Err(
                "settings.token: must not be empty (an empty token would open the API to anyone)"
                    .into(),
            );
        }
        let jwt = raw.jwt.map(|j| {
            let key = match j.algorithm.as_str() {
                "HS256" => {
                    let secret = j
                        .secret
                        .filter(|s| !s.is_empty())
                        .ok_or("settings.jwt.secret: HS256 needs a non-empty secret")?;
                    DecodingKey::from_secret(secret.as_bytes())
                }
                "RS256" => {
                    let pem = j
                        .public_key_pem
                        .ok_or("settings.jwt.public_key_pem: RS256 needs a PEM public key")?;
                    DecodingKey::from_rsa_pem(pem.as_bytes())
                        .map_err(|e| format!("settings.jwt.public_key_pem: {e}"))?
                }
                other => {
                    return Err(format!(
                        "settings.jwt.algorithm: '{other}' is not HS256 or RS256"
                    ))
                }
            };
            let algorithm = if j.algorithm == "HS256" {
                Algorithm::HS256
            } else {
                Algorithm::RS256
            };
            Ok::<_, String>(JwtConfig {
                algorithm,
                key,
                leeway_s: j.leeway_s,
            })
        });
        let jwt = jwt.transpose()?;
        if raw.claim_ttl_s == 0 {
            return Err("settings.claim_ttl_s: must be at least 1".into());
        }
        let redis = match raw.redis {
            Some(r) if r.ttl_s < 3 => return Err("settings.redis.ttl_s: must be at least 3".into()),
            Some(r) if !r.url.starts_with("redis://") => {
                return Err(format!(
                    "settings.redis.url: '{}' is not a redis:// URL",
                    r.url
                ))
            }
            Some(r) => Some(RedisConfig {
                url: r.url,
                prefix: r.prefix,
                ttl_s: r.ttl_s,
            }),
            None => None,
        };
        Ok(Settings {
            redis,
            token: raw.token,
            jwt,
            default_channels: raw.default_channels,
            claim_ttl_s: raw.claim_ttl_s,
            api_endpoints: raw.api_endpoints,
        })
    }
}
