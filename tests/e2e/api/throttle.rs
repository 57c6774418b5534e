//! Login throttling: per client address and per username, shared by a host's workers,
//! DRF's 429 body and `Retry-After`; the user's own address is never locked out.

use super::*;

fn login_from(c: &Corral, ip: &str, user: &str, pw: &str) -> Response {
    let body = json!({ "username": user, "password": pw }).to_string();
    http(
        &c.addr,
        "POST",
        "/api/token/",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", ip),
        ],
        body.as_bytes(),
    )
}

/// Per address: the 6th failure within the window is refused with DRF's 429 and
/// Retry-After, on every worker (2 here), and no password is checked; other addresses
/// are not affected. Per username: failures from many addresses slow down a guess at
/// alice, but her own address (where she logged in before) still gets in.
#[test]
fn failed_logins_are_throttled_per_address_and_per_user() {
    for db in TestDb::each("failed_logins_are_throttled_per_address_and_per_user") {
        let api = Api::start(
            db,
            &["-w", "2"],
            &[
                ("CORRAL_AUTH_LOGIN_THROTTLE_PER_IP", "5/min"),
                ("CORRAL_AUTH_LOGIN_THROTTLE_PER_USER", "8/hour"),
            ],
        );
        let c = &api.c;
        // alice's own address, known from a success.
        assert_eq!(
            login_from(c, "198.51.100.1", "alice", "wonderland-42").status,
            200
        );

        for i in 0..5 {
            let r = login_from(c, "203.0.113.9", &format!("nobody{i}"), "wrong");
            assert_eq!(r.status, 401, "failure {i}: {}", r.text());
        }
        let r = login_from(c, "203.0.113.9", "bob", "x-pass-bob");
        assert_eq!(r.status, 429, "{}", r.text());
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(
            r.text(),
            format!(
                "{{\"detail\":\"Request was throttled. Expected available in {wait} second{}.\"}}",
                if wait == 1 { "" } else { "s" }
            )
        );
        assert_eq!(
            login_from(c, "203.0.113.10", "nobody", "wrong").status,
            401,
            "another address is not throttled"
        );

        // A distributed guess at alice: 8 failures from 8 addresses, then the 9th is refused...
        for i in 0..8 {
            assert_eq!(
                login_from(c, &format!("192.0.2.{i}"), "alice", "guess").status,
                401
            );
        }
        assert_eq!(
            login_from(c, "192.0.2.100", "alice", "wonderland-42").status,
            429
        );
        // ...but not from where alice logged in before.
        assert_eq!(
            login_from(c, "198.51.100.1", "alice", "wonderland-42").status,
            200
        );
    }
}

/// 200 wrong passwords in a row from one address (the attack that went through in 5.9 s
/// before): with the defaults only 10 are even checked (10/min for a username from an
/// address it never logged in from, before the address's own 20/min), and the right
/// password right after is refused too, until the window ends.
#[test]
fn a_brute_force_is_stopped_by_the_defaults() {
    let api = Api::start(TestDb::sqlite(), &[], &[]);
    let c = &api.c;
    let mut checked = 0;
    for i in 0..200 {
        let r = login_from(c, "203.0.113.50", "alice", &format!("guess-{i}"));
        match r.status {
            401 => checked += 1,
            429 => {}
            s => panic!("{s}: {}", r.text()),
        }
    }
    assert_eq!(checked, 10);
    assert_eq!(
        login_from(c, "203.0.113.50", "alice", "wonderland-42").status,
        429
    );
}
