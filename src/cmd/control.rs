//! `corral status`, `corral ctl …` and `corral top`: clients of a running master's
//! control socket (see `master::console` for the protocol).

use crate::config::schema::Schema;
use crate::error::exit;
use clap::ArgMatches;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A connection to a master.
struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(schema: &'static Schema, m: &ArgMatches) -> Result<Client, String> {
        let path = match m.get_one::<String>("control_socket") {
            // Given: the rest of the configuration does not matter (it may be what is
            // being fixed before a reload).
            Some(p) => crate::config::ControlSocket::try_from(p.clone())?.path(None),
            None => {
                let (_, loaded) = super::load(schema, m).map_err(|h| h.to_string())?;
                let c = &loaded.config;
                c.control_socket.path(c.pid.as_deref())
            }
        };
        let path = path.ok_or(
            "no control socket is configured: pass --control-socket PATH (or --pid FILE, as the master was started)",
        )?;
        let s = UnixStream::connect(&path).map_err(|e| {
            format!(
                "cannot reach the master at {}: {e} (is it running? pass --control-socket as it was started)",
                path.display()
            )
        })?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Client {
            path,
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Sends one command and waits (up to `timeout`) for its one-line answer.
    fn ask(&mut self, cmd: Value, timeout: Duration) -> Result<Value, String> {
        let lost = |e: std::io::Error| format!("lost the master at {}: {e}", self.path.display());
        // A master that refuses this client answers and closes at once: its answer is
        // still there to read when the write fails.
        let _ = self.writer.write_all(format!("{cmd}\n").as_bytes());
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(lost)?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(format!(
                "the master at {} closed the connection",
                self.path.display()
            )),
            Ok(_) => {
                serde_json::from_str(&line).map_err(|e| format!("bad answer from the master: {e}"))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(format!(
                    "no answer from the master within {} s",
                    timeout.as_secs()
                ))
            }
            Err(e) => Err(lost(e)),
        }
    }

    /// Waits until the master closes the connection (it has exited).
    fn wait_closed(&mut self, timeout: Duration) -> bool {
        let _ = self.reader.get_ref().set_read_timeout(Some(timeout));
        let mut rest = String::new();
        matches!(self.reader.read_line(&mut rest), Ok(0))
    }
}

fn fail(msg: &str) -> u8 {
    eprintln!("corral: {msg}");
    exit::FAILURE
}

/// The error of an `{"ok": false}` answer.
fn refused(v: &Value) -> Option<String> {
    (v["ok"] != json!(true)).then(|| {
        v["error"]
            .as_str()
            .unwrap_or("the master refused")
            .to_string()
    })
}

/// `corral status [--json]`.
pub(super) fn status(schema: &'static Schema, m: &ArgMatches) -> u8 {
    let doc = match Client::connect(schema, m)
        .and_then(|mut c| c.ask(json!({"cmd": "status"}), Duration::from_secs(10)))
    {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    if let Some(e) = refused(&doc) {
        return fail(&e);
    }
    if m.get_flag("json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serialisable")
        );
    } else {
        print!("{}", render(&doc, None));
    }
    exit::OK
}

/// `corral ctl reload|ttin|ttou|upgrade|stop [--quick]`: answers once it is done.
pub(super) fn ctl(schema: &'static Schema, m: &ArgMatches) -> u8 {
    let (name, sm) = m.subcommand().expect("clap requires a subcommand");
    let timeout = Duration::from_secs(*m.get_one::<u64>("timeout").expect("has a default"));
    let cmd = match name {
        "stop" => json!({"cmd": "stop", "quick": sm.get_flag("quick")}),
        other => json!({ "cmd": other }),
    };
    let mut client = match Client::connect(schema, m) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let answer = match client.ask(cmd, timeout) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if let Some(e) = refused(&answer) {
        return fail(&e);
    }
    match name {
        "reload" => println!(
            "Reloaded: generation {} ready in {} ms",
            answer["generation"], answer["elapsed_ms"]
        ),
        "ttin" | "ttou" => println!(
            "{} ready",
            crate::logging::count(answer["workers"].as_u64().unwrap_or(0), "worker")
        ),
        "upgrade" => println!(
            "Upgraded: the new master (pid {}) is ready",
            answer["new_master"]
        ),
        _ => {
            if !client.wait_closed(timeout) {
                return fail(&format!(
                    "the master did not stop within {} s",
                    timeout.as_secs()
                ));
            }
            println!("Stopped");
        }
    }
    exit::OK
}

/// A human-readable status; with `rate`, the request rate `corral top` measured.
fn render(doc: &Value, rate: Option<f64>) -> String {
    let m = &doc["master"];
    let mut out = format!(
        "corral {} master {} · {} · generation {} · up {} · {} requests{}\r\n",
        m["version"].as_str().unwrap_or("?"),
        m["pid"],
        m["phase"].as_str().unwrap_or("?"),
        m["generation"],
        human_secs(m["uptime_s"].as_f64().unwrap_or(0.0)),
        m["requests_total"],
        rate.map(|r| format!(" · {r:.0} req/s")).unwrap_or_default(),
    );
    out.push_str(&format!(
        "config: {} · migrations: {} · workers wanted: {}\r\n\r\n",
        m["config_file"].as_str().unwrap_or("(none)"),
        m["migrations"]["state"].as_str().unwrap_or("?"),
        m["workers_wanted"],
    ));
    out.push_str(&format!(
        "{:>8} {:>4} {:<9} {:>8} {:>10} {:>6} {:>9}  {}\r\n",
        "PID", "GEN", "STATE", "AGE", "REQUESTS", "CONNS", "RSS", "IN FLIGHT"
    ));
    let empty = vec![];
    let workers = doc["workers"].as_array().unwrap_or(&empty);
    let mut slow: Vec<(u64, String)> = vec![];
    for w in workers {
        let flights = w["in_flight"].as_array().unwrap_or(&empty);
        for f in flights {
            slow.push((
                f["elapsed_ms"].as_u64().unwrap_or(0),
                format!(
                    "{} {} {} (pid {}, request {})",
                    human_ms(f["elapsed_ms"].as_u64().unwrap_or(0)),
                    f["method"].as_str().unwrap_or(""),
                    f["path"].as_str().unwrap_or(""),
                    w["pid"],
                    f["request_id"].as_str().unwrap_or("")
                ),
            ));
        }
        out.push_str(&format!(
            "{:>8} {:>4} {:<9} {:>8} {:>10} {:>6} {:>9}  {}\r\n",
            w["pid"].to_string(),
            w["generation"].to_string(),
            w["state"].as_str().unwrap_or("?"),
            human_secs(w["age_s"].as_f64().unwrap_or(0.0)),
            w["requests"].to_string(),
            w["connections"].to_string(),
            human_bytes(w["rss_bytes"].as_u64().unwrap_or(0)),
            flights.len()
        ));
    }
    slow.sort_by_key(|s| std::cmp::Reverse(s.0));
    out.push_str("\r\nslowest requests in flight:\r\n");
    if slow.is_empty() {
        out.push_str("  (none)\r\n");
    }
    for (_, line) in slow.iter().take(5) {
        out.push_str(&format!("  {line}\r\n"));
    }
    if rate.is_none() {
        out = out.replace("\r\n", "\n");
    }
    out
}

fn human_secs(s: f64) -> String {
    let s = s as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

fn human_bytes(b: u64) -> String {
    format!("{:.1}M", b as f64 / 1_048_576.0)
}

/// `corral top`: the status, refreshed every second; `q` quits.
pub(super) fn top(schema: &'static Schema, m: &ArgMatches) -> u8 {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let mut client = match Client::connect(schema, m) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
    }
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b[?1049h\x1b[?25l");
    let mut last: Option<(Instant, u64)> = None;
    let code = loop {
        let doc = match client.ask(json!({"cmd": "status"}), Duration::from_secs(5)) {
            Ok(d) => d,
            Err(e) => break Err(e),
        };
        let total = doc["master"]["requests_total"].as_u64().unwrap_or(0);
        let now = Instant::now();
        let rate =
            last.map(|(t, n)| total.saturating_sub(n) as f64 / (now - t).as_secs_f64().max(0.001));
        last = Some((now, total));
        let _ = write!(
            out,
            "\x1b[H\x1b[2J{}\r\nq: quit\r\n",
            render(&doc, Some(rate.unwrap_or(0.0)))
        );
        let _ = out.flush();
        if key_pressed(Duration::from_secs(1)) {
            break Ok(());
        }
    };
    let _ = write!(out, "\x1b[?25h\x1b[?1049l");
    let _ = out.flush();
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
    }
    match code {
        Ok(()) => exit::OK,
        Err(e) => fail(&e),
    }
}

/// Waits up to `t` for `q` (or Ctrl-C, Ctrl-D, Esc) on stdin; true to quit.
fn key_pressed(t: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let deadline = Instant::now() + t;
    let stdin = std::io::stdin();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            continue;
        }
        let mut b = [0u8; 16];
        match stdin.lock().read(&mut b) {
            Ok(0) => return true, // stdin closed
            Ok(n) => {
                if b[..n]
                    .iter()
                    .any(|c| matches!(c, b'q' | b'Q' | 3 | 4 | 0x1b))
                {
                    return true;
                }
            }
            Err(_) => return true,
        }
    }
}
