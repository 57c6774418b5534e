//! Routing: which view answers which path and method, DRF's 301 for a missing trailing
//! slash, 405 with `Allow`, and DRF's `SimpleMetadata` answer to `OPTIONS`.

use super::errors::ApiError;
use super::reply::Reply;
use super::views::{self, ViewResult};
use super::State;
use crate::http::{RequestBody, Route};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

const TOKEN_ALLOW: &str = "POST, OPTIONS";
const HELLO_ALLOW: &str = "GET, HEAD, OPTIONS";
const GET_ALLOW: &str = "GET, HEAD";

/// Answers one request.
pub(super) async fn route(s: Arc<State>, req: Request<RequestBody>) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    // A cheap clone (shared bytes), so the request can move into its view.
    let uri = req.uri().clone();
    let path = uri.path();
    let www = s.www_authenticate.clone();
    // The token views' futures are boxed: inline, the largest of them would set the size
    // of every request's future, which is moved into the heap once per request.
    let result = match path {
        "/api/token/" => {
            Box::pin(token_view(
                s,
                req,
                "Token Obtain Pair",
                TOKEN_OBTAIN_DOC,
                views::obtain,
            ))
            .await
        }
        "/api/token/refresh/" => {
            Box::pin(token_view(
                s,
                req,
                "Token Refresh",
                TOKEN_REFRESH_DOC,
                views::refresh,
            ))
            .await
        }
        "/api/token/verify/" => {
            Box::pin(token_view(
                s,
                req,
                "Token Verify",
                TOKEN_VERIFY_DOC,
                views::verify,
            ))
            .await
        }
        "/api/token/blacklist/" => {
            Box::pin(token_view(
                s,
                req,
                "Token Blacklist",
                TOKEN_BLACKLIST_DOC,
                views::blacklist,
            ))
            .await
        }
        "/hello/" => hello(&s, req).await,
        "/.well-known/jwks.json" => simple_get(&req, || Reply::ok(s.tokens.jwks().clone())),
        // Liveness: the process answers (Kubernetes calls it /livez).
        "/healthz" | "/livez" => simple_get(&req, || Reply::ok(json!({ "status": "ok" }))),
        "/readyz" if matches!(*req.method(), Method::GET | Method::HEAD) => {
            Box::pin(views::readyz(&s)).await
        }
        "/readyz" => not_allowed(req.method(), GET_ALLOW),
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
            Ok(Reply::new(StatusCode::MOVED_PERMANENTLY, json!({}))
                .header(LOCATION, &format!("{path}/{query}")))
        }
        _ => Err(ApiError::NotFound),
    };
    let mut resp = result.unwrap_or_else(|e| e.reply(&www)).into_response(head);
    resp.extensions_mut().insert(Route(route_name(path)));
    resp
}

/// The endpoint's name (Django's URL names), the bounded `route` label of the metrics.
fn route_name(path: &str) -> &'static str {
    match path {
        "/api/token/" => "token_obtain_pair",
        "/api/token/refresh/" => "token_refresh",
        "/api/token/verify/" => "token_verify",
        "/api/token/blacklist/" => "token_blacklist",
        "/hello/" => "hello",
        "/.well-known/jwks.json" => "jwks",
        "/healthz" => "healthz",
        "/livez" => "livez",
        "/readyz" => "readyz",
        "/api/token"
        | "/api/token/refresh"
        | "/api/token/verify"
        | "/api/token/blacklist"
        | "/hello" => "append_slash",
        _ => "not_found",
    }
}

fn not_allowed(method: &Method, allow: &'static str) -> ViewResult {
    Err(ApiError::MethodNotAllowed {
        method: method.clone(),
        allow,
    })
}

fn simple_get(req: &Request<RequestBody>, f: impl FnOnce() -> Reply) -> ViewResult {
    match *req.method() {
        Method::GET | Method::HEAD => Ok(f()),
        _ => not_allowed(req.method(), GET_ALLOW),
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
) -> ViewResult
where
    F: FnOnce(Arc<State>, Request<RequestBody>) -> Fut,
    Fut: Future<Output = ViewResult>,
{
    match *req.method() {
        Method::POST => view(s, req).await,
        Method::OPTIONS => {
            Ok(metadata(name, doc).header_value(ALLOW, HeaderValue::from_static(TOKEN_ALLOW)))
        }
        ref m => not_allowed(m, TOKEN_ALLOW),
    }
}

/// `/hello/`: authentication first, then the method (DRF's order).
async fn hello(s: &State, req: Request<RequestBody>) -> ViewResult {
    views::authenticate(s, &req).await?;
    match *req.method() {
        Method::GET | Method::HEAD => Ok(views::hello()),
        Method::OPTIONS => {
            Ok(metadata("Hello", "").header_value(ALLOW, HeaderValue::from_static(HELLO_ALLOW)))
        }
        ref m => not_allowed(m, HELLO_ALLOW),
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
