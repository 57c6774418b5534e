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
use hyper::header::{ALLOW, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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
}

/// Looks up whether a token's user exists and is active (simplejwt's `get_user`).
pub struct UserCheck;

impl UserCheck {
    async fn is_active(&self, db: &Db, id: i64) -> Result<Option<bool>, StorageError> {
        storage::users::active_by_id(db, id).await
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
        users: UserCheck,
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
    let path = req.uri().path().to_string();
    let reply = match path.as_str() {
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
/// Every response carries DRF's `Allow`.
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
    let reply = match *req.method() {
        Method::POST => view(s, req).await,
        Method::OPTIONS => metadata(name, doc),
        ref m => not_allowed(m, TOKEN_ALLOW),
    };
    reply.header(ALLOW, TOKEN_ALLOW)
}

/// `/hello/`: authentication first, then the method (DRF's order).
async fn hello(s: &State, req: Request<RequestBody>) -> Reply {
    let reply = match views::authenticate(s, &req).await {
        Err(r) => r,
        Ok(_user) => match *req.method() {
            Method::GET | Method::HEAD => views::hello(),
            Method::OPTIONS => metadata("Hello", ""),
            ref m => not_allowed(m, HELLO_ALLOW),
        },
    };
    reply.header(ALLOW, HELLO_ALLOW)
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
