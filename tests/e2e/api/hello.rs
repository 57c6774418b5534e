//! The protected resource `/hello/`: which `Authorization` headers count as credentials,
//! which access tokens are accepted, and the user each one must name.

use super::*;

/// A valid access token gets the greeting.
#[test]
fn hello_greets_a_valid_access_token() {
    for db in TestDb::each("hello_greets_a_valid_access_token") {
        let a = Api::start(db, &[], &[]);
        let (access, _) = a.login();
        expect(
            &a.hello(&format!("Bearer {access}")),
            200,
            json!({"message": "Hello, World!"}),
            None,
        );
    }
}

/// No `Authorization` header, another scheme, a lower-case `bearer` or an empty value:
/// credentials were not provided.
#[test]
fn hello_without_bearer_credentials_says_not_provided() {
    for db in TestDb::each("hello_without_bearer_credentials_says_not_provided") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        let (access, _) = a.login();
        let none = http(&addr, "GET", "/hello/", &[], b"");
        expect(
            &none,
            401,
            json!({"detail": "Authentication credentials were not provided."}),
            REALM,
        );
        for other in [
            "Basic abc",
            &format!("bearer {access}"),
            &format!("JWT {access}"),
            "",
        ] {
            expect(
                &a.hello(other),
                401,
                json!({"detail": "Authentication credentials were not provided."}),
                REALM,
            );
        }
    }
}

/// `Bearer` with no token, or with more than one value, is a bad header.
#[test]
fn hello_refuses_a_bearer_header_without_exactly_one_token() {
    for db in TestDb::each("hello_refuses_a_bearer_header_without_exactly_one_token") {
        let a = Api::start(db, &[], &[]);
        let (access, _) = a.login();
        let bad_header = json!({"detail": "Authorization header must contain two space-delimited values", "code": "bad_authorization_header"});
        expect(&a.hello("Bearer"), 401, bad_header.clone(), REALM);
        expect(
            &a.hello(&format!("Bearer {access} extra")),
            401,
            bad_header,
            REALM,
        );
    }
}

/// An invalid token, an expired one and a refresh token are refused with simplejwt's
/// per-token-class message.
#[test]
fn hello_refuses_invalid_expired_and_refresh_tokens() {
    for db in TestDb::each("hello_refuses_invalid_expired_and_refresh_tokens") {
        let a = Api::start(db, &[], &[]);
        let (_, refresh) = a.login();
        expect(
            &a.hello("Bearer abc"),
            401,
            invalid_for_hello("Token is invalid"),
            REALM,
        );
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"exp": now() - 5})))),
            401,
            invalid_for_hello("Token is expired"),
            REALM,
        );
        expect(
            &a.hello(&format!("Bearer {refresh}")),
            401,
            invalid_for_hello("Token has wrong type"),
            REALM,
        );
    }
}

/// A valid token with no user id, an unknown user or an inactive user is refused, each
/// with its own code.
#[test]
fn hello_refuses_tokens_without_an_active_user() {
    for db in TestDb::each("hello_refuses_tokens_without_an_active_user") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"user_id": null})))),
            401,
            token_not_valid("Token contained no recognizable user identification"),
            REALM,
        );
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"user_id": "999"})))),
            401,
            json!({"detail": "User not found", "code": "user_not_found"}),
            REALM,
        );
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"user_id": "2"})))),
            401,
            json!({"detail": "User is inactive", "code": "user_inactive"}),
            REALM,
        );
    }
}

/// A `user_id` written as a JSON integer names the user as well as the string does.
#[test]
fn hello_accepts_an_integer_user_id() {
    for db in TestDb::each("hello_accepts_an_integer_user_id") {
        let a = Api::start(db, &[], &[]);
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"user_id": 1})))),
            200,
            json!({"message": "Hello, World!"}),
            None,
        );
    }
}

/// Two `Authorization` headers are ambiguous credentials: refused as a bad header, even
/// when the first is valid (simplejwt behind Gunicorn sees them joined by a comma).
#[test]
fn two_authorization_headers_are_refused() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let (access, _) = a.login();
    let good = format!("Bearer {access}");
    let bad_header = json!({"detail": "Authorization header must contain two space-delimited values", "code": "bad_authorization_header"});
    for second in ["Bearer not-a-token", good.as_str()] {
        let r = http(
            &a.c.addr,
            "GET",
            "/hello/",
            &[("Authorization", &good), ("Authorization", second)],
            b"",
        );
        expect(&r, 401, bad_header.clone(), REALM);
    }
}
