//! Request bodies the way DRF's default parsers read them: JSON, form-encoded and
//! multipart bodies, and `CharField` validation with DRF's messages.

use super::errors::{
    ApiError, FIELD_BLANK, FIELD_NOT_STRING, FIELD_NULL, FIELD_NULL_CHARACTERS, FIELD_REQUIRED,
};
use super::pyjson;
use crate::http::RequestBody;
use http_body_util::BodyExt;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::Request;
use serde_json::{json, Map, Value};

/// A request body as DRF's parsers see it.
pub(super) enum Data {
    Object(Map<String, Value>),
    /// JSON that is not an object: Python's type name (`list`, `str`, …).
    NotObject(&'static str),
}

/// Parses a JSON, form-encoded or multipart body. No body is an empty object, as in DRF;
/// a body of an unsupported type, or of none, is 415; bad JSON is 400 in Python's words.
pub(super) async fn read(req: Request<RequestBody>) -> Result<Data, ApiError> {
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
    if declared == 0 && !chunked {
        return Ok(Data::Object(Map::new()));
    }
    let Some(content_type) = content_type else {
        return Err(ApiError::UnsupportedMediaType(String::new()));
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let multipart = media == "multipart/form-data";
    if media != "application/json" && media != "application/x-www-form-urlencoded" && !multipart {
        return Err(ApiError::UnsupportedMediaType(content_type));
    }
    let boundary = if multipart {
        match boundary(&content_type) {
            Some(b) => Some(b),
            None => {
                let shown = content_type
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("boundary="))
                    .map_or("None".to_string(), |b| format!("b'{b}'"));
                return Err(ApiError::MultipartParse(format!(
                    "Invalid boundary in multipart: {shown}"
                )));
            }
        }
    } else {
        None
    };
    let bytes = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        // The core answers 413 and 408 itself; these keep the app's answer consistent.
        Err(crate::http::BodyError::TooLarge { .. }) => return Err(ApiError::BodyTooLarge),
        Err(_) => return Err(ApiError::MalformedBody),
    };
    if let Some(b) = boundary {
        return Ok(Data::Object(multipart_fields(&bytes, &b)));
    }
    if media == "application/x-www-form-urlencoded" {
        let mut m = Map::new();
        for (k, v) in form_urlencoded::parse(&bytes) {
            m.insert(k.into_owned(), Value::String(v.into_owned())); // the last value wins
        }
        return Ok(Data::Object(m));
    }
    let charset = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then_some(v)
    });
    let text = pyjson::decode(&bytes, charset).map_err(ApiError::JsonParse)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(Data::Object(m)),
        Ok(other) => Ok(Data::NotObject(python_type(&other))),
        Err(e) => Err(ApiError::JsonParse(
            pyjson::error(&text).unwrap_or_else(|| e.to_string()),
        )),
    }
}

/// The `boundary` parameter of a multipart content type, if it is a valid one (RFC 2046:
/// 1–70 characters, possibly quoted).
fn boundary(content_type: &str) -> Option<String> {
    let raw = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim())
    })?;
    let b = raw.trim_matches('"');
    (!b.is_empty() && b.len() <= 70 && b.is_ascii() && !b.contains(['\r', '\n']))
        .then(|| b.to_string())
}

/// The fields of a `multipart/form-data` body, files included as DRF's `request.data`
/// has them (as objects, which no `CharField` accepts); the last value of a repeated
/// field wins. Like Django's parser it is lenient: what does not parse ends the fields.
fn multipart_fields(body: &[u8], boundary: &str) -> Map<String, Value> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(d.len())
            .position(|w| w == d)
            .map(|i| i + from)
    };
    let mut fields = Map::new();
    let Some(mut at) = find(body, 0) else {
        return fields;
    };
    loop {
        let after = at + d.len();
        if body[after..].starts_with(b"--") {
            return fields; // the closing delimiter
        }
        let start = after
            + if body[after..].starts_with(b"\r\n") {
                2
            } else {
                0
            };
        let Some(next) = find(body, start) else {
            return fields;
        };
        let part = &body[start..next];
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = part.windows(4).position(|w| w == b"\r\n\r\n") else {
            return fields;
        };
        let head = String::from_utf8_lossy(&part[..split]);
        let value = &part[split + 4..];
        let disposition = head
            .split("\r\n")
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let param = |name: &str| {
            disposition.split(';').skip(1).find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        match (param("name"), param("filename")) {
            (Some(name), None) => {
                let text = String::from_utf8_lossy(value).into_owned();
                fields.insert(name, Value::String(text));
            }
            // DRF merges uploaded files into `request.data`: a file where a CharField is
            // expected is "Not a valid string."
            (Some(name), Some(_)) => {
                fields.insert(name, json!({ "file": true }));
            }
            _ => {}
        }
        at = next;
    }
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
pub(super) fn char_fields(data: Data, fields: &[&str]) -> Result<Vec<String>, ApiError> {
    let map = match data {
        Data::Object(m) => m,
        Data::NotObject(t) => return Err(ApiError::NotAnObject(t)),
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
        Err(ApiError::Fields(errors))
    }
}

fn char_field(v: Option<&Value>) -> Result<String, &'static str> {
    let s = match v {
        None => return Err(FIELD_REQUIRED),
        Some(Value::Null) => return Err(FIELD_NULL),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(FIELD_NOT_STRING),
    };
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(FIELD_BLANK);
    }
    if trimmed.contains('\0') {
        return Err(FIELD_NULL_CHARACTERS);
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 400 body an error becomes.
    fn body(e: ApiError) -> Value {
        let r = e.reply(&hyper::header::HeaderValue::from_static(
            "Bearer realm=\"api\"",
        ));
        assert_eq!(r.status, hyper::StatusCode::BAD_REQUEST);
        r.body
    }

    #[test]
    fn drf_char_field_messages() {
        let data = |v: Value| Data::Object(v.as_object().unwrap().clone());
        let e = char_fields(data(json!({})), &["username", "password"])
            .err()
            .unwrap();
        assert_eq!(
            body(e).to_string(),
            r#"{"username":["This field is required."],"password":["This field is required."]}"#
        );
        let e = char_fields(
            data(json!({"username": "  ", "password": null})),
            &["username", "password"],
        )
        .err()
        .unwrap();
        assert_eq!(
            body(e),
            json!({"username": ["This field may not be blank."], "password": ["This field may not be null."]})
        );
        let e = char_fields(
            data(json!({"username": true, "password": ["x"]})),
            &["username", "password"],
        )
        .err()
        .unwrap();
        assert_eq!(
            body(e),
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
            body(e),
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
        );
    }
}
