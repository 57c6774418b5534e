//! Request bodies and responses the way DRF produces them: JSON and form-encoded bodies,
//! `CharField` validation with DRF's messages, and compact JSON replies.

use crate::http::RequestBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// A response under construction (compact JSON, DRF's headers).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// Pre-serialised bytes, when the body never changes (`/hello/`).
    fixed: Option<&'static str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub fn new(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            fixed: None,
            headers: vec![],
        }
    }

    pub fn ok(body: Value) -> Reply {
        Reply::new(StatusCode::OK, body)
    }

    /// A 200 whose JSON body is known at compile time.
    pub fn fixed(json: &'static str) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: Value::Null,
            fixed: Some(json),
            headers: vec![],
        }
    }

    /// `{"detail": …}`
    pub fn detail(status: StatusCode, detail: &str) -> Reply {
        Reply::new(status, json!({ "detail": detail }))
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Reply {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn into_response(self, head_only: bool) -> Response<Full<Bytes>> {
        let bytes = match (head_only, self.fixed) {
            (true, _) => Bytes::new(),
            (false, Some(s)) => Bytes::from_static(s.as_bytes()),
            (false, None) => Bytes::from(self.body.to_string()),
        };
        let mut r = Response::new(Full::new(bytes));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.reserve(4 + self.headers.len());
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

/// A request body as DRF's parsers see it.
pub enum Data {
    Object(Map<String, Value>),
    /// JSON that is not an object: Python's type name (`list`, `str`, …).
    NotObject(&'static str),
}

/// Parses a JSON or form-encoded body. No body (or no content type) is an empty object,
/// as in DRF; an unsupported type with a body is 415; bad JSON is 400.
pub async fn read(req: Request<RequestBody>) -> Result<Data, Reply> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let chunked = req.headers().get(TRANSFER_ENCODING).is_some();
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let Some(content_type) = content_type else {
        return Ok(Data::Object(Map::new()));
    };
    if declared == 0 && !chunked {
        return Ok(Data::Object(Map::new()));
    }
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" && media != "application/x-www-form-urlencoded" {
        return Err(Reply::detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Unsupported media type \"{content_type}\" in request."),
        ));
    }
    let bytes = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(Reply::detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body is too large.",
            ));
        }
        Err(_) => {
            return Err(Reply::detail(
                StatusCode::BAD_REQUEST,
                "Malformed request body.",
            ))
        }
    };
    if media == "application/x-www-form-urlencoded" {
        let mut m = Map::new();
        for (k, v) in form_urlencoded::parse(&bytes) {
            m.insert(k.into_owned(), Value::String(v.into_owned())); // the last value wins
        }
        return Ok(Data::Object(m));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(Data::Object(m)),
        Ok(other) => Ok(Data::NotObject(python_type(&other))),
        Err(e) => Err(Reply::detail(
            StatusCode::BAD_REQUEST,
            &format!("JSON parse error - {}", python_json_error(&e, &bytes)),
        )),
    }
}

/// serde_json's error in the words and positions of Python's `json` module, which DRF
/// quotes (`Expecting value: line 1 column 1 (char 0)`), for the common cases.
fn python_json_error(e: &serde_json::Error, input: &[u8]) -> String {
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    let python = match what {
        "key must be a string" => "Expecting property name enclosed in double quotes",
        "trailing characters" => "Extra data",
        w if w.starts_with("expected value")
            || w.starts_with("EOF while parsing")
            || w == "trailing comma" =>
        {
            "Expecting value"
        }
        w if w.starts_with("expected `,` or `}`") => "Expecting ',' delimiter",
        w if w.starts_with("expected `:`") => "Expecting ':' delimiter",
        _ => return text,
    };
    let (line, column) = (e.line(), e.column().max(1));
    let before: usize = String::from_utf8_lossy(input)
        .split('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.chars().count() + 1)
        .sum();
    format!(
        "{python}: line {line} column {column} (char {})",
        before + column - 1
    )
}

fn python_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Validates `fields` as DRF `CharField`s (trimmed, required, not blank, not null) and
/// returns their values in order, or DRF's 400 body listing every field's errors.
pub fn char_fields(data: Data, fields: &[&str]) -> Result<Vec<String>, Reply> {
    let map = match data {
        Data::Object(m) => m,
        Data::NotObject(t) => {
            return Err(Reply::new(
                StatusCode::BAD_REQUEST,
                json!({ "non_field_errors": [format!("Invalid data. Expected a dictionary, but got {t}.")] }),
            ));
        }
    };
    let mut errors = Map::new();
    let mut values = vec![];
    for name in fields {
        match char_field(map.get(*name)) {
            Ok(v) => values.push(v),
            Err(msg) => {
                errors.insert(name.to_string(), json!([msg]));
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(Reply::new(StatusCode::BAD_REQUEST, Value::Object(errors)))
    }
}

fn char_field(v: Option<&Value>) -> Result<String, &'static str> {
    let s = match v {
        None => return Err("This field is required."),
        Some(Value::Null) => return Err("This field may not be null."),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("Not a valid string."),
    };
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err("This field may not be blank.");
    }
    if trimmed.contains('\0') {
        return Err("Null characters are not allowed.");
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drf_char_field_messages() {
        let data = |v: Value| Data::Object(v.as_object().unwrap().clone());
        let e = char_fields(data(json!({})), &["username", "password"])
            .err()
            .unwrap();
        assert_eq!(
            e.body.to_string(),
            r#"{"username":["This field is required."],"password":["This field is required."]}"#
        );
        let e = char_fields(
            data(json!({"username": "  ", "password": null})),
            &["username", "password"],
        )
        .err()
        .unwrap();
        assert_eq!(
            e.body,
            json!({"username": ["This field may not be blank."], "password": ["This field may not be null."]})
        );
        let e = char_fields(
            data(json!({"username": true, "password": ["x"]})),
            &["username", "password"],
        )
        .err()
        .unwrap();
        assert_eq!(
            e.body,
            json!({"username": ["Not a valid string."], "password": ["Not a valid string."]})
        );
        assert_eq!(
            char_fields(
                data(json!({"username": 42, "password": " pw "})),
                &["username", "password"]
            )
            .ok()
            .unwrap(),
            vec!["42", "pw"]
        );
        let e = char_fields(Data::NotObject("list"), &["username"])
            .err()
            .unwrap();
        assert_eq!(
            e.body,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
        );
    }
}
