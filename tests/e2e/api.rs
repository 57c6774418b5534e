//! The JWT app on the real binary: every endpoint and error case of simplejwt 5.5.1, on
//! SQLite and on PostgreSQL; simplejwt's own acceptance behaviours; fixed vectors; the
//! attack suite; rotation and reuse detection; database outages.

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
pub const SECRET: &str = "corral-test-secret-key-0123456789abcdef-0123456789";
const REALM: Option<&str> = Some("Bearer realm=\"api\"");

/// A running app with users `alice` (id 1, password `wonderland-42`) and `bob` (id 2,
/// inactive, password `x-pass`).
pub struct Api {
    pub c: Corral,
    pub db: TestDb,
    pub dir: TempDir,
}

impl Api {
    pub fn start(db: TestDb, args: &[&str], env: &[(&str, &str)]) -> Api {
        let dir = TempDir::new("api");
        let mut all_env = vec![("DATABASE_URL", db.url()), ("SECRET_KEY", SECRET)];
        all_env.extend_from_slice(env);
        let out = run(dir.path(), &["migrate", "apply"], &all_env);
        assert_eq!(out.code, Some(0), "{out:?}");
        for (name, pw, extra) in [
            ("alice", "wonderland-42", None),
            ("bob", "x-pass", Some("--inactive")),
        ] {
            let mut a = vec!["user", "create", name, "--password-stdin"];
            a.extend(extra);
            let out = run_stdin(dir.path(), &a, &all_env, Some(pw));
            assert_eq!(out.code, Some(0), "{out:?}");
        }
        let mut b = Corral::builder()
            .dir(dir.path())
            .args(["-b", "127.0.0.1:0", "-w", "1"])
            .args(args.iter().copied());
        for (k, v) in all_env {
            b = b.env(k, v);
        }
        Api {
            c: b.start(),
            db,
            dir,
        }
    }

    pub fn post(&self, path: &str, body: Value) -> Response {
        post_json(&self.c.addr, path, &body)
    }

    pub fn hello(&self, authorization: &str) -> Response {
        http(
            &self.c.addr,
            "GET",
            "/hello/",
            &[("Authorization", authorization)],
            b"",
        )
    }

    pub fn login(&self) -> (String, String) {
        let r = self.post(
            "/api/token/",
            json!({"username": "alice", "password": "wonderland-42"}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        (
            v["access"].as_str().unwrap().to_string(),
            v["refresh"].as_str().unwrap().to_string(),
        )
    }

    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_stdin(
            self.dir.path(),
            args,
            &[("DATABASE_URL", self.db.url()), ("SECRET_KEY", SECRET)],
            stdin,
        )
    }
}

/// Asserts status, exact JSON body, and `WWW-Authenticate`.
#[track_caller]
fn expect(r: &Response, status: u16, body: Value, www: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json(), body);
    assert_eq!(r.header("www-authenticate"), www, "WWW-Authenticate");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token with exactly this header and payload JSON, signed with `key` (HS256 by default).
pub fn sign_raw(header: &str, payload: &str, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(key),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{sig}")
}

/// A simplejwt-shaped token with `over` merged in (a `null` removes the claim).
pub fn mint(over: Value) -> String {
    let t = now();
    let mut claims = json!({"token_type": "access", "exp": t + 300, "iat": t, "jti": uuid::Uuid::new_v4().simple().to_string(), "user_id": "1"});
    for (k, v) in over.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    sign_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims.to_string(),
        SECRET.as_bytes(),
    )
}

fn invalid_for_hello(msg: &str) -> Value {
    json!({"detail": "Given token not valid for any token type", "code": "token_not_valid",
        "messages": [{"token_class": "AccessToken", "token_type": "access", "message": msg}]})
}

fn token_not_valid(msg: &str) -> Value {
    json!({"detail": msg, "code": "token_not_valid"})
}

/// Every endpoint, and every error simplejwt defines, with its exact answer.
#[test]
fn endpoints_and_errors_match_simplejwt() {
    for db in TestDb::each("endpoints_and_errors_match_simplejwt") {
        let a = Api::start(db, &[], &[]);
        let addr = a.c.addr.clone();
        // Obtain.
        let no_account = json!({"detail": "No active account found with the given credentials"});
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
                json!({"username": "bob", "password": "x-pass"}),
            ),
            401,
            no_account,
            REALM,
        );
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
        let get = http(&addr, "GET", "/api/token/", &[], b"");
        expect(
            &get,
            405,
            json!({"detail": "Method \"GET\" not allowed."}),
            None,
        );
        assert_eq!(get.header("allow"), Some("POST, OPTIONS"));
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
        // Whitespace around the password is trimmed, as DRF's CharField does.
        assert_eq!(
            a.post(
                "/api/token/",
                json!({"username": "alice", "password": " wonderland-42 "})
            )
            .status,
            200
        );

        let (access, refresh) = a.login();
        // Protected resource.
        expect(
            &a.hello(&format!("Bearer {access}")),
            200,
            json!({"message": "Hello, World!"}),
            None,
        );
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
        let bad_header = json!({"detail": "Authorization header must contain two space-delimited values", "code": "bad_authorization_header"});
        expect(&a.hello("Bearer"), 401, bad_header.clone(), REALM);
        expect(
            &a.hello(&format!("Bearer {access} extra")),
            401,
            bad_header,
            REALM,
        );
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
        expect(
            &a.hello(&format!("Bearer {}", mint(json!({"user_id": 1})))),
            200,
            json!({"message": "Hello, World!"}),
            None,
        );
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

        // Refresh.
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
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": "abc"})),
            401,
            token_not_valid("Token is invalid"),
            REALM,
        );
        expect(
            &a.post("/api/token/refresh/", json!({"refresh": access})),
            401,
            token_not_valid("Token has wrong type"),
            REALM,
        );
        let r = |over: Value| {
            let mut o = over;
            if o.get("token_type").is_none() {
                o["token_type"] = json!("refresh");
            }
            a.post("/api/token/refresh/", json!({"refresh": mint(o)}))
        };
        expect(
            &r(json!({"exp": now() - 10})),
            401,
            token_not_valid("Token is expired"),
            REALM,
        );
        expect(
            &r(json!({"exp": null})),
            401,
            token_not_valid("Token has no 'exp' claim"),
            REALM,
        );
        expect(
            &r(json!({"jti": null})),
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
        expect(
            &r(json!({"user_id": "2"})),
            401,
            json!({"detail": "No active account found for the given token."}),
            REALM,
        );
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

        // Verify: any token type; invalid and expired are 401.
        expect(
            &a.post("/api/token/verify/", json!({})),
            400,
            json!({"token": ["This field is required."]}),
            None,
        );
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

        // Blacklist, then the token is refused everywhere it is checked.
        expect(
            &a.post("/api/token/blacklist/", json!({})),
            400,
            json!({"refresh": ["This field is required."]}),
            None,
        );
        expect(
            &a.post("/api/token/blacklist/", json!({"refresh": access})),
            401,
            token_not_valid("Token has wrong type"),
            REALM,
        );
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

        // Django's APPEND_SLASH, OPTIONS metadata, HEAD, health, JWKS (empty for HMAC).
        let redirect = http(&addr, "GET", "/hello?x=1", &[], b"");
        assert_eq!(
            (redirect.status, redirect.header("location")),
            (301, Some("/hello/?x=1"))
        );
        let options = http(&addr, "OPTIONS", "/api/token/", &[], b"");
        assert_eq!(options.status, 200);
        assert_eq!(options.json()["name"], "Token Obtain Pair");
        assert_eq!(options.header("allow"), Some("POST, OPTIONS"));
        assert_eq!(options.header("allow"), Some("POST, OPTIONS"));
        let head = http(
            &addr,
            "HEAD",
            "/hello/",
            &[("Authorization", &format!("Bearer {access}"))],
            b"",
        );
        assert_eq!(head.status, 200);
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
        expect(
            &http(&addr, "GET", "/.well-known/jwks.json", &[], b""),
            200,
            json!({"keys": []}),
            None,
        );
        expect(
            &http(&addr, "GET", "/nope", &[], b""),
            404,
            json!({"detail": "Not found."}),
            None,
        );
    }
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
    let decode = |t: &str| -> (Value, String) {
        let mut p = t.split('.');
        let h = String::from_utf8(URL_SAFE_NO_PAD.decode(p.next().unwrap()).unwrap()).unwrap();
        (
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.next().unwrap()).unwrap()).unwrap(),
            h,
        )
    };
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
    // last_login is left alone by default.
    let users: Value =
        serde_json::from_str(&a.cli(&["user", "list", "--json"], None).stdout).unwrap();
    assert!(users[0]["last_login"].is_null());

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

/// With rotation: the refresh answer carries a new refresh token, the old one is spent
/// (and reported blacklisted), and presenting a spent one revokes its whole family.
#[test]
fn rotation_is_single_use_with_reuse_detection() {
    for db in TestDb::each("rotation_is_single_use_with_reuse_detection") {
        let a = Api::start(db, &[], &[("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true")]);
        let (_, r1) = a.login();
        let v = a.post("/api/token/refresh/", json!({"refresh": r1})).json();
        let r2 = v["refresh"]
            .as_str()
            .expect("a rotated refresh token")
            .to_string();
        assert!(v["access"].is_string());
        expect(
            &a.post("/api/token/verify/", json!({"token": r1})),
            400,
            json!({"non_field_errors": ["Token is blacklisted"]}),
            None,
        );
        let r3 = a.post("/api/token/refresh/", json!({"refresh": r2})).json()["refresh"]
            .as_str()
            .unwrap()
            .to_string();
        // Replaying r1 (stolen?) revokes the family: r3, the latest, stops working too.
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
        assert!(a.c.log().contains("token family is revoked"));
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
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (addr, refresh, barrier) =
                        (a.c.addr.clone(), refresh.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut conn = Conn::open(&addr);
                        barrier.wait();
                        let body = json!({"refresh": refresh}).to_string();
                        conn.request(
                            "POST",
                            "/api/token/refresh/",
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        )
                        .unwrap()
                        .status
                    })
                })
                .collect();
            let mut statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            statuses.sort();
            assert_eq!(statuses, vec![200, 401]);
        }
    }
}

/// Tokens minted by PyJWT/simplejwt with a known key verify here (reference/jwt.md §3.6),
/// and Django's PBKDF2 hashes log in (then are upgraded to argon2id).
#[test]
fn fixed_vectors_from_pyjwt_and_django() {
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

    // Django users, with PBKDF2 hashes from Django's own test suite ('lètmein').
    let dump = json!([
        {"model": "auth.user", "pk": 41, "fields": {"password": "pbkdf2_sha256$260000$seasalt$YlZ2Vggtqdc61YjArZuoApoBh9JNGYoDRBUGu6tcJQo=", "last_login": null, "is_superuser": false, "username": "django_u", "first_name": "", "last_name": "", "email": "", "is_staff": false, "is_active": true, "date_joined": "2024-01-01T00:00:00Z", "groups": [], "user_permissions": []}},
        {"model": "auth.user", "pk": 42, "fields": {"password": "pbkdf2_sha256$1000000$seasalt$r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps=", "last_login": "2025-05-05T10:00:00Z", "is_superuser": true, "username": "django_v", "first_name": "V", "last_name": "", "email": "v@example.com", "is_staff": true, "is_active": true, "date_joined": "2024-01-02T00:00:00Z", "groups": [], "user_permissions": []}}
    ]);
    let out = a.cli(&["user", "import-django", "-"], Some(&dump.to_string()));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Imported 2 users"));
    for name in ["django_u", "django_v"] {
        let r = a.post(
            "/api/token/",
            json!({"username": name, "password": "lètmein"}),
        );
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(
            a.post(
                "/api/token/",
                json!({"username": name, "password": "letmein"})
            )
            .status,
            401
        );
    }
    let users: Value =
        serde_json::from_str(&a.cli(&["user", "list", "--json"], None).stdout).unwrap();
    let u = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "django_v")
        .unwrap();
    assert_eq!(u["id"], 42, "ids are kept");
    assert_eq!(u["hasher"], "argon2", "re-hashed to argon2id on login");
}

/// Known attacks: each one 401 with simplejwt's body, and the worker unharmed.
#[test]
fn attack_suite() {
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
    let t = now();
    let claims = |extra: &str| {
        format!(
            r#"{{"token_type":"access","exp":{},"iat":{t},"jti":"{}","user_id":"1"{extra}}}"#,
            t + 300,
            uuid::Uuid::new_v4().simple()
        )
    };
    let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
    let good = sign_raw(hs, &claims(""), SECRET.as_bytes());
    expect(
        &a.hello(&format!("Bearer {good}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
    let mut attacks: Vec<(&str, String, &str)> = vec![];
    // alg none, with and without a signature segment (RFC 7519 §6.1 shape).
    let none_h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(""));
    attacks.push(("alg none", format!("{none_h}.{body}."), "Token is invalid"));
    attacks.push((
        "alg none, no dot",
        format!("{none_h}.{body}"),
        "Token is invalid",
    ));
    // Tampering: another user id under the original signature; a changed header.
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims("").replace(r#""user_id":"1""#, r#""user_id":"2""#));
    attacks.push((
        "tampered payload",
        format!("{}.{forged}.{}", parts[0], parts[2]),
        "Token is invalid",
    ));
    let hdr2 = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","x":1}"#);
    attacks.push((
        "tampered header",
        format!("{hdr2}.{}.{}", parts[1], parts[2]),
        "Token is invalid",
    ));
    attacks.push((
        "wrong key",
        sign_raw(hs, &claims(""), b"not-the-right-key-not-the-right-key"),
        "Token is invalid",
    ));
    attacks.push((
        "algorithm downgrade inside HMAC",
        sign_raw(
            r#"{"alg":"HS384","typ":"JWT"}"#,
            &claims(""),
            SECRET.as_bytes(),
        ),
        "Token is invalid",
    ));
    attacks.push(("expired", mint(json!({"exp": t - 1})), "Token is expired"));
    attacks.push((
        "exp equals now",
        mint(json!({"exp": t, "iat": t - 10})),
        "Token is expired",
    ));
    attacks.push((
        "nbf in the future",
        mint(json!({"nbf": t + 3600})),
        "Token is invalid",
    ));
    attacks.push((
        "iat in the future",
        mint(json!({"iat": t + 3600})),
        "Token is invalid",
    ));
    attacks.push((
        "refresh used as access",
        mint(json!({"token_type": "refresh"})),
        "Token has wrong type",
    ));
    attacks.push((
        "exp as a float",
        mint(json!({"exp": (t + 300) as f64 + 0.5})),
        "Token is invalid",
    ));
    attacks.push((
        "exp as a string",
        mint(json!({"exp": (t + 300).to_string()})),
        "Token is invalid",
    ));
    attacks.push((
        "aud when none is configured",
        mint(json!({"aud": "someone-else"})),
        "Token is invalid",
    ));
    attacks.push((
        "duplicate claims",
        sign_raw(hs, &claims(r#","user_id":"2""#), SECRET.as_bytes()),
        "Token is invalid",
    ));
    attacks.push((
        "duplicate header key",
        sign_raw(
            r#"{"alg":"HS256","alg":"HS256"}"#,
            &claims(""),
            SECRET.as_bytes(),
        ),
        "Token is invalid",
    ));
    attacks.push((
        "crit",
        sign_raw(
            r#"{"alg":"HS256","crit":["exp"],"typ":"JWT"}"#,
            &claims(""),
            SECRET.as_bytes(),
        ),
        "Token is invalid",
    ));
    attacks.push((
        "padded base64",
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        "Token is invalid",
    ));
    attacks.push((
        "standard base64 alphabet",
        good.replace('-', "+").replace('_', "/") + if good.contains(['-', '_']) { "" } else { "+" },
        "Token is invalid",
    ));
    // Non-canonical: change the unused low bits of the signature's last character.
    let mut nc = good.clone();
    let last = nc.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    nc.push(alphabet.as_bytes()[idx ^ 1] as char);
    attacks.push(("non-canonical base64", nc, "Token is invalid"));
    attacks.push(("four segments", format!("{good}.x"), "Token is invalid"));
    attacks.push((
        "not JSON",
        sign_raw(hs, "not json", SECRET.as_bytes()),
        "Token is invalid",
    ));
    attacks.push((
        "a JSON array",
        sign_raw(hs, "[1,2]", SECRET.as_bytes()),
        "Token is invalid",
    ));
    attacks.push((
        "10 MB token",
        format!("{}.{}.{}", parts[0], "A".repeat(10 * 1024 * 1024), parts[2]),
        "Token is invalid",
    ));
    for (name, token, msg) in &attacks {
        let r = a.hello(&format!("Bearer {token}"));
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(r.json(), invalid_for_hello(msg), "{name}");
        assert_eq!(r.header("www-authenticate"), REALM, "{name}");
    }
    // Access used as refresh, and the 10 MB token in a body, on the token endpoints.
    expect(
        &a.post("/api/token/refresh/", json!({"refresh": good})),
        401,
        token_not_valid("Token has wrong type"),
        REALM,
    );
    let big = format!("{}.{}.{}", parts[0], "A".repeat(10 * 1024 * 1024), parts[2]);
    expect(
        &a.post("/api/token/verify/", json!({"token": big})),
        401,
        token_not_valid("Token is invalid"),
        REALM,
    );
    assert_eq!(a.c.worker_pids(), worker, "no attack took a worker down");
    expect(
        &a.hello(&format!("Bearer {good}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );

    // With the default HTTP limits such a request never reaches the token code: a 10 MB
    // body is refused from its declared length (the same goes for an oversized header,
    // with 431).
    let d = Api::start(TestDb::sqlite(), &[], &[]);
    let mut conn = Conn::open(&d.c.addr);
    conn.send_raw(b"POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485780\r\n\r\n").unwrap();
    assert_eq!(conn.read_response().unwrap().status, 413);
}

fn asym(alg: &str, key: &str, extra: &[&str]) -> Api {
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut env = vec![
        ("CORRAL_AUTH_ALGORITHM".to_string(), alg.to_string()),
        (
            "CORRAL_AUTH_SIGNING_KEY_FILE".into(),
            format!("{fixtures}/{key}"),
        ),
    ];
    if !extra.is_empty() {
        env.push((
            "CORRAL_AUTH_VERIFYING_KEY_FILES".into(),
            extra
                .iter()
                .map(|f| format!("{fixtures}/{f}"))
                .collect::<Vec<_>>()
                .join(","),
        ));
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Api::start(TestDb::sqlite(), &[], &env_ref)
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// RS256, ES256 and EdDSA with PEM keys; the JWKS publishes the public keys with their
/// kid; a rotated-out key still verifies by kid; an unknown kid and HS/RS confusion fail.
#[test]
fn asymmetric_keys_jwks_and_rotation() {
    for (alg, key) in [
        ("RS256", "rsa_a.pem"),
        ("ES256", "ec_p256.pem"),
        ("EdDSA", "ed25519.pem"),
    ] {
        let a = asym(alg, key, &[]);
        let (access, _) = a.login();
        let h = header_of(&access);
        assert_eq!(h["alg"], alg);
        let jwks = http(&a.c.addr, "GET", "/.well-known/jwks.json", &[], b"").json();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], h["kid"], "{jwks}");
        assert!(k.get("d").is_none(), "no private parts in the JWKS");
        // The published key verifies the token, as a third party would do it.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.clone()).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::from_str(alg).unwrap());
        v.validate_aud = false;
        assert!(
            jsonwebtoken::decode::<Value>(&access, &dk, &v).is_ok(),
            "{alg}"
        );
        expect(
            &a.hello(&format!("Bearer {access}")),
            200,
            json!({"message": "Hello, World!"}),
            None,
        );
    }
    // Rotation: tokens signed with key A keep working after the switch to key B.
    let old = asym("RS256", "rsa_a.pem", &[]);
    let (old_access, _) = old.login();
    drop(old);
    let a = asym("RS256", "rsa_b.pem", &["rsa_a.pub.pem"]);
    let jwks = http(&a.c.addr, "GET", "/.well-known/jwks.json", &[], b"").json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    expect(
        &a.hello(&format!("Bearer {old_access}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
    let (new_access, _) = a.login();
    assert_ne!(header_of(&new_access)["kid"], header_of(&old_access)["kid"]);
    // An unknown kid, and HS256 "signed" with the public key (key confusion), fail.
    let mut h = header_of(&new_access);
    h["kid"] = json!("not-a-key-we-know");
    let rest: Vec<&str> = new_access.splitn(2, '.').collect();
    let unknown = format!("{}.{}", URL_SAFE_NO_PAD.encode(h.to_string()), rest[1]);
    expect(
        &a.hello(&format!("Bearer {unknown}")),
        401,
        invalid_for_hello("Token is invalid"),
        REALM,
    );
    let public = std::fs::read(format!(
        "{}/tests/fixtures/rsa_b.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let payload = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(new_access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let confused = sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, &public);
    expect(
        &a.hello(&format!("Bearer {confused}")),
        401,
        invalid_for_hello("Token is invalid"),
        REALM,
    );
}

use std::str::FromStr;

/// A TCP proxy the test controls: forwards to PostgreSQL until cut, then drops every
/// connection and refuses new ones, until restored.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    fn start(target: &'static str) -> Proxy {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (u, g) = (up.clone(), generation.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !u.load(SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let gen = g.load(SeqCst);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (u, g) = (u.clone(), g.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let (mut from, mut to) = (from, to);
                        from.set_read_timeout(Some(Duration::from_millis(100)))
                            .unwrap();
                        let mut buf = [0u8; 16384];
                        loop {
                            if !u.load(SeqCst) || g.load(SeqCst) != gen {
                                break;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            port,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// PostgreSQL cut off while serving: requests that need it get 503 with a JSON body, the
/// worker stays up, and service comes back by itself when the database does.
#[test]
fn database_outage_gives_503_then_recovers() {
    let Some(db) = TestDb::postgres("database_outage_gives_503_then_recovers") else {
        return;
    };
    let proxy = Proxy::start("127.0.0.1:5432");
    let name = db.url().rsplit('/').next().unwrap().to_string();
    let base = pg_base();
    let via_proxy = format!("{}:{}/{name}", base.rsplit_once(':').unwrap().0, proxy.port);
    let dir = TempDir::new("outage");
    let env = [
        ("DATABASE_URL", via_proxy.as_str()),
        ("SECRET_KEY", SECRET),
        ("CORRAL_DATABASE_CONNECT_TIMEOUT", "1"),
    ];
    assert_eq!(run(dir.path(), &["migrate", "apply"], &env).code, Some(0));
    assert_eq!(
        run_stdin(
            dir.path(),
            &["user", "create", "alice", "--password-stdin"],
            &env,
            Some("wonderland-42")
        )
        .code,
        Some(0)
    );
    let mut b = Corral::builder()
        .dir(dir.path())
        .args(["-b", "127.0.0.1:0", "-w", "1"]);
    for (k, v) in env {
        b = b.env(k, v);
    }
    let c = b.start();
    let login = || {
        post_json(
            &c.addr,
            "/api/token/",
            &json!({"username": "alice", "password": "wonderland-42"}),
        )
    };
    assert_eq!(login().status, 200);
    let access = login().json()["access"].as_str().unwrap().to_string();
    let workers = c.wait_workers(1, &[], T);

    proxy.cut();
    let down = eventually(T, "a 503 while the database is cut off", || {
        Some(login()).filter(|r| r.status == 503)
    });
    assert_eq!(
        down.json(),
        json!({"detail": "Service temporarily unavailable, try again later."})
    );
    let hello = http(
        &c.addr,
        "GET",
        "/hello/",
        &[("Authorization", &format!("Bearer {access}"))],
        b"",
    );
    assert_eq!(hello.status, 503, "{}", hello.text());
    let ready = http(&c.addr, "GET", "/readyz", &[], b"");
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (503, json!("unavailable"))
    );
    assert_eq!(
        http(&c.addr, "GET", "/healthz", &[], b"").status,
        200,
        "the worker itself is fine"
    );

    proxy.restore();
    eventually(T, "service to come back", || {
        Some(login()).filter(|r| r.status == 200)
    });
    assert_eq!(http(&c.addr, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(c.worker_pids(), workers, "no restart was needed");
}

/// `corral user …`: create, duplicate, passwd, deactivate (and its effect), list.
#[test]
fn user_commands() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let dup = a.cli(
        &["user", "create", "alice", "--password-stdin"],
        Some("whatever"),
    );
    assert_eq!(dup.code, Some(1));
    assert!(
        dup.stderr.contains("user \"alice\" already exists"),
        "{}",
        dup.stderr
    );
    let empty = a.cli(&["user", "create", "carol", "--password-stdin"], Some("\n"));
    assert_eq!(empty.code, Some(1));
    let no_tty = a.cli(&["user", "create", "carol"], None);
    assert_eq!(no_tty.code, Some(1));
    assert!(
        no_tty.stderr.contains("--password-stdin"),
        "{}",
        no_tty.stderr
    );

    let (access, refresh) = a.login();
    assert_eq!(
        a.cli(
            &["user", "passwd", "alice", "--password-stdin"],
            Some("new-pass-123")
        )
        .code,
        Some(0)
    );
    assert_eq!(
        a.post(
            "/api/token/",
            json!({"username": "alice", "password": "wonderland-42"})
        )
        .status,
        401
    );
    assert_eq!(
        a.post(
            "/api/token/",
            json!({"username": "alice", "password": "new-pass-123"})
        )
        .status,
        200
    );
    assert_eq!(
        a.cli(&["user", "passwd", "nobody", "--password-stdin"], Some("x"))
            .code,
        Some(1)
    );

    // Twice, so the worker's user cache holds alice as active: the deactivation below
    // must empty it (inotify) for the next request to see it.
    for _ in 0..2 {
        assert_eq!(a.hello(&format!("Bearer {access}")).status, 200);
    }
    let d = a.cli(&["user", "deactivate", "alice"], None);
    assert_eq!(d.code, Some(0), "{d:?}");
    expect(
        &a.hello(&format!("Bearer {access}")),
        401,
        json!({"detail": "User is inactive", "code": "user_inactive"}),
        REALM,
    );
    expect(
        &a.post("/api/token/refresh/", json!({"refresh": refresh})),
        401,
        json!({"detail": "No active account found for the given token."}),
        REALM,
    );

    let list: Value =
        serde_json::from_str(&a.cli(&["user", "list", "--json"], None).stdout).unwrap();
    assert_eq!(list[0]["username"], "alice");
    assert_eq!(list[0]["is_active"], false);
    assert_eq!(list[1]["username"], "bob");
    for k in [
        "id",
        "is_staff",
        "is_superuser",
        "email",
        "date_joined",
        "last_login",
        "hasher",
    ] {
        assert!(list[0].get(k).is_some(), "{k}");
    }
    assert!(
        !a.cli(&["user", "list", "--json"], None)
            .stdout
            .contains("argon2$"),
        "hashes are never printed"
    );
}

/// Secrets: production refuses a missing, short or placeholder key; development creates
/// one (mode 0600) that survives restarts; no secret, password or token reaches a log.
#[test]
fn secret_key_rules_and_no_secrets_in_logs() {
    let dir = TempDir::new("secret");
    let serve = |env: &[(&str, &str)]| {
        run(
            dir.path(),
            &["serve", "-b", "127.0.0.1:0", "--migrate", "off"],
            env,
        )
    };
    for (env, want) in [
        (vec![("DYNO", "web.1")], "Heroku (DYNO is set)"),
        (
            vec![("INVOCATION_ID", "abc")],
            "systemd (INVOCATION_ID is set)",
        ),
        (
            vec![("CORRAL_PRODUCTION", "true"), ("SECRET_KEY", "short")],
            "needs at least 32",
        ),
        (
            vec![
                ("DYNO", "web.1"),
                (
                    "SECRET_KEY",
                    "django-insecure-0123456789abcdef0123456789abcdef",
                ),
            ],
            "placeholder",
        ),
    ] {
        let out = serve(&env);
        assert_eq!(out.code, Some(2), "{env:?}: {out:?}");
        assert!(out.stderr.contains(want), "{env:?}: {}", out.stderr);
    }
    let check = run(dir.path(), &["check"], &[("DYNO", "web.1")]);
    assert_eq!(check.code, Some(2));

    // Development: a generated key, kept with mode 0600, the same after a restart.
    let db = TestDb::sqlite();
    let start = || {
        Corral::builder()
            .dir(dir.path())
            .args(["-b", "127.0.0.1:0", "-w", "1"])
            .env("DATABASE_URL", db.url())
            .start()
    };
    let c = start();
    let keyfile = format!("{}.secret", db.url().trim_start_matches("sqlite://"));
    c.expect_log(
        &format!("signing with the development key created in {keyfile}"),
        T,
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = std::fs::read_to_string(&keyfile).unwrap();
    assert!(!c.log().contains(key.trim()), "the key is not logged");
    assert_eq!(
        run_stdin(
            dir.path(),
            &["user", "create", "dev", "--password-stdin"],
            &[("DATABASE_URL", db.url())],
            Some("dev-pass-1")
        )
        .code,
        Some(0)
    );
    let token = post_json(
        &c.addr,
        "/api/token/",
        &json!({"username": "dev", "password": "dev-pass-1"}),
    )
    .json()["access"]
        .as_str()
        .unwrap()
        .to_string();
    drop(c);
    let c = start();
    c.expect_log("development key kept in", T);
    assert_eq!(
        http(
            &c.addr,
            "GET",
            "/hello/",
            &[("Authorization", &format!("Bearer {token}"))],
            b""
        )
        .status,
        200
    );
    drop(c);

    // Nothing secret in any log, at debug level, access log on, errors provoked.
    let a = Api::start(
        TestDb::sqlite(),
        &["--log-level", "debug", "--access-logfile", "-"],
        &[],
    );
    let (access, refresh) = a.login();
    a.post(
        "/api/token/",
        json!({"username": "alice", "password": "wrong-password-xyz"}),
    );
    a.post("/api/token/refresh/", json!({"refresh": refresh}));
    a.hello(&format!("Bearer {access}"));
    a.hello("Bearer forged.token.here");
    let logs = format!("{}\n{}", a.c.log(), a.c.stdout.all().join("\n"));
    for secret in [
        SECRET,
        "wonderland-42",
        "wrong-password-xyz",
        access.as_str(),
        refresh.as_str(),
        "forged.token.here",
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}
