//! [`Reply`]: a JSON response under construction, compact as DRF renders it, with the
//! headers every answer of the app carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};

const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// JSON indented by `n` spaces, as Python's `json.dumps(indent=n)` writes it.
fn pretty(v: &Value, n: usize) -> Bytes {
    use serde::Serialize;
    let indent = vec![b' '; n];
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(&indent),
    );
    let _ = v.serialize(&mut ser);
    Bytes::from(out)
}

/// A response under construction (compact JSON, DRF's headers).
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// Pre-serialised bytes, when the body never changes (`/hello/`).
    fixed: Option<&'static str>,
    /// `fixed` is not JSON (Django's own pages): never re-indented.
    html: bool,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// `Accept: application/json; indent=N`: DRF renders with N spaces (at most 8).
    pub(super) indent: Option<usize>,
}

impl Reply {
    pub(super) fn new(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            fixed: None,
            html: false,
            headers: vec![],
            indent: None,
        }
    }

    pub(super) fn ok(body: Value) -> Reply {
        Reply::new(StatusCode::OK, body)
    }

    /// A 200 whose JSON body is known at compile time.
    pub(super) fn fixed(json: &'static str) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: Value::Null,
            fixed: Some(json),
            html: false,
            headers: vec![],
            indent: None,
        }
    }

    /// Django's `HttpResponsePermanentRedirect`, as `APPEND_SLASH` sends it: 301, an
    /// empty HTML body.
    pub(super) fn redirect(location: &str) -> Reply {
        Reply::html(StatusCode::MOVED_PERMANENTLY, "").header(hyper::header::LOCATION, location)
    }

    /// A page of Django's own (HTML, `text/html; charset=utf-8`).
    pub(super) fn html(status: StatusCode, page: &'static str) -> Reply {
        Reply {
            status,
            html: true,
            ..Reply::fixed(page)
        }
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
    }

    /// `{"detail": …}`
    pub(super) fn detail(status: StatusCode, detail: &str) -> Reply {
        Reply::new(status, json!({ "detail": detail }))
    }

    pub(super) fn header(mut self, name: HeaderName, value: &str) -> Reply {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub(super) fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    /// The response; for `HEAD`, without the body but with the `Content-Length` the body
    /// would have had (RFC 9110 §9.3.2).
    pub(super) fn into_response(self, head_only: bool) -> Response<Full<Bytes>> {
        let bytes = match (self.fixed, self.indent) {
            // Django's own pages are not JSON: never re-indented.
            (Some(s), _) if self.html => Bytes::from_static(s.as_bytes()),
            (Some(s), None) => Bytes::from_static(s.as_bytes()),
            (Some(s), Some(n)) => pretty(&serde_json::from_str(s).unwrap_or(Value::Null), n),
            (None, Some(n)) => pretty(&self.body, n),
            (None, None) => Bytes::from(self.body.to_string()),
        };
        let head_length = head_only.then(|| HeaderValue::from(bytes.len()));
        let bytes = if head_only { Bytes::new() } else { bytes };
        let mut r = Response::new(Full::new(bytes));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.reserve(7 + self.headers.len());
        if let Some(len) = head_length {
            h.insert(CONTENT_LENGTH, len);
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Django's SecurityMiddleware defaults, as the peer sends them.
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(
            CROSS_ORIGIN_OPENER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        r
    }
}
