//! Routing: which view answers which path and method, DRF's 301 for a missing trailing
//! slash, 405 with `Allow`, and DRF's `SimpleMetadata` answer to `OPTIONS`.

use super::errors::ApiError;
use super::reply::Reply;
use super::views::{self, Authentication, Grant, ViewResult};
use super::State;
use crate::http::{RequestBody, Route};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, Request, Response};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
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
    // DRF's views answer every response with `Allow`, and negotiate the renderer before
    // anything else (authentication included): JSON or 406.
    let allow = view_name(path).map(|_| {
        if path == "/hello/" {
            HELLO_ALLOW
        } else {
            TOKEN_ALLOW
        }
    });
    let indent = match allow.map(|_| negotiate(&req)) {
        Some(Err(())) => {
            let r = ApiError::NotAcceptable
                .reply(&www)
                .header_value(ALLOW, HeaderValue::from_static(allow.unwrap_or_default()));
            let mut resp = r.into_response(head);
            resp.extensions_mut().insert(Route(route_name(path)));
            return resp;
        }
        Some(Ok(indent)) => indent,
        None => None,
    };
    let token_view = TOKEN_VIEWS.iter().find(|v| v.path == path);
    let result = if let Some(v) = token_view {
        match *req.method() {
            Method::POST => (v.view)(s, req).await,
            Method::OPTIONS => Ok(metadata(v.title, v.doc, v.fields)),
            ref m => not_allowed(m, TOKEN_ALLOW),
        }
    } else {
        match path {
            "/api/token/logout-all/" => match *req.method() {
                Method::POST => Box::pin(views::logout_all(s, req)).await,
                Method::OPTIONS => Ok(metadata("Logout All", LOGOUT_ALL_DOC, &[])),
                ref m => not_allowed(m, TOKEN_ALLOW),
            },
            "/hello/" => hello(&s, req).await,
            "/.well-known/jwks.json" => simple_get(&req, || Reply::ok(s.tokens.jwks().clone())),
            // Liveness: the process answers (Kubernetes calls it /livez).
            "/healthz" | "/livez" => simple_get(&req, || Reply::ok(json!({ "status": "ok" }))),
            "/readyz" if matches!(*req.method(), Method::GET | Method::HEAD) => {
                Box::pin(views::readyz(&s)).await
            }
            "/readyz" => not_allowed(req.method(), GET_ALLOW),
            _ if appends_slash(path) => {
                let query = req
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                Ok(Reply::redirect(&format!("{path}/{query}")))
            }
            _ => Err(ApiError::NotFound),
        }
    };
    let mut reply = result.unwrap_or_else(|e| e.reply(&www));
    reply.indent = indent;
    if let Some(a) = allow {
        reply = reply.header_value(ALLOW, HeaderValue::from_static(a));
    }
    let mut resp = reply.into_response(head);
    resp.extensions_mut().insert(Route(route_name(path)));
    resp
}

/// DRF's `DefaultContentNegotiation` with JSON as the only renderer: no `Accept`, or one
/// naming `application/json`, `application/*` or `*/*` (`q` aside); `Err` is 406. An
/// `indent=N` parameter on `application/json` asks for indented JSON, as DRF renders it.
fn negotiate(req: &Request<RequestBody>) -> Result<Option<usize>, ()> {
    let mut values = req
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut acceptable = false;
    for v in values {
        for range in v.to_str().unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            match media.as_str() {
                "application/json" => {
                    let indent = parts.find_map(|p| {
                        let (k, v) = p.split_once('=')?;
                        (k.trim() == "indent").then(|| v.trim().parse::<usize>().ok())?
                    });
                    // DRF treats indent=0 as no indent.
                    return Ok(indent.filter(|n| *n > 0).map(|n| n.min(8)));
                }
                // An empty range (`Accept:` with nothing) matches nothing, as in DRF.
                "application/*" | "*/*" => acceptable = true,
                _ => {}
            }
        }
    }
    if acceptable {
        Ok(None)
    } else {
        Err(())
    }
}

/// A view's boxed future: inline, the largest would set the size of every request's
/// future, which is moved into the heap once per request.
type ViewFuture = Pin<Box<dyn Future<Output = ViewResult> + Send>>;

/// A simplejwt token view: POST runs it, OPTIONS describes it (DRF's metadata), anything
/// else is 405.
struct TokenView {
    path: &'static str,
    /// Django's URL name: the metrics' `route` label.
    name: &'static str,
    title: &'static str,
    doc: &'static str,
    fields: &'static [Field],
    view: fn(Arc<State>, Request<RequestBody>) -> ViewFuture,
}

const TOKEN_VIEWS: &[TokenView] = &[
    TokenView {
        path: "/api/token/",
        name: "token_obtain_pair",
        title: "Token Obtain Pair",
        doc: TOKEN_OBTAIN_DOC,
        fields: OBTAIN_FIELDS,
        view: |s, r| Box::pin(views::obtain(s, r, Grant::Pair)),
    },
    TokenView {
        path: "/api/token/refresh/",
        name: "token_refresh",
        title: "Token Refresh",
        doc: TOKEN_REFRESH_DOC,
        fields: REFRESH_FIELDS,
        view: |s, r| Box::pin(views::refresh(s, r)),
    },
    TokenView {
        path: "/api/token/verify/",
        name: "token_verify",
        title: "Token Verify",
        doc: TOKEN_VERIFY_DOC,
        fields: TOKEN_FIELDS,
        view: |s, r| Box::pin(views::verify(s, r)),
    },
    TokenView {
        path: "/api/token/blacklist/",
        name: "token_blacklist",
        title: "Token Blacklist",
        doc: TOKEN_BLACKLIST_DOC,
        fields: BLACKLIST_FIELDS,
        view: |s, r| Box::pin(views::blacklist(s, r)),
    },
    TokenView {
        path: "/api/token/sliding/",
        name: "token_obtain_sliding",
        title: "Token Obtain Sliding",
        doc: SLIDING_OBTAIN_DOC,
        fields: OBTAIN_FIELDS,
        view: |s, r| Box::pin(views::obtain(s, r, Grant::Sliding)),
    },
    TokenView {
        path: "/api/token/sliding/refresh/",
        name: "token_refresh_sliding",
        title: "Token Refresh Sliding",
        doc: SLIDING_REFRESH_DOC,
        fields: TOKEN_FIELDS,
        view: |s, r| Box::pin(views::refresh_sliding(s, r)),
    },
    TokenView {
        path: "/api/token/sliding/blacklist/",
        name: "token_blacklist_sliding",
        title: "Token Blacklist Sliding",
        doc: SLIDING_BLACKLIST_DOC,
        fields: TOKEN_FIELDS,
        view: |s, r| Box::pin(views::blacklist_sliding(s, r)),
    },
];

/// The views besides the token views.
const OTHER_VIEWS: &[(&str, &str)] = &[
    ("/api/token/logout-all/", "token_logout_all"),
    ("/hello/", "hello"),
];

/// Every view (DRF's, answering `Allow` and negotiating): path and Django URL name.
fn views() -> impl Iterator<Item = (&'static str, &'static str)> {
    TOKEN_VIEWS
        .iter()
        .map(|v| (v.path, v.name))
        .chain(OTHER_VIEWS.iter().copied())
}

fn view_name(path: &str) -> Option<&'static str> {
    views().find(|(p, _)| *p == path).map(|(_, n)| n)
}

/// A view's path without its trailing slash: Django's `APPEND_SLASH` redirects it.
fn appends_slash(path: &str) -> bool {
    views().any(|(p, _)| p.strip_suffix('/') == Some(path))
}

/// The endpoint's name (Django's URL names), the bounded `route` label of the metrics.
fn route_name(path: &str) -> &'static str {
    match path {
        "/.well-known/jwks.json" => "jwks",
        "/healthz" => "healthz",
        "/livez" => "livez",
        "/readyz" => "readyz",
        _ if appends_slash(path) => "append_slash",
        _ => view_name(path).unwrap_or("not_found"),
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

/// `/hello/`: authentication first, then the method (DRF's order).
async fn hello(s: &State, req: Request<RequestBody>) -> ViewResult {
    views::authenticate(s, &req, Authentication::Configured).await?;
    match *req.method() {
        Method::GET | Method::HEAD => Ok(views::hello()),
        Method::OPTIONS => Ok(metadata("Hello", "", &[])),
        ref m => not_allowed(m, HELLO_ALLOW),
    }
}

/// A serializer field as DRF's `SimpleMetadata` describes it under `actions.POST`.
struct Field {
    name: &'static str,
    label: &'static str,
    read_only: bool,
}

const fn field(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        read_only: false,
    }
}

const OBTAIN_FIELDS: &[Field] = &[field("username", "Username"), field("password", "Password")];
const REFRESH_FIELDS: &[Field] = &[
    field("refresh", "Refresh"),
    Field {
        name: "access",
        label: "Access",
        read_only: true,
    },
];
/// The verify and sliding views' one field.
const TOKEN_FIELDS: &[Field] = &[field("token", "Token")];
const BLACKLIST_FIELDS: &[Field] = &[field("refresh", "Refresh")];

/// DRF's `SimpleMetadata` answer to OPTIONS, byte for byte (the docstrings keep their
/// line breaks, as DRF's `get_view_description` leaves them).
fn metadata(name: &str, description: &str, fields: &[Field]) -> Reply {
    let mut body = json!({
        "name": name,
        "description": description,
        "renders": ["application/json"],
        "parses": ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"],
    });
    if !fields.is_empty() {
        let mut post = serde_json::Map::new();
        for f in fields {
            post.insert(
                f.name.into(),
                json!({ "type": "string", "required": !f.read_only, "read_only": f.read_only, "label": f.label }),
            );
        }
        body["actions"] = json!({ "POST": post });
    }
    Reply::ok(body)
}

const LOGOUT_ALL_DOC: &str = "Logs the authenticated user out everywhere: blacklists every outstanding refresh\ntoken and refuses every token issued until now.";
const TOKEN_OBTAIN_DOC: &str = "Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.";
const TOKEN_REFRESH_DOC: &str = "Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.";
const TOKEN_VERIFY_DOC: &str = "Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.";
const TOKEN_BLACKLIST_DOC: &str = "Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed.";
const SLIDING_OBTAIN_DOC: &str = "Takes a set of user credentials and returns a sliding JSON web token to\nprove the authentication of those credentials.";
const SLIDING_REFRESH_DOC: &str = "Takes a sliding JSON web token and returns a new, refreshed version if the\ntoken's refresh period has not expired.";
const SLIDING_BLACKLIST_DOC: &str = "Takes a sliding JSON web token and blacklists it: it can no longer\nauthenticate or be refreshed.";
