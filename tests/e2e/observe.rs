//! Observing and steering a running corral: Prometheus metrics from the master (checked
//! with promtool), the control socket (`corral status`, `corral ctl`), `corral top` under
//! tmux, and process titles.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// `/healthz` requests counted in the duration histogram.
fn healthz_count(addr: &str) -> f64 {
    sum(
        &samples(&scrape(addr)),
        "http_server_request_duration_seconds_count{",
        &["http_route=\"healthz\""],
    )
}

fn get_n(c: &Corral, n: usize) {
    for _ in 0..n {
        assert_eq!(c.get("/healthz").status, 200);
    }
}

/// Every histogram's buckets rise with `le` and end at `_count`.
fn assert_histograms_cumulative(text: &str) {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let s = samples(text);
    for (k, v) in &s {
        let Some((family, rest)) = k.split_once("_bucket{") else {
            continue;
        };
        let (labels, le) = rest.rsplit_once("le=\"").unwrap();
        let le = le.trim_end_matches("\"}");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let labels = labels.trim_end_matches(',');
        series
            .entry(format!("{family}{{{labels}}}"))
            .or_default()
            .push((le, *v));
    }
    assert!(!series.is_empty(), "no histogram in:\n{text}");
    for (name, mut buckets) in series {
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}: buckets not cumulative: {buckets:?}"
        );
        let (family, labels) = name.split_once('{').unwrap();
        let labels = labels.trim_end_matches('}');
        let count_name = if labels.is_empty() {
            format!("{family}_count")
        } else {
            format!("{family}_count{{{labels}}}")
        };
        assert_eq!(
            Some(&buckets.last().unwrap().1),
            s.get(&count_name),
            "{name}: +Inf bucket is not the count"
        );
    }
}

fn promtool_check(text: &str, test: &str) {
    if !have("promtool", test) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The request counts equal the requests sent, through a HUP, `--max-requests`
/// recycling and a `kill -9` of a worker; the output passes `promtool check metrics`.
#[test]
fn metrics_count_every_request_across_reloads_recycling_and_kill_9() {
    let test = "metrics_count_every_request_across_reloads_recycling_and_kill_9";
    let c = Corral::plain(2)
        .args(["--metrics-bind", "127.0.0.1:0", "--max-requests", "30"])
        .start();
    let m = metrics_addr(&c);
    assert_eq!(healthz_count(&m), 0.0);
    get_n(&c, 100);
    assert_eq!(healthz_count(&m), 100.0);
    // 100 requests over 2 workers at --max-requests 30 recycle at least one.
    eventually(T, "a worker recycled for --max-requests", || {
        let s = samples(&scrape(&m));
        (s["corral_worker_restarts_total{cause=\"max_requests\"}"] >= 1.0).then_some(())
    });

    let mark = c.mark();
    c.signal("HUP");
    c.expect_log_after(mark, "reload complete", T);
    assert_eq!(healthz_count(&m), 100.0, "a reload keeps the counts");
    get_n(&c, 50);
    assert_eq!(healthz_count(&m), 150.0);

    let victim = c.wait_workers(2, &[], T)[0];
    kill(victim, "KILL");
    c.wait_workers(2, &[victim], T);
    eventually(T, "two ready workers again", || {
        (samples(&scrape(&m))["corral_workers{state=\"ready\"}"] == 2.0).then_some(())
    });
    assert_eq!(
        healthz_count(&m),
        150.0,
        "a killed worker's counts are kept"
    );
    get_n(&c, 50);
    let text = scrape(&m);
    let s = samples(&text);
    assert_eq!(
        sum(
            &s,
            "http_server_request_duration_seconds_count{",
            &["http_route=\"healthz\""]
        ),
        200.0
    );
    assert!(s["corral_worker_restarts_total{cause=\"crash\"}"] >= 1.0);
    assert!(s["corral_worker_restarts_total{cause=\"reload\"}"] >= 2.0);
    assert_eq!(s["corral_reloads_total{outcome=\"ok\"}"], 1.0);
    assert_eq!(s["corral_generation"], 2.0);
    // --max-requests keeps recycling: workers may be on their way in or out now, but
    // the states account for at least the two wanted.
    assert!(sum(&s, "corral_workers{", &[]) >= 2.0, "{text}");
    assert_eq!(s["http_server_connections_total"], 200.0, "{text}");
    assert!(s["process_resident_memory_bytes{process=\"workers\"}"] > 0.0);
    assert!(s["process_cpu_seconds_total{process=\"workers\"}"] > 0.0);
    assert_histograms_cumulative(&text);
    promtool_check(&text, test);

    // Prometheus asks for OpenMetrics: counters lose `_total` in `# TYPE`, and it ends
    // with `# EOF`.
    let om = http(
        &m,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
        b"",
    );
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let om = om.text();
    assert!(om.contains("# TYPE http_server_connections counter\n"));
    assert!(om.ends_with("# EOF\n"));
    assert_eq!(http(&m, "GET", "/other", &[], b"").status, 404);
}

/// The app's metrics: logins and authentication failures by outcome and code, and the
/// password hash time.
#[test]
fn metrics_count_logins_and_authentication_failures() {
    let api = crate::api::Api::start(TestDb::sqlite(), &["--metrics-bind", "127.0.0.1:0"], &[]);
    let c = &api.c;
    let m = metrics_addr(c);
    let login = |pw: &str| {
        post_json(
            &c.addr,
            "/api/token/",
            &serde_json::json!({"username": "alice", "password": pw}),
        )
        .status
    };
    assert_eq!(login("wonderland-42"), 200);
    assert_eq!(login("wrong"), 401);
    assert_eq!(c.get("/hello/").status, 401);
    let r = http(
        &c.addr,
        "GET",
        "/hello/",
        &[("Authorization", "Bearer not.a.token")],
        b"",
    );
    assert_eq!(r.status, 401);
    let s = samples(&scrape(&m));
    assert_eq!(s["corral_auth_logins_total{outcome=\"success\"}"], 1.0);
    assert_eq!(
        s["corral_auth_logins_total{outcome=\"invalid_credentials\"}"],
        1.0
    );
    assert_eq!(
        s["corral_auth_failures_total{code=\"not_authenticated\"}"],
        1.0
    );
    assert_eq!(
        s["corral_auth_failures_total{code=\"token_not_valid\"}"],
        1.0
    );
    assert_eq!(
        s["corral_auth_password_hash_duration_seconds_count"], 2.0,
        "both logins checked alice's hash"
    );
    assert_eq!(
        sum(
            &s,
            "http_server_request_duration_seconds_count{",
            &[
                "http_route=\"token_obtain_pair\"",
                "http_response_status_code=\"401\""
            ]
        ),
        1.0
    );
}

/// A control socket in a fresh directory that `nobody` may enter.
fn control_dir(tag: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(tag);
    chmod(d.path(), 0o755);
    let sock = d.join("ctl.sock");
    (d, sock)
}

fn corral(dir: &Path, args: &[&str]) -> Output {
    run(dir, args, &[])
}

/// A request that is slow to arrive shows in `corral status --json`, with its path and
/// how long it has been in flight; the text form lists the workers.
#[test]
fn a_slow_request_in_flight_shows_in_status() {
    let (d, sock) = control_dir("status");
    let s = sock.to_str().unwrap();
    let c = Corral::plain(2).args(["--control-socket", s]).start();
    let mut slow = Conn::open(&c.addr);
    slow.send_raw(
        b"POST /api/token/?password=secret HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
    )
    .unwrap();
    let doc = eventually(T, "the slow request in `corral status --json`", || {
        let out = corral(d.path(), &["status", "--json", "--control-socket", s]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let flight = doc["workers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| w["in_flight"].as_array().unwrap().clone())
            .find(|f| f["elapsed_ms"].as_u64().unwrap() >= 300)?;
        Some((doc, flight))
    });
    let (doc, flight) = doc;
    assert_eq!(flight["method"], "POST");
    assert!(
        flight["path"].as_str().unwrap().starts_with("/api/token/"),
        "{flight}"
    );
    assert!(
        !flight["path"].as_str().unwrap().contains("secret"),
        "query values are redacted: {flight}"
    );
    assert_eq!(flight["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(doc["master"]["pid"], c.pid);
    assert_eq!(doc["master"]["generation"], 1);
    assert_eq!(doc["workers"].as_array().unwrap().len(), 2);
    assert_eq!(doc["workers"][0]["state"], "ready");
    let text = corral(d.path(), &["status", "--control-socket", s]);
    assert_eq!(text.code, Some(0));
    for pid in c.worker_pids() {
        assert!(text.stdout.contains(&pid.to_string()), "{}", text.stdout);
    }
    assert!(text.stdout.contains("POST /api/token/"), "{}", text.stdout);
    drop(slow);
}

/// `ctl reload` returns once the new generation is ready; with a broken configuration
/// it exits 1 with the reason and the old generation keeps serving. `ctl ttin`/`ttou`
/// return when the workers are there; `ctl stop` when the master has exited.
#[test]
fn ctl_answers_once_the_operation_is_done() {
    let (d, sock) = control_dir("ctl");
    let s = sock.to_str().unwrap();
    let cfg = d.join("corral.toml");
    std::fs::write(
        &cfg,
        "workers = 1\nbind = [\"127.0.0.1:0\"]\n[database]\nmigrate = \"off\"\n",
    )
    .unwrap();
    let mut c = Corral::builder()
        .dir(d.path())
        .args(["-c", cfg.to_str().unwrap(), "--control-socket", s])
        .start();
    let mark = c.mark();
    let out = corral(d.path(), &["ctl", "reload", "--control-socket", s]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("generation 2 ready"), "{}", out.stdout);
    // It answered after the master saw the generation ready, not before.
    assert!(c
        .log()
        .lines()
        .skip(mark)
        .any(|l| l.contains("Generation 2 ready")));

    std::fs::write(&cfg, "workers = \"many\"\n").unwrap();
    let before = c.worker_pids();
    let out = corral(d.path(), &["ctl", "reload", "--control-socket", s]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stderr.contains("reload failed"), "{}", out.stderr);
    assert!(out.stderr.contains("`workers`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("generation 2 keeps serving"),
        "{}",
        out.stderr
    );
    assert_eq!(c.worker_pids(), before);
    assert_eq!(c.get("/healthz").status, 200);
    std::fs::write(
        &cfg,
        "workers = 1\nbind = [\"127.0.0.1:0\"]\n[database]\nmigrate = \"off\"\n",
    )
    .unwrap();

    let out = corral(d.path(), &["ctl", "ttin", "--control-socket", s]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("2 workers ready"), "{}", out.stdout);
    assert_eq!(c.worker_pids().len(), 2, "both are up when ttin returns");
    let out = corral(d.path(), &["ctl", "ttou", "--control-socket", s]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("1 worker ready"), "{}", out.stdout);
    let out = corral(d.path(), &["ctl", "ttou", "--control-socket", s]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("already at one worker"),
        "{}",
        out.stderr
    );

    let bad = corral(d.path(), &["ctl", "frobnicate", "--control-socket", s]);
    assert_eq!(bad.code, Some(2), "a usage error");

    let out = corral(d.path(), &["ctl", "stop", "--control-socket", s]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("Stopped"));
    let status = c.wait_exit(Duration::from_secs(1));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exited when ctl returned"
    );
    assert!(!sock.exists(), "the socket file is removed at exit");
    let out = corral(d.path(), &["status", "--control-socket", s]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("cannot reach the master"),
        "{}",
        out.stderr
    );
}

/// The control socket is mode 0600, and a client of another uid that gets through
/// anyway (the mode loosened) is refused by `SO_PEERCRED`.
#[test]
fn the_control_socket_refuses_another_user() {
    if !need_root("the_control_socket_refuses_another_user") {
        return;
    }
    let (d, sock) = control_dir("peercred");
    let s = sock.to_str().unwrap();
    let c = Corral::plain(1).args(["--control-socket", s]).start();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let as_nobody = |args: &[&str]| {
        let mut cmd = base_command(Path::new("setpriv"), d.path());
        cmd.args(&as_nobody()[1..]).arg(BIN).args(args);
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_nobody(&["status", "--control-socket", s]);
    assert_eq!(code, Some(1));
    assert!(err.contains("Permission denied"), "{err}");
    chmod(&sock, 0o666);
    let mark = c.mark();
    let (code, err) = as_nobody(&["ctl", "stop", "--control-socket", s]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("permission denied: the control socket accepts only its master's user"),
        "{err}"
    );
    c.expect_log_after(mark, "refused a client of another user", T);
    assert!(alive(c.pid), "the refused stop did nothing");
    assert_eq!(c.get("/healthz").status, 200);
}

/// `corral top` in a real terminal (tmux): it shows the workers, and `q` ends it.
#[test]
fn corral_top_shows_the_workers_and_quits_on_q() {
    if !have("tmux", "corral_top_shows_the_workers_and_quits_on_q") {
        return;
    }
    let (d, sock) = control_dir("top");
    let s = sock.to_str().unwrap();
    let c = Corral::plain(2).args(["--control-socket", s]).start();
    let server = format!("corral-top-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &server])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap()
    };
    let cmd = format!("{BIN} top --control-socket {s}");
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "40",
        "-c",
        d.path().to_str().unwrap(),
        &cmd,
    ]);
    assert!(started.status.success(), "{started:?}");
    let pids = c.wait_workers(2, &[], T);
    let screen = eventually(T, "corral top to show both workers", || {
        let out = tmux(&["capture-pane", "-p", "-t", "top"]);
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        (pids.iter().all(|p| screen.contains(&p.to_string())) && screen.contains("ready"))
            .then_some(screen)
    });
    assert!(screen.contains(&format!("master {}", c.pid)), "{screen}");
    assert!(screen.contains("q: quit"), "{screen}");
    tmux(&["send-keys", "-t", "top", "q"]);
    let t = Instant::now();
    eventually(T, "corral top to exit on q", || {
        (!tmux(&["has-session", "-t", "top"]).status.success()).then_some(())
    });
    assert!(t.elapsed() < Duration::from_secs(5));
    tmux(&["kill-server"]);
}

/// `ps` shows what each process is: `corral: master`, `corral: worker [gen N]`.
#[test]
fn process_titles_say_what_each_process_is() {
    let c = Corral::plain(1).start();
    assert!(
        cmdline(c.pid).starts_with("corral: master"),
        "{}",
        cmdline(c.pid)
    );
    let w = c.wait_workers(1, &[], T)[0];
    assert!(
        cmdline(w).starts_with("corral: worker [gen 1]"),
        "{}",
        cmdline(w)
    );
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", c.pid)).unwrap();
    assert_eq!(comm.trim(), "corral: master");
    c.signal("HUP");
    let w2 = c.wait_workers(1, &[w], T)[0];
    assert!(
        cmdline(w2).starts_with("corral: worker [gen 2]"),
        "{}",
        cmdline(w2)
    );
}
