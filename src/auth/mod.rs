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

pub mod jws;
pub mod keys;
pub mod password;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use uuid::Uuid;

/// simplejwt's token errors, with its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
    WrongType,
    NoType,
    NoId,
    NoExp,
    Blacklisted,
}

impl TokenError {
    pub fn message(self) -> &'static str {
        match self {
            TokenError::Invalid => "Token is invalid",
            TokenError::Expired => "Token is expired",
            TokenError::WrongType => "Token has wrong type",
            TokenError::NoType => "Token has no type",
            TokenError::NoId => "Token has no id",
            TokenError::NoExp => "Token has no 'exp' claim",
            TokenError::Blacklisted => "Token is blacklisted",
        }
    }
}

/// The two token types of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Refresh => "refresh",
        }
    }

    /// simplejwt's class name, as in the `messages` of a 401.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Access => "AccessToken",
            Kind::Refresh => "RefreshToken",
        }
    }
}

/// A signed token and what the server needs to remember about it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub exp: i64,
    pub claims: Map<String, Value>,
}

/// Makes and checks tokens for one configuration.
pub struct Tokens {
    keys: keys::KeySet,
    access_lifetime: i64,
    refresh_lifetime: i64,
    leeway: i64,
    audience: Option<String>,
    issuer: Option<String>,
    pub user_id_claim: String,
}

impl Tokens {
    pub fn new(c: &crate::config::AuthConfig) -> Result<Tokens, String> {
        Ok(Tokens {
            keys: keys::load(c)?,
            access_lifetime: c.access_token_lifetime_secs as i64,
            refresh_lifetime: c.refresh_token_lifetime_secs as i64,
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

    pub fn algorithm(&self) -> Algorithm {
        self.keys.alg
    }

    /// A new refresh token for a user (simplejwt's `RefreshToken.for_user`).
    pub fn refresh_for_user(&self, user_id: i64, now: i64) -> Result<Issued, String> {
        let mut claims = Map::new();
        claims.insert("token_type".into(), Kind::Refresh.as_str().into());
        claims.insert("exp".into(), (now + self.refresh_lifetime).into());
        claims.insert("iat".into(), now.into());
        claims.insert("jti".into(), new_jti().into());
        claims.insert(self.user_id_claim.clone(), user_id.to_string().into());
        self.sign(claims)
    }

    /// The access token of a refresh token: fresh `exp`/`iat`/`jti`, every other claim
    /// copied (simplejwt's `RefreshToken.access_token`).
    pub fn access_from(&self, refresh: &Map<String, Value>, now: i64) -> Result<Issued, String> {
        let mut claims = Map::new();
        claims.insert("token_type".into(), Kind::Access.as_str().into());
        claims.insert("exp".into(), (now + self.access_lifetime).into());
        claims.insert("iat".into(), now.into());
        claims.insert("jti".into(), new_jti().into());
        for (k, v) in refresh {
            if !matches!(
                k.as_str(),
                "token_type" | "exp" | "iat" | "jti" | "aud" | "iss"
            ) {
                claims.insert(k.clone(), v.clone());
            }
        }
        self.sign(claims)
    }

    /// A rotated refresh token: the same claims with a new `jti`, `exp` and `iat`.
    pub fn rotate(&self, refresh: &Map<String, Value>, now: i64) -> Result<Issued, String> {
        let mut claims = refresh.clone();
        claims.remove("aud");
        claims.remove("iss");
        claims.insert("jti".into(), new_jti().into());
        claims.insert("exp".into(), (now + self.refresh_lifetime).into());
        claims.insert("iat".into(), now.into());
        self.sign(claims)
    }

    fn sign(&self, mut claims: Map<String, Value>) -> Result<Issued, String> {
        if let Some(aud) = &self.audience {
            claims.insert("aud".into(), aud.clone().into());
        }
        if let Some(iss) = &self.issuer {
            claims.insert("iss".into(), iss.clone().into());
        }
        let payload = Value::Object(claims.clone()).to_string();
        let token = jws::encode(
            &payload,
            self.keys.alg,
            self.keys.signing_kid.as_deref(),
            &self.keys.signing,
        )
        .map_err(|e| format!("cannot sign a token: {e}"))?;
        let jti = claims["jti"].as_str().unwrap_or_default().to_string();
        let exp = claims["exp"].as_i64().unwrap_or_default();
        Ok(Issued {
            token,
            jti,
            exp,
            claims,
        })
    }

    /// Checks a token of any type (simplejwt's `UntypedToken`, used by the verify view).
    pub fn decode(&self, token: &str, now: i64) -> Result<Map<String, Value>, TokenError> {
        let (_header, claims) = jws::decode(token, self.keys.alg, &self.keys.verify)
            .map_err(|_| TokenError::Invalid)?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    /// Checks a token that must be of type `kind`.
    pub fn decode_as(
        &self,
        token: &str,
        kind: Kind,
        now: i64,
    ) -> Result<Map<String, Value>, TokenError> {
        let claims = self.decode(token, now)?;
        match claims.get("token_type") {
            None => Err(TokenError::NoType),
            Some(Value::String(t)) if t == kind.as_str() => Ok(claims),
            Some(_) => Err(TokenError::WrongType),
        }
    }

    fn check_claims(&self, c: &Map<String, Value>, now: i64) -> Result<(), TokenError> {
        let int = |k: &str| -> Result<Option<i64>, TokenError> {
            match c.get(k) {
                None => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or(TokenError::Invalid),
            }
        };
        let (iat, nbf, exp) = (int("iat")?, int("nbf")?, int("exp")?);
        if iat.is_some_and(|t| t > now + self.leeway) || nbf.is_some_and(|t| t > now + self.leeway)
        {
            return Err(TokenError::Invalid);
        }
        if exp.is_some_and(|t| t <= now - self.leeway) {
            return Err(TokenError::Expired);
        }
        match (&self.issuer, c.get("iss")) {
            (Some(want), Some(Value::String(got))) if want == got => {}
            (None, _) => {}
            _ => return Err(TokenError::Invalid),
        }
        let aud_ok = match (&self.audience, c.get("aud")) {
            (None, None) => true,
            (None, Some(_)) => false, // stricter than simplejwt: a token for someone else
            (Some(want), Some(Value::String(got))) => want == got,
            (Some(want), Some(Value::Array(list))) => list.iter().any(|a| a.as_str() == Some(want)),
            (Some(_), _) => false,
        };
        if !aud_ok {
            return Err(TokenError::Invalid);
        }
        for k in ["sub", "jti"] {
            if c.get(k).is_some_and(|v| !v.is_string()) {
                return Err(TokenError::Invalid);
            }
        }
        if exp.is_none() {
            return Err(TokenError::NoExp);
        }
        if !c.contains_key("jti") {
            return Err(TokenError::NoId);
        }
        Ok(())
    }

    /// The user id a token names: `"1"` or `1`. `Err(())` when absent or of another type.
    pub fn user_id(&self, claims: &Map<String, Value>) -> Result<Option<i64>, ()> {
        match claims.get(&self.user_id_claim) {
            Some(Value::String(s)) => Ok(s.parse::<i64>().ok()),
            Some(Value::Number(n)) => Ok(n.as_i64()),
            _ => Err(()),
        }
    }
}

/// uuid4 as 32 lowercase hex digits, as simplejwt's `uuid4().hex`.
pub fn new_jti() -> String {
    Uuid::new_v4().simple().to_string()
}

/// What an `Authorization` header says, per simplejwt's `JWTAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// No header, an empty one, or another scheme: not authenticated (others may try).
    Absent,
    /// The scheme matched but there were not exactly two parts.
    Bad,
    Token(String),
}

/// Splits the header on runs of whitespace, as Python's `bytes.split()`; the scheme must
/// match one of `types` exactly (case-sensitive, as simplejwt).
pub fn parse_header(value: Option<&[u8]>, types: &[String]) -> Header {
    let Some(v) = value else {
        return Header::Absent;
    };
    let parts: Vec<&[u8]> = v
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .filter(|p| !p.is_empty())
        .collect();
    let Some(first) = parts.first() else {
        return Header::Absent;
    };
    if !types.iter().any(|t| t.as_bytes() == *first) {
        return Header::Absent;
    }
    if parts.len() != 2 {
        return Header::Bad;
    }
    match std::str::from_utf8(parts[1]) {
        Ok(t) => Header::Token(t.to_string()),
        Err(_) => Header::Token(String::new()), // fails verification as "Token is invalid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        let mut c = crate::config::schema::defaults().auth;
        c.secret_key = Some(secret.into());
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
        assert_eq!(
            access.claims.keys().collect::<Vec<_>>(),
            ["token_type", "exp", "iat", "jti", "user_id"]
        );
        assert_eq!(access.claims["user_id"], "7");
        assert_eq!(access.exp, 2_300);
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
            Header::Token("abc".into())
        );
    }
}
