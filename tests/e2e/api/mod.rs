//! The JWT app on the real binary, and what its tests share: [`Api`] (a migrated database
//! with two users and a server on it), token minting, and the exact-answer check
//! [`expect`]. The topic files below cover every endpoint and error case of simplejwt
//! 5.5.1 on SQLite and on PostgreSQL, fixed vectors, the attack suite, keys, rotation and
//! reuse detection, database outages, the user commands and secrets.

mod attacks; // forged, tampered, malformed and oversized tokens
mod endpoints; // obtain, refresh, verify, blacklist, health and JWKS: answers and errors
mod fleet; // several hosts on one PostgreSQL, its faults, PgBouncer
mod hello; // the protected resource: the Authorization header and the access token
mod keys; // RS256, ES256, EdDSA, the JWKS, key rotation and key confusion
mod netns; // a fleet in network namespaces behind nginx: rolling HUP and USR2, a host lost
mod outage; // PostgreSQL cut off while serving
mod parsing; // DRF field validation, body parsing, methods, OPTIONS, HEAD, APPEND_SLASH
mod peer; // side by side with the real Django + DRF + simplejwt peer
mod rotation; // refresh rotation, reuse detection, concurrent refreshes
mod secrets; // SECRET_KEY rules, the development key, nothing secret in logs
mod sliding; // sliding tokens, auth_token_classes, stateless authentication
mod throttle; // failed logins per address and per user, shared by workers
mod tokens; // token shape, last_login, fixed vectors from PyJWT/simplejwt
mod users; // `corral user …` and Django's password hashes

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) const T: Duration = Duration::from_secs(30);
pub const SECRET: &str = "corral-test-secret-key-0123456789abcdef-0123456789";
pub(crate) const REALM: Option<&str> = Some("Bearer realm=\"api\"");

/// A running app with users `alice` (id 1, password `wonderland-42`) and `bob` (id 2,
/// inactive, password `x-pass-bob`).
pub struct Api {
    pub c: Corral,
    pub db: TestDb,
    pub dir: TempDir,
    /// The server's arguments and environment, for [`Api::another_host`].
    args: Vec<String>,
    env: Vec<(String, String)>,
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
            ("bob", "x-pass-bob", Some("--inactive")),
        ] {
            let mut a = vec!["user", "create", name, "--password-stdin"];
            a.extend(extra);
            let out = run_stdin(dir.path(), &a, &all_env, Some(pw));
            assert_eq!(out.code, Some(0), "{out:?}");
        }
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env: Vec<(String, String)> = all_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Api {
            c: server(dir.path(), &args, &env),
            db,
            dir,
            args,
            env,
        }
    }

    /// Another host serving the same database with the same settings: a second master,
    /// on its own port.
    pub fn another_host(&self) -> Corral {
        server(self.dir.path(), &self.args, &self.env)
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

/// Two refreshes of one token sent at the same instant, one to each address; their
/// statuses, sorted.
pub(crate) fn race_refreshes(addrs: [&str; 2], refresh: &str) -> Vec<u16> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = addrs
        .into_iter()
        .map(|addr| {
            let (addr, refresh, barrier) = (addr.to_string(), refresh.to_string(), barrier.clone());
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
    statuses
}

/// Creates `alice` (password `wonderland-42`) with `corral user create`.
pub(crate) fn create_alice(dir: &std::path::Path, env: &[(&str, &str)]) {
    let created = run_stdin(
        dir,
        &["user", "create", "alice", "--password-stdin"],
        env,
        Some("wonderland-42"),
    );
    assert_eq!(created.code, Some(0), "{created:?}");
}

fn server(dir: &std::path::Path, args: &[String], env: &[(String, String)]) -> Corral {
    let mut b = Corral::builder()
        .dir(dir)
        .args(["-b", "127.0.0.1:0", "-w", "1"])
        .args(args.iter().cloned());
    for (k, v) in env {
        b = b.env(k, v.clone());
    }
    b.start()
}

/// Asserts status, exact JSON body, and `WWW-Authenticate`.
#[track_caller]
pub(crate) fn expect(r: &Response, status: u16, body: Value, www: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json(), body);
    assert_eq!(r.header("www-authenticate"), www, "WWW-Authenticate");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

pub(crate) fn now() -> i64 {
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

pub(crate) fn invalid_for_hello(msg: &str) -> Value {
    json!({"detail": "Given token not valid for any token type", "code": "token_not_valid",
        "messages": [{"token_class": "AccessToken", "token_type": "access", "message": msg}]})
}

pub(crate) fn token_not_valid(msg: &str) -> Value {
    json!({"detail": msg, "code": "token_not_valid"})
}
