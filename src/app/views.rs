//! The endpoints: simplejwt's four token views, a protected `/hello/`, and the readiness
//! check. Each returns exactly what simplejwt 5.5.1 + DRF 3.x return; every failure is an
//! [`ApiError`], which owns the texts.

use super::auth::{self, password, Claims, Header, Kind, TokenError};
use super::body;
use super::errors::ApiError;
use super::memory::Changed;
use super::reply::Reply;
use super::{tokens, users, State};
use crate::http::RequestBody;
use crate::metrics;
use crate::storage::{self, StorageError};
use hyper::Request;
use serde_json::json;
use std::sync::Arc;
use tracing::warn;

/// A view's outcome.
pub(super) type ViewResult = Result<Reply, ApiError>;

/// The named `CharField`s of a JSON or form body, in order.
async fn fields<const N: usize>(
    req: Request<RequestBody>,
    names: [&str; N],
) -> Result<[String; N], ApiError> {
    let data = body::read(req).await?;
    let values = body::char_fields(data, &names)?;
    Ok(values.try_into().expect("one value per field"))
}

/// What a login hands out.
#[derive(Debug, Clone, Copy)]
pub(super) enum Grant {
    /// `POST /api/token/`: a refresh and an access token.
    Pair,
    /// `POST /api/token/sliding/`: one sliding token.
    Sliding,
}

/// `POST /api/token/` and `/api/token/sliding/`: username + password → tokens. A failed
/// login takes the same time whatever the reason (see `timing`).
pub(super) async fn obtain(s: Arc<State>, req: Request<RequestBody>, grant: Grant) -> ViewResult {
    let started = std::time::Instant::now();
    let client = req
        .extensions()
        .get::<crate::http::PeerAddr>()
        .and_then(|p| p.0)
        .map(|a| a.ip());
    let result = match fields(req, ["username", "password"]).await {
        Err(e) => Err(e),
        Ok([username, password]) => {
            let attempt = super::throttle::Attempt::new(s.throttle, client, &username);
            match attempt.as_ref().and_then(|a| a.throttled()) {
                Some(wait) => Err(ApiError::Throttled { wait }),
                None => {
                    let r = obtain_checked(&s, username, password, grant).await;
                    match (&r, &attempt) {
                        (Err(ApiError::NoActiveAccount), Some(a)) => a.failed(),
                        (Ok(_), Some(a)) => a.succeeded(),
                        _ => {}
                    }
                    r
                }
            }
        }
    };
    if matches!(result, Err(ApiError::NoActiveAccount)) {
        let max = s.auth.max_pbkdf2_iterations;
        s.login_timing.pad(started, &s.db, &s.hasher, max).await;
    }
    let outcome = match &result {
        Ok(_) => "success",
        Err(ApiError::NoActiveAccount) => "invalid_credentials",
        Err(ApiError::Throttled { .. }) => "throttled",
        Err(ApiError::Unavailable | ApiError::ServerError) => "error",
        Err(_) => "bad_request",
    };
    metrics::inc("corral_auth_logins_total", &[("outcome", outcome)]);
    result
}

async fn obtain_checked(
    s: &Arc<State>,
    username: String,
    password: String,
    grant: Grant,
) -> ViewResult {
    let Some(user) = users::by_username(&s.db, &username).await? else {
        // A real check's work, then the floor (as for every failure).
        s.hasher.run(move || password::burn(&password)).await;
        return Err(ApiError::NoActiveAccount);
    };
    let (stored, max) = (user.password.clone(), s.auth.max_pbkdf2_iterations);
    let pw = password.clone();
    let t = std::time::Instant::now();
    let check = s
        .hasher
        .run(move || password::check(&pw, &stored, max))
        .await
        .unwrap_or(password::Check::NoMatch);
    s.login_timing.observe(t.elapsed());
    metrics::observe_seconds(
        "corral_auth_password_hash_duration_seconds",
        &[],
        t.elapsed(),
    );
    let rehash = match check {
        password::Check::Match { rehash } if user.is_active || !s.auth.check_user_is_active => {
            rehash
        }
        _ => return Err(ApiError::NoActiveAccount),
    };
    if rehash {
        if let Some(new) = s.hasher.run(move || password::hash(&password)).await {
            if let Err(e) = users::upgrade_hash(&s.db, user.id, &user.password, &new).await {
                warn!(user = user.id, "could not upgrade a password hash: {e}");
            }
        }
    }
    if s.auth.update_last_login {
        users::touch_last_login(&s.db, user.id).await?;
    }
    let now = storage::now_secs();
    match grant {
        Grant::Pair => {
            let refresh = s.tokens.refresh_for_user(user.id, now)?;
            let access = s.tokens.access_from(&refresh.claims, now)?;
            tokens::outstand(
                &s.db,
                &refresh.jti,
                &refresh.jti,
                Some(user.id),
                refresh.exp,
            )
            .await?;
            Ok(Reply::ok(
                json!({ "refresh": refresh.token, "access": access.token }),
            ))
        }
        Grant::Sliding => {
            // Outstanding (so it can be blacklisted, and logging out everywhere finds it)
            // for as long as refreshing could keep it alive.
            let sliding = s.tokens.sliding_for_user(user.id, now)?;
            let refresh_exp = sliding.claims.refresh_exp.as_ref().and_then(|v| v.as_i64());
            let outlives = s
                .tokens
                .sliding_outlives(refresh_exp.unwrap_or(sliding.exp));
            tokens::outstand(&s.db, &sliding.jti, &sliding.jti, Some(user.id), outlives).await?;
            Ok(Reply::ok(json!({ "token": sliding.token })))
        }
    }
}

/// Decodes a refresh or sliding token in simplejwt's order (`BlacklistMixin.verify`):
/// after the signature and times, a blacklisted `jti` is reported before the token's own
/// claim checks (no `exp`, no id, wrong type). With `always`, the blacklist is read even
/// when those pass; otherwise the caller reads it itself (rotation does, atomically).
async fn decode_listed(
    s: &State,
    token: &str,
    kind: Kind,
    now: i64,
    always: bool,
) -> Result<Result<Claims, TokenError>, StorageError> {
    let claims = match s.tokens.decode_signed(token, now) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let verified = auth::verify(&claims, Some(kind));
    if verified.is_err() || always {
        if let Some(jti) = claims.jti.as_ref().and_then(|v| v.as_str()) {
            if tokens::is_blacklisted(&s.db, jti).await? {
                return Ok(Err(TokenError::Blacklisted));
            }
        }
    }
    Ok(verified.map(|()| claims))
}

/// The user of a refresh or sliding token may still refresh: not logged out everywhere
/// since it was issued, and active (simplejwt ≥ 5.4 checks the last for refresh tokens).
async fn may_refresh(s: &State, claims: &Claims, user_id: Option<i64>) -> Result<(), ApiError> {
    let Some(id) = user_id else {
        return Ok(());
    };
    match s.memory.standing(&s.db, id).await? {
        Some(u) if u.revoked(claims.iat()) => Err(ApiError::TokenNotValid(TokenError::Blacklisted)),
        Some(u) if u.active || !s.auth.check_user_is_active => Ok(()),
        _ => Err(ApiError::NoActiveAccountForToken),
    }
}

/// Counts a refresh in `corral_auth_refreshes_total` by its outcome.
fn counted_refresh(result: ViewResult) -> ViewResult {
    let outcome = match &result {
        Ok(_) => "success",
        Err(ApiError::TokenNotValid(TokenError::Blacklisted)) => "blacklisted",
        Err(ApiError::TokenNotValid(_)) => "invalid",
        Err(ApiError::NoActiveAccountForToken) => "inactive_user",
        Err(ApiError::Unavailable | ApiError::ServerError) => "error",
        Err(_) => "bad_request",
    };
    metrics::inc("corral_auth_refreshes_total", &[("outcome", outcome)]);
    result
}

/// `POST /api/token/sliding/refresh/`: a sliding token whose `refresh_exp` has not passed
/// → the same token (same `jti`) with a new `exp` and `iat`. A sliding token cannot be
/// refreshed once its `exp` has passed, as in simplejwt.
pub(super) async fn refresh_sliding(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    counted_refresh(refresh_sliding_checked(s, req).await)
}

async fn refresh_sliding_checked(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    let [token] = fields(req, ["token"]).await?;
    let now = storage::now_secs();
    let claims = decode_listed(&s, &token, Kind::Sliding, now, true)
        .await?
        .map_err(ApiError::TokenNotValid)?;
    s.tokens
        .check_refresh_exp(&claims, now)
        .map_err(ApiError::TokenNotValid)?;
    let user_id = s.tokens.user_id(&claims).ok().flatten();
    may_refresh(&s, &claims, user_id).await?;
    // No write: the token's row, made at login, outlives any `exp` a refresh can give
    // (see `Tokens::sliding_outlives`); blacklisting moves it on if need be.
    let slid = s.tokens.slide(&claims, now)?;
    Ok(Reply::ok(json!({ "token": slid.token })))
}

/// `POST /api/token/sliding/blacklist/`: revoke a sliding token (simplejwt can, but has
/// no view for it).
pub(super) async fn blacklist_sliding(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    let [token] = fields(req, ["token"]).await?;
    revoke(&s, &token, Kind::Sliding).await
}

/// `POST /api/token/refresh/`: refresh → access (and a new refresh when rotating).
pub(super) async fn refresh(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    counted_refresh(refresh_checked(s, req).await)
}

async fn refresh_checked(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    let [token] = fields(req, ["refresh"]).await?;
    let now = storage::now_secs();
    let rotate_once = s.auth.rotate_refresh_tokens && s.auth.blacklist_after_rotation;
    let claims = decode_listed(&s, &token, Kind::Refresh, now, !rotate_once)
        .await?
        .map_err(ApiError::TokenNotValid)?;
    let jti = claims.jti().to_string();
    let exp = claims.exp();
    let user_id = s.tokens.user_id(&claims).ok().flatten();
    may_refresh(&s, &claims, user_id).await?;
    // The idle timeout needs rotation: each refresh then issues the token the next one
    // is measured from.
    let idle_on = s.auth.rotate_refresh_tokens;
    let (max_life, idle) = (
        s.auth.refresh_family_max_lifetime_secs as i64,
        if idle_on {
            s.auth.refresh_idle_timeout_secs as i64
        } else {
            0
        },
    );
    if max_life > 0 || idle > 0 {
        // Identity providers' session limits (Auth0, Cognito): a login lasts at most
        // max_life however often it is refreshed, and a token left unused for `idle`
        // ends the session. Tokens minted elsewhere (not outstanding here) use `iat`.
        let (issued, began) = tokens::ages(&s.db, &jti)
            .await?
            .unwrap_or((claims.iat(), claims.iat()));
        if (max_life > 0 && now - began >= max_life) || (idle > 0 && now - issued >= idle) {
            return Err(ApiError::TokenNotValid(TokenError::Expired));
        }
    }
    if !s.auth.rotate_refresh_tokens {
        let access = s.tokens.access_from(&claims, now)?;
        return Ok(Reply::ok(json!({ "access": access.token })));
    }
    // The pair this refresh will hand out, chosen before the token is spent so that a
    // retry within the grace window can be given the very same pair.
    let mut next = tokens::Successor {
        refresh_jti: super::auth::new_jti(),
        access_jti: super::auth::new_jti(),
        iat: now,
    };
    let family = if rotate_once {
        // Single use, atomically: of two concurrent refreshes one wins; a replay of a
        // spent token revokes its whole family (after the grace window, if any).
        let grace = s.auth.rotation_grace_secs as i64;
        match tokens::rotate(&s.db, &jti, user_id, exp, &next, grace).await? {
            tokens::Rotation::Won { family } => {
                metrics::inc(
                    "corral_auth_blacklisted_tokens_total",
                    &[("via", "rotation")],
                );
                family
            }
            tokens::Rotation::Retry { family, successor } => {
                next = successor;
                family
            }
            tokens::Rotation::Blacklisted => {
                return Err(ApiError::TokenNotValid(TokenError::Blacklisted))
            }
            tokens::Rotation::Reused => {
                metrics::inc("corral_auth_refresh_reuse_total", &[]);
                warn!(
                    user = user_id.unwrap_or(-1),
                    "A spent refresh token was presented again; its token family is revoked"
                );
                return Err(ApiError::TokenNotValid(TokenError::Blacklisted));
            }
        }
    } else {
        jti.clone()
    };
    let access = s.tokens.access_as(&claims, &next.access_jti, next.iat)?;
    let new = s.tokens.rotate_as(&claims, &next.refresh_jti, next.iat)?;
    tokens::outstand(&s.db, &new.jti, &family, user_id, new.exp).await?;
    Ok(Reply::ok(
        json!({ "access": access.token, "refresh": new.token }),
    ))
}

/// `POST /api/token/verify/`: is this token (of any type) valid?
pub(super) async fn verify(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    let [token] = fields(req, ["token"]).await?;
    let claims = s
        .tokens
        .decode(&token, storage::now_secs())
        .map_err(ApiError::TokenNotValid)?;
    if s.auth.blacklist_after_rotation && tokens::is_blacklisted(&s.db, claims.jti()).await? {
        return Err(ApiError::VerifyBlacklisted);
    }
    Ok(Reply::ok(json!({})))
}

/// `POST /api/token/blacklist/`: revoke a refresh token.
pub(super) async fn blacklist(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    let [token] = fields(req, ["refresh"]).await?;
    revoke(&s, &token, Kind::Refresh).await
}

/// Blacklists a token of `kind`; one already blacklisted is refused as simplejwt does.
async fn revoke(s: &State, token: &str, kind: Kind) -> ViewResult {
    let claims = decode_listed(s, token, kind, storage::now_secs(), true)
        .await?
        .map_err(ApiError::TokenNotValid)?;
    let user_id = s.tokens.user_id(&claims).ok().flatten();
    // A sliding token's row must outlive every copy of it: one refreshed earlier than
    // the copy presented lives longer, at most one lifetime past its `refresh_exp`.
    let lives_until = match (kind, claims.refresh_exp.as_ref().and_then(|v| v.as_i64())) {
        (Kind::Sliding, Some(r)) => claims.exp().max(s.tokens.sliding_outlives(r)),
        _ => claims.exp(),
    };
    tokens::blacklist(&s.db, claims.jti(), user_id, lives_until).await?;
    s.memory.forget(Changed::Token(claims.jti()));
    metrics::inc(
        "corral_auth_blacklisted_tokens_total",
        &[("via", "blacklist")],
    );
    Ok(Reply::ok(json!({})))
}

/// How a protected view authenticates its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Authentication {
    /// simplejwt's `JWTAuthentication`: the token, then its user (who must exist, be
    /// active and not have logged out everywhere since).
    User,
    /// `auth.authentication_class` (`JWTStatelessUserAuthentication` trusts the token).
    Configured,
}

/// Authenticates a request; the user's id, when the token names a numeric one.
pub(super) async fn authenticate(
    s: &State,
    req: &Request<RequestBody>,
    how: Authentication,
) -> Result<Option<i64>, ApiError> {
    let result = authenticate_checked(s, req, how).await;
    if let Some(code) = result.as_ref().err().and_then(ApiError::auth_code) {
        metrics::inc("corral_auth_failures_total", &[("code", code)]);
    }
    result
}

async fn authenticate_checked(
    s: &State,
    req: &Request<RequestBody>,
    how: Authentication,
) -> Result<Option<i64>, ApiError> {
    let mut headers = req.headers().get_all(hyper::header::AUTHORIZATION).iter();
    let header = headers.next().map(|v| v.as_bytes());
    if headers.next().is_some() {
        // Two credentials are ambiguous: refuse both, as simplejwt behind Gunicorn does
        // when it sees them joined by a comma.
        return Err(ApiError::BadAuthorizationHeader);
    }
    let token = match super::auth::parse_header(header, &s.auth.auth_header_types) {
        Header::Absent => return Err(ApiError::NoCredentials),
        Header::Bad => return Err(ApiError::BadAuthorizationHeader),
        Header::Token(t) => t,
    };
    let (claims, kind) = token_of_a_class(s, token).await?;
    if how == Authentication::Configured && s.stateless {
        // simplejwt's `TokenUser`: any user id the token carries, no lookup.
        return match &claims.user_id {
            None => Err(ApiError::NoUserIdentification),
            Some(_) => Ok(s.tokens.user_id(&claims).ok().flatten()),
        };
    }
    let id = match s.tokens.user_id(&claims) {
        Err(()) => return Err(ApiError::NoUserIdentification),
        Ok(None) => return Err(ApiError::UserNotFound),
        Ok(Some(id)) => id,
    };
    match s.memory.standing(&s.db, id).await? {
        None => Err(ApiError::UserNotFound),
        Some(u) if !u.active && s.auth.check_user_is_active => Err(ApiError::UserInactive),
        Some(u) if u.revoked(claims.iat()) => Err(ApiError::NotValidForAnyType(vec![(
            kind,
            TokenError::Blacklisted,
        )])),
        Some(_) => Ok(Some(id)),
    }
}

/// simplejwt's `get_validated_token`: the first of `auth.auth_token_classes` the token
/// is valid as (a sliding token also checked against the blacklist), or why each refused.
async fn token_of_a_class(s: &State, token: &str) -> Result<(Claims, Kind), ApiError> {
    let claims = s
        .tokens
        .decode_signed(token, storage::now_secs())
        .map_err(|e| {
            ApiError::NotValidForAnyType(s.token_classes.iter().map(|k| (*k, e)).collect())
        })?;
    let mut refusals = Vec::new();
    for &kind in &s.token_classes {
        let blacklisted = match claims.jti.as_ref().and_then(|v| v.as_str()) {
            Some(jti) if kind.blacklistable() => s.memory.blacklisted(&s.db, jti).await?,
            _ => false,
        };
        let checked = if blacklisted {
            Err(TokenError::Blacklisted)
        } else {
            auth::verify(&claims, Some(kind))
        };
        match checked {
            Ok(()) => return Ok((claims, kind)),
            Err(e) => refusals.push((kind, e)),
        }
    }
    Err(ApiError::NotValidForAnyType(refusals))
}

/// `POST /api/token/logout-all/`: as the user of the Bearer token, log out everywhere:
/// every outstanding refresh and sliding token is blacklisted, and every token issued
/// until now (this one included) is refused from now on. The user is always looked up,
/// whatever `auth.authentication_class` says.
pub(super) async fn logout_all(s: Arc<State>, req: Request<RequestBody>) -> ViewResult {
    let id = authenticate(&s, &req, Authentication::User)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    users::logout_all(&s.db, id).await?;
    s.memory.forget(Changed::Everything);
    Ok(Reply::ok(json!({})))
}

/// `GET /hello/`, for authenticated users only.
pub(super) fn hello() -> Reply {
    Reply::fixed(r#"{"message":"Hello, World!"}"#)
}

/// `GET /readyz`: ready to do the job: the database answers, and can take writes (no
/// recent failure for lack of it; for SQLite, its file writable with room left).
pub(super) async fn readyz(s: &State) -> ViewResult {
    if crate::worker::shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    match s.db.healthy().await {
        Ok(()) => Ok(Reply::ok(json!({ "status": "ready" }))),
        Err(e) => {
            warn!("readiness check failed: {e}");
            Err(ApiError::NotReady {
                answers: matches!(e, StorageError::Unhealthy(_)),
            })
        }
    }
}
