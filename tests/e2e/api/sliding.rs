//! simplejwt's sliding tokens (one token that authenticates and, until its `refresh_exp`,
//! refreshes itself), `auth.auth_token_classes`, and `JWTStatelessUserAuthentication`.

use super::*;

const BOTH: (&str, &str) = ("CORRAL_AUTH_AUTH_TOKEN_CLASSES", "AccessToken,SlidingToken");
const STATELESS: (&str, &str) = (
    "CORRAL_AUTH_AUTHENTICATION_CLASS",
    "JWTStatelessUserAuthentication",
);

impl Api {
    /// A sliding token for alice.
    fn sliding_login(&self) -> String {
        let r = self.post(
            "/api/token/sliding/",
            json!({"username": "alice", "password": "wonderland-42"}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v.as_object().unwrap().len(), 1, "only a token: {v}");
        v["token"].as_str().unwrap().to_string()
    }

    fn slide(&self, token: &str) -> Response {
        self.post("/api/token/sliding/refresh/", json!({ "token": token }))
    }
}

/// A token's payload, its keys in order.
fn payload(token: &str) -> serde_json::Map<String, Value> {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn keys(token: &str) -> Vec<String> {
    payload(token).keys().cloned().collect()
}

/// Why each class refused a token on `/hello/`, as simplejwt lists them.
fn refused_by(classes: &[(&str, &str, &str)]) -> Value {
    let messages: Vec<Value> = classes
        .iter()
        .map(|(class, ty, msg)| json!({"token_class": class, "token_type": ty, "message": msg}))
        .collect();
    json!({"detail": "Given token not valid for any token type", "code": "token_not_valid", "messages": messages})
}

/// The whole life of a sliding token: obtained (simplejwt's claims, in its order, with
/// its lifetimes), accepted on a protected view, refreshed to the same `jti` with a new
/// `exp`, blacklisted, and then refused everywhere.
#[test]
fn a_sliding_token_authenticates_refreshes_and_can_be_blacklisted() {
    for db in TestDb::each("a_sliding_token_authenticates_refreshes_and_can_be_blacklisted") {
        // Two workers: what one blacklists, the other (which remembered the token as
        // good) refuses at once.
        let a = Api::start(db, &["-w", "2"], &[BOTH]);
        let t1 = a.sliding_login();
        assert_eq!(
            keys(&t1),
            ["token_type", "exp", "iat", "jti", "refresh_exp", "user_id"]
        );
        let p1 = payload(&t1);
        let iat = p1["iat"].as_i64().unwrap();
        assert_eq!(p1["token_type"], "sliding");
        assert_eq!(p1["user_id"], "1");
        assert_eq!(p1["exp"].as_i64().unwrap() - iat, 300);
        assert_eq!(p1["refresh_exp"].as_i64().unwrap() - iat, 86_400);
        assert_eq!(a.hello(&format!("Bearer {t1}")).status, 200);

        // Refreshed: the same jti and refresh_exp; exp and iat from now.
        eventually(T, "a new second, so the refreshed token differs", || {
            (now() > iat).then_some(())
        });
        let r = a.slide(&t1);
        assert_eq!(r.status, 200, "{}", r.text());
        let t2 = r.json()["token"].as_str().unwrap().to_string();
        let p2 = payload(&t2);
        assert_eq!(keys(&t2), keys(&t1));
        assert_eq!(
            (&p2["jti"], &p2["refresh_exp"]),
            (&p1["jti"], &p1["refresh_exp"])
        );
        assert!(p2["iat"].as_i64().unwrap() > iat);
        assert_eq!(
            p2["exp"].as_i64().unwrap() - p2["iat"].as_i64().unwrap(),
            300
        );
        // Each on a new connection, so both workers answer (and remember) it.
        for _ in 0..8 {
            assert_eq!(a.hello(&format!("Bearer {t2}")).status, 200);
        }
        assert_eq!(
            a.post("/api/token/verify/", json!({"token": t2})).status,
            200
        );

        // Blacklisted: by jti, so every refreshed copy goes with it.
        expect(
            &a.post("/api/token/sliding/blacklist/", json!({"token": t2})),
            200,
            json!({}),
            None,
        );
        for _ in 0..8 {
            assert_eq!(a.hello(&format!("Bearer {t2}")).status, 401);
        }
        for t in [&t1, &t2] {
            expect(
                &a.hello(&format!("Bearer {t}")),
                401,
                refused_by(&[
                    ("AccessToken", "access", "Token has wrong type"),
                    ("SlidingToken", "sliding", "Token is blacklisted"),
                ]),
                REALM,
            );
            expect(
                &a.slide(t),
                401,
                token_not_valid("Token is blacklisted"),
                REALM,
            );
        }
        expect(
            &a.post("/api/token/verify/", json!({"token": t2})),
            400,
            json!({"non_field_errors": ["Token is blacklisted"]}),
            None,
        );
        expect(
            &a.post("/api/token/sliding/blacklist/", json!({"token": t2})),
            401,
            token_not_valid("Token is blacklisted"),
            REALM,
        );
    }
}

/// Sliding tokens prove nothing unless `auth.auth_token_classes` names them (simplejwt's
/// default is access tokens only), and each configured class says why it refused, in the
/// configured order.
#[test]
fn auth_token_classes_decide_what_authenticates() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let sliding = a.sliding_login();
    expect(
        &a.hello(&format!("Bearer {sliding}")),
        401,
        invalid_for_hello("Token has wrong type"),
        REALM,
    );
    drop(a);
    let a = Api::start(
        TestDb::sqlite(),
        &[],
        &[(
            "CORRAL_AUTH_AUTH_TOKEN_CLASSES",
            "rest_framework_simplejwt.tokens.SlidingToken",
        )],
    );
    let (access, refresh) = a.login();
    expect(
        &a.hello(&format!("Bearer {access}")),
        401,
        refused_by(&[("SlidingToken", "sliding", "Token has wrong type")]),
        REALM,
    );
    assert_eq!(
        a.hello(&format!("Bearer {}", a.sliding_login())).status,
        200
    );
    drop(a);
    let a = Api::start(
        TestDb::sqlite(),
        &[],
        &[("CORRAL_AUTH_AUTH_TOKEN_CLASSES", "SlidingToken,AccessToken")],
    );
    expect(
        &a.hello(&format!("Bearer {refresh}x")),
        401,
        refused_by(&[
            ("SlidingToken", "sliding", "Token is invalid"),
            ("AccessToken", "access", "Token is invalid"),
        ]),
        REALM,
    );
}

/// A sliding token can be refreshed only while both its `exp` and its `refresh_exp` are
/// ahead, with simplejwt's words for each; the lifetimes come from the settings.
#[test]
fn sliding_refresh_rules_and_lifetimes() {
    let a = Api::start(
        TestDb::sqlite(),
        &[],
        &[
            ("CORRAL_AUTH_SLIDING_TOKEN_LIFETIME_SECS", "120"),
            ("CORRAL_AUTH_SLIDING_TOKEN_REFRESH_LIFETIME_SECS", "600"),
        ],
    );
    let p = payload(&a.sliding_login());
    let iat = p["iat"].as_i64().unwrap();
    assert_eq!(p["exp"].as_i64().unwrap() - iat, 120);
    assert_eq!(p["refresh_exp"].as_i64().unwrap() - iat, 600);
    let t = now();
    let cases = [
        (
            json!({"token_type": "sliding", "refresh_exp": t - 1}),
            "Token 'refresh_exp' claim has expired",
        ),
        (
            json!({"token_type": "sliding"}),
            "Token has no 'refresh_exp' claim",
        ),
        (
            json!({"token_type": "sliding", "exp": t - 1, "refresh_exp": t + 600}),
            "Token is expired",
        ),
        (
            json!({"token_type": "access", "refresh_exp": t + 600}),
            "Token has wrong type",
        ),
        (
            json!({"token_type": "sliding", "refresh_exp": "soon"}),
            "Token is invalid",
        ),
    ];
    for (claims, message) in cases {
        expect(
            &a.slide(&mint(claims)),
            401,
            token_not_valid(message),
            REALM,
        );
    }
    // One minted elsewhere with the same key (another corral, or simplejwt) refreshes.
    let r = a.slide(&mint(
        json!({"token_type": "sliding", "refresh_exp": t + 600}),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    expect(
        &a.post("/api/token/sliding/refresh/", json!({})),
        400,
        json!({"token": ["This field is required."]}),
        None,
    );
    // Sliding tokens are not refresh tokens, and the other way round.
    let (_, refresh) = a.login();
    expect(
        &a.slide(&refresh),
        401,
        token_not_valid("Token has wrong type"),
        REALM,
    );
    expect(
        &a.post("/api/token/refresh/", json!({"refresh": a.sliding_login()})),
        401,
        token_not_valid("Token has wrong type"),
        REALM,
    );
}

/// simplejwt reads the blacklist before the type: a blacklisted refresh token sent to the
/// sliding refresh is "blacklisted", not "wrong type".
#[test]
fn a_blacklisted_token_is_reported_blacklisted_before_its_type() {
    let a = Api::start(TestDb::sqlite(), &[], &[BOTH]);
    let (_, refresh) = a.login();
    assert_eq!(
        a.post("/api/token/blacklist/", json!({"refresh": refresh}))
            .status,
        200
    );
    expect(
        &a.slide(&refresh),
        401,
        token_not_valid("Token is blacklisted"),
        REALM,
    );
    expect(
        &a.hello(&format!("Bearer {refresh}")),
        401,
        refused_by(&[
            ("AccessToken", "access", "Token has wrong type"),
            ("SlidingToken", "sliding", "Token is blacklisted"),
        ]),
        REALM,
    );
}

/// A blacklisted sliding token stays blacklisted while any copy of it can live: one
/// minted elsewhere (no row here), refreshed, then blacklisted through its older copy,
/// is still refused after that copy expired and `token flush-expired` ran.
#[test]
fn a_blacklisted_sliding_token_outlives_the_flush() {
    for db in TestDb::each("a_blacklisted_sliding_token_outlives_the_flush") {
        let a = Api::start(db, &[], &[BOTH]);
        let t = now();
        let old = mint(json!({"token_type": "sliding", "exp": t + 2, "refresh_exp": t + 600}));
        let r = a.slide(&old);
        assert_eq!(r.status, 200, "{}", r.text());
        let newer = r.json()["token"].as_str().unwrap().to_string();
        let r = a.post("/api/token/sliding/blacklist/", json!({ "token": old }));
        assert_eq!(r.status, 200, "{}", r.text());
        eventually(T, "the older copy to expire", || {
            (now() > t + 2).then_some(())
        });
        let out = a.cli(&["token", "flush-expired"], None);
        assert_eq!(out.code, Some(0), "{out:?}");
        expect(
            &a.slide(&newer),
            401,
            token_not_valid("Token is blacklisted"),
            REALM,
        );
        assert_eq!(a.hello(&format!("Bearer {newer}")).status, 401);
    }
}

/// Logging out everywhere ends sliding tokens too: the token (refreshed or not) is
/// refused on protected views and cannot be refreshed; a new login works. A deactivated
/// user's sliding token is not refreshed (simplejwt would refresh it).
#[test]
fn logout_all_and_deactivation_end_sliding_tokens() {
    for db in TestDb::each("logout_all_and_deactivation_end_sliding_tokens") {
        let a = Api::start(db, &[], &[BOTH]);
        let t = a.sliding_login();
        let r = a.slide(&t);
        assert_eq!(r.status, 200, "{}", r.text());
        let refreshed = r.json()["token"].as_str().unwrap().to_string();
        let r = http(
            &a.c.addr,
            "POST",
            "/api/token/logout-all/",
            &[("Authorization", &format!("Bearer {refreshed}"))],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        for t in [&t, &refreshed] {
            assert_eq!(a.hello(&format!("Bearer {t}")).status, 401);
            expect(
                &a.slide(t),
                401,
                token_not_valid("Token is blacklisted"),
                REALM,
            );
        }
        eventually(T, "the second after the logout", || {
            let fresh = a.sliding_login();
            (a.hello(&format!("Bearer {fresh}")).status == 200).then_some(())
        });

        let fresh = a.sliding_login();
        let out = a.cli(&["user", "deactivate", "alice"], None);
        assert_eq!(out.code, Some(0), "{out:?}");
        expect(
            &a.slide(&fresh),
            401,
            json!({"detail": "No active account found for the given token."}),
            REALM,
        );
    }
}

/// `JWTStatelessUserAuthentication`: the token alone is trusted (simplejwt's `TokenUser`):
/// no lookup, so a deleted or deactivated user's unexpired access token still works (the
/// trade-off the README states); a token without a user id is refused; the blacklist of
/// sliding tokens still holds; logging out everywhere still looks the user up.
#[test]
fn stateless_authentication_trusts_the_token_alone() {
    for db in TestDb::each("stateless_authentication_trusts_the_token_alone") {
        let a = Api::start(db, &[], &[STATELESS, BOTH]);
        let (access, _) = a.login();
        let out = a.cli(&["user", "deactivate", "alice"], None);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(a.hello(&format!("Bearer {access}")).status, 200);
        for user_id in [json!("2"), json!("999"), json!("not-a-number")] {
            let r = a.hello(&format!("Bearer {}", mint(json!({ "user_id": user_id }))));
            assert_eq!(r.status, 200, "{user_id}: {}", r.text());
        }
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"user_id": null})))),
            401,
            json!({"detail": "Token contained no recognizable user identification", "code": "token_not_valid"}),
            REALM,
        );
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"exp": now() - 1})))),
            401,
            refused_by(&[
                ("AccessToken", "access", "Token is expired"),
                ("SlidingToken", "sliding", "Token is expired"),
            ]),
            REALM,
        );
        let sliding = mint(json!({"token_type": "sliding", "refresh_exp": now() + 600}));
        assert_eq!(a.hello(&format!("Bearer {sliding}")).status, 200);
        assert_eq!(
            a.post("/api/token/sliding/blacklist/", json!({"token": sliding}))
                .status,
            200
        );
        assert_eq!(a.hello(&format!("Bearer {sliding}")).status, 401);
        // Logging out needs the user: an inactive one is refused.
        let r = http(
            &a.c.addr,
            "POST",
            "/api/token/logout-all/",
            &[("Authorization", &format!("Bearer {access}"))],
            b"",
        );
        expect(
            &r,
            401,
            json!({"detail": "User is inactive", "code": "user_inactive"}),
            REALM,
        );
    }
}

/// Bad values of the new keys are refused at boot with the key's name.
#[test]
fn bad_token_class_settings_are_refused() {
    let dir = TempDir::new("classes");
    for (key, value, words) in [
        (
            "CORRAL_AUTH_AUTH_TOKEN_CLASSES",
            "RefreshToken",
            "not a token class that authenticates",
        ),
        (
            "CORRAL_AUTH_AUTH_TOKEN_CLASSES",
            "AccessToken,AccessToken",
            "named twice",
        ),
        (
            "CORRAL_AUTH_AUTHENTICATION_CLASS",
            "SessionAuthentication",
            "is not one of",
        ),
    ] {
        let out = run(
            dir.path(),
            &["check"],
            &[(key, value), ("SECRET_KEY", SECRET)],
        );
        assert_eq!(out.code, Some(2), "{key}={value}: {out:?}");
        let auth_key = key
            .trim_start_matches("CORRAL_")
            .to_ascii_lowercase()
            .replacen('_', ".", 1);
        assert!(
            out.stderr.contains(&auth_key) && out.stderr.contains(words),
            "{key}={value}: {}",
            out.stderr
        );
    }
}
