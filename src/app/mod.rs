//! The bundled application: a JWT-auth API wire-compatible with Django REST Framework +
//! djangorestframework-simplejwt 5.5.1.
//!
//! | endpoint | method | what |
//! | --- | --- | --- |
//! | `/api/token/` | POST | username + password → `{"refresh", "access"}` |
//! | `/api/token/refresh/` | POST | refresh → `{"access"}` (+ `"refresh"` when rotating) |
//! | `/api/token/verify/` | POST | token → `{}` |
//! | `/api/token/blacklist/` | POST | refresh → `{}` |
//! | `/hello/` | GET | `Authorization: Bearer <access>` → `{"message": "Hello, World!"}` |
//! | `/.well-known/jwks.json` | GET | public keys (asymmetric algorithms) |
//! | `/healthz`, `/readyz` | GET | liveness; readiness (database reachable) |
//!
//! Paths without their trailing slash are redirected (301), as Django's `APPEND_SLASH`.

mod body;
pub mod secret;
pub mod users;
mod views;

use crate::auth::{password, Tokens};
use crate::config::AuthConfig;
use crate::http::RequestBody;
use crate::master::Hooks;
use crate::storage::{self, Db, StorageError};
use crate::worker::{BootError, Context};
use body::Reply;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The master-side hooks of the JWT app: the development secret key, and key checks.
pub const HOOKS: Hooks = Hooks {
    prepare: secret::prepare,
    check: secret::check,
};

/// Everything a worker's requests share.
pub struct State {
    db: Db,
    tokens: Tokens,
    auth: AuthConfig,
    hasher: password::Pool,
    users: UserCheck,
    /// `Bearer realm="api"`, with the first configured scheme.
    www_authenticate: HeaderValue,
}

/// simplejwt's `get_user` check for every authenticated request: does the token's user
/// exist, and is it active?
///
/// simplejwt asks the database every time. On SQLite so do we, unless nothing has
/// written to the database since the answer was cached: an inotify watch on the database
/// files, registered with the worker's reactor, empties the cache after any write by any
/// process on the host. Its readiness is read from the reactor's last poll, which is no
/// older than the poll that delivered the request (the reactor polls whenever the worker
/// runs out of work, and at least every 61 task polls under load), so a deactivation that
/// committed before a request arrived is seen, as with simplejwt, without a system call
/// per request. On PostgreSQL, whose writers may be on other hosts, every request queries.
pub struct UserCheck {
    watch: Option<tokio::io::unix::AsyncFd<crate::sys::watch::Watcher>>,
    cache: Mutex<HashMap<i64, Option<bool>>>,
}

const USER_CACHE_MAX: usize = 100_000;

impl UserCheck {
    fn new(c: &crate::config::DatabaseConfig) -> UserCheck {
        let watch = storage::DbUrl::parse(&c.url).ok().and_then(|u| u.sqlite_path).and_then(|path| {
            let mut w = crate::sys::watch::Watcher::new().ok()?;
            match w.add(&path).and_then(|()| w.register()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!("cannot watch {} ({e}); checking users in the database on every request", path.display());
                    None
                }
            }
        });
        UserCheck {
            watch,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn is_active(&self, db: &Db, id: i64) -> Result<Option<bool>, StorageError> {
        let Some(watch) = &self.watch else {
            return storage::users::active_by_id(db, id).await;
        };
        if db_written(watch) {
            self.cache.lock().expect("not poisoned").clear();
        } else if let Some(v) = self.cache.lock().expect("not poisoned").get(&id) {
            return Ok(*v);
        }
        let v = storage::users::active_by_id(db, id).await?;
        let mut cache = self.cache.lock().expect("not poisoned");
        // A write during the query may have changed the answer: do not keep it.
        if db_written(watch) || cache.len() >= USER_CACHE_MAX {
            cache.clear();
        } else {
            cache.insert(id, v);
        }
        Ok(v)
    }
}

/// Whether the watched database files were written since the last call: the reactor's
/// cached readiness first (no system call), then a drain of the events when it is set.
fn db_written(watch: &tokio::io::unix::AsyncFd<crate::sys::watch::Watcher>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match watch.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => false,
        std::task::Poll::Ready(Ok(mut ready)) => {
            // Drains to EAGAIN; an event after the drain carries a newer reactor tick,
            // which `clear_ready` leaves set.
            let changed = ready.get_inner().changed();
            ready.clear_ready();
            changed
        }
        std::task::Poll::Ready(Err(_)) => true,
    }
}

/// The app's hyper service.
#[derive(Clone)]
pub struct App(Arc<State>);

/// Builds the app in a worker: keys, a lazy database pool, the hashing threads.
pub async fn boot(ctx: Context) -> Result<App, BootError> {
    let c = &ctx.config;
    let tokens = Tokens::new(&c.auth)?;
    let db = Db::open_lazy(&c.database)?;
    let hasher = password::Pool::new(c.auth.password_hash_threads as usize)?;
    Ok(App(Arc::new(State {
        db,
        tokens,
        auth: c.auth.clone(),
        hasher,
        users: UserCheck::new(&c.database),
        www_authenticate: HeaderValue::from_str(&format!(
            "{} realm=\"api\"",
            c.auth
                .auth_header_types
                .first()
                .map_or("Bearer", String::as_str)
        ))?,
    })))
}

impl hyper::service::Service<Request<RequestBody>> for App {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<RequestBody>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { Ok(route(state, req).await) })
    }
}

const TOKEN_ALLOW: &str = "POST, OPTIONS";
const HELLO_ALLOW: &str = "GET, HEAD, OPTIONS";

async fn route(s: Arc<State>, req: Request<RequestBody>) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    // A cheap clone (shared bytes), so the request can move into its view.
    let uri = req.uri().clone();
    let path = uri.path();
    let reply = match path {
        "/api/token/" => {
            token_view(s, req, "Token Obtain Pair", TOKEN_OBTAIN_DOC, views::obtain).await
        }
        "/api/token/refresh/" => {
            token_view(s, req, "Token Refresh", TOKEN_REFRESH_DOC, views::refresh).await
        }
        "/api/token/verify/" => {
            token_view(s, req, "Token Verify", TOKEN_VERIFY_DOC, views::verify).await
        }
        "/api/token/blacklist/" => {
            token_view(
                s,
                req,
                "Token Blacklist",
                TOKEN_BLACKLIST_DOC,
                views::blacklist,
            )
            .await
        }
        "/hello/" => hello(&s, req).await,
        "/.well-known/jwks.json" => simple_get(&req, || Reply::ok(s.tokens.jwks().clone())),
        "/healthz" => simple_get(&req, || Reply::ok(json!({ "status": "ok" }))),
        "/readyz" if matches!(*req.method(), Method::GET | Method::HEAD) => views::readyz(&s).await,
        "/readyz" => not_allowed(req.method(), "GET, HEAD"),
        "/api/token"
        | "/api/token/refresh"
        | "/api/token/verify"
        | "/api/token/blacklist"
        | "/hello" => {
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            Reply::new(StatusCode::MOVED_PERMANENTLY, json!({}))
                .header(LOCATION, &format!("{path}/{query}"))
        }
        _ => Reply::detail(StatusCode::NOT_FOUND, "Not found."),
    };
    reply.into_response(head)
}

fn not_allowed(method: &Method, allow: &str) -> Reply {
    Reply::detail(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method \"{method}\" not allowed."),
    )
    .header(ALLOW, allow)
}

fn simple_get(req: &Request<RequestBody>, f: impl FnOnce() -> Reply) -> Reply {
    match *req.method() {
        Method::GET | Method::HEAD => f(),
        _ => not_allowed(req.method(), "GET, HEAD"),
    }
}

/// A simplejwt token view: POST runs it, OPTIONS describes it, anything else is 405.
/// `Allow` goes on the 405 and OPTIONS answers (DRF also puts it on every other response,
/// where it tells a client nothing).
async fn token_view<F, Fut>(
    s: Arc<State>,
    req: Request<RequestBody>,
    name: &str,
    doc: &str,
    view: F,
) -> Reply
where
    F: FnOnce(Arc<State>, Request<RequestBody>) -> Fut,
    Fut: Future<Output = Reply>,
{
    match *req.method() {
        Method::POST => view(s, req).await,
        Method::OPTIONS => {
            metadata(name, doc).header_value(ALLOW, HeaderValue::from_static(TOKEN_ALLOW))
        }
        ref m => not_allowed(m, TOKEN_ALLOW),
    }
}

/// `/hello/`: authentication first, then the method (DRF's order).
async fn hello(s: &State, req: Request<RequestBody>) -> Reply {
    match views::authenticate(s, &req).await {
        Err(r) => r,
        Ok(_user) => match *req.method() {
            Method::GET | Method::HEAD => views::hello(),
            Method::OPTIONS => {
                metadata("Hello", "").header_value(ALLOW, HeaderValue::from_static(HELLO_ALLOW))
            }
            ref m => not_allowed(m, HELLO_ALLOW),
        },
    }
}

/// DRF's `SimpleMetadata` answer to OPTIONS.
fn metadata(name: &str, description: &str) -> Reply {
    Reply::ok(json!({
        "name": name,
        "description": description,
        "renders": ["application/json"],
        "parses": ["application/json", "application/x-www-form-urlencoded"],
    }))
}

const TOKEN_OBTAIN_DOC: &str = "Takes a set of user credentials and returns an access and refresh JSON web token pair to prove the authentication of those credentials.";
const TOKEN_REFRESH_DOC: &str = "Takes a refresh type JSON web token and returns an access type JSON web token if the refresh token is valid.";
const TOKEN_VERIFY_DOC: &str = "Takes a token and indicates if it is valid.  This view provides no information about a token's fitness for a particular use.";
const TOKEN_BLACKLIST_DOC: &str = "Takes a token and blacklists it. Must be used with the `rest_framework_simplejwt.token_blacklist` app installed.";
