//! PostgreSQL cut off while serving, through a TCP proxy the test controls: 503s with a
//! JSON body, a worker that stays up, and service that comes back by itself.

use super::*;

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
        // A TCP proxy keeps sessions: LISTEN and the migration lock may use it.
        ("CORRAL_DATABASE_LISTEN_URL", via_proxy.as_str()),
    ];
    assert_eq!(run(dir.path(), &["migrate", "apply"], &env).code, Some(0));
    create_alice(dir.path(), &env);
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
