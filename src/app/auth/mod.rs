//! JSON Web Tokens as djangorestframework-simplejwt 5.5.1 makes and checks them, and
//! passwords as Django stores them. No storage and no HTTP here: callers pass user ids in
//! and get claims and simplejwt's error texts out.
//!
//! Tokens: `token_type`, `exp`, `iat`, `jti` (uuid4 hex), `user_id` (a string; an integer
//! is accepted), plus `aud`/`iss` when configured, in simplejwt's order. Checks, in
//! PyJWT's order after the signature: `iat` not in the future, `nbf`, `exp` (expired when
//! `exp <= now - leeway`, so a token whose `exp` is now is expired), `iss`, `aud`; then
//! simplejwt's: `exp` present, `jti` present, `token_type`. Stricter than simplejwt where
//! that is safe: integer times only, `aud` refused when none is configured, and the
//! parsing rules of [`jws`].

pub(crate) mod jws;
pub(crate) mod keys;
pub(crate) mod password;

use crate::app::settings::AuthConfig;
use serde_json::{Map, Value};
use std::fmt;
use uuid::Uuid;

/// A token could not be signed (the key refused).
#[derive(Debug)]
pub struct SignError(String);

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot sign a token: {}", self.0)
    }
}

impl std::error::Error for SignError {}

/// simplejwt's token errors (their texts are in `app::errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
    WrongType,
    NoType,
    NoId,
    NoExp,
    Blacklisted,
    /// A sliding token without `refresh_exp`.
    NoRefreshExp,
    /// A sliding token past its `refresh_exp`: it can no longer be refreshed.
    RefreshExpired,
}

/// The token types: the pair's two, and simplejwt's sliding token (one token that both
/// authenticates and, until its `refresh_exp`, refreshes itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
    Sliding,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Refresh => "refresh",
            Kind::Sliding => "sliding",
        }
    }

    /// simplejwt's class name, as the `messages` of a 401 and `auth.auth_token_classes`
    /// name it.
    pub fn class_name(self) -> &'static str {
        match self {
            Kind::Access => "AccessToken",
            Kind::Refresh => "RefreshToken",
            Kind::Sliding => "SlidingToken",
        }
    }

    /// Whether the blacklist applies (simplejwt's `BlacklistMixin`): refresh and sliding
    /// tokens, never access tokens.
    pub fn blacklistable(self) -> bool {
        !matches!(self, Kind::Access)
    }
}

/// A token's claims: the registered ones by name, every other one kept in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub token_type: Option<Value>,
    pub exp: Option<Value>,
    pub iat: Option<Value>,
    pub nbf: Option<Value>,
    pub jti: Option<Value>,
    pub sub: Option<Value>,
    pub aud: Option<Value>,
    pub iss: Option<Value>,
    /// A sliding token's last moment of refresh (simplejwt's
    /// `SLIDING_TOKEN_REFRESH_EXP_CLAIM`).
    pub refresh_exp: Option<Value>,
    /// The claim named by `user_id_claim`.
    pub user_id: Option<Value>,
    pub other: Vec<(String, Value)>,
}

impl Claims {
    /// Parses a verified payload: a JSON object without duplicate keys.
    fn parse(payload: &[u8], user_id_claim: &str) -> Result<Claims, TokenError> {
        let mut c = Claims::default();
        jws::object_entries(payload, |k, v| {
            let slot = match k {
                "token_type" => &mut c.token_type,
                "exp" => &mut c.exp,
                "iat" => &mut c.iat,
                "nbf" => &mut c.nbf,
                "jti" => &mut c.jti,
                "sub" => &mut c.sub,
                "aud" => &mut c.aud,
                "iss" => &mut c.iss,
                REFRESH_EXP => &mut c.refresh_exp,
                k if k == user_id_claim => &mut c.user_id,
                k => {
                    c.other.push((k.to_string(), v));
                    return Ok(());
                }
            };
            *slot = Some(v);
            Ok(())
        })
        .map_err(|_| TokenError::Invalid)?;
        Ok(c)
    }

    /// The `jti` (empty when absent, which verification has already refused).
    pub fn jti(&self) -> &str {
        self.jti.as_ref().and_then(Value::as_str).unwrap_or("")
    }

    /// `iat` in Unix seconds (0 when absent).
    pub fn iat(&self) -> i64 {
        self.iat.as_ref().and_then(Value::as_i64).unwrap_or(0)
    }

    /// `exp` in Unix seconds (0 when absent).
    pub fn exp(&self) -> i64 {
        self.exp.as_ref().and_then(Value::as_i64).unwrap_or(0)
    }

    /// The payload in simplejwt's order: `token_type`, `exp`, `iat`, `jti`, a sliding
    /// token's `refresh_exp`, the user id, then the others as received; `aud` and `iss`
    /// last, as simplejwt appends them.
    fn to_json(&self, user_id_claim: &str) -> String {
        let mut m = Map::new();
        let mut put = |k: &str, v: &Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v.clone());
            }
        };
        put("token_type", &self.token_type);
        put("exp", &self.exp);
        put("iat", &self.iat);
        put("jti", &self.jti);
        put(REFRESH_EXP, &self.refresh_exp);
        put(user_id_claim, &self.user_id);
        put("sub", &self.sub);
        put("nbf", &self.nbf);
        for (k, v) in &self.other {
            put(k, &Some(v.clone()));
        }
        put("aud", &self.aud);
        put("iss", &self.iss);
        Value::Object(m).to_string()
    }
}

/// The claim of a sliding token's refresh deadline (simplejwt's default name).
const REFRESH_EXP: &str = "refresh_exp";

/// A signed token and what the server needs to remember about it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub exp: i64,
    pub claims: Claims,
}

/// Makes and checks tokens for one configuration.
pub struct Tokens {
    keys: keys::KeySet,
    access_lifetime: i64,
    refresh_lifetime: i64,
    sliding_lifetime: i64,
    sliding_refresh_lifetime: i64,
    leeway: i64,
    audience: Option<String>,
    issuer: Option<String>,
    pub user_id_claim: String,
}

impl Tokens {
    pub fn new(c: &AuthConfig) -> Result<Tokens, keys::KeyError> {
        Ok(Tokens {
            keys: keys::load(c)?,
            access_lifetime: c.access_token_lifetime_secs as i64,
            refresh_lifetime: c.refresh_token_lifetime_secs as i64,
            sliding_lifetime: c.sliding_token_lifetime_secs as i64,
            sliding_refresh_lifetime: c.sliding_token_refresh_lifetime_secs as i64,
            leeway: c.leeway_secs as i64,
            audience: c.audience.clone(),
            issuer: c.issuer.clone(),
            user_id_claim: c.user_id_claim.clone(),
        })
    }

    /// `{"keys": [...]}` for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &Value {
        &self.keys.jwks
    }

    fn fresh(&self, kind: Kind, now: i64, lifetime: i64) -> Claims {
        Claims {
            token_type: Some(kind.as_str().into()),
            exp: Some((now + lifetime).into()),
            iat: Some(now.into()),
            jti: Some(new_jti().into()),
            ..Claims::default()
        }
    }

    /// A new refresh token for a user (simplejwt's `RefreshToken.for_user`).
    pub fn refresh_for_user(&self, user_id: i64, now: i64) -> Result<Issued, SignError> {
        let mut c = self.fresh(Kind::Refresh, now, self.refresh_lifetime);
        c.user_id = Some(user_id.to_string().into());
        self.sign(c)
    }

    /// A new sliding token for a user (simplejwt's `SlidingToken.for_user`): `exp` a
    /// sliding lifetime away, `refresh_exp` a sliding refresh lifetime away.
    pub fn sliding_for_user(&self, user_id: i64, now: i64) -> Result<Issued, SignError> {
        let mut c = self.fresh(Kind::Sliding, now, self.sliding_lifetime);
        c.refresh_exp = Some((now + self.sliding_refresh_lifetime).into());
        c.user_id = Some(user_id.to_string().into());
        self.sign(c)
    }

    /// The last moment a sliding token issued now could still be valid: refreshed just
    /// before its `refresh_exp`, it lives one more sliding lifetime. What its outstanding
    /// row must outlive.
    pub fn sliding_outlives(&self, refresh_exp: i64) -> i64 {
        refresh_exp + self.sliding_lifetime
    }

    /// Whether a sliding token may still be refreshed: its `refresh_exp` has not passed
    /// (simplejwt's `check_exp(SLIDING_TOKEN_REFRESH_EXP_CLAIM)`, with the leeway).
    pub fn check_refresh_exp(&self, sliding: &Claims, now: i64) -> Result<(), TokenError> {
        let refresh_exp = match &sliding.refresh_exp {
            None => return Err(TokenError::NoRefreshExp),
            Some(v) => v.as_i64().ok_or(TokenError::Invalid)?,
        };
        if refresh_exp <= now - self.leeway {
            return Err(TokenError::RefreshExpired);
        }
        Ok(())
    }

    /// A sliding token refreshed (simplejwt's `TokenRefreshSlidingSerializer`, after
    /// [`Tokens::check_refresh_exp`]): the same claims, the same `jti` and `refresh_exp`,
    /// with a new `exp` and `iat`.
    pub fn slide(&self, sliding: &Claims, now: i64) -> Result<Issued, SignError> {
        self.sign(Claims {
            exp: Some((now + self.sliding_lifetime).into()),
            iat: Some(now.into()),
            ..sliding.clone()
        })
    }

    /// The access token of a refresh token: fresh `exp`/`iat`/`jti`, every other claim
    /// copied (simplejwt's `RefreshToken.access_token`).
    pub fn access_from(&self, refresh: &Claims, now: i64) -> Result<Issued, SignError> {
        self.access_as(refresh, &new_jti(), now)
    }

    /// [`Tokens::access_from`] with a chosen `jti` and `iat`.
    pub fn access_as(&self, refresh: &Claims, jti: &str, now: i64) -> Result<Issued, SignError> {
        let mut c = self.fresh(Kind::Access, now, self.access_lifetime);
        c.jti = Some(jti.into());
        c.user_id = refresh.user_id.clone();
        c.sub = refresh.sub.clone();
        c.nbf = refresh.nbf.clone();
        c.refresh_exp = refresh.refresh_exp.clone();
        c.other = refresh.other.clone();
        self.sign(c)
    }

    /// A rotated refresh token: the same claims with a new `jti` (chosen by the caller),
    /// `exp` and `iat`. The same inputs give the same token again: the rotation grace
    /// window re-issues a pair this way.
    pub fn rotate_as(&self, refresh: &Claims, jti: &str, now: i64) -> Result<Issued, SignError> {
        let mut fresh = self.fresh(Kind::Refresh, now, self.refresh_lifetime);
        fresh.jti = Some(jti.into());
        let c = Claims {
            token_type: refresh.token_type.clone(),
            exp: fresh.exp,
            iat: fresh.iat,
            jti: fresh.jti,
            ..refresh.clone()
        };
        self.sign(c)
    }

    fn sign(&self, mut claims: Claims) -> Result<Issued, SignError> {
        claims.aud = self.audience.clone().map(Value::String);
        claims.iss = self.issuer.clone().map(Value::String);
        let payload = claims.to_json(&self.user_id_claim);
        let token = jws::encode(
            &payload,
            self.keys.alg,
            self.keys.signing_kid.as_deref(),
            &self.keys.signing,
        )
        .map_err(|e| SignError(e.to_string()))?;
        Ok(Issued {
            token,
            jti: claims.jti().to_string(),
            exp: claims.exp(),
            claims,
        })
    }

    /// Checks a token of any type (simplejwt's `UntypedToken`, used by the verify view).
    pub fn decode(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let claims = self.decode_signed(token, now)?;
        verify(&claims, None)?;
        Ok(claims)
    }

    /// Checks a token that must be of type `kind`.
    #[cfg(test)]
    pub fn decode_as(&self, token: &str, kind: Kind, now: i64) -> Result<Claims, TokenError> {
        let claims = self.decode_signed(token, now)?;
        verify(&claims, Some(kind))?;
        Ok(claims)
    }

    /// The checks PyJWT makes while decoding (signature, times, `iss`, `aud`), without
    /// simplejwt's own ([`verify`]): between the two, simplejwt checks a refresh or
    /// sliding token against the blacklist.
    pub fn decode_signed(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let payload = jws::decode(token, self.keys.alg, &self.keys.verify)
            .map_err(|_| TokenError::Invalid)?;
        let claims = Claims::parse(&payload, &self.user_id_claim)?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_claims(&self, c: &Claims, now: i64) -> Result<(), TokenError> {
        let int = |v: &Option<Value>| -> Result<Option<i64>, TokenError> {
            match v {
                None => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or(TokenError::Invalid),
            }
        };
        let (iat, nbf, exp) = (int(&c.iat)?, int(&c.nbf)?, int(&c.exp)?);
        if iat.is_some_and(|t| t > now + self.leeway) || nbf.is_some_and(|t| t > now + self.leeway)
        {
            return Err(TokenError::Invalid);
        }
        if exp.is_some_and(|t| t <= now - self.leeway) {
            return Err(TokenError::Expired);
        }
        match (&self.issuer, &c.iss) {
            (Some(want), Some(Value::String(got))) if want == got => {}
            (None, _) => {}
            _ => return Err(TokenError::Invalid),
        }
        let aud_ok = match (&self.audience, &c.aud) {
            (None, None) => true,
            (None, Some(_)) => false, // stricter than simplejwt: a token for someone else
            (Some(want), Some(Value::String(got))) => want == got,
            (Some(want), Some(Value::Array(list))) => list.iter().any(|a| a.as_str() == Some(want)),
            (Some(_), _) => false,
        };
        if !aud_ok {
            return Err(TokenError::Invalid);
        }
        if c.sub.as_ref().is_some_and(|v| !v.is_string())
            || c.jti.as_ref().is_some_and(|v| !v.is_string())
        {
            return Err(TokenError::Invalid);
        }
        Ok(())
    }

    /// The user id a token names: `"1"` or `1`. `Err(())` when absent or of another type.
    pub fn user_id(&self, claims: &Claims) -> Result<Option<i64>, ()> {
        match &claims.user_id {
            Some(Value::String(s)) => Ok(s.parse::<i64>().ok()),
            Some(Value::Number(n)) => Ok(n.as_i64()),
            _ => Err(()),
        }
    }
}

/// simplejwt's `Token.verify`, after decoding: `exp` present, `jti` present, and the
/// `token_type` of `kind` (any type when `None`, as `UntypedToken`).
pub fn verify(c: &Claims, kind: Option<Kind>) -> Result<(), TokenError> {
    if c.exp.is_none() {
        return Err(TokenError::NoExp);
    }
    if c.jti.is_none() {
        return Err(TokenError::NoId);
    }
    match (kind, &c.token_type) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(TokenError::NoType),
        (Some(k), Some(Value::String(t))) if t == k.as_str() => Ok(()),
        (Some(_), Some(_)) => Err(TokenError::WrongType),
    }
}

/// uuid4 as 32 lowercase hex digits, as simplejwt's `uuid4().hex`.
pub fn new_jti() -> String {
    Uuid::new_v4().simple().to_string()
}

/// What an `Authorization` header says, per simplejwt's `JWTAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header<'a> {
    /// No header, an empty one, or another scheme: not authenticated (others may try).
    Absent,
    /// The scheme matched but there were not exactly two parts.
    Bad,
    Token(&'a str),
}

/// Splits the header on runs of whitespace, as Python's `bytes.split()`; the scheme must
/// match one of `types` exactly (case-sensitive, as simplejwt).
pub fn parse_header<'a>(value: Option<&'a [u8]>, types: &[String]) -> Header<'a> {
    let Some(v) = value else {
        return Header::Absent;
    };
    let mut parts = v
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .filter(|p| !p.is_empty());
    let Some(first) = parts.next() else {
        return Header::Absent;
    };
    if !types.iter().any(|t| t.as_bytes() == first) {
        return Header::Absent;
    }
    match (parts.next(), parts.next()) {
        // A token that is not UTF-8 fails verification as "Token is invalid".
        (Some(token), None) => Header::Token(std::str::from_utf8(token).unwrap_or("")),
        _ => Header::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        let c = AuthConfig {
            secret_key: Some(secret.into()),
            ..AuthConfig::default()
        };
        Tokens::new(&c).unwrap()
    }

    const GOLDEN: &str = "simplejwt-golden-vector-secret-key-0123456789";
    const ACCESS_INT_UID: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwidXNlcl9pZCI6MX0.vf-iapzv5KsYB98OeJ8Dzo8toQFz6WD9MRTXHE-z0PI";
    const ACCESS_EXPIRED: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjoxNzAwMDAwMzAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAxIiwidXNlcl9pZCI6IjEifQ.qZtiBmR339XZIJa2n6sFzSSxYIfhITAnRfoKurCQFqY";

    #[test]
    fn pyjwt_golden_tokens() {
        let t = tokens(GOLDEN);
        let now = 1_800_000_000;
        let c = t.decode_as(ACCESS_INT_UID, Kind::Access, now).unwrap();
        assert_eq!(t.user_id(&c), Ok(Some(1)));
        assert_eq!(
            t.decode_as(ACCESS_EXPIRED, Kind::Access, now),
            Err(TokenError::Expired)
        );
        assert_eq!(
            tokens("another-secret-another-secret-1234").decode(ACCESS_INT_UID, now),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn time_rules_match_pyjwt() {
        let t = tokens(GOLDEN);
        let issued = t.refresh_for_user(7, 1_000).unwrap();
        let exp = issued.exp;
        assert!(t.decode(&issued.token, exp - 1).is_ok());
        assert_eq!(
            t.decode(&issued.token, exp),
            Err(TokenError::Expired),
            "exp == now is expired"
        );
        assert_eq!(
            t.decode(&issued.token, 999),
            Err(TokenError::Invalid),
            "iat in the future"
        );
        assert_eq!(
            t.decode_as(&issued.token, Kind::Access, 1_000),
            Err(TokenError::WrongType)
        );
        let access = t.access_from(&issued.claims, 2_000).unwrap();
        let payload: Value = serde_json::from_str(&access.claims.to_json("user_id")).unwrap();
        assert_eq!(
            payload.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["token_type", "exp", "iat", "jti", "user_id"]
        );
        assert_eq!(access.claims.user_id, Some(Value::String("7".into())));
        assert_eq!(access.exp, 2_300);
    }

    #[test]
    fn sliding_tokens_as_simplejwt_makes_them() {
        let t = tokens(GOLDEN);
        let issued = t.sliding_for_user(7, 1_000).unwrap();
        let payload: Value = serde_json::from_str(&issued.claims.to_json("user_id")).unwrap();
        assert_eq!(
            payload.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["token_type", "exp", "iat", "jti", "refresh_exp", "user_id"]
        );
        assert_eq!(
            (payload["exp"].as_i64(), payload["refresh_exp"].as_i64()),
            (Some(1_300), Some(87_400))
        );
        let c = t.decode_as(&issued.token, Kind::Sliding, 1_200).unwrap();
        assert_eq!(t.check_refresh_exp(&c, 87_399), Ok(()));
        assert_eq!(
            t.check_refresh_exp(&c, 87_400),
            Err(TokenError::RefreshExpired)
        );
        let slid = t.slide(&c, 2_000).unwrap();
        assert_eq!((slid.jti.as_str(), slid.exp), (issued.jti.as_str(), 2_300));
        assert_eq!(slid.claims.refresh_exp, c.refresh_exp);
        let no_refresh_exp = Claims {
            refresh_exp: None,
            ..c.clone()
        };
        assert_eq!(
            t.check_refresh_exp(&no_refresh_exp, 1_200),
            Err(TokenError::NoRefreshExp)
        );
        assert_eq!(
            t.decode_as(&issued.token, Kind::Access, 1_200),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn authorization_header_rules() {
        let types = vec!["Bearer".to_string()];
        assert_eq!(parse_header(None, &types), Header::Absent);
        assert_eq!(parse_header(Some(b"Basic abc"), &types), Header::Absent);
        assert_eq!(parse_header(Some(b"bearer abc"), &types), Header::Absent);
        assert_eq!(parse_header(Some(b"Bearer"), &types), Header::Bad);
        assert_eq!(parse_header(Some(b"Bearer a b"), &types), Header::Bad);
        assert_eq!(
            parse_header(Some(b"Bearer   abc  "), &types),
            Header::Token("abc")
        );
    }
}
