//! Tokens as simplejwt writes them (header, claim order, user id, jti, lifetimes), the
//! `last_login` update, and fixed vectors minted by PyJWT/simplejwt with a known key.

use super::*;

/// A token's payload and its header, as text.
fn decode(t: &str) -> (Value, String) {
    let mut p = t.split('.');
    let h = String::from_utf8(URL_SAFE_NO_PAD.decode(p.next().unwrap()).unwrap()).unwrap();
    (
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.next().unwrap()).unwrap()).unwrap(),
        h,
    )
}

/// Claims as simplejwt writes them: order, string user id, uuid4-hex jti, lifetimes.
#[test]
fn tokens_look_like_simplejwt_tokens() {
    let a = Api::start(
        TestDb::sqlite(),
        &[],
        &[("CORRAL_AUTH_ACCESS_TOKEN_LIFETIME_SECS", "120")],
    );
    let (access, refresh) = a.login();
    let (c, header) = decode(&access);
    assert_eq!(header, r#"{"alg":"HS256","typ":"JWT"}"#);
    assert_eq!(
        c.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["token_type", "exp", "iat", "jti", "user_id"]
    );
    assert_eq!(c["user_id"], "1");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
    let jti = c["jti"].as_str().unwrap();
    assert!(
        jti.len() == 32
            && jti
                .chars()
                .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
    );
    let (r, _) = decode(&refresh);
    assert_eq!(r["token_type"], "refresh");
    assert_eq!(
        r["exp"].as_i64().unwrap() - r["iat"].as_i64().unwrap(),
        86_400
    );
}

/// By default a login leaves the user's `last_login` alone.
#[test]
fn last_login_is_left_alone_by_default() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    a.login();
    let users: Value =
        serde_json::from_str(&a.cli(&["user", "list", "--json"], None).stdout).unwrap();
    assert!(users[0]["last_login"].is_null());
}

/// With `CORRAL_AUTH_UPDATE_LAST_LOGIN` a login sets the user's `last_login`.
#[test]
fn last_login_is_updated_when_asked() {
    let a = Api::start(
        TestDb::sqlite(),
        &[],
        &[("CORRAL_AUTH_UPDATE_LAST_LOGIN", "true")],
    );
    a.login();
    let users: Value =
        serde_json::from_str(&a.cli(&["user", "list", "--json"], None).stdout).unwrap();
    assert!(!users[0]["last_login"].is_null(), "{users}");
}

/// Tokens minted by PyJWT/simplejwt with a known key verify here (reference/jwt.md §3.6):
/// access tokens (string or integer user id) are accepted, an expired one and a sliding
/// one are refused on `/hello/` as simplejwt refuses them, a sliding token verifies, and
/// the refresh token refreshes.
#[test]
fn fixed_vectors_from_pyjwt() {
    const GOLDEN: &str = "simplejwt-golden-vector-secret-key-0123456789";
    const ACCESS: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwidXNlcl9pZCI6IjEifQ.DThNthX1Zi55SsJICe3BNX-5gXJPungdWD8ALf3wRrQ";
    const REFRESH: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJqdGkiOiJmZWRjYmE5ODc2NTQzMjEwZmVkY2JhOTg3NjU0MzIxMCIsInVzZXJfaWQiOiIxIn0.mj0nRdJimgBZ4VdmT7RrNZWG4qYSmu6MhS6MUgDE3aY";
    const ACCESS_INT_UID: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwidXNlcl9pZCI6MX0.vf-iapzv5KsYB98OeJ8Dzo8toQFz6WD9MRTXHE-z0PI";
    const ACCESS_EXPIRED: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjoxNzAwMDAwMzAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAxIiwidXNlcl9pZCI6IjEifQ.qZtiBmR339XZIJa2n6sFzSSxYIfhITAnRfoKurCQFqY";
    const SLIDING: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoic2xpZGluZyIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJqdGkiOiIwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMiIsInJlZnJlc2hfZXhwIjo0MTAyNTMxMjAwLCJ1c2VyX2lkIjoiMSJ9.aQ6loYmDNJsCfDPOmiWtKLhXvc7C6dJv7V_hJvxGN_4";
    let a = Api::start(TestDb::sqlite(), &[], &[("SECRET_KEY", GOLDEN)]);
    expect(
        &a.hello(&format!("Bearer {ACCESS}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
    expect(
        &a.hello(&format!("Bearer {ACCESS_INT_UID}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
    expect(
        &a.hello(&format!("Bearer {ACCESS_EXPIRED}")),
        401,
        invalid_for_hello("Token is expired"),
        REALM,
    );
    expect(
        &a.hello(&format!("Bearer {SLIDING}")),
        401,
        invalid_for_hello("Token has wrong type"),
        REALM,
    );
    expect(
        &a.post("/api/token/verify/", json!({"token": SLIDING})),
        200,
        json!({}),
        None,
    );
    let r = a.post("/api/token/refresh/", json!({"refresh": REFRESH}));
    assert_eq!(r.status, 200, "{}", r.text());
    expect(
        &a.hello(&format!("Bearer {}", r.json()["access"].as_str().unwrap())),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
}

/// `corral token flush-expired` deletes expired refresh tokens (their blacklist rows
/// with them), in batches, and keeps the live ones, which still refresh.
#[test]
fn flush_expired_removes_expired_tokens_and_keeps_live_ones() {
    for db in TestDb::each("flush_expired_removes_expired_tokens_and_keeps_live_ones") {
        let short = Api::start(db, &[], &[("CORRAL_AUTH_REFRESH_TOKEN_LIFETIME_SECS", "1")]);
        let mut last = String::new();
        for _ in 0..30 {
            last = short.login().1;
        }
        let rows = |table: &str| short.db.scalar(&format!("SELECT COUNT(*) FROM {table}"));
        let r = short.post("/api/token/blacklist/", json!({ "refresh": last }));
        assert_eq!(r.status, 200, "{}", r.text());
        let issued_by = crate::support::now_secs();
        // The long-lived ones: the same database, the default lifetime.
        let long = Corral::builder()
            .dir(short.dir.path())
            .args(["-b", "127.0.0.1:0", "-w", "1"])
            .env("DATABASE_URL", short.db.url())
            .env("SECRET_KEY", SECRET)
            .start();
        let live: Vec<String> = (0..5)
            .map(|_| {
                let r = post_json(
                    &long.addr,
                    "/api/token/",
                    &json!({"username": "alice", "password": "wonderland-42"}),
                );
                r.json()["refresh"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(rows("corral_outstanding_token"), 35);
        assert_eq!(rows("corral_blacklisted_token"), 1);
        // The short tokens expire a second after they were issued.
        eventually(T, "the short tokens to expire", || {
            (crate::support::now_secs() > issued_by + 1).then_some(())
        });
        let out = short.cli(&["token", "flush-expired", "--batch", "7"], None);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(
            out.stdout.contains("Removed 30 expired refresh tokens"),
            "{}",
            out.stdout
        );
        assert_eq!(rows("corral_outstanding_token"), 5);
        assert_eq!(rows("corral_blacklisted_token"), 0);
        let r = post_json(
            &long.addr,
            "/api/token/refresh/",
            &json!({ "refresh": live[0] }),
        );
        assert_eq!(r.status, 200, "a live token still refreshes: {}", r.text());
        let again = short.cli(&["token", "flush-expired"], None);
        assert!(
            again.stdout.contains("Removed 0 expired refresh tokens"),
            "{}",
            again.stdout
        );
    }
}

/// Log out everywhere, by the endpoint or by `corral user logout`: every refresh token
/// is refused, access tokens issued before are refused, one issued after is accepted;
/// the user is not deactivated. On PostgreSQL a second host sees it too (NOTIFY).
#[test]
fn logout_all_revokes_every_token_issued_before() {
    for db in TestDb::each("logout_all_revokes_every_token_issued_before") {
        let api = Api::start(db, &["-w", "2"], &[]);
        let other = api.another_host();
        let (access1, refresh1) = api.login();
        let (access2, refresh2) = api.login();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(api.hello(&bearer(&access1)).status, 200);
        let r = http(
            &api.c.addr,
            "POST",
            "/api/token/logout-all/",
            &[("Authorization", &bearer(&access1))],
            b"",
        );
        assert_eq!((r.status, r.text().as_str()), (200, "{}"), "{}", r.text());
        for (addr, label) in [(&api.c.addr, "this host"), (&other.addr, "another host")] {
            let hello = |t: &str| {
                http(
                    addr,
                    "GET",
                    "/hello/",
                    &[("Authorization", &bearer(t))],
                    b"",
                )
            };
            let r = eventually(T, "the access token refused", || {
                let r = hello(&access2);
                (r.status == 401).then_some(r)
            });
            assert_eq!(
                r.json()["messages"][0]["message"],
                "Token is blacklisted",
                "{label}: {}",
                r.text()
            );
            assert_eq!(hello(&access1).status, 401, "{label}");
            for refresh in [&refresh1, &refresh2] {
                let r = post_json(addr, "/api/token/refresh/", &json!({ "refresh": refresh }));
                assert_eq!(r.status, 401, "{label}: {}", r.text());
            }
        }
        // A token issued after the logout (the second after it) works.
        let after = crate::support::now_secs() + 1;
        eventually(T, "the next second", || {
            (crate::support::now_secs() > after).then_some(())
        });
        let (access3, refresh3) = api.login();
        assert_eq!(
            api.hello(&bearer(&access3)).status,
            200,
            "not deactivated: a new login works"
        );
        let out = api.cli(&["user", "logout", "alice"], None);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(
            out.stdout
                .contains("Logged \"alice\" out everywhere: 1 refresh token blacklisted"),
            "{}",
            out.stdout
        );
        let r = eventually(T, "the CLI's logout seen", || {
            let r = api.hello(&bearer(&access3));
            (r.status == 401).then_some(r)
        });
        assert_eq!(r.status, 401);
        assert_eq!(
            api.post("/api/token/refresh/", json!({ "refresh": refresh3 }))
                .status,
            401
        );
        let missing = api.cli(&["user", "logout", "nobody-here"], None);
        assert_eq!(missing.code, Some(1));
    }
}

/// The master runs the flush itself every `--maintenance-interval`, in a short-lived
/// child on its own configuration: expired tokens go without a cron.
#[test]
fn the_master_flushes_expired_tokens_periodically() {
    let api = Api::start(
        TestDb::sqlite(),
        &["--maintenance-interval", "1"],
        &[("CORRAL_AUTH_REFRESH_TOKEN_LIFETIME_SECS", "1")],
    );
    for _ in 0..3 {
        api.login();
    }
    assert_eq!(
        api.db
            .scalar("SELECT COUNT(*) FROM corral_outstanding_token"),
        3
    );
    eventually(T, "the expired tokens flushed by the master", || {
        (api.db
            .scalar("SELECT COUNT(*) FROM corral_outstanding_token")
            == 0)
            .then_some(())
    });
    api.c
        .expect_log("Maintenance (token flush-expired) done", T);
    assert_eq!(api.c.get("/healthz").status, 200);
}
