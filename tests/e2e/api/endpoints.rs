//! The token endpoints (obtain, refresh, verify, blacklist) and the service endpoints
//! (health, readiness, JWKS, 404): their answers and simplejwt's error for each failure.

use super::*;

/// A refresh request for a minted token of type `refresh` (unless `over` sets another),
/// with `over` merged into its claims.
fn refresh_minted(a: &Api, over: Value) -> Response {
    let mut o = over;
    if o.get("token_type").is_none() {
        o["token_type"] = json!("refresh");
    }
    a.post("/api/token/refresh/", json!({"refresh": mint(o)}))
}

/// A wrong password, an unknown user and an inactive user all get simplejwt's one 401.
#[test]
fn obtain_refuses_wrong_unknown_and_inactive_users_alike() {
    for db in TestDb::each("obtain_refuses_wrong_unknown_and_inactive_users_alike") {
        let a = Api::start(db, &[], &[]);
        let no_account = json!({"detail": "No active account found with the given credentials"});
        expect(
            &a.post(
                "/api/token/",
                json!({"username": "alice", "password": "nope"}),
            ),
            401,
            no_account.clone(),
            REALM,
        );
        expect(
            &a.post(
                "/api/token/",
                json!({"username": "zed", "password": "nope"}),
            ),
            401,
            no_account.clone(),
            REALM,
        );
        expect(
            &a.post(
                "/api/token/",
                json!({"username": "bob", "password": "x-pass-bob"}),
            ),
            401,
            no_account,
            REALM,
        );
    }
}

/// A refresh token that does not parse, has expired, or lacks `exp`, `jti` or
/// `token_type` is refused with simplejwt's message for each.
#[test]
fn refresh_refuses_invalid_expired_and_incomplete_tokens() {
    for db in TestDb::each("refresh_refuses_invalid_expired_and_incomplete_tokens") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": "abc"})),
            401,
            token_not_valid("Token is invalid"),
            REALM,
        );
        expect(
            &refresh_minted(&a, json!({"exp": now() - 10})),
            401,
            token_not_valid("Token is expired"),
            REALM,
        );
        expect(
            &refresh_minted(&a, json!({"exp": null})),
            401,
            token_not_valid("Token has no 'exp' claim"),
            REALM,
        );
        expect(
            &refresh_minted(&a, json!({"jti": null})),
            401,
            token_not_valid("Token has no id"),
            REALM,
        );
        expect(
            &a.post(
                "/api/token/refresh/",
                json!({"refresh": mint(json!({"token_type": null}))}),
            ),
            401,
            token_not_valid("Token has no type"),
            REALM,
        );
    }
}

/// An access token presented for refresh has the wrong type.
#[test]
fn refresh_refuses_an_access_token() {
    for db in TestDb::each("refresh_refuses_an_access_token") {
        let a = Api::start(db, &[], &[]);
        let (access, _) = a.login();
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": access})),
            401,
            token_not_valid("Token has wrong type"),
            REALM,
        );
    }
}

/// A valid refresh token of an inactive user refreshes nothing.
#[test]
fn refresh_refuses_a_token_of_an_inactive_user() {
    for db in TestDb::each("refresh_refuses_a_token_of_an_inactive_user") {
        let a = Api::start(db, &[], &[]);
        expect(
            &refresh_minted(&a, json!({"user_id": "2"})),
            401,
            json!({"detail": "No active account found for the given token."}),
            REALM,
        );
    }
}

/// Without rotation a refresh answers only a new access token, and that token works.
#[test]
fn refresh_answers_only_a_working_access_token_by_default() {
    for db in TestDb::each("refresh_answers_only_a_working_access_token_by_default") {
        let a = Api::start(db, &[], &[]);
        let (_, refresh) = a.login();
        let fresh = a.post("/api/token/refresh/", json!({"refresh": refresh}));
        assert_eq!(fresh.status, 200, "{}", fresh.text());
        let v = fresh.json();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["access"],
            "no rotation by default"
        );
        expect(
            &a.hello(&format!("Bearer {}", v["access"].as_str().unwrap())),
            200,
            json!({"message": "Hello, World!"}),
            None,
        );
    }
}

/// Verify accepts a valid token of any type, even one simplejwt does not know.
#[test]
fn verify_accepts_a_valid_token_of_any_type() {
    for db in TestDb::each("verify_accepts_a_valid_token_of_any_type") {
        let a = Api::start(db, &[], &[]);
        let (_, refresh) = a.login();
        expect(
            &a.post("/api/token/verify/", json!({"token": refresh})),
            200,
            json!({}),
            None,
        );
        expect(
            &a.post(
                "/api/token/verify/",
                json!({"token": mint(json!({"token_type": "fake"}))}),
            ),
            200,
            json!({}),
            None,
        );
    }
}

/// Verify answers 401 for an invalid and for an expired token.
#[test]
fn verify_refuses_invalid_and_expired_tokens() {
    for db in TestDb::each("verify_refuses_invalid_and_expired_tokens") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.post("/api/token/verify/", json!({"token": "x.y.z"})),
            401,
            token_not_valid("Token is invalid"),
            REALM,
        );
        expect(
            &a.post(
                "/api/token/verify/",
                json!({"token": mint(json!({"exp": now() - 1}))}),
            ),
            401,
            token_not_valid("Token is expired"),
            REALM,
        );
    }
}

/// Only a refresh token can be blacklisted: an access token has the wrong type.
#[test]
fn blacklist_refuses_an_access_token() {
    for db in TestDb::each("blacklist_refuses_an_access_token") {
        let a = Api::start(db, &[], &[]);
        let (access, _) = a.login();
        expect(
            &a.post("/api/token/blacklist/", json!({"refresh": access})),
            401,
            token_not_valid("Token has wrong type"),
            REALM,
        );
    }
}

/// A blacklisted refresh token is refused everywhere it is checked: blacklist again,
/// refresh, and verify.
#[test]
fn a_blacklisted_refresh_token_is_refused_everywhere() {
    for db in TestDb::each("a_blacklisted_refresh_token_is_refused_everywhere") {
        let a = Api::start(db, &[], &[]);
        let (_, refresh) = a.login();
        expect(
            &a.post("/api/token/blacklist/", json!({"refresh": refresh})),
            200,
            json!({}),
            None,
        );
        expect(
            &a.post("/api/token/blacklist/", json!({"refresh": refresh})),
            401,
            token_not_valid("Token is blacklisted"),
            REALM,
        );
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": refresh})),
            401,
            token_not_valid("Token is blacklisted"),
            REALM,
        );
        expect(
            &a.post("/api/token/verify/", json!({"token": refresh})),
            400,
            json!({"non_field_errors": ["Token is blacklisted"]}),
            None,
        );
    }
}

/// `/healthz` and `/readyz` answer with their JSON status.
#[test]
fn health_and_readiness_answer() {
    for db in TestDb::each("health_and_readiness_answer") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        expect(
            &http(&addr, "GET", "/healthz", &[], b""),
            200,
            json!({"status": "ok"}),
            None,
        );
        expect(
            &http(&addr, "GET", "/readyz", &[], b""),
            200,
            json!({"status": "ready"}),
            None,
        );
    }
}

/// With an HMAC key there is no public key to publish: the JWKS is empty.
#[test]
fn jwks_is_empty_with_an_hmac_key() {
    for db in TestDb::each("jwks_is_empty_with_an_hmac_key") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        expect(
            &http(&addr, "GET", "/.well-known/jwks.json", &[], b""),
            200,
            json!({"keys": []}),
            None,
        );
    }
}

/// An unknown path gets Django's own 404 page, as the peer sends it (no view, so no DRF
/// JSON), whatever the Accept header.
#[test]
fn an_unknown_path_is_djangos_404_page() {
    for db in TestDb::each("an_unknown_path_is_djangos_404_page") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let r = http(
            &addr,
            "GET",
            "/nope",
            &[("Accept", "application/json; indent=2")],
            b"",
        );
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(
            r.text().contains(
                "<h1>Not Found</h1><p>The requested resource was not found on this server.</p>"
            ),
            "{}",
            r.text()
        );
    }
}

/// A client that sends a whole request and then shuts down its write side still gets its
/// answer, and the action is done: a login over a half-closed connection (`printf … |
/// socat`) answers its tokens, as from Gunicorn.
#[test]
fn a_half_closed_client_still_gets_its_answer() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let body = br#"{"username": "alice", "password": "wonderland-42"}"#;
    let mut conn = Conn::open(&a.c.addr);
    conn.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    conn.send_raw(
        &[
            format!("POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            body,
        ]
        .concat(),
    )
    .unwrap();
    conn.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let r = conn.read_response().expect("an answer after a half-close");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["refresh"].is_string());
    assert_eq!(
        a.db.scalar("SELECT COUNT(*) FROM corral_outstanding_token"),
        1
    );
}
