//! Who may use the API (the token) and who may connect (a claim or a JWT).

use crate::registry::Identity;
use crate::settings::JwtConfig;
use jsonwebtoken::Validation;
use rand::distr::{Alphanumeric, SampleString};
use rand::TryRngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `given` is the API token: compared in constant time (as SHA-256 digests, so
/// not even the length leaks).
pub fn token_matches(given: &str, token: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    a.ct_eq(&b).into()
}

/// The token a request presents: `?token=`, else `Authorization: Bearer …`.
pub fn presented_token<'a>(
    query_token: Option<&'a str>,
    authorization: Option<&'a str>,
) -> Option<&'a str> {
    query_token.or_else(|| authorization?.strip_prefix("Bearer "))
}

/// A fresh claim id: 32 characters of `[A-Za-z0-9]` from the operating system's CSPRNG.
pub fn new_claim_id() -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng.unwrap_err(), 32)
}

/// The claims a client JWT carries.
#[derive(Deserialize)]
struct JwtClaims {
    sub: String,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
}

/// Verifies a client's JWT: the configured algorithm only, a valid signature, `exp`
/// present and not past (with the configured leeway), `nbf` if present, a non-empty
/// `sub`. Returns who it is for.
///
/// # Errors
/// A short reason (logged, never sent: the client only learns `INVALID_JWT`).
pub fn verify_jwt(jwt: &str, config: &JwtConfig) -> Result<Identity, String> {
    let mut validation = Validation::new(config.algorithm);
    validation.leeway = config.leeway_s;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<JwtClaims>(jwt, &config.key, &validation)
        .map_err(|e| e.to_string())?;
    let claims = data.claims;
    if claims.sub.is_empty() {
        return Err("empty sub".into());
    }
    Ok(Identity {
        user: claims.sub,
        session: claims.sid.filter(|s| !s.is_empty()),
        channels: dedup(claims.channels),
    })
}

/// `channels` without empty names and duplicates, in their first order.
pub fn dedup(channels: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(channels.len());
    for c in channels {
        if !c.is_empty() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

    fn hs(secret: &str) -> JwtConfig {
        JwtConfig {
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.as_bytes()),
            leeway_s: 0,
        }
    }

    fn sign(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn tokens_and_bearer_headers() {
        assert!(token_matches("abc123", "abc123"));
        assert!(!token_matches("abc12", "abc123"));
        assert!(!token_matches("", "abc123"));
        assert_eq!(presented_token(None, Some("Bearer abc")), Some("abc"));
        assert_eq!(presented_token(None, Some("Basic abc")), None);
        assert_eq!(
            presented_token(None, Some("xxxxxxxabc")),
            None,
            "dSock's bug: no prefix check"
        );
        assert_eq!(presented_token(Some("q"), Some("Bearer h")), Some("q"));
    }

    #[test]
    fn claim_ids_are_32_alphanumerics_and_differ() {
        let (a, b) = (new_claim_id(), new_claim_id());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn jwts_need_the_pinned_algorithm_a_signature_exp_and_sub() {
        let cfg = hs("abc123");
        let far = 2_147_485_546u64;
        let good = sign(
            serde_json::json!({"sub": "connect", "sid": "jwt", "exp": far}),
            Algorithm::HS256,
            "abc123",
        );
        let who = verify_jwt(&good, &cfg).unwrap();
        assert_eq!(
            (who.user.as_str(), who.session.as_deref()),
            ("connect", Some("jwt"))
        );
        let other_key = sign(
            serde_json::json!({"sub": "x", "exp": far}),
            Algorithm::HS256,
            "nope",
        );
        assert!(verify_jwt(&other_key, &cfg).is_err());
        let no_exp = sign(serde_json::json!({"sub": "x"}), Algorithm::HS256, "abc123");
        assert!(verify_jwt(&no_exp, &cfg).is_err());
        let expired = sign(
            serde_json::json!({"sub": "x", "exp": 1000}),
            Algorithm::HS256,
            "abc123",
        );
        assert!(verify_jwt(&expired, &cfg).is_err());
        let bad_exp = sign(
            serde_json::json!({"sub": "x", "exp": "invalid"}),
            Algorithm::HS256,
            "abc123",
        );
        assert!(verify_jwt(&bad_exp, &cfg).is_err());
        let empty_sub = sign(
            serde_json::json!({"sub": "", "exp": far}),
            Algorithm::HS256,
            "abc123",
        );
        assert!(verify_jwt(&empty_sub, &cfg).is_err());
        let hs512 = sign(
            serde_json::json!({"sub": "x", "exp": far}),
            Algorithm::HS512,
            "abc123",
        );
        assert!(
            verify_jwt(&hs512, &cfg).is_err(),
            "another algorithm, same key"
        );
        assert!(verify_jwt("not.a.jwt", &cfg).is_err());
    }
}
