//! The endpoints: simplejwt's four token views, a protected `/hello/`, the JWKS, and the
//! health checks. Each returns exactly what simplejwt 5.5.1 + DRF 3.x return, including
//! for every error (see `reference/jwt.md` §1.3).

use super::body::{self, Reply};
use super::State;
use crate::auth::{password, Header, Kind, TokenError};
use crate::http::RequestBody;
use crate::storage::{self, tokens, users, StorageError};
use hyper::header::WWW_AUTHENTICATE;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::{error, warn};

const NO_ACCOUNT: &str = "No active account found with the given credentials";

/// Maps storage failures: unreachable → 503 (the worker stays up), anything else → 500.
pub fn storage_error(e: StorageError) -> Reply {
    match e {
        StorageError::Unavailable(_) => {
            warn!("database unavailable: {e}");
            Reply::detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable, try again later.",
            )
            .header(hyper::header::RETRY_AFTER, "1")
        }
        other => {
            error!("storage error: {other}");
            Reply::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A server error occurred.",
            )
        }
    }
}

/// A 401 with `WWW-Authenticate: Bearer realm="api"` (the first configured scheme).
fn unauthorized(s: &State, body: Value) -> Reply {
    Reply::new(StatusCode::UNAUTHORIZED, body)
        .header_value(WWW_AUTHENTICATE, s.www_authenticate.clone())
}

fn token_invalid(s: &State, e: TokenError) -> Reply {
    unauthorized(
        s,
        json!({ "detail": e.message(), "code": "token_not_valid" }),
    )
}

/// `POST /api/token/`: username + password → refresh + access.
pub async fn obtain(s: Arc<State>, req: Request<RequestBody>) -> Reply {
    let data = match body::read(req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (username, password) = match body::char_fields(data, &["username", "password"]) {
        Ok(mut v) => (v.remove(0), v.remove(0)),
        Err(r) => return r,
    };
    let user = match users::by_username(&s.db, &username).await {
        Ok(u) => u,
        Err(e) => return storage_error(e),
    };
    let Some(user) = user else {
        // Same cost as a wrong password, so timing does not reveal which names exist.
        s.hasher.run(move || password::burn(&password)).await;
        return unauthorized(&s, json!({ "detail": NO_ACCOUNT }));
    };
    let (stored, max) = (user.password.clone(), s.auth.max_pbkdf2_iterations);
    let pw = password.clone();
    let check = s
        .hasher
        .run(move || password::check(&pw, &stored, max))
        .await
        .unwrap_or(password::Check::NoMatch);
    let rehash = match check {
        password::Check::Match { rehash } if user.is_active || !s.auth.check_user_is_active => {
            rehash
        }
        _ => return unauthorized(&s, json!({ "detail": NO_ACCOUNT })),
    };
    if rehash {
        if let Some(new) = s.hasher.run(move || password::hash(&password)).await {
            if let Err(e) = users::upgrade_hash(&s.db, user.id, &user.password, &new).await {
                warn!(user = user.id, "could not upgrade a password hash: {e}");
            }
        }
    }
    if s.auth.update_last_login {
        if let Err(e) = users::touch_last_login(&s.db, user.id).await {
            return storage_error(e);
        }
    }
    let now = storage::now_secs();
    let pair = s
        .tokens
        .refresh_for_user(user.id, now)
        .and_then(|r| Ok((s.tokens.access_from(&r.claims, now)?, r)));
    let (access, refresh) = match pair {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            return Reply::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A server error occurred.",
            );
        }
    };
    if let Err(e) = tokens::outstand(
        &s.db,
        &refresh.jti,
        &refresh.jti,
        Some(user.id),
        refresh.exp,
    )
    .await
    {
        return storage_error(e);
    }
    Reply::ok(json!({ "refresh": refresh.token, "access": access.token }))
}

/// `POST /api/token/refresh/`: refresh → access (and a new refresh when rotating).
pub async fn refresh(s: Arc<State>, req: Request<RequestBody>) -> Reply {
    let token = match body::read(req)
        .await
        .and_then(|d| body::char_fields(d, &["refresh"]))
    {
        Ok(mut v) => v.remove(0),
        Err(r) => return r,
    };
    let now = storage::now_secs();
    let claims = match s.tokens.decode_as(&token, Kind::Refresh, now) {
        Ok(c) => c,
        Err(e) => return token_invalid(&s, e),
    };
    let jti = claims.jti().to_string();
    let exp = claims.exp();
    let user_id = s.tokens.user_id(&claims).ok().flatten();
    let rotate_once = s.auth.rotate_refresh_tokens && s.auth.blacklist_after_rotation;
    if !rotate_once {
        match tokens::is_blacklisted(&s.db, &jti).await {
            Ok(true) => return token_invalid(&s, TokenError::Blacklisted),
            Ok(false) => {}
            Err(e) => return storage_error(e),
        }
    }
    // simplejwt ≥ 5.4: a refresh for a user who is gone or inactive is refused.
    if let Some(id) = user_id {
        match users::active_by_id(&s.db, id).await {
            Ok(Some(true)) => {}
            Ok(Some(false)) if !s.auth.check_user_is_active => {}
            Ok(_) => {
                return unauthorized(
                    &s,
                    json!({ "detail": "No active account found for the given token." }),
                )
            }
            Err(e) => return storage_error(e),
        }
    }
    let access = match s.tokens.access_from(&claims, now) {
        Ok(a) => a,
        Err(e) => {
            error!("{e}");
            return Reply::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A server error occurred.",
            );
        }
    };
    if !s.auth.rotate_refresh_tokens {
        return Reply::ok(json!({ "access": access.token }));
    }
    let family = if rotate_once {
        // Single use, atomically: of two concurrent refreshes one wins; a replay of a
        // spent token revokes its whole family.
        match tokens::rotate(&s.db, &jti, user_id, exp).await {
            Ok(tokens::Rotation::Won { family }) => family,
            Ok(tokens::Rotation::Blacklisted) => return token_invalid(&s, TokenError::Blacklisted),
            Ok(tokens::Rotation::Reused) => {
                warn!(
                    user = user_id.unwrap_or(-1),
                    "A spent refresh token was presented again; its token family is revoked"
                );
                return token_invalid(&s, TokenError::Blacklisted);
            }
            Err(e) => return storage_error(e),
        }
    } else {
        jti.clone()
    };
    let new = match s.tokens.rotate(&claims, now) {
        Ok(n) => n,
        Err(e) => {
            error!("{e}");
            return Reply::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A server error occurred.",
            );
        }
    };
    if let Err(e) = tokens::outstand(&s.db, &new.jti, &family, user_id, new.exp).await {
        return storage_error(e);
    }
    Reply::ok(json!({ "access": access.token, "refresh": new.token }))
}

/// `POST /api/token/verify/`: is this token (of any type) valid?
pub async fn verify(s: Arc<State>, req: Request<RequestBody>) -> Reply {
    let token = match body::read(req)
        .await
        .and_then(|d| body::char_fields(d, &["token"]))
    {
        Ok(mut v) => v.remove(0),
        Err(r) => return r,
    };
    let claims = match s.tokens.decode(&token, storage::now_secs()) {
        Ok(c) => c,
        Err(e) => return token_invalid(&s, e),
    };
    if s.auth.blacklist_after_rotation {
        let jti = claims.jti();
        match tokens::is_blacklisted(&s.db, jti).await {
            Ok(true) => {
                return Reply::new(
                    StatusCode::BAD_REQUEST,
                    json!({ "non_field_errors": ["Token is blacklisted"] }),
                )
            }
            Ok(false) => {}
            Err(e) => return storage_error(e),
        }
    }
    Reply::ok(json!({}))
}

/// `POST /api/token/blacklist/`: revoke a refresh token.
pub async fn blacklist(s: Arc<State>, req: Request<RequestBody>) -> Reply {
    let token = match body::read(req)
        .await
        .and_then(|d| body::char_fields(d, &["refresh"]))
    {
        Ok(mut v) => v.remove(0),
        Err(r) => return r,
    };
    let claims = match s
        .tokens
        .decode_as(&token, Kind::Refresh, storage::now_secs())
    {
        Ok(c) => c,
        Err(e) => return token_invalid(&s, e),
    };
    let jti = claims.jti();
    match tokens::is_blacklisted(&s.db, jti).await {
        Ok(true) => return token_invalid(&s, TokenError::Blacklisted),
        Ok(false) => {}
        Err(e) => return storage_error(e),
    }
    let exp = claims.exp();
    match tokens::blacklist(&s.db, jti, s.tokens.user_id(&claims).ok().flatten(), exp).await {
        Ok(()) => Reply::ok(json!({})),
        Err(e) => storage_error(e),
    }
}

/// simplejwt's `JWTAuthentication`: the user id of a request, or the 401 to send.
pub async fn authenticate(s: &State, req: &Request<RequestBody>) -> Result<i64, Reply> {
    let token = match crate::auth::parse_header(
        req.headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        &s.auth.auth_header_types,
    ) {
        Header::Absent => {
            return Err(unauthorized(
                s,
                json!({ "detail": "Authentication credentials were not provided." }),
            ))
        }
        Header::Bad => {
            return Err(unauthorized(
                s,
                json!({ "detail": "Authorization header must contain two space-delimited values", "code": "bad_authorization_header" }),
            ))
        }
        Header::Token(t) => t,
    };
    let claims = s.tokens.decode_as(token, Kind::Access, storage::now_secs()).map_err(|e| {
        unauthorized(
            s,
            json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": [{ "token_class": Kind::Access.class(), "token_type": Kind::Access.as_str(), "message": e.message() }],
            }),
        )
    })?;
    let not_found = || {
        unauthorized(
            s,
            json!({ "detail": "User not found", "code": "user_not_found" }),
        )
    };
    let id = match s.tokens.user_id(&claims) {
        Err(()) => {
            return Err(unauthorized(
                s,
                json!({ "detail": "Token contained no recognizable user identification", "code": "token_not_valid" }),
            ))
        }
        Ok(None) => return Err(not_found()),
        Ok(Some(id)) => id,
    };
    match s.users.is_active(&s.db, id).await {
        Ok(None) => Err(not_found()),
        Ok(Some(false)) if s.auth.check_user_is_active => Err(unauthorized(
            s,
            json!({ "detail": "User is inactive", "code": "user_inactive" }),
        )),
        Ok(Some(_)) => Ok(id),
        Err(e) => Err(storage_error(e)),
    }
}

/// `GET /hello/`, for authenticated users only.
pub fn hello() -> Reply {
    Reply::fixed(r#"{"message":"Hello, World!"}"#)
}

/// `GET /readyz`: ready to serve and the database answers.
pub async fn readyz(s: &State) -> Reply {
    match s.db.ping().await {
        Ok(()) => Reply::ok(json!({ "status": "ready" })),
        Err(e) => {
            warn!("readiness check failed: {e}");
            Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "unavailable", "detail": "The database is unreachable." }),
            )
        }
    }
}
