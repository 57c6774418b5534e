//! Side by side with the real thing: Django 5.2 + DRF + simplejwt 5.5.1 under Gunicorn
//! (`../shared/peers/django_jwt`), the same requests to both, the same answers expected:
//! status, body (tokens aside) and the headers DRF and Django's middleware set.
//!
//! The peer lives outside this repository: `$TEST_PEERS_DIR`, or `../shared/peers` beside
//! the checkout. It needs its Python requirements: a virtualenv in `$TEST_PEER_VENV`,
//! `target/peer-venv` (which `.ci/run` makes) or the peers' `.venv`. Without them a test
//! says it skipped; under `CI=true` it fails.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running peer, stopped on drop.
struct Peer {
    child: Child,
    port: u16,
    _db: TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        kill(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

fn peer_paths() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let peers = std::env::var_os("TEST_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/peers"));
    let venvs = [
        std::env::var_os("TEST_PEER_VENV").map(PathBuf::from),
        Some(root.join("target/peer-venv")),
        Some(peers.join(".venv")),
    ];
    let venv = venvs
        .into_iter()
        .flatten()
        .find(|v| v.join("bin/gunicorn").exists())?;
    peers
        .join("django_jwt/run.sh")
        .exists()
        .then_some((peers.join("django_jwt"), venv))
}

impl Peer {
    fn start(test: &str) -> Option<Peer> {
        Peer::start_with(test, &[])
    }

    /// With the peer's knobs (`PEER_THROTTLE`, `PEER_ROTATE`, `PEER_SLIDING`).
    fn start_with(test: &str, knobs: &[(&str, &str)]) -> Option<Peer> {
        let Some((dir, venv)) = peer_paths() else {
            let why = "the Django peer is not set up ($TEST_PEERS_DIR or ../shared/peers, and its virtualenv: .ci/run makes target/peer-venv)";
            assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
            eprintln!("SKIPPED {test}: {why}");
            return None;
        };
        let db = TempDir::new("peer");
        let env = [
            ("PEER_SECRET", SECRET.to_string()),
            ("PEER_DB", db.join("peer.sqlite3").display().to_string()),
            ("PEER_VENV", venv.display().to_string()),
        ];
        let setup = Command::new("bash")
            .arg(dir.join("setup.sh"))
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            setup.status.success(),
            "peer setup: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
        let port = free_port();
        let child = Command::new("bash")
            .arg(dir.join("run.sh"))
            .args([port.to_string(), "1".into()])
            .envs(env.iter().cloned())
            .envs(knobs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let peer = Peer {
            child,
            port,
            _db: db,
        };
        eventually(T, "the peer to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(peer)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// What must match: status, the body with tokens masked, and DRF's and Django's headers.
fn shape(r: &Response) -> (u16, Vec<(String, String)>, String) {
    const HEADERS: &[&str] = &[
        "allow",
        "content-type",
        "www-authenticate",
        "x-content-type-options",
        "referrer-policy",
        "cross-origin-opener-policy",
        "retry-after",
    ];
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| HEADERS.contains(&k.as_str()))
        .collect();
    h.sort();
    let body = r.text();
    let masked = body
        .split('"')
        .map(|p| if p.starts_with("eyJ") { "TOKEN" } else { p })
        .collect::<Vec<_>>()
        .join("\"");
    (r.status, h, masked)
}

/// One request on a new connection, with a Host that Django's ALLOWED_HOSTS accepts.
fn ask(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut h = headers.to_vec();
    h.push(("Connection", "close"));
    Conn::open(addr)
        .request_to("127.0.0.1", method, path, &h, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str)>) -> (String, Vec<u8>) {
    let b = "corralPeerBoundary7x";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    if let Some((k, content)) = file {
        body.push_str(&format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\n{content}\r\n"));
    }
    body.push_str(&format!("--{b}--\r\n"));
    (
        format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    )
}

/// A request: method, path, headers, body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>);

/// Each case sent to corral (`ours`) and to the peer (`theirs`): the ones whose answers'
/// [`shape`]s differ, described.
fn differences(ours: &str, theirs: &str, cases: &[Case]) -> Vec<String> {
    let mut differ = vec![];
    for (method, path, headers, body) in cases {
        let a = shape(&ask(ours, method, path, headers, body));
        let b = shape(&ask(theirs, method, path, headers, body));
        if a != b {
            differ.push(format!(
                "{method} {path} {headers:?}\n  corral: {a:?}\n  django: {b:?}"
            ));
        }
    }
    differ
}

/// Part 1 of DRF parity, request for request against the peer: multipart bodies, 406
/// content negotiation (and `indent`), `Allow` on every view response, byte-identical
/// `OPTIONS` metadata, Django's SecurityMiddleware headers.
#[test]
fn answers_match_the_django_peer() {
    let Some(peer) = Peer::start("answers_match_the_django_peer") else {
        return;
    };
    let api = Api::start(TestDb::sqlite(), &[], &[]);
    let login = |pw: &str| multipart(&[("username", "alice"), ("password", pw)], None);
    let (ct_ok, ok) = login("wonderland-42");
    let (ct_bad, bad) = login("wrong-password");
    let (ct_one, one) = multipart(&[("username", "alice")], None);
    let (ct_file, file) = multipart(&[("username", "alice")], Some(("password", "x")));
    let (ct_tok, tok) = multipart(&[("token", "abc")], None);
    let json = "application/json";
    let cases: Vec<Case> = vec![
        ("OPTIONS", "/api/token/", vec![], vec![]),
        ("OPTIONS", "/api/token/refresh/", vec![], vec![]),
        ("OPTIONS", "/api/token/verify/", vec![], vec![]),
        ("OPTIONS", "/api/token/blacklist/", vec![], vec![]),
        ("OPTIONS", "/hello/", vec![], vec![]),
        ("GET", "/hello/", vec![], vec![]),
        (
            "GET",
            "/hello/",
            vec![("Accept", "application/xml")],
            vec![],
        ),
        ("GET", "/hello/", vec![("Accept", "text/html")], vec![]),
        (
            "GET",
            "/hello/",
            vec![("Accept", "text/html, application/json")],
            vec![],
        ),
        (
            "GET",
            "/hello/",
            vec![("Accept", "application/json; indent=4")],
            vec![],
        ),
        ("GET", "/hello/", vec![("Accept", "application/*")], vec![]),
        ("PUT", "/hello/", vec![], vec![]),
        ("GET", "/api/token/", vec![], vec![]),
        (
            "GET",
            "/api/token/",
            vec![("Accept", "application/xml")],
            vec![],
        ),
        ("POST", "/api/token/", vec![("Content-Type", &ct_ok)], ok),
        ("POST", "/api/token/", vec![("Content-Type", &ct_bad)], bad),
        ("POST", "/api/token/", vec![("Content-Type", &ct_one)], one),
        (
            "POST",
            "/api/token/",
            vec![("Content-Type", &ct_file)],
            file,
        ),
        (
            "POST",
            "/api/token/",
            vec![("Content-Type", "multipart/form-data")],
            b"x".to_vec(),
        ),
        (
            "POST",
            "/api/token/",
            vec![("Content-Type", "multipart/form-data; boundary=zz")],
            b"garbage".to_vec(),
        ),
        (
            "POST",
            "/api/token/",
            vec![
                ("Content-Type", json),
                ("Accept", "application/json; indent=2"),
            ],
            b"{}".to_vec(),
        ),
        (
            "POST",
            "/api/token/",
            vec![("Content-Type", json), ("Accept", "application/xml")],
            b"{}".to_vec(),
        ),
        (
            "POST",
            "/api/token/",
            vec![("Content-Type", "text/plain")],
            b"x".to_vec(),
        ),
        (
            "POST",
            "/api/token/verify/",
            vec![("Content-Type", &ct_tok)],
            tok,
        ),
    ];
    let differ = differences(&api.c.addr, &peer.addr(), &cases);
    assert!(
        differ.is_empty(),
        "{} of {} differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}

/// The same parity without the peer (its answers, as captured from it): multipart
/// login, 406 before authentication, `Allow` on a 401, the metadata's docstring line
/// breaks and actions, Django's security headers.
#[test]
fn drf_parity_without_the_peer() {
    let api = Api::start(TestDb::sqlite(), &[], &[]);
    let a = &api.c.addr;
    let (ct, body) = multipart(
        &[("username", "alice"), ("password", "wonderland-42")],
        None,
    );
    let r = ask(a, "POST", "/api/token/", &[("Content-Type", &ct)], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let (ct, body) = multipart(&[("username", "alice")], Some(("password", "x")));
    let r = ask(a, "POST", "/api/token/", &[("Content-Type", &ct)], &body);
    assert_eq!(r.text(), r#"{"password":["Not a valid string."]}"#);
    let r = ask(a, "GET", "/hello/", &[("Accept", "application/xml")], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            406,
            r#"{"detail":"Could not satisfy the request Accept header."}"#
        )
    );
    let r = ask(a, "GET", "/hello/", &[], b"");
    assert_eq!(
        (r.status, r.header("allow")),
        (401, Some("GET, HEAD, OPTIONS"))
    );
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"));
    let r = ask(a, "OPTIONS", "/api/token/verify/", &[], b"");
    assert_eq!(
        r.text(),
        r#"{"name":"Token Verify","description":"Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"token":{"type":"string","required":true,"read_only":false,"label":"Token"}}}}"#
    );
    let r = ask(
        a,
        "POST",
        "/api/token/",
        &[("Content-Type", "multipart/form-data")],
        b"x",
    );
    assert_eq!(
        r.text(),
        r#"{"detail":"Multipart form parse error - Invalid boundary in multipart: None"}"#
    );
}

/// Throttled logins look the same as DRF's: 429, `Retry-After`, and the body's words
/// (the peer's `PEER_THROTTLE` throttles every request, corral only failed logins, so
/// both get two failures first; the seconds may differ by one).
#[test]
fn a_throttled_login_looks_like_drfs() {
    let Some(peer) = Peer::start_with(
        "a_throttled_login_looks_like_drfs",
        &[("PEER_THROTTLE", "2/min")],
    ) else {
        return;
    };
    let api = Api::start(
        TestDb::sqlite(),
        &[],
        &[("CORRAL_AUTH_LOGIN_THROTTLE_PER_IP", "2/min")],
    );
    let body = br#"{"username":"alice","password":"wrong"}"#;
    let third = |addr: &str| {
        for _ in 0..2 {
            assert_eq!(
                ask(
                    addr,
                    "POST",
                    "/api/token/",
                    &[("Content-Type", "application/json")],
                    body
                )
                .status,
                401
            );
        }
        ask(
            addr,
            "POST",
            "/api/token/",
            &[("Content-Type", "application/json")],
            body,
        )
    };
    let (ours, theirs) = (third(&api.c.addr), third(&peer.addr()));
    let words = |r: &Response| {
        let digits: String = r
            .text()
            .chars()
            .map(|c| if c.is_ascii_digit() { 'N' } else { c })
            .collect();
        (
            r.status,
            r.header("retry-after").is_some(),
            digits.replace("NN", "N"),
        )
    };
    assert_eq!(
        words(&ours),
        words(&theirs),
        "corral: {}\ndjango: {}",
        ours.text(),
        theirs.text()
    );
    assert_eq!(ours.status, 429);
}

/// Sliding tokens, both ways and side by side, with `PEER_SLIDING=1` (AccessToken and
/// SlidingToken authenticate): a token either server issues authenticates on both and
/// refreshes on both to the same claims in the same order, and every refusal reads the
/// same.
#[test]
fn sliding_tokens_match_the_django_peer() {
    let Some(peer) = Peer::start_with(
        "sliding_tokens_match_the_django_peer",
        &[("PEER_SLIDING", "1")],
    ) else {
        return;
    };
    let api = Api::start(
        TestDb::sqlite(),
        &[],
        &[("CORRAL_AUTH_AUTH_TOKEN_CLASSES", "AccessToken,SlidingToken")],
    );
    let (ours, theirs) = (api.c.addr.clone(), peer.addr());
    let json_ct = [("Content-Type", "application/json")];
    let post = |addr: &str, path: &str, body: Value| {
        ask(addr, "POST", path, &json_ct, body.to_string().as_bytes())
    };
    let login = |addr: &str| {
        let r = post(
            addr,
            "/api/token/sliding/",
            json!({"username": "alice", "password": "wonderland-42"}),
        );
        assert_eq!(r.status, 200, "{addr}: {}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    };
    let claims = |token: &str| -> serde_json::Map<String, Value> {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let keys = |token: &str| claims(token).keys().cloned().collect::<Vec<_>>();
    let (from_us, from_them) = (login(&ours), login(&theirs));
    assert_eq!(keys(&from_us), keys(&from_them));
    for token in [&from_us, &from_them] {
        let c = claims(token);
        let mut refreshed = vec![];
        for addr in [&ours, &theirs] {
            let bearer = format!("Bearer {token}");
            let r = ask(addr, "GET", "/hello/", &[("Authorization", &bearer)], b"");
            assert_eq!(r.status, 200, "{addr}: {}", r.text());
            let r = post(
                addr,
                "/api/token/sliding/refresh/",
                json!({ "token": token }),
            );
            assert_eq!(r.status, 200, "{addr}: {}", r.text());
            refreshed.push(r.json()["token"].as_str().unwrap().to_string());
        }
        let (a, b) = (claims(&refreshed[0]), claims(&refreshed[1]));
        assert_eq!(keys(&refreshed[0]), keys(&refreshed[1]));
        for k in ["token_type", "jti", "refresh_exp", "user_id"] {
            assert_eq!((&a[k], &b[k]), (&c[k], &c[k]), "{k}");
        }
        for p in [&a, &b] {
            assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), 300);
        }
    }

    // Refusals, request for request.
    let t = super::now();
    let minted = |over: Value| mint(over);
    let expired_refresh = minted(json!({"token_type": "sliding", "refresh_exp": t - 5}));
    let no_refresh_exp = minted(json!({"token_type": "sliding"}));
    let expired = minted(json!({"token_type": "sliding", "exp": t - 5, "refresh_exp": t + 600}));
    let refresh = minted(json!({"token_type": "refresh"}));
    let access = minted(json!({}));
    let bearer = |tok: &str| format!("Bearer {tok}");
    let (b_refresh, b_expired, b_garbage) = (bearer(&refresh), bearer(&expired), bearer("x.y.z"));
    let body = |k: &str, tok: &str| json!({ k: tok }).to_string().into_bytes();
    let json = "application/json";
    let cases: Vec<Case> = vec![
        ("OPTIONS", "/api/token/sliding/", vec![], vec![]),
        ("OPTIONS", "/api/token/sliding/refresh/", vec![], vec![]),
        ("GET", "/api/token/sliding/refresh/", vec![], vec![]),
        ("GET", "/api/token/sliding", vec![], vec![]),
        (
            "POST",
            "/api/token/sliding/refresh/",
            vec![("Content-Type", json)],
            b"{}".to_vec(),
        ),
        (
            "POST",
            "/api/token/sliding/",
            vec![("Content-Type", json)],
            br#"{"username":"alice","password":"nope"}"#.to_vec(),
        ),
        (
            "POST",
            "/api/token/sliding/refresh/",
            vec![("Content-Type", json)],
            body("token", &expired_refresh),
        ),
        (
            "POST",
            "/api/token/sliding/refresh/",
            vec![("Content-Type", json)],
            body("token", &no_refresh_exp),
        ),
        (
            "POST",
            "/api/token/sliding/refresh/",
            vec![("Content-Type", json)],
            body("token", &expired),
        ),
        (
            "POST",
            "/api/token/sliding/refresh/",
            vec![("Content-Type", json)],
            body("token", &refresh),
        ),
        (
            "POST",
            "/api/token/sliding/refresh/",
            vec![("Content-Type", json)],
            body("token", &access),
        ),
        (
            "POST",
            "/api/token/sliding/refresh/",
            vec![("Content-Type", json)],
            body("token", "garbage"),
        ),
        (
            "POST",
            "/api/token/refresh/",
            vec![("Content-Type", json)],
            body("refresh", &no_refresh_exp),
        ),
        (
            "POST",
            "/api/token/blacklist/",
            vec![("Content-Type", json)],
            body("refresh", &no_refresh_exp),
        ),
        (
            "POST",
            "/api/token/verify/",
            vec![("Content-Type", json)],
            body("token", &expired_refresh),
        ),
        (
            "POST",
            "/api/token/verify/",
            vec![("Content-Type", json)],
            body("token", &expired),
        ),
        (
            "GET",
            "/hello/",
            vec![("Authorization", &b_refresh)],
            vec![],
        ),
        (
            "GET",
            "/hello/",
            vec![("Authorization", &b_expired)],
            vec![],
        ),
        (
            "GET",
            "/hello/",
            vec![("Authorization", &b_garbage)],
            vec![],
        ),
    ];
    let mut differ = differences(&ours, &theirs, &cases);
    // A refresh token blacklisted on each server, then sent to its sliding refresh and
    // as a Bearer: simplejwt reads the blacklist before the token type.
    for addr in [&ours, &theirs] {
        let r = post(
            addr,
            "/api/token/",
            json!({"username": "alice", "password": "wonderland-42"}),
        );
        let listed = r.json()["refresh"].as_str().unwrap().to_string();
        assert_eq!(
            post(addr, "/api/token/blacklist/", json!({"refresh": listed})).status,
            200
        );
        let slid = post(
            addr,
            "/api/token/sliding/refresh/",
            json!({"token": listed}),
        );
        let hello = ask(
            addr,
            "GET",
            "/hello/",
            &[("Authorization", &bearer(&listed))],
            b"",
        );
        differ.push(format!("{:?}|{:?}", shape(&slid), shape(&hello)));
    }
    let (b, a) = (differ.pop().unwrap(), differ.pop().unwrap());
    if a != b {
        differ.push(format!(
            "blacklisted refresh token\n  corral: {a}\n  django: {b}"
        ));
    }
    assert!(
        differ.is_empty(),
        "{} of {} differ:\n{}",
        differ.len(),
        cases.len() + 1,
        differ.join("\n")
    );
}
