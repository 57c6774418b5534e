//! Several hosts on one PostgreSQL database behave as one service: a deactivation made
//! anywhere is refused everywhere within 100 ms (the user check is served from memory,
//! kept true by LISTEN/NOTIFY), refresh tokens are one family across hosts, and
//! PostgreSQL's faults (a killed listener, killed backends, a restart under load, a
//! transaction-mode PgBouncer in front) give 503s only while the database is away.

use super::*;
use std::time::Instant;

fn bearer(access: &str) -> String {
    format!("Bearer {access}")
}

/// GET /hello/ on a new connection (so successive calls reach every worker).
fn hello_on(c: &Corral, auth: &str) -> Response {
    hello_on_addr(&c.addr, auth)
}

fn set_active(db: &TestDb, active: bool) {
    db.scalar(&format!(
        "WITH u AS (UPDATE corral_user SET is_active = {active} WHERE username = 'alice' RETURNING 1) SELECT COUNT(*) FROM u"
    ));
}

/// Every worker of `c` accepts the token again (after a reactivation), and has had the
/// chance to cache it.
fn accepted_everywhere(c: &Corral, auth: &str) {
    eventually(T, "alice to be accepted again", || {
        (0..8)
            .all(|_| hello_on(c, auth).status == 200)
            .then_some(())
    });
}

/// After a deactivation committed at `committed`: how long until `c` first refused the
/// token, having checked that no request sent 100 ms or more after the commit was
/// accepted, on fresh connections for 300 ms.
fn refused_within_100ms(c: &Corral, auth: &str, committed: Instant) -> Duration {
    refused_as_within_100ms(c, auth, committed, "user_inactive")
}

/// [`refused_within_100ms`], refusals answering with this `code`.
fn refused_as_within_100ms(c: &Corral, auth: &str, committed: Instant, code: &str) -> Duration {
    let mut first_refusal = None;
    while committed.elapsed() < Duration::from_millis(300) {
        let sent = committed.elapsed();
        let r = hello_on(c, auth);
        match r.status {
            401 => {
                assert_eq!(r.json()["code"], code, "{}", r.text());
                first_refusal.get_or_insert(sent);
            }
            200 => assert!(
                sent < Duration::from_millis(100),
                "accepted {sent:?} after the deactivation committed"
            ),
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    first_refusal.expect("refused at least once")
}

/// Two masters on one database: a deactivation committed on A (by `corral user
/// deactivate` or by SQL) is refused on B within 100 ms, in 20 tries out of 20.
#[test]
fn a_deactivation_on_one_host_is_refused_on_another_within_100ms() {
    let Some(db) =
        TestDb::postgres("a_deactivation_on_one_host_is_refused_on_another_within_100ms")
    else {
        return;
    };
    let a = Api::start(db, &["-w", "2"], &[]);
    let b = a.another_host();
    let (access, _) = a.login();
    let auth = bearer(&access);
    let mut took = vec![];
    for i in 0..20 {
        accepted_everywhere(&b, &auth);
        let committed = if i % 5 == 0 {
            let out = a.cli(&["user", "deactivate", "alice"], None);
            assert_eq!(out.code, Some(0), "{out:?}");
            Instant::now()
        } else {
            set_active(&a.db, false);
            Instant::now()
        };
        took.push(refused_within_100ms(&b, &auth, committed));
        // And on A, the host where it was made.
        assert_eq!(hello_on(&a.c, &auth).status, 401);
        set_active(&a.db, true);
    }
    eprintln!("deactivation seen on the other host after: {took:?}");
}

/// On PostgreSQL the user check is answered from memory: with `corral_user` locked
/// against every reader, a known user's requests are still answered at once (a query per
/// request would wait on the lock); a user not yet cached waits, and is answered once
/// the lock is gone.
#[test]
fn the_user_check_is_answered_from_memory_on_postgres() {
    let Some(db) = TestDb::postgres("the_user_check_is_answered_from_memory_on_postgres") else {
        return;
    };
    let a = Api::start(db, &["-w", "2", "--metrics-bind", "127.0.0.1:0"], &[]);
    let (access, _) = a.login();
    let auth = bearer(&access);
    remembered_by_both_workers(&a.c, &auth, "corral_user_cache_total");
    let lock = a.db.hold("LOCK TABLE corral_user IN ACCESS EXCLUSIVE MODE");
    // Each on a new connection with a 2 s limit. The cache pauses, by design, while the
    // worker has not heard its probe for most of a second (a machine starved of CPU), and
    // a request then waits on the lock: a few slow answers are allowed, none at all would
    // mean no cache. (A pause must not empty the cache, or every later request would
    // wait.)
    let quick = answered_at_once(&a.c.addr, &auth);
    assert!(
        quick >= 7,
        "{quick} of 10 answered while corral_user was locked"
    );
    // bob (id 2) was never checked: his request must wait for the database.
    let bob = mint(json!({"user_id": "2"}));
    let addr = a.c.addr.clone();
    // Backends of this database waiting for the lock (those still blocked stay blocked
    // while it is held, so the count only grows).
    let lock_waiters = || {
        a.db.scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    };
    let before = lock_waiters();
    let waiting = std::thread::spawn(move || hello_on_addr(&addr, &bearer(&bob)));
    eventually(T, "bob's user check to wait for the lock", || {
        (lock_waiters() > before).then_some(())
    });
    assert!(
        !waiting.is_finished(),
        "bob was answered without the database"
    );
    drop(lock);
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "user_inactive");
}

/// Sliding tokens on two hosts: one blacklisted on A (by the endpoint, by SQL, or by
/// revoking its family) is
/// refused on B within 100 ms, 10 tries out of 10; and the blacklist check is answered
/// from memory (with the blacklist locked against readers, a known token is answered at
/// once).
#[test]
fn a_sliding_token_blacklisted_on_one_host_is_refused_on_another_within_100ms() {
    let Some(db) = TestDb::postgres(
        "a_sliding_token_blacklisted_on_one_host_is_refused_on_another_within_100ms",
    ) else {
        return;
    };
    let classes = ("CORRAL_AUTH_AUTH_TOKEN_CLASSES", "AccessToken,SlidingToken");
    let a = Api::start(
        db,
        &["-w", "2", "--metrics-bind", "127.0.0.1:0"],
        &[classes],
    );
    let b = a.another_host();
    let sliding = || {
        let r = a.post(
            "/api/token/sliding/",
            json!({"username": "alice", "password": "wonderland-42"}),
        );
        r.json()["token"].as_str().unwrap().to_string()
    };
    let mut took = vec![];
    for i in 0..10 {
        let token = sliding();
        let auth = bearer(&token);
        accepted_everywhere(&b, &auth);
        let jti = token.split('.').nth(1).map(|p| {
            let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
            v["jti"].as_str().unwrap().to_string()
        });
        let jti = jti.unwrap();
        // By the endpoint, by SQL, and by revoking its family (a sliding token is a
        // family of its own).
        let committed = match i % 3 {
            0 => {
                let r = a.post("/api/token/sliding/blacklist/", json!({ "token": token }));
                assert_eq!(r.status, 200, "{}", r.text());
                Instant::now()
            }
            1 => {
                a.db.scalar(&format!(
                    "WITH b AS (INSERT INTO corral_blacklisted_token (token_id, blacklisted_at) \
                     SELECT id, 0 FROM corral_outstanding_token WHERE jti = '{jti}' RETURNING 1) SELECT COUNT(*) FROM b"
                ));
                Instant::now()
            }
            _ => {
                a.db.scalar(&format!(
                    "WITH f AS (INSERT INTO corral_revoked_family (family, revoked_at) VALUES ('{jti}', 0) RETURNING 1) SELECT COUNT(*) FROM f"
                ));
                Instant::now()
            }
        };
        took.push(refused_as_within_100ms(
            &b,
            &auth,
            committed,
            "token_not_valid",
        ));
    }
    eprintln!("blacklisting seen on the other host after: {took:?}");

    let token = sliding();
    let auth = bearer(&token);
    remembered_by_both_workers(&b, &auth, "corral_token_cache_total");
    let lock =
        a.db.hold("LOCK TABLE corral_blacklisted_token IN ACCESS EXCLUSIVE MODE");
    let quick = answered_at_once(&b.addr, &auth);
    drop(lock);
    // As in the user check's test: the memory lapses, by design, on a CPU-starved machine.
    assert!(
        quick >= 7,
        "{quick} of 10 answered while the blacklist was locked"
    );
}

/// Sends `auth`'s requests to `c` until both of its workers have remembered the answer
/// counted in `family`: until its `miss` count (a query whose answer was kept) has grown
/// by two. Requests need not spread over the workers by themselves.
fn remembered_by_both_workers(c: &Corral, auth: &str, family: &str) {
    let metrics = metrics_addr(c);
    let misses = || {
        let s = samples(&scrape(&metrics));
        sum(&s, &format!("{family}{{"), &["result=\"miss\""])
    };
    let before = misses();
    eventually(T, "both workers to remember the answer", || {
        assert_eq!(hello_on(c, auth).status, 200);
        (misses() >= before + 2.0).then_some(())
    });
}

/// Of 10 requests, each on a new connection, how many got a 200 within 2 s: the best of
/// three rounds, since the memory lapses, by design, while a CPU-starved worker cannot
/// hear its probe (a memory that never answered would get none in any round).
fn answered_at_once(addr: &str, auth: &str) -> usize {
    (0..3)
        .map(|_| answered_within_2s(addr, auth))
        .max()
        .unwrap_or(0)
}

fn answered_within_2s(addr: &str, auth: &str) -> usize {
    (0..10)
        .filter(|_| {
            let mut conn = Conn::open(addr);
            conn.stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let r = conn.request(
                "GET",
                "/hello/",
                &[("Authorization", auth), ("Connection", "close")],
                b"",
            );
            matches!(r, Ok(r) if r.status == 200)
        })
        .count()
}

/// Workers close their connections when they exit (a reload, a stop): PostgreSQL logs
/// no "Connection reset by peer" for any of them, pool or listener.
#[test]
fn workers_close_their_database_connections_when_they_exit() {
    let Some(cluster) = Cluster::start("workers_close_their_database_connections_when_they_exit")
    else {
        return;
    };
    let a = Api::start(cluster.db(), &["-w", "2"], &[]);
    let (access, _) = a.login();
    let auth = bearer(&access);
    let connected = || {
        a.db.scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name LIKE 'corral%'")
    };
    accepted_everywhere(&a.c, &auth);
    // A pool connects on its worker's first query, and requests need not spread over
    // both workers: keep sending until each worker has had one.
    eventually(T, "both workers' listeners and pools to connect", || {
        assert_eq!(hello_on(&a.c, &auth).status, 200);
        (connected() >= 4).then_some(())
    });
    a.c.signal("HUP");
    a.c.expect_log("Generation 2 ready", T);
    accepted_everywhere(&a.c, &auth);
    let mut c = a.c;
    c.signal("TERM");
    assert_eq!(c.wait_exit(T).and_then(|s| s.code()), Some(0));
    eventually(T, "every connection of corral's to end", || {
        (a.db
            .scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name LIKE 'corral%'")
            == 0)
            .then_some(())
    });
    let log = cluster.log();
    assert!(
        !log.contains("Connection reset by peer") && !log.contains("unexpected EOF"),
        "{log}"
    );
}

fn hello_on_addr(addr: &str, auth: &str) -> Response {
    http(addr, "GET", "/hello/", &[("Authorization", auth)], b"")
}

/// Refresh tokens are one family across hosts: a token rotated on A and presented again
/// on B counts as reuse there and revokes the family everywhere; of two concurrent
/// refreshes of one token, one on A and one on B, exactly one wins; a token blacklisted
/// on A is refused on B.
#[test]
fn refresh_tokens_are_one_family_across_hosts() {
    let Some(db) = TestDb::postgres("refresh_tokens_are_one_family_across_hosts") else {
        return;
    };
    let a = Api::start(
        db,
        &["-w", "2"],
        &[("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true")],
    );
    let b = a.another_host();
    let refresh_on = |c: &Corral, token: &str| {
        post_json(&c.addr, "/api/token/refresh/", &json!({"refresh": token}))
    };

    let (_, r1) = a.login();
    let r2 = refresh_on(&a.c, &r1).json()["refresh"]
        .as_str()
        .unwrap()
        .to_string();
    expect(
        &refresh_on(&b, &r1),
        401,
        token_not_valid("Token is blacklisted"),
        REALM,
    );
    b.expect_log("token family is revoked", T);
    expect(
        &refresh_on(&a.c, &r2),
        401,
        token_not_valid("Token is blacklisted"),
        REALM,
    );

    for _ in 0..10 {
        let (_, refresh) = a.login();
        let statuses = race_refreshes([&a.c.addr, &b.addr], &refresh);
        assert_eq!(statuses, vec![200, 401]);
    }

    let (_, r) = a.login();
    let out = post_json(&a.c.addr, "/api/token/blacklist/", &json!({"refresh": r}));
    assert_eq!(out.status, 200, "{}", out.text());
    expect(
        &refresh_on(&b, &r),
        401,
        token_not_valid("Token is blacklisted"),
        REALM,
    );
}

/// The backends of `host`'s workers whose application name is `app`.
fn backends(db: &TestDb, app: &str) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{app}'"
    ))
}

/// The listener's backend is terminated: no stale answer is given meanwhile (the
/// deactivation committed right after is refused within 100 ms, by the query each request
/// makes while nobody listens), the listener reconnects by itself, and the next
/// deactivation is seen through it.
#[test]
fn a_terminated_listener_reconnects_and_gives_no_stale_answer() {
    let Some(db) = TestDb::postgres("a_terminated_listener_reconnects_and_gives_no_stale_answer")
    else {
        return;
    };
    let a = Api::start(db, &["-w", "2"], &[]);
    let (access, _) = a.login();
    let auth = bearer(&access);
    eventually(T, "both workers to listen", || {
        (backends(&a.db, "corral listener") == 2).then_some(())
    });
    accepted_everywhere(&a.c, &auth);
    let workers = a.c.worker_pids();
    let mark = a.c.mark();

    a.db.scalar("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'corral listener'");
    set_active(&a.db, false);
    refused_within_100ms(&a.c, &auth, Instant::now());
    a.c.expect_log_after(mark, "lost the LISTEN connection", T);
    a.c.expect_log_after(
        mark,
        "listening for corral_user, corral_token notifications again",
        T,
    );
    eventually(T, "both workers to listen again", || {
        (backends(&a.db, "corral listener") == 2).then_some(())
    });

    set_active(&a.db, true);
    accepted_everywhere(&a.c, &auth);
    set_active(&a.db, false);
    refused_within_100ms(&a.c, &auth, Instant::now());
    assert_eq!(a.c.worker_pids(), workers, "no worker died");
}

/// PostgreSQL stopped and started again under continuous load: requests get 503 with
/// `Retry-After` only while it is down (none hangs beyond `database.connect_timeout`),
/// then 200s again, with no worker restarted; the user check's cache was flushed, so a
/// deactivation made while corral could not listen is refused at once.
#[test]
fn postgres_restarted_under_load_gives_503s_only_while_down() {
    let Some(cluster) = Cluster::start("postgres_restarted_under_load_gives_503s_only_while_down")
    else {
        return;
    };
    let a = Api::start(
        cluster.db(),
        &["-w", "2"],
        &[("CORRAL_DATABASE_CONNECT_TIMEOUT", "2")],
    );
    let (access, _) = a.login();
    let auth = bearer(&access);
    accepted_everywhere(&a.c, &auth);
    let workers = a.c.worker_pids();
    let traffic = Traffic::start(&a.c.addr, &auth, 4);
    eventually(T, "load to flow", || {
        (hello_on(&a.c, &auth).status == 200).then_some(())
    });

    let down_from = Instant::now();
    cluster.stop();
    eventually(T, "a 503 while PostgreSQL is down", || {
        Some(hello_on(&a.c, &auth)).filter(|r| r.status == 503)
    });
    cluster.start_again();
    let up_at = Instant::now();
    // Back: the listener reconnects, and the pools open new connections.
    eventually(T, "200s again", || {
        (0..8)
            .all(|_| hello_on(&a.c, &auth).status == 200)
            .then_some(())
    });
    let settled = Instant::now();
    // More traffic after recovery: 200 more answers.
    let seen = traffic.progress.load(std::sync::atomic::Ordering::Relaxed);
    eventually(T, "more traffic after recovery", || {
        (traffic.progress.load(std::sync::atomic::Ordering::Relaxed) >= seen + 200).then_some(())
    });
    let outcomes = traffic.finish();

    let down: Vec<_> = outcomes.iter().filter(|o| o.status != 200).collect();
    assert!(!down.is_empty(), "the load saw the outage");
    for o in &down {
        assert_eq!(o.status, 503, "{}", o.body);
        assert_eq!(o.retry_after.as_deref(), Some("1"), "Retry-After");
        // A request sent just before the stop may be answered after it: what bounds a
        // 503 from below is its answer, checked next.
        assert!(
            o.sent <= settled,
            "a 503 after the outage: sent {:?} after the stop, the outage settled {:?} after it, took {:?}: {}",
            o.sent.saturating_duration_since(down_from),
            settled - down_from,
            o.took,
            o.body
        );
        assert!(
            o.sent + o.took >= down_from,
            "a 503 before PostgreSQL stopped"
        );
    }
    for o in &outcomes {
        assert!(
            o.took < Duration::from_secs(3),
            "a request took {:?} (connect_timeout is 2 s)",
            o.took
        );
    }
    assert!(
        outcomes.iter().any(|o| o.status == 200 && o.sent > settled),
        "200s after the restart"
    );
    assert_eq!(a.c.worker_pids(), workers, "no worker restarted");
    eprintln!(
        "outage: {} requests, {} of them 503, back {:?} after the start",
        outcomes.len(),
        down.len(),
        settled - up_at
    );

    // The cache was flushed while nobody listened: a deactivation now is seen at once.
    set_active(&a.db, false);
    refused_within_100ms(&a.c, &auth, Instant::now());
}

/// Every backend of the service is terminated under load, the pools' and the listeners':
/// requests recover by themselves, without a worker restart, and deactivations are
/// still seen.
#[test]
fn terminated_backends_under_load_recover_by_themselves() {
    let Some(db) = TestDb::postgres("terminated_backends_under_load_recover_by_themselves") else {
        return;
    };
    let a = Api::start(db, &["-w", "2"], &[]);
    let (access, _) = a.login();
    let auth = bearer(&access);
    accepted_everywhere(&a.c, &auth);
    let workers = a.c.worker_pids();
    let traffic = Traffic::start(&a.c.addr, &auth, 4);
    for _ in 0..3 {
        eventually(T, "load to flow", || {
            (hello_on(&a.c, &auth).status == 200).then_some(())
        });
        let killed = a.db.scalar("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'corral%'");
        assert!(killed >= 2, "killed {killed} backends");
        eventually(T, "both workers to listen again", || {
            (backends(&a.db, "corral listener") == 2).then_some(())
        });
    }
    let outcomes = traffic.finish();
    for o in outcomes.iter().filter(|o| o.status != 200) {
        assert_eq!(o.status, 503, "{}", o.body);
    }
    assert_eq!(a.c.worker_pids(), workers, "no worker died");
    accepted_everywhere(&a.c, &auth);
    set_active(&a.db, false);
    refused_within_100ms(&a.c, &auth, Instant::now());
}

/// PgBouncer in transaction mode in front: with `database.statement_cache = false` and
/// `database.listen_url` naming the server directly, login, refresh and /hello/ work
/// through the pooler and deactivations are seen within 100 ms.
#[test]
fn pgbouncer_in_transaction_mode_with_a_direct_listen_url() {
    let test = "pgbouncer_in_transaction_mode_with_a_direct_listen_url";
    let (Some(db), Some(bouncer)) = (TestDb::postgres(test), Bouncer::start(test, 5432)) else {
        return;
    };
    let direct = db.url().to_string();
    let pooled = bouncer.url(direct.rsplit('/').next().unwrap());
    let a = Api::start(
        db,
        &["-w", "2"],
        &[
            ("DATABASE_URL", &pooled),
            ("CORRAL_DATABASE_LISTEN_URL", &direct),
            ("CORRAL_DATABASE_STATEMENT_CACHE", "false"),
            ("CORRAL_AUTH_ROTATE_REFRESH_TOKENS", "true"),
        ],
    );
    a.c.expect_log("through a pooler", T);
    let (access, refresh) = a.login();
    let v = a.post("/api/token/refresh/", json!({"refresh": refresh}));
    assert_eq!(v.status, 200, "{}", v.text());
    assert!(v.json()["refresh"].is_string());
    let auth = bearer(&access);
    accepted_everywhere(&a.c, &auth);
    assert_eq!(backends(&a.db, "corral listener"), 2, "LISTEN goes direct");
    set_active(&a.db, false);
    refused_within_100ms(&a.c, &auth, Instant::now());
}

/// Without `database.listen_url` behind a transaction-mode PgBouncer: migrations are
/// refused with the fix (their session lock would leak), and a server started without
/// them says that it will not LISTEN through the pooler (its notifications would reach
/// other clients mid-query) and checks the database on every request, so a deactivation
/// is still refused at once, and no request fails.
#[test]
fn pgbouncer_without_a_listen_url_is_detected() {
    let test = "pgbouncer_without_a_listen_url_is_detected";
    let (Some(db), Some(bouncer)) = (TestDb::postgres(test), Bouncer::start(test, 5432)) else {
        return;
    };
    let pooled = bouncer.url(db.url().rsplit('/').next().unwrap());
    let dir = TempDir::new("bouncer");
    let env = [
        ("DATABASE_URL", pooled.as_str()),
        ("SECRET_KEY", SECRET),
        ("CORRAL_DATABASE_STATEMENT_CACHE", "false"),
    ];
    let refused = run(dir.path(), &["migrate", "apply"], &env);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("goes through a proxy or pooler")
            && refused.stderr.contains("database.listen_url"),
        "{}",
        refused.stderr
    );
    assert!(!db.has_table("corral_user"), "nothing was applied");
    let direct = [("DATABASE_URL", db.url()), ("SECRET_KEY", SECRET)];
    assert_eq!(
        run(dir.path(), &["migrate", "apply"], &direct).code,
        Some(0)
    );
    create_alice(dir.path(), &env);
    let mut b = Corral::builder().dir(dir.path()).args([
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--migrate",
        "off",
    ]);
    for (k, v) in env {
        b = b.env(k, v);
    }
    let c = b.start();
    let login = post_json(
        &c.addr,
        "/api/token/",
        &json!({"username": "alice", "password": "wonderland-42"}),
    );
    assert_eq!(login.status, 200, "{}\n{}", login.text(), c.log());
    let auth = bearer(login.json()["access"].as_str().unwrap());
    accepted_everywhere(&c, &auth);
    c.expect_log(
        "database.url goes through a proxy or pooler (the server listens on another port) and database.listen_url is not set",
        T,
    );
    set_active(&db, false);
    refused_within_100ms(&c, &auth, Instant::now());
}

/// The connection budget: workers that would need more connections than the server
/// allows stop the boot with exit 2 and the numbers; a configuration that fits boots and
/// logs them; a reload to one that does not fit keeps the running generation.
#[test]
fn a_connection_budget_over_the_servers_limit_refuses_to_boot() {
    let Some(db) = TestDb::postgres("a_connection_budget_over_the_servers_limit_refuses_to_boot")
    else {
        return;
    };
    let dir = TempDir::new("budget");
    let env = [("DATABASE_URL", db.url()), ("SECRET_KEY", SECRET)];
    let start = |args: &[&str]| {
        let mut b = Corral::builder()
            .dir(dir.path())
            .args(["-b", "127.0.0.1:0"])
            .args(args.iter().copied())
            .no_wait();
        for (k, v) in env {
            b = b.env(k, v);
        }
        b.start()
    };
    let allowed = db.scalar("SELECT current_setting('max_connections')::bigint - current_setting('superuser_reserved_connections')::bigint");
    let workers = allowed / 3 + 1;
    let mut c = start(&["-w", &workers.to_string()]);
    assert_eq!(
        c.wait_exit(T).and_then(|s| s.code()),
        Some(2),
        "{}",
        c.log()
    );
    let log = c.log();
    assert!(
        log.contains(&format!(
            "Too many database connections: {workers} workers × (2 pool + 1 listener) = {}",
            workers * 3
        )) && log.contains(&format!("but the server allows {allowed} (max_connections")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Not starting workers: {workers} workers need up to {} database connections",
            workers * 3
        )),
        "{log}"
    );
    assert!(c.worker_pids().is_empty());

    // A database limit of 5: one worker (3) fits; two (6) do not.
    let name = db.url().rsplit('/').next().unwrap().to_string();
    pg_admin(&format!("ALTER DATABASE {name} CONNECTION LIMIT 5")).unwrap();
    std::fs::write(dir.join("corral.toml"), "workers = 1\n").unwrap();
    let c = start(&[]);
    c.expect_log(
        "Database connections: 1 worker × (2 pool + 1 listener) = 3; the server allows 5",
        T,
    );
    c.expect_log("database CONNECTION LIMIT 5", T);
    c.expect_log("Generation 1 ready (1 worker)", T);
    std::fs::write(dir.join("corral.toml"), "workers = 2\n").unwrap();
    let mark = c.mark();
    c.signal("HUP");
    c.expect_log_after(mark, "Reload failed: the new configuration needs more database connections than the server allows", T);
    assert_eq!(c.get("/healthz").status, 200, "generation 1 still serves");
    assert_eq!(c.worker_pids().len(), 1);
}
