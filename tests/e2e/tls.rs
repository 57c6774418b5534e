//! TLS and HTTP/2 with real clients: curl over HTTPS (HTTP/1.1 and HTTP/2) and h2c with
//! prior knowledge, `openssl s_client` (TLS 1.1 refused, the serving certificate's
//! serial), h2load, certificate rotation on HUP, a plain request on the TLS port, and a
//! rapid-reset flood.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

struct Tls {
    ca: TestCa,
    cert: PathBuf,
    key: PathBuf,
}

fn tls(test: &str) -> Option<Tls> {
    if !have("openssl", test) || !have("curl", test) {
        return None;
    }
    let ca = TestCa::new();
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(1001, &cert, &key);
    Some(Tls { ca, cert, key })
}

impl Tls {
    /// `corral serve` with this certificate and `extra` flags.
    fn serve(&self, extra: &[&str]) -> Corral {
        Corral::plain(1)
            .args(["--certfile", self.cert.to_str().unwrap()])
            .args(["--keyfile", self.key.to_str().unwrap()])
            .args(extra.iter().copied())
            .start()
    }
}

/// `curl --cacert` against `url`: (HTTP version, status, body).
fn curl(ca: &Path, url: &str, extra: &[&str]) -> (String, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(extra)
        .args(["-w", "\n%{http_version} %{http_code}", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (v, code) = tail.split_once(' ').unwrap();
    (v.to_string(), code.parse().unwrap(), body.to_string())
}

/// The serving certificate's serial, from `openssl s_client`.
fn serial(addr: &str) -> String {
    let sc = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "localhost"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let mut x = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x.stdin.take().unwrap().write_all(&sc.stdout).unwrap();
    String::from_utf8_lossy(&x.wait_with_output().unwrap().stdout)
        .trim()
        .to_string()
}

/// HTTPS with curl: HTTP/2 by ALPN, HTTP/1.1 on request, byte-identical answers from the
/// JWT app, the access log's protocol; TLS 1.1 refused; a plain request on the TLS port
/// gets a 400 that says so; h2load finishes with 0 failed requests.
#[test]
fn https_and_http2_with_real_clients() {
    let test = "https_and_http2_with_real_clients";
    let Some(t) = tls(test) else { return };
    let api = crate::api::Api::start(
        TestDb::sqlite(),
        &[
            "--certfile",
            t.cert.to_str().unwrap(),
            "--keyfile",
            t.key.to_str().unwrap(),
            "--access-logfile",
            "-",
            "--max-requests",
            "150",
        ],
        &[],
    );
    let c = &api.c;
    assert!(c
        .log()
        .contains(&format!("Listening at: https://{}", c.addr)));
    let url = |p: &str| format!("https://{}{p}", c.addr);
    let root = t.ca.root();
    let (v, code, _) = curl(&root, &url("/healthz"), &[]);
    assert_eq!((v.as_str(), code), ("2", 200), "ALPN picks HTTP/2");
    let (v1, code1, body1) = curl(&root, &url("/hello/"), &["--http1.1"]);
    let (v2, code2, body2) = curl(&root, &url("/hello/"), &["--http2"]);
    assert_eq!((v1.as_str(), v2.as_str()), ("1.1", "2"));
    assert_eq!((code1, code2), (401, 401));
    assert_eq!(body1, body2, "the same bytes over both");
    let login = r#"{"username":"alice","password":"wonderland-42"}"#;
    let (_, code, body) = curl(
        &root,
        &url("/api/token/"),
        &[
            "--http2",
            "-H",
            "Content-Type: application/json",
            "-d",
            login,
        ],
    );
    assert_eq!(code, 200, "{body}");
    let access = serde_json::from_str::<serde_json::Value>(&body).unwrap()["access"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, code, body) = curl(
        &root,
        &url("/hello/"),
        &["--http2", "-H", &format!("Authorization: Bearer {access}")],
    );
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"message":"Hello, World!"}"#)
    );
    let (_, line) = c
        .stdout
        .wait_for(0, "\"GET /hello/ HTTP/2.0\" 200", T)
        .expect("an HTTP/2 access line");
    assert!(line.starts_with("127.0.0.1 "), "{line}");

    let old = Command::new("openssl")
        .args(["s_client", "-tls1_1", "-connect", &c.addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&old.stdout).to_string() + &String::from_utf8_lossy(&old.stderr);
    // s_client may exit 0 after a failed handshake: what was negotiated says it.
    assert!(
        !old.status.success() || said.contains("Cipher is (NONE)"),
        "TLS 1.1 must be refused: {said}"
    );
    assert!(!said.contains("TLSv1.1, Cipher is"), "{said}");

    let r = http(&c.addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("plain HTTP request was sent to HTTPS port"),
        "{}",
        r.text()
    );

    if have("h2load", test) {
        let h2load = |n: &str| {
            let out = Command::new("h2load")
                .args(["-n", n, "-c", "4", "-m", "8", &url("/healthz")])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // Below --max-requests (150), every request succeeds.
        let text = h2load("100");
        assert!(text.contains("100 succeeded, 0 failed"), "{text}");
        // --max-requests applies over HTTP/2 too: the worker is replaced (h2load, which
        // does not reconnect after a GOAWAY, may see the streams it had not sent fail),
        // and its successor serves HTTP/2.
        let before = c.worker_pids();
        h2load("100");
        c.expect_log("Reached max requests", T);
        eventually(T, "a new worker", || {
            let now = c.worker_pids();
            (!now.is_empty() && now.iter().all(|p| !before.contains(p))).then_some(())
        });
        let (v, code, _) = curl(&root, &url("/healthz"), &[]);
        assert_eq!(
            (v.as_str(), code),
            ("2", 200),
            "the new worker serves HTTP/2"
        );
    }
}

/// h2c with prior knowledge on a plain port (`--http auto`, the default), and HTTP/1.1
/// beside it on the same port.
#[test]
fn h2c_with_prior_knowledge() {
    if !have("curl", "h2c_with_prior_knowledge") {
        return;
    }
    let c = Corral::plain(1).start();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
            &format!("http://{}/healthz", c.addr),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n2"), "{text}");
    assert!(text.starts_with(r#"{"status":"ok"}"#), "{text}");
    assert_eq!(c.get("/healthz").status, 200);
    let one = Corral::plain(1).args(["--http", "1"]).start();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            &format!("http://{}/healthz", one.addr),
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("ok"),
        "--http 1 speaks no HTTP/2"
    );
}

/// A HUP with a renewed certificate serves its serial; a broken one (or a key that does
/// not match) keeps the old generation serving the old certificate, and says why.
#[test]
fn hup_rotates_the_certificate_and_a_broken_one_keeps_the_old() {
    let Some(t) = tls("hup_rotates_the_certificate_and_a_broken_one_keeps_the_old") else {
        return;
    };
    let c = t.serve(&[]);
    assert_eq!(serial(&c.addr), "serial=03E9");
    t.ca.issue(1002, &t.cert, &t.key);
    let mark = c.mark();
    c.signal("HUP");
    c.expect_log_after(mark, "reload complete", T);
    eventually(T, "the new certificate served", || {
        (serial(&c.addr) == "serial=03EA").then_some(())
    });

    std::fs::write(
        &t.cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mark = c.mark();
    c.signal("HUP");
    let line = c.expect_log_after(mark, "Reload failed", T);
    assert!(line.contains("certfile"), "{line}");
    assert_eq!(
        serial(&c.addr),
        "serial=03EA",
        "the old generation keeps its certificate"
    );

    // A key that belongs to another certificate.
    t.ca.issue(1003, &t.cert, &t.key);
    let other_key = t.ca.dir.join("other.key");
    t.ca.issue(1004, &t.ca.dir.join("other.pem"), &other_key);
    std::fs::copy(&other_key, &t.key).unwrap();
    let mark = c.mark();
    c.signal("HUP");
    let line = c.expect_log_after(mark, "Reload failed", T);
    assert!(line.contains("does not match"), "{line}");
    assert!(
        !c.log().contains("BEGIN"),
        "no key or certificate text in the log"
    );
    assert_eq!(serial(&c.addr), "serial=03EA");

    let dir = TempDir::new("tlscheck");
    let out = run(
        dir.path(),
        &["check", "--certfile", t.cert.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("keyfile"), "{}", out.stderr);
}

/// A handshake that stalls is closed at the header timeout, and a rapid-reset flood
/// (HEADERS then RST_STREAM, over and over) is bounded: the connection is closed by
/// the server, and the worker lives and serves others.
#[test]
fn stalled_handshakes_and_rapid_reset_are_bounded() {
    let Some(t) = tls("stalled_handshakes_and_rapid_reset_are_bounded") else {
        return;
    };
    let c = t.serve(&["--header-timeout", "1"]);
    let mut stall = Conn::open(&c.addr);
    stall.send_raw(&[0x16, 0x03, 0x01]).unwrap(); // a TLS record header, and nothing more
    let t0 = Instant::now();
    assert!(stall.closed_by_peer(T));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    // The flood, over h2c on a plain server.
    let plain = Corral::plain(1).start();
    let worker = plain.wait_workers(1, &[], T)[0];
    let addr = plain.addr.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sent, closed) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(conn);
        let mut sent = 0u32;
        for _ in 0..5000 {
            let req = hyper::Request::get(format!("http://{addr}/healthz"))
                .body(())
                .unwrap();
            match client.send_request(req, true) {
                Ok((resp, _)) => {
                    drop(resp);
                    sent += 1;
                }
                Err(_) => break,
            }
            if sent % 50 == 0 {
                tokio::task::yield_now().await;
                if client.clone().ready().await.is_err() {
                    break;
                }
            }
        }
        let closed = tokio::time::timeout(Duration::from_secs(10), driver)
            .await
            .is_ok();
        (sent, closed)
    });
    assert!(sent > 0);
    assert!(
        closed,
        "the server closed the flooding connection ({sent} streams sent)"
    );
    assert!(alive(worker), "the worker lives");
    assert_eq!(plain.get("/healthz").status, 200);
    assert_eq!(plain.worker_pids(), vec![worker]);
}

/// `--cert-reqs required` with `--ca-certs`: a client without a certificate is refused,
/// one with a certificate from that CA is served; `optional` serves both.
#[test]
fn client_certificates_required_or_optional() {
    let Some(t) = tls("client_certificates_required_or_optional") else {
        return;
    };
    let (ccert, ckey) = (t.ca.dir.join("client.pem"), t.ca.dir.join("client.key"));
    t.ca.issue(2001, &ccert, &ckey);
    let root_pem = t.ca.root();
    let start = |reqs: &str| {
        t.serve(&[
            "--ca-certs",
            root_pem.to_str().unwrap(),
            "--cert-reqs",
            reqs,
        ])
    };
    let root = t.ca.root();
    let anonymous = |c: &Corral| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&root)
            .arg(format!("https://{}/healthz", c.addr))
            .output()
            .unwrap()
            .status
            .success()
    };
    let with_cert = [
        "--cert",
        ccert.to_str().unwrap(),
        "--key",
        ckey.to_str().unwrap(),
    ];
    let required = start("required");
    assert!(!anonymous(&required), "no client certificate: refused");
    let (_, code, _) = curl(
        &root,
        &format!("https://{}/healthz", required.addr),
        &with_cert,
    );
    assert_eq!(code, 200);
    let optional = start("optional");
    assert!(anonymous(&optional));
    let (_, code, _) = curl(
        &root,
        &format!("https://{}/healthz", optional.addr),
        &with_cert,
    );
    assert_eq!(code, 200);
    let dir = TempDir::new("certreqs");
    let out = run(dir.path(), &["check", "--cert-reqs", "required"], &[]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("cert_reqs"), "{}", out.stderr);
}
