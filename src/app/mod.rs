//! The bundled application: a JWT-auth API wire-compatible with Django REST Framework +
//! djangorestframework-simplejwt 5.5.1, plugged into the core as one [`App`] value
//! ([`jwt`]): its worker factory, its `[auth]` section, its migrations, its `user`
//! command and its master-side secret-key hook.
//!
//! | endpoint | method | what |
//! | --- | --- | --- |
//! | `/api/token/` | POST | username + password → `{"refresh", "access"}` |
//! | `/api/token/refresh/` | POST | refresh → `{"access"}` (+ `"refresh"` when rotating) |
//! | `/api/token/verify/` | POST | token → `{}` |
//! | `/api/token/blacklist/` | POST | refresh → `{}` |
//! | `/api/token/sliding/` | POST | username + password → `{"token"}` (a sliding token) |
//! | `/api/token/sliding/refresh/` | POST | sliding → `{"token"}` (same `jti`, new `exp`) |
//! | `/api/token/sliding/blacklist/` | POST | sliding → `{}` |
//! | `/api/token/logout-all/` | POST | as the Bearer's user: every token refused |
//! | `/hello/` | GET | `Authorization: Bearer <access>` → `{"message": "Hello, World!"}` |
//! | `/.well-known/jwks.json` | GET | public keys (asymmetric algorithms) |
//! | `/healthz`, `/readyz` | GET | liveness; readiness (database reachable) |
//!
//! Paths without their trailing slash are redirected (301), as Django's `APPEND_SLASH`.
//!
//! Inside: [`routes`] → [`views`] (each a `Result<Reply, ApiError>`), [`errors`] (every
//! simplejwt/DRF text), [`body`] and [`reply`] (DRF's parsing and rendering), [`auth`]
//! (JWS, keys, passwords), the tables ([`users`], [`tokens`]) with their migrations, the
//! user and blacklist checks from memory ([`memory`]), the `user` command ([`cli`]), the secret key ([`secret`])
//! and the `[auth]` settings ([`settings`]).

mod auth;
mod body;
mod cli;
mod errors;
mod memory;
mod pyjson;
mod reply;
mod routes;
mod secret;
mod settings;
mod throttle;
mod timing;
mod tokens;
mod users;
mod validate;
mod views;

use crate::http::RequestBody;
use crate::metrics::{Family, Kind as MetricKind};
use crate::service::{App, Hooks};
use crate::storage::migrate::{Embedded, Migrations};
use crate::storage::Db;
use crate::worker::{BootError, Context};
use auth::{password, Tokens};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use memory::Memory;
use settings::AuthConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

include!(concat!(env!("OUT_DIR"), "/jwt_migrations.rs"));

/// The JWT app's schema: `corral_user` and the refresh-token tables.
const MIGRATIONS: Migrations = Migrations {
    postgres: POSTGRES,
    sqlite: SQLITE,
    source_dir: Some("src/app/migrations"),
};

/// The JWT app's metric families.
const METRICS: &[Family] = &[
    Family {
        name: "corral_auth_logins_total",
        kind: MetricKind::Counter,
        help: "Logins (POST /api/token/ and /api/token/sliding/), by outcome (success, invalid_credentials, throttled, bad_request, error).",
    },
    Family {
        name: "corral_auth_refreshes_total",
        kind: MetricKind::Counter,
        help: "Refreshes (of refresh and of sliding tokens), by outcome (success, invalid, blacklisted, inactive_user, bad_request, error).",
    },
    Family {
        name: "corral_auth_refresh_reuse_total",
        kind: MetricKind::Counter,
        help: "Spent refresh tokens presented again (each revokes its token family).",
    },
    Family {
        name: "corral_auth_blacklisted_tokens_total",
        kind: MetricKind::Counter,
        help: "Refresh and sliding tokens blacklisted, by how (blacklist: an endpoint; rotation: spent by a refresh).",
    },
    Family {
        name: "corral_auth_failures_total",
        kind: MetricKind::Counter,
        help: "Requests whose Bearer authentication failed, by simplejwt code (not_authenticated when none was sent).",
    },
    Family {
        name: "corral_auth_password_hash_duration_seconds",
        kind: MetricKind::Histogram,
        help: "Time to check a password hash at login.",
    },
    Family {
        name: "corral_user_cache_total",
        kind: MetricKind::Counter,
        help: "User checks, by result (hit: from memory; miss: queried, then kept; bypass: queried, memory not trusted).",
    },
    Family {
        name: "corral_token_cache_total",
        kind: MetricKind::Counter,
        help: "Blacklist checks of refresh and sliding tokens, by result (hit: from memory; miss: queried, then kept; bypass: queried, memory not trusted).",
    },
];

/// A worker's boot of the JWT app.
pub type Boot = fn(Context) -> Pin<Box<dyn Future<Output = Result<Service, BootError>>>>;

/// The JWT app, as the `corral` binary serves it.
pub fn jwt() -> App<Boot> {
    App::new((|ctx| Box::pin(boot(ctx))) as Boot)
        .hooks(Hooks {
            prepare: secret::prepare,
            check: secret::check,
            metrics: METRICS,
            maintenance: &["token", "flush-expired"],
        })
        .config_section(&settings::SECTION)
        .migrations(MIGRATIONS)
        .command(cli::COMMAND)
        .command(cli::TOKEN_COMMAND)
}

/// Everything a worker's requests share.
struct State {
    db: Db,
    tokens: Tokens,
    auth: AuthConfig,
    hasher: password::Pool,
    /// The user and blacklist checks, from memory where that is safe.
    memory: Memory,
    /// The floor of a failed login's response time.
    login_timing: timing::LoginTiming,
    /// `Bearer realm="api"`, with the first configured scheme.
    www_authenticate: HeaderValue,
    /// Login throttling's rates.
    throttle: throttle::Limits,
    /// `auth.auth_token_classes`, in order.
    token_classes: Vec<auth::Kind>,
    /// `auth.authentication_class` is `JWTStatelessUserAuthentication`.
    stateless: bool,
}

/// The app's hyper service, one per worker.
#[derive(Clone)]
pub struct Service(Arc<State>);

/// Builds the app in a worker: keys, a lazy database pool, the hashing threads.
async fn boot(ctx: Context) -> Result<Service, BootError> {
    let c = &ctx.config;
    let auth = AuthConfig::of(c)?;
    let tokens = Tokens::new(&auth)?;
    let db = Db::open_lazy(&c.database)?;
    let memory = Memory::new(&c.database, &db)?;
    let hasher = password::Pool::new(auth.password_hash_threads as usize)?;
    let www_authenticate = HeaderValue::from_str(&format!(
        "{} realm=\"api\"",
        auth.auth_header_types
            .first()
            .map_or("Bearer", String::as_str)
    ))?;
    let state = Arc::new(State {
        db,
        tokens,
        hasher,
        memory,
        login_timing: timing::LoginTiming::new(),
        www_authenticate,
        throttle: throttle::Limits::of(&auth)?,
        token_classes: auth.token_classes(),
        stateless: auth.stateless(),
        auth,
    });
    // Close the connections when the worker exits, so PostgreSQL logs a clean end of
    // each rather than "could not receive data from client: Connection reset by peer".
    let closing = state.clone();
    crate::worker::at_exit(async move {
        closing.memory.close().await;
        closing.db.close().await;
    });
    Ok(Service(state))
}

impl hyper::service::Service<Request<RequestBody>> for Service {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<RequestBody>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { Ok(routes::route(state, req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_dialects_match() {
        let p: Vec<i64> = POSTGRES.iter().map(|m| m.version).collect();
        let s: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(p, s);
        assert!(!p.is_empty());
    }
}
