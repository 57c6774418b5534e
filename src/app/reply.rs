//! [`Reply`]: a JSON response under construction, compact as DRF renders it, with the
//! headers every answer of the app carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// A response under construction (compact JSON, DRF's headers).
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// Pre-serialised bytes, when the body never changes (`/hello/`).
    fixed: Option<&'static str>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub(super) fn new(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            fixed: None,
            headers: vec![],
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
            headers: vec![],
        }
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
        let bytes = match self.fixed {
            Some(s) => Bytes::from_static(s.as_bytes()),
            None => Bytes::from(self.body.to_string()),
        };
        let head_length = head_only.then(|| HeaderValue::from(bytes.len()));
        let bytes = if head_only { Bytes::new() } else { bytes };
        let mut r = Response::new(Full::new(bytes));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.reserve(5 + self.headers.len());
        if let Some(len) = head_length {
            h.insert(CONTENT_LENGTH, len);
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Of Django's SecurityMiddleware defaults, the one that matters to a JSON API (the
        // others govern how browsers treat documents); every byte here is paid per request.
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        r
    }
}
