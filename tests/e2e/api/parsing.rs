//! Requests as DRF reads them: field validation messages, body parsing (JSON, forms,
//! media types), allowed methods, `OPTIONS` metadata, `HEAD`, and Django's `APPEND_SLASH`.

use super::*;

/// Obtain validates `username` and `password` as DRF's `CharField` does: required, not
/// blank, not null, a string, no NUL character.
#[test]
fn obtain_validates_its_fields_like_drf() {
    for db in TestDb::each("obtain_validates_its_fields_like_drf") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.post("/api/token/", json!({})),
            400,
            json!({"username": ["This field is required."], "password": ["This field is required."]}),
            None,
        );
        expect(
            &a.post("/api/token/", json!({"username": "  ", "password": null})),
            400,
            json!({"username": ["This field may not be blank."], "password": ["This field may not be null."]}),
            None,
        );
        expect(
            &a.post("/api/token/", json!({"username": true, "password": ["x"]})),
            400,
            json!({"username": ["Not a valid string."], "password": ["Not a valid string."]}),
            None,
        );
        expect(
            &a.post(
                "/api/token/",
                json!({"username": "a\u{0}b", "password": "x"}),
            ),
            400,
            json!({"username": ["Null characters are not allowed."]}),
            None,
        );
    }
}

/// Refresh's `refresh` field is required and may not be blank.
#[test]
fn refresh_validates_its_field_like_drf() {
    for db in TestDb::each("refresh_validates_its_field_like_drf") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.post("/api/token/refresh/", json!({})),
            400,
            json!({"refresh": ["This field is required."]}),
            None,
        );
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": ""})),
            400,
            json!({"refresh": ["This field may not be blank."]}),
            None,
        );
    }
}

/// Verify's `token` field is required.
#[test]
fn verify_requires_its_token_field() {
    for db in TestDb::each("verify_requires_its_token_field") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.post("/api/token/verify/", json!({})),
            400,
            json!({"token": ["This field is required."]}),
            None,
        );
    }
}

/// Blacklist's `refresh` field is required.
#[test]
fn blacklist_requires_its_refresh_field() {
    for db in TestDb::each("blacklist_requires_its_refresh_field") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.post("/api/token/blacklist/", json!({})),
            400,
            json!({"refresh": ["This field is required."]}),
            None,
        );
    }
}

/// A JSON body that is not an object, or not JSON at all, gets DRF's message (the parse
/// error in Python's words).
#[test]
fn a_json_body_must_be_an_object() {
    for db in TestDb::each("a_json_body_must_be_an_object") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let list = http(
            &addr,
            "POST",
            "/api/token/",
            &[("Content-Type", "application/json")],
            b"[1,2]",
        );
        expect(
            &list,
            400,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
            None,
        );
        let bad = http(
            &addr,
            "POST",
            "/api/token/",
            &[("Content-Type", "application/json")],
            b"{bad",
        );
        expect(
            &bad,
            400,
            json!({"detail": "JSON parse error - Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"}),
            None,
        );
    }
}

/// A body of another media type is refused with 415.
#[test]
fn an_unsupported_media_type_is_415() {
    for db in TestDb::each("an_unsupported_media_type_is_415") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let plain = http(
            &addr,
            "POST",
            "/api/token/",
            &[("Content-Type", "text/plain")],
            b"hello",
        );
        expect(
            &plain,
            415,
            json!({"detail": "Unsupported media type \"text/plain\" in request."}),
            None,
        );
    }
}

/// A form-encoded login works, and the answer has simplejwt's key order (`refresh`
/// first).
#[test]
fn obtain_accepts_a_form_body_and_answers_in_simplejwt_key_order() {
    for db in TestDb::each("obtain_accepts_a_form_body_and_answers_in_simplejwt_key_order") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let form = http(
            &addr,
            "POST",
            "/api/token/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"username=alice&password=wonderland-42",
        );
        assert_eq!(form.status, 200, "{}", form.text());
        let body = form.text();
        assert!(
            body.starts_with("{\"refresh\":\"") && body.contains("\",\"access\":\""),
            "simplejwt's key order: {body}"
        );
    }
}

/// Whitespace around the password is trimmed, as DRF's `CharField` does.
#[test]
fn obtain_trims_whitespace_around_the_password() {
    for db in TestDb::each("obtain_trims_whitespace_around_the_password") {
        let a = Api::start(db, &[], &[]);
        assert_eq!(
            a.post(
                "/api/token/",
                json!({"username": "alice", "password": " wonderland-42 "})
            )
            .status,
            200
        );
    }
}

/// `GET` on a token endpoint is 405, with `Allow: POST, OPTIONS`.
#[test]
fn a_token_endpoint_allows_only_post_and_options() {
    for db in TestDb::each("a_token_endpoint_allows_only_post_and_options") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let get = http(&addr, "GET", "/api/token/", &[], b"");
        expect(
            &get,
            405,
            json!({"detail": "Method \"GET\" not allowed."}),
            None,
        );
        assert_eq!(get.header("allow"), Some("POST, OPTIONS"));
    }
}

/// `POST` on `/hello/` is 405, with `Allow: GET, HEAD, OPTIONS`.
#[test]
fn hello_allows_only_get_head_and_options() {
    for db in TestDb::each("hello_allows_only_get_head_and_options") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let (access, _) = a.login();
        let post = http(
            &addr,
            "POST",
            "/hello/",
            &[("Authorization", &format!("Bearer {access}"))],
            b"",
        );
        expect(
            &post,
            405,
            json!({"detail": "Method \"POST\" not allowed."}),
            None,
        );
        assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
}

/// A path without its trailing slash is redirected (301) to the one with it, query kept,
/// as Django's `APPEND_SLASH` does.
#[test]
fn a_missing_trailing_slash_redirects_like_append_slash() {
    for db in TestDb::each("a_missing_trailing_slash_redirects_like_append_slash") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let redirect = http(&addr, "GET", "/hello?x=1", &[], b"");
        assert_eq!(
            (redirect.status, redirect.header("location")),
            (301, Some("/hello/?x=1"))
        );
        assert_eq!(
            (redirect.header("content-type"), redirect.text().as_str()),
            (Some("text/html; charset=utf-8"), ""),
            "Django's empty HTML redirect"
        );
    }
}

/// `OPTIONS` answers DRF's metadata: the view's name, and the allowed methods.
#[test]
fn options_answers_the_view_metadata() {
    for db in TestDb::each("options_answers_the_view_metadata") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let options = http(&addr, "OPTIONS", "/api/token/", &[], b"");
        assert_eq!(options.status, 200);
        assert_eq!(options.json()["name"], "Token Obtain Pair");
        assert_eq!(options.header("allow"), Some("POST, OPTIONS"));
        assert_eq!(options.header("allow"), Some("POST, OPTIONS"));
    }
}

/// `HEAD` on `/hello/` with a valid token is 200.
#[test]
fn head_on_hello_is_200() {
    for db in TestDb::each("head_on_hello_is_200") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let (access, _) = a.login();
        let head = http(
            &addr,
            "HEAD",
            "/hello/",
            &[("Authorization", &format!("Bearer {access}"))],
            b"",
        );
        assert_eq!(head.status, 200);
    }
}

/// Bodies as DRF's parsers read them, checked against the peer's answers: a body without
/// `Content-Type` is 415, `null` is "No data provided", Python's words for NaN and for
/// invalid UTF-8, the request's charset honoured, an empty `Accept` is 406; and a body
/// nested a hundred thousand deep is a 400 that leaves the worker serving.
#[test]
fn bodies_are_read_as_drfs_parsers_read_them() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let addr = a.c.addr.clone();
    let login =
        |ct: &[(&str, &str)], body: &[u8]| http(&addr, "POST", "/api/token/", ct, body).text();
    let json = [("Content-Type", "application/json")];
    assert_eq!(
        login(&[], b"{}"),
        r#"{"detail":"Unsupported media type \"\" in request."}"#
    );
    assert_eq!(
        login(&json, b"null"),
        r#"{"non_field_errors":["No data provided"]}"#
    );
    assert_eq!(
        login(&json, br#"{"username": NaN}"#),
        r#"{"detail":"JSON parse error - Out of range float values are not JSON compliant: 'NaN'"}"#
    );
    assert_eq!(
        login(&json, b"{\"username\": \"\xff\"}"),
        r#"{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xff in position 14: invalid start byte"}"#
    );
    let latin = [("Content-Type", "application/json; charset=latin-1")];
    assert_eq!(
        login(&latin, b"{\"username\": \"al\xefce\", \"password\": \"x\"}"),
        r#"{"detail":"No active account found with the given credentials"}"#
    );
    let r = http(&addr, "GET", "/hello/", &[("Accept", "")], b"");
    assert_eq!(r.status, 406, "{}", r.text());
    let deep = "[".repeat(100_000);
    let r = http(&addr, "POST", "/api/token/", &json, deep.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(http(&addr, "GET", "/healthz", &[], b"").status, 200);
}
