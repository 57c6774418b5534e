//! Known attacks on the token code: each forged, tampered, malformed or oversized token is
//! refused with simplejwt's 401 body, and the worker that saw it is unharmed.

use super::*;

const HS: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Access-token claims for alice, valid for five minutes, with `extra` appended inside the
/// object (raw JSON, so that duplicate keys can be written).
fn claims(extra: &str) -> String {
    let t = now();
    format!(
        r#"{{"token_type":"access","exp":{},"iat":{t},"jti":"{}","user_id":"1"{extra}}}"#,
        t + 300,
        uuid::Uuid::new_v4().simple()
    )
}

/// A server whose HTTP limits let a 10 MB token through to the token code, its worker,
/// and a good token, which it accepts.
fn target() -> (Api, Vec<u32>, String) {
    let a = Api::start(
        TestDb::sqlite(),
        &[
            "--limit-request-field-size",
            "0",
            "--limit-request-body",
            "20000000",
        ],
        &[],
    );
    let worker = a.c.wait_workers(1, &[], T);
    let good = sign_raw(HS, &claims(""), SECRET.as_bytes());
    expect(
        &a.hello(&format!("Bearer {good}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
    (a, worker, good)
}

/// Presents each `(name, token, message)` on `/hello/`: each one is a 401 with simplejwt's
/// body for that message.
#[track_caller]
fn refused(a: &Api, attacks: &[(&str, String, &str)]) {
    for (name, token, msg) in attacks {
        let r = a.hello(&format!("Bearer {token}"));
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(r.json(), invalid_for_hello(msg), "{name}");
        assert_eq!(r.header("www-authenticate"), REALM, "{name}");
    }
}

/// After the attacks the same worker is up, and it still accepts the good token.
#[track_caller]
fn unharmed(a: &Api, worker: &[u32], good: &str) {
    assert_eq!(a.c.worker_pids(), worker, "no attack took a worker down");
    expect(
        &a.hello(&format!("Bearer {good}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
}

/// `alg: none`, with and without the empty signature segment (RFC 7519 §6.1 shape), is
/// refused.
#[test]
fn alg_none_is_refused() {
    let (a, worker, good) = target();
    let none_h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(""));
    refused(
        &a,
        &[
            ("alg none", format!("{none_h}.{body}."), "Token is invalid"),
            (
                "alg none, no dot",
                format!("{none_h}.{body}"),
                "Token is invalid",
            ),
        ],
    );
    unharmed(&a, &worker, &good);
}

/// Another user id under the original signature, a changed header, the wrong key, and
/// another HMAC algorithm are all refused.
#[test]
fn tampered_and_wrongly_signed_tokens_are_refused() {
    let (a, worker, good) = target();
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims("").replace(r#""user_id":"1""#, r#""user_id":"2""#));
    let hdr2 = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","x":1}"#);
    refused(
        &a,
        &[
            (
                "tampered payload",
                format!("{}.{forged}.{}", parts[0], parts[2]),
                "Token is invalid",
            ),
            (
                "tampered header",
                format!("{hdr2}.{}.{}", parts[1], parts[2]),
                "Token is invalid",
            ),
            (
                "wrong key",
                sign_raw(HS, &claims(""), b"not-the-right-key-not-the-right-key"),
                "Token is invalid",
            ),
            (
                "algorithm downgrade inside HMAC",
                sign_raw(
                    r#"{"alg":"HS384","typ":"JWT"}"#,
                    &claims(""),
                    SECRET.as_bytes(),
                ),
                "Token is invalid",
            ),
        ],
    );
    unharmed(&a, &worker, &good);
}

/// `exp` in the past or equal to now, `nbf` or `iat` in the future, and an `exp` that is
/// not an integer are refused.
#[test]
fn time_claims_are_enforced() {
    let (a, worker, good) = target();
    let t = now();
    refused(
        &a,
        &[
            ("expired", mint(json!({"exp": t - 1})), "Token is expired"),
            (
                "exp equals now",
                mint(json!({"exp": t, "iat": t - 10})),
                "Token is expired",
            ),
            (
                "nbf in the future",
                mint(json!({"nbf": t + 3600})),
                "Token is invalid",
            ),
            (
                "iat in the future",
                mint(json!({"iat": t + 3600})),
                "Token is invalid",
            ),
            (
                "exp as a float",
                mint(json!({"exp": (t + 300) as f64 + 0.5})),
                "Token is invalid",
            ),
            (
                "exp as a string",
                mint(json!({"exp": (t + 300).to_string()})),
                "Token is invalid",
            ),
        ],
    );
    unharmed(&a, &worker, &good);
}

/// A refresh token is refused as an access token, and an access token as a refresh token.
#[test]
fn access_and_refresh_tokens_are_not_interchangeable() {
    let (a, worker, good) = target();
    refused(
        &a,
        &[(
            "refresh used as access",
            mint(json!({"token_type": "refresh"})),
            "Token has wrong type",
        )],
    );
    expect(
        &a.post("/api/token/refresh/", json!({"refresh": good})),
        401,
        token_not_valid("Token has wrong type"),
        REALM,
    );
    unharmed(&a, &worker, &good);
}

/// An `aud` claim when no audience is configured, and a `crit` header, are refused.
#[test]
fn an_unexpected_audience_or_crit_header_is_refused() {
    let (a, worker, good) = target();
    refused(
        &a,
        &[
            (
                "aud when none is configured",
                mint(json!({"aud": "someone-else"})),
                "Token is invalid",
            ),
            (
                "crit",
                sign_raw(
                    r#"{"alg":"HS256","crit":["exp"],"typ":"JWT"}"#,
                    &claims(""),
                    SECRET.as_bytes(),
                ),
                "Token is invalid",
            ),
        ],
    );
    unharmed(&a, &worker, &good);
}

/// A claim or a header parameter given twice is refused (no "last one wins").
#[test]
fn duplicate_keys_are_refused() {
    let (a, worker, good) = target();
    refused(
        &a,
        &[
            (
                "duplicate claims",
                sign_raw(HS, &claims(r#","user_id":"2""#), SECRET.as_bytes()),
                "Token is invalid",
            ),
            (
                "duplicate header key",
                sign_raw(
                    r#"{"alg":"HS256","alg":"HS256"}"#,
                    &claims(""),
                    SECRET.as_bytes(),
                ),
                "Token is invalid",
            ),
        ],
    );
    unharmed(&a, &worker, &good);
}

/// Only canonical unpadded base64url in exactly three segments is accepted: padding, the
/// standard alphabet, non-zero unused bits and a fourth segment are refused.
#[test]
fn non_canonical_encodings_are_refused() {
    let (a, worker, good) = target();
    let parts: Vec<&str> = good.split('.').collect();
    // Non-canonical: change the unused low bits of the signature's last character.
    let mut nc = good.clone();
    let last = nc.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    nc.push(alphabet.as_bytes()[idx ^ 1] as char);
    refused(
        &a,
        &[
            (
                "padded base64",
                format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
                "Token is invalid",
            ),
            (
                "standard base64 alphabet",
                good.replace('-', "+").replace('_', "/")
                    + if good.contains(['-', '_']) { "" } else { "+" },
                "Token is invalid",
            ),
            ("non-canonical base64", nc, "Token is invalid"),
            ("four segments", format!("{good}.x"), "Token is invalid"),
        ],
    );
    unharmed(&a, &worker, &good);
}

/// A signed payload that is not JSON, or is JSON but not an object, is refused.
#[test]
fn a_payload_that_is_not_a_json_object_is_refused() {
    let (a, worker, good) = target();
    refused(
        &a,
        &[
            (
                "not JSON",
                sign_raw(HS, "not json", SECRET.as_bytes()),
                "Token is invalid",
            ),
            (
                "a JSON array",
                sign_raw(HS, "[1,2]", SECRET.as_bytes()),
                "Token is invalid",
            ),
        ],
    );
    unharmed(&a, &worker, &good);
}

/// A 10 MB token, in the `Authorization` header or in a verify body, is refused.
#[test]
fn a_10_mb_token_is_refused() {
    let (a, worker, good) = target();
    let parts: Vec<&str> = good.split('.').collect();
    refused(
        &a,
        &[(
            "10 MB token",
            format!("{}.{}.{}", parts[0], "A".repeat(10 * 1024 * 1024), parts[2]),
            "Token is invalid",
        )],
    );
    let big = format!("{}.{}.{}", parts[0], "A".repeat(10 * 1024 * 1024), parts[2]);
    expect(
        &a.post("/api/token/verify/", json!({"token": big})),
        401,
        token_not_valid("Token is invalid"),
        REALM,
    );
    unharmed(&a, &worker, &good);
}

/// With the default HTTP limits such a request never reaches the token code: a 10 MB
/// body is refused from its declared length (the same goes for an oversized header,
/// with 431).
#[test]
fn default_limits_refuse_a_10_mb_body_from_its_declared_length() {
    let d = Api::start(TestDb::sqlite(), &[], &[]);
    let mut conn = Conn::open(&d.c.addr);
    conn.send_raw(b"POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485780\r\n\r\n").unwrap();
    assert_eq!(conn.read_response().unwrap().status, 413);
}
