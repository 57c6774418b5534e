//! Signing and verification keys, from `[auth]`.
//!
//! HS* algorithms use `secret_key` (Django's `SECRET_KEY`) and emit no `kid`, exactly as
//! simplejwt. Asymmetric algorithms (RS*, PS*, ES256/384, EdDSA) sign with the PEM private
//! key in `signing_key_file`, and verify with its public half plus any PEM public keys in
//! `verifying_key_files`, so keys can rotate: each key's `kid` is its RFC 7638 thumbprint,
//! and `GET /.well-known/jwks.json` publishes the public keys. A secret is never published.

use super::jws::VerifyKey;
use crate::app::settings::AuthConfig;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use serde_json::{json, Value};
use std::fmt;
use std::path::Path;

/// A key that cannot be used, with the setting and file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// Keys for one algorithm.
pub(crate) struct KeySet {
    pub alg: Algorithm,
    pub signing: EncodingKey,
    pub signing_kid: Option<String>,
    /// The signing key's verifier first, then the rotated-out ones.
    pub verify: Vec<VerifyKey>,
    /// `{"keys": [...]}` (empty for HMAC).
    pub jwks: Value,
}

/// Builds the keys; errors name the setting and file.
pub fn load(c: &AuthConfig) -> Result<KeySet, KeyError> {
    let alg = c.algorithm;
    if alg.family() == AlgorithmFamily::Hmac {
        let secret = c
            .secret_key
            .as_deref()
            .ok_or_else(|| KeyError("auth.secret_key (SECRET_KEY) is not set".into()))?;
        return Ok(KeySet {
            alg,
            signing: EncodingKey::from_secret(secret.as_bytes()),
            signing_kid: None,
            verify: vec![VerifyKey::secret(secret.as_bytes(), alg)],
            jwks: json!({ "keys": [] }),
        });
    }
    let path = c
        .signing_key_file
        .as_deref()
        .ok_or_else(|| KeyError(format!("auth.signing_key_file is required for {alg:?}")))?;
    let pem = read(path, "auth.signing_key_file")?;
    let signing = match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&pem),
        AlgorithmFamily::Hmac => unreachable!("handled above"),
    }
    .map_err(|e| {
        KeyError(format!(
            "auth.signing_key_file {}: not a {alg:?} private key in PEM: {e}",
            path.display(),
        ))
    })?;
    let public = Jwk::from_encoding_key(&signing, alg)
        .map_err(|e| KeyError(format!("auth.signing_key_file {}: {e}", path.display())))?;
    let (kid, jwk, key) = published(public, alg)?;
    // A key that cannot verify its own signature (an ES384 key with ES256, say) is refused now.
    let probe = super::jws::encode("{}", alg, Some(&kid), &signing).map_err(|e| {
        KeyError(format!(
            "auth.signing_key_file {}: cannot sign with {alg:?}: {e}",
            path.display(),
        ))
    })?;
    let mut verify = vec![VerifyKey::public(Some(kid.clone()), key)];
    super::jws::decode(&probe, alg, &verify).map_err(|_| {
        KeyError(format!(
            "auth.signing_key_file {}: the key does not match {alg:?}",
            path.display(),
        ))
    })?;
    let mut keys = vec![jwk];
    for p in &c.verifying_key_files {
        let pem = read(p, "auth.verifying_key_files")?;
        let dk = match alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
            _ => DecodingKey::from_ed_pem(&pem),
        }
        .map_err(|e| {
            KeyError(format!(
                "auth.verifying_key_files {}: not a {alg:?} public key in PEM: {e}",
                p.display(),
            ))
        })?;
        let jwk = Jwk::from_decoding_key(&dk, Some(alg))
            .map_err(|e| KeyError(format!("auth.verifying_key_files {}: {e}", p.display())))?;
        let (kid, jwk, key) = published(jwk, alg)?;
        if verify.iter().any(|k| k.kid.as_deref() == Some(&kid)) {
            continue; // the signing key listed again
        }
        verify.push(VerifyKey::public(Some(kid), key));
        keys.push(jwk);
    }
    Ok(KeySet {
        alg,
        signing,
        signing_kid: Some(kid),
        verify,
        jwks: json!({ "keys": keys }),
    })
}

/// A public JWK with its thumbprint as `kid`, and the key to verify with.
fn published(mut jwk: Jwk, alg: Algorithm) -> Result<(String, Jwk, DecodingKey), KeyError> {
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| KeyError(e.to_string()))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(alg.into());
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| KeyError(e.to_string()))?;
    Ok((kid, jwk, key))
}

fn read(path: &Path, setting: &str) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError(format!("{setting} {}: {e}", path.display())))
}
