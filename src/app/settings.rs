//! `[auth]`: the JWT app's section of the configuration, named after
//! djangorestframework-simplejwt's settings, with the unit in the name.
//!
//! The keys join the core's in `corral config`, `corral.toml` and `CORRAL_AUTH_*`; the
//! core checks each value's kind when it loads, and the app reads the section as
//! [`AuthConfig`], once per process.

use super::auth::Kind as TokenKind;
use crate::config::schema::{key, Key, Kind, Section, SECS};
use crate::config::{Config, ConfigError};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The typed `[auth]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HMAC secret (Django's `SECRET_KEY`); generated and stored in development when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret_key: Option<String>,
    /// Only this algorithm is accepted.
    pub algorithm: Algorithm,
    /// PEM private key used to sign, for asymmetric algorithms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signing_key_file: Option<PathBuf>,
    /// Further PEM public keys accepted when verifying (key rotation), chosen by `kid`.
    pub verifying_key_files: Vec<PathBuf>,
    pub access_token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
    pub sliding_token_lifetime_secs: u64,
    pub sliding_token_refresh_lifetime_secs: u64,
    /// The token types that prove authentication on a protected view, tried in order
    /// (`AccessToken`, `SlidingToken`).
    pub auth_token_classes: Vec<String>,
    /// `JWTAuthentication` (the user is looked up) or `JWTStatelessUserAuthentication`
    /// (the token alone is trusted).
    pub authentication_class: String,
    pub rotate_refresh_tokens: bool,
    pub blacklist_after_rotation: bool,
    pub update_last_login: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    pub leeway_secs: u64,
    pub auth_header_types: Vec<String>,
    pub user_id_claim: String,
    pub check_user_is_active: bool,
    /// Highest PBKDF2 iteration count a stored Django hash may demand.
    pub max_pbkdf2_iterations: u64,
    /// Threads per worker that hash passwords, off the event loop.
    pub password_hash_threads: u64,
    /// With rotation: a spent refresh token presented again within this many seconds gets
    /// the same successor pair instead of revoking its family (0..=60).
    pub rotation_grace_secs: u64,
    /// A refresh token family (a login and its rotations) is refused this long after the
    /// login, however often it was rotated; 0 = no limit.
    pub refresh_family_max_lifetime_secs: u64,
    /// A refresh token unused this long after it was issued is refused (the session
    /// went idle); 0 = only its own lifetime.
    pub refresh_idle_timeout_secs: u64,
    /// Failed logins a client address may make, in DRF's rate syntax (`20/min`), or `none`.
    pub login_throttle_per_ip: String,
    /// Failed logins against one username from addresses it never logged in from.
    pub login_throttle_per_user: String,
}

/// A rate in DRF's syntax: `N/s`, `N/min`, `N/hour`, `N/day` (DRF reads the period's first
/// letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period_secs: u64,
}

impl Rate {
    /// `None` for `none` (off).
    pub fn parse(s: &str) -> Result<Option<Rate>, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") || s.is_empty() {
            return Ok(None);
        }
        let bad = || {
            format!(
                "{s:?} is not a rate such as \"10/min\" (N/s, N/min, N/hour, N/day) or \"none\""
            )
        };
        let (n, period) = s.split_once('/').ok_or_else(bad)?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        let period_secs = match period.trim().chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Some(Rate { count, period_secs }))
    }
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            secret_key: None,
            algorithm: Algorithm::HS256,
            signing_key_file: None,
            verifying_key_files: vec![],
            access_token_lifetime_secs: 300,
            refresh_token_lifetime_secs: 86_400,
            sliding_token_lifetime_secs: 300,
            sliding_token_refresh_lifetime_secs: 86_400,
            auth_token_classes: vec!["AccessToken".into()],
            authentication_class: "JWTAuthentication".into(),
            rotate_refresh_tokens: false,
            blacklist_after_rotation: true,
            update_last_login: false,
            audience: None,
            issuer: None,
            leeway_secs: 0,
            auth_header_types: vec!["Bearer".into()],
            user_id_claim: "user_id".into(),
            check_user_is_active: true,
            max_pbkdf2_iterations: 3_000_000,
            password_hash_threads: 1,
            rotation_grace_secs: 0,
            refresh_family_max_lifetime_secs: 0,
            refresh_idle_timeout_secs: 0,
            login_throttle_per_ip: "20/min".into(),
            login_throttle_per_user: "10/min".into(),
        }
    }
}

impl AuthConfig {
    /// The section of a loaded configuration.
    pub fn of(c: &Config) -> Result<AuthConfig, ConfigError> {
        c.app.get()
    }

    /// The token types `auth_token_classes` names, in order.
    pub fn token_classes(&self) -> Vec<TokenKind> {
        self.auth_token_classes
            .iter()
            .filter_map(|c| token_class(c).ok())
            .collect()
    }

    /// `JWTStatelessUserAuthentication`: a valid token is trusted without looking its user
    /// up (simplejwt's `TokenUser`).
    pub fn stateless(&self) -> bool {
        self.authentication_class != "JWTAuthentication"
    }

    /// An HMAC algorithm, signed with `secret_key`.
    pub fn is_hmac(&self) -> bool {
        matches!(
            self.algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        )
    }
}

/// A name of `auth.auth_token_classes`: simplejwt's class, by its name or its dotted path.
fn token_class(name: &str) -> Result<TokenKind, String> {
    let short = name
        .trim()
        .strip_prefix("rest_framework_simplejwt.tokens.")
        .unwrap_or(name.trim());
    [TokenKind::Access, TokenKind::Sliding]
        .into_iter()
        .find(|k| k.class_name() == short)
        .ok_or_else(|| {
            format!("{name:?} is not a token class that authenticates: AccessToken or SlidingToken")
        })
}

const AUTHENTICATION_CLASSES: &[&str] = &[
    "JWTAuthentication",
    "JWTStatelessUserAuthentication",
    "JWTTokenUserAuthentication",
];

const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// The `[auth]` keys, in the order `corral config` prints them.
pub static KEYS: &[Key] = &[
    Key {
        platform_env: &["SECRET_KEY"],
        secret: true,
        ..key("auth.secret_key", Kind::Str, "HMAC signing key (Django's SECRET_KEY), at least 32 bytes in production")
    },
    key("auth.algorithm", Kind::Enum(ALGORITHMS), "Signing algorithm; only this one is accepted"),
    key("auth.signing_key_file", Kind::Path, "PEM private key for RS*/PS*/ES*/EdDSA"),
    key("auth.verifying_key_files", Kind::List, "More PEM public keys accepted by kid (key rotation)"),
    key("auth.access_token_lifetime_secs", Kind::Int { min: 1, max: 31_536_000 }, "Access token lifetime (simplejwt ACCESS_TOKEN_LIFETIME)"),
    key("auth.refresh_token_lifetime_secs", Kind::Int { min: 1, max: 315_360_000 }, "Refresh token lifetime (REFRESH_TOKEN_LIFETIME)"),
    key("auth.sliding_token_lifetime_secs", Kind::Int { min: 1, max: 31_536_000 }, "Sliding token lifetime: how long one lasts unrefreshed (SLIDING_TOKEN_LIFETIME)"),
    key("auth.sliding_token_refresh_lifetime_secs", Kind::Int { min: 1, max: 315_360_000 }, "How long after login a sliding token can still be refreshed, its refresh_exp (SLIDING_TOKEN_REFRESH_LIFETIME)"),
    Key {
        parse: Some(|s| token_class(s).map(drop)),
        ..key("auth.auth_token_classes", Kind::List, "Token types that authenticate on protected views, tried in order: AccessToken, SlidingToken (AUTH_TOKEN_CLASSES)")
    },
    key("auth.authentication_class", Kind::Enum(AUTHENTICATION_CLASSES), "JWTAuthentication looks the user up on each request (inactive, deleted and logged-out users refused); JWTStatelessUserAuthentication trusts the token alone until it expires (DEFAULT_AUTHENTICATION_CLASSES)"),
    key("auth.rotate_refresh_tokens", Kind::Bool, "Refresh returns a new refresh token too (ROTATE_REFRESH_TOKENS)"),
    key("auth.blacklist_after_rotation", Kind::Bool, "A rotated refresh token is single-use; reuse revokes its family (BLACKLIST_AFTER_ROTATION)"),
    key("auth.update_last_login", Kind::Bool, "Record last_login on each token obtain (UPDATE_LAST_LOGIN)"),
    key("auth.audience", Kind::Str, "aud claim added and required (AUDIENCE)"),
    key("auth.issuer", Kind::Str, "iss claim added and required (ISSUER)"),
    key("auth.leeway_secs", SECS, "Clock leeway for exp, nbf and iat (LEEWAY)"),
    key("auth.auth_header_types", Kind::List, "Accepted Authorization schemes (AUTH_HEADER_TYPES)"),
    key("auth.user_id_claim", Kind::Str, "Claim that carries the user id (USER_ID_CLAIM)"),
    key("auth.check_user_is_active", Kind::Bool, "Refuse tokens of inactive users (CHECK_USER_IS_ACTIVE)"),
    key("auth.max_pbkdf2_iterations", Kind::Int { min: 1, max: 100_000_000 }, "Highest PBKDF2 iteration count a stored Django hash may demand"),
    key("auth.password_hash_threads", Kind::Int { min: 1, max: 64 }, "Threads per worker hashing passwords, off the event loop"),
    key("auth.rotation_grace_secs", Kind::Int { min: 0, max: 60 }, "With rotation: a spent refresh token presented again within this many seconds gets the same new pair instead of revoking its family (RFC 9700 4.14, Auth0's overlap period, Cognito's RetryGracePeriodSeconds); 0 = reuse at once"),
    key("auth.refresh_family_max_lifetime_secs", Kind::Int { min: 0, max: 315_360_000 }, "A login's refresh tokens, rotated or not, are refused this long after the login (an absolute session lifetime); 0 = no limit"),
    key("auth.refresh_idle_timeout_secs", Kind::Int { min: 0, max: 315_360_000 }, "With rotation: a refresh token not used within this long of being issued is refused (an idle session ends); 0 = only its own lifetime"),
    Key {
        parse: Some(|s| Rate::parse(s).map(drop)),
        ..key("auth.login_throttle_per_ip", Kind::Str, "Failed logins per client address (the real one behind a trusted proxy), in DRF's rate syntax such as 20/min, shared by the host's workers; none disables")
    },
    Key {
        parse: Some(|s| Rate::parse(s).map(drop)),
        ..key("auth.login_throttle_per_user", Kind::Str, "Failed logins per username from addresses that never logged in as that user (its own keep working); none disables")
    },
];

fn defaults() -> toml::Table {
    toml::Table::try_from(AuthConfig::default()).expect("defaults serialise")
}

fn validate(t: &toml::Table) -> Result<(), (&'static str, String)> {
    let schemes = t.get("auth_header_types").and_then(toml::Value::as_array);
    if schemes.is_none_or(|s| s.is_empty()) {
        return Err((
            "auth.auth_header_types",
            "at least one scheme is needed".into(),
        ));
    }
    let classes: Vec<&str> = t
        .get("auth_token_classes")
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default();
    if classes.is_empty() {
        return Err((
            "auth.auth_token_classes",
            "at least one token class is needed: AccessToken, SlidingToken or both".into(),
        ));
    }
    let kinds: Vec<_> = classes.iter().filter_map(|c| token_class(c).ok()).collect();
    if (1..kinds.len()).any(|i| kinds[..i].contains(&kinds[i])) {
        return Err((
            "auth.auth_token_classes",
            "a token class is named twice".into(),
        ));
    }
    Ok(())
}

/// `[auth]` as the core sees it.
pub static SECTION: Section = Section {
    name: "auth",
    keys: KEYS,
    defaults,
    validate,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of `AuthConfig` is declared in `KEYS`, and every declared key is a field.
    #[test]
    fn keys_match_struct() {
        let c = AuthConfig {
            secret_key: Some("x".into()),
            signing_key_file: Some("x".into()),
            audience: Some("x".into()),
            issuer: Some("x".into()),
            ..AuthConfig::default()
        };
        let mut fields: Vec<String> = toml::Table::try_from(&c)
            .unwrap()
            .keys()
            .map(|k| format!("auth.{k}"))
            .collect();
        let mut declared: Vec<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
        fields.sort();
        declared.sort();
        assert_eq!(fields, declared);
    }

    /// The README documents every `[auth]` key.
    #[test]
    fn readme_documents_every_key() {
        crate::config::schema::assert_documented(KEYS);
    }

    /// Every algorithm name the key accepts is one the section's type can hold.
    #[test]
    fn every_listed_algorithm_deserialises() {
        for a in ALGORITHMS {
            let _: Algorithm = toml::Value::String(a.to_string()).try_into().unwrap();
        }
    }

    /// `corral config` shows the secret key's length, never the key.
    #[test]
    fn render_redacts_the_secret_key() {
        static SCHEMA: crate::config::schema::Schema =
            crate::config::schema::Schema::new(Some(&SECTION));
        let layers = crate::config::Layers {
            schema: &SCHEMA,
            config_file: None,
            flags: vec![],
            env: [("SECRET_KEY".to_string(), "s3cr3t-s3cr3t".to_string())].into(),
        };
        let loaded = layers.load().unwrap();
        assert_eq!(
            AuthConfig::of(&loaded.config)
                .unwrap()
                .secret_key
                .as_deref(),
            Some("s3cr3t-s3cr3t")
        );
        let out = loaded.render();
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("# secret_key = <redacted, 13 bytes>"), "{out}");
    }
}
