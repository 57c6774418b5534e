//! Refresh-token rotation: each refresh token is single-use, a replayed one revokes its
//! whole family, and of two concurrent refreshes of one token exactly one wins.

use super::*;

/// With rotation the refresh answer carries a new refresh token, and the old one is spent
/// (and reported blacklisted).
#[test]
fn rotation_answers_a_new_refresh_token_and_spends_the_old_one() {
    for db in TestDb::each("rotation_answers_a_new_refresh_token_and_spends_the_old_one") {
        let a = Api::start(db, &[], &[("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true")]);
        let (_, r1) = a.login();
        let v = a.post("/api/token/refresh/", json!({"refresh": r1})).json();
        v["refresh"].as_str().expect("a rotated refresh token");
        assert!(v["access"].is_string());
        expect(
            &a.post("/api/token/verify/", json!({"token": r1})),
            400,
            json!({"non_field_errors": ["Token is blacklisted"]}),
            None,
        );
    }
}

/// Presenting a spent refresh token (stolen?) revokes its whole family, the latest token
/// included; a new login starts a new family.
#[test]
fn replaying_a_spent_refresh_token_revokes_its_family() {
    for db in TestDb::each("replaying_a_spent_refresh_token_revokes_its_family") {
        let a = Api::start(db, &[], &[("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true")]);
        let (_, r1) = a.login();
        let r2 = a.post("/api/token/refresh/", json!({"refresh": r1})).json()["refresh"]
            .as_str()
            .unwrap()
            .to_string();
        let r3 = a.post("/api/token/refresh/", json!({"refresh": r2})).json()["refresh"]
            .as_str()
            .unwrap()
            .to_string();
        // Replaying r1 revokes the family: r3, the latest, stops working too.
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": r1})),
            401,
            token_not_valid("Token is blacklisted"),
            REALM,
        );
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": r3})),
            401,
            token_not_valid("Token is blacklisted"),
            REALM,
        );
        a.c.expect_log("token family is revoked", T);
        // A new login starts a new family.
        let (_, fresh) = a.login();
        assert_eq!(
            a.post("/api/token/refresh/", json!({"refresh": fresh}))
                .status,
            200
        );
    }
}

/// Two concurrent refreshes of one token: exactly one wins.
#[test]
fn concurrent_refreshes_exactly_one_wins() {
    for db in TestDb::each("concurrent_refreshes_exactly_one_wins") {
        let a = Api::start(
            db,
            &["-w", "2"],
            &[("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true")],
        );
        for _ in 0..10 {
            let (_, refresh) = a.login();
            let statuses = race_refreshes([&a.c.addr, &a.c.addr], &refresh);
            assert_eq!(statuses, vec![200, 401]);
        }
    }
}

/// Session limits as identity providers have them: a login's family is refused
/// `auth.refresh_family_max_lifetime_secs` after the login however often it was
/// rotated, and a token unused for `auth.refresh_idle_timeout_secs` is refused.
#[test]
fn refresh_families_have_an_absolute_lifetime_and_an_idle_timeout() {
    let expired = |r: &Response| {
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["detail"], "Token is expired");
    };
    let api = Api::start(
        TestDb::sqlite(),
        &[],
        &[
            ("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true"),
            ("CORRAL_AUTH_REFRESH_FAMILY_MAX_LIFETIME_SECS", "2"),
        ],
    );
    let began = crate::support::now_secs();
    let (_, r1) = api.login();
    let r = api.post("/api/token/refresh/", json!({ "refresh": r1 }));
    assert_eq!(r.status, 200, "within the lifetime: {}", r.text());
    let r2 = r.json()["refresh"].as_str().unwrap().to_string();
    eventually(T, "the family's lifetime to pass", || {
        (crate::support::now_secs() >= began + 3).then_some(())
    });
    expired(&api.post("/api/token/refresh/", json!({ "refresh": r2 })));

    let idle = Api::start(
        TestDb::sqlite(),
        &[],
        &[
            ("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true"),
            ("CORRAL_AUTH_REFRESH_IDLE_TIMEOUT_SECS", "2"),
        ],
    );
    let (_, fresh) = idle.login();
    let r = idle.post("/api/token/refresh/", json!({ "refresh": fresh }));
    assert_eq!(r.status, 200, "used in time: {}", r.text());
    let next = r.json()["refresh"].as_str().unwrap().to_string();
    let issued = crate::support::now_secs();
    eventually(T, "the idle timeout to pass", || {
        (crate::support::now_secs() >= issued + 3).then_some(())
    });
    expired(&idle.post("/api/token/refresh/", json!({ "refresh": next })));
}

/// `auth.rotation_grace_secs`: two concurrent refreshes of one token (two tabs), on two
/// workers, get the same new pair, and a retry within the window (a lost response) gets
/// it again; after the window a replay is reuse, as without grace: the family is revoked.
#[test]
fn the_rotation_grace_window_returns_the_same_pair() {
    for db in TestDb::each("the_rotation_grace_window_returns_the_same_pair") {
        let api = Api::start(
            db,
            &["-w", "2"],
            &[
                ("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true"),
                ("CORRAL_AUTH_ROTATION_GRACE_SECS", "2"),
            ],
        );
        let other = api.another_host();
        let (_, r1) = api.login();
        let refresh = |addr: &str, token: &str| {
            let body = json!({ "refresh": token }).to_string();
            post_json(
                addr,
                "/api/token/refresh/",
                &serde_json::from_str(&body).unwrap(),
            )
        };
        // Two at once, one per host.
        let barrier = std::sync::Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let go = |addr: String| {
                let (barrier, r1) = (&barrier, &r1);
                move || {
                    barrier.wait();
                    refresh(&addr, r1)
                }
            };
            let x = s.spawn(go(api.c.addr.clone()));
            let y = s.spawn(go(other.addr.clone()));
            (x.join().unwrap(), y.join().unwrap())
        });
        assert_eq!(
            (a.status, b.status),
            (200, 200),
            "{} / {}",
            a.text(),
            b.text()
        );
        assert_eq!(a.json(), b.json(), "the same pair for both");
        let spent_at = crate::support::now_secs();
        let again = refresh(&api.c.addr, &r1);
        assert_eq!(again.status, 200);
        assert_eq!(
            again.json(),
            a.json(),
            "a retry within the window: the same pair again"
        );
        let r2 = a.json()["refresh"].as_str().unwrap().to_string();
        assert_eq!(
            refresh(&api.c.addr, &r2).status,
            200,
            "the successor works (once)"
        );

        eventually(T, "the grace window to end", || {
            (crate::support::now_secs() > spent_at + 2).then_some(())
        });
        let late = refresh(&api.c.addr, &r1);
        assert_eq!(
            late.status,
            401,
            "after the window it is reuse: {}",
            late.text()
        );
        assert_eq!(late.json()["detail"], "Token is blacklisted");
    }
}
