//! A fleet in network namespaces: two corral hosts, each in a namespace of its own joined
//! to this one by a veth pair, one PostgreSQL cluster that both reach over their veths,
//! and Debian's nginx in front as the load balancer (`proxy_next_upstream`). Traffic goes
//! only to the addresses this test puts on its veths. Needs root (`ip netns`); without it
//! the test says it skipped, and under `CI=true` it fails instead.

use super::*;
use std::process::Command;

fn tool(name: &str) -> Option<String> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a veth pair: `host_addr` on this side, `ns_addr` inside;
/// deleted (with its veth) on drop.
struct Netns {
    name: String,
    ip: String,
    veth: String,
}

impl Netns {
    fn create(ip: &str, name: &str, veth: &str, host_addr: &str, ns_addr: &str) -> Netns {
        let ns = Netns {
            name: name.to_string(),
            ip: ip.to_string(),
            veth: veth.to_string(),
        };
        let peer = format!("{veth}p");
        sh(&[ip, "netns", "add", name]);
        sh(&[
            ip, "link", "add", veth, "type", "veth", "peer", "name", &peer,
        ]);
        sh(&[ip, "link", "set", &peer, "netns", name]);
        sh(&[ip, "addr", "add", &format!("{host_addr}/24"), "dev", veth]);
        sh(&[ip, "link", "set", veth, "up"]);
        let inside = format!("{ns_addr}/24");
        for cmd in [
            ["addr", "add", inside.as_str(), "dev", peer.as_str()].as_slice(),
            &["link", "set", peer.as_str(), "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut a = vec![ip, "netns", "exec", name, ip];
            a.extend_from_slice(cmd);
            sh(&a);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting either end deletes the pair; the namespace may outlive its name for a
        // moment while its last processes die, so the veth goes first.
        let _ = Command::new(&self.ip)
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Ends a master (one that a USR2 started) when the test ends, however it ends.
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                kill(pid, "KILL");
            }
            for w in children(pid) {
                kill(w, "KILL");
            }
        }
    }
}

/// One corral host in its namespace: the master's pid (it changes on USR2) and its log.
struct Host {
    c: Corral,
    master: u32,
}

impl Host {
    fn signal(&self, sig: &str) {
        kill(self.master, sig);
    }

    /// HUP: waits for the new generation to be ready.
    fn reload(&self) {
        let mark = self.c.mark();
        self.signal("HUP");
        self.c.expect_log_after(mark, "Generation ", T);
        self.c.expect_log_after(mark, "ready (2 workers)", T);
    }

    /// USR2: waits until the new master has taken over and the old one is gone.
    fn upgrade(&mut self, reap: &mut Reap) {
        let mark = self.c.mark();
        let old = self.master;
        self.signal("USR2");
        let line = self
            .c
            .expect_log_after(mark, "Starting new master (pid: ", T);
        let new: u32 = line
            .split("(pid: ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        reap.0.push(new);
        self.c.expect_log_after(
            mark,
            &format!("New master (pid: {new}) is ready; retiring this one"),
            T,
        );
        eventually(T, "the old master to exit", || (!alive(old)).then_some(()));
        self.master = new;
    }
}

/// Waits until the traffic has made `n` more requests (so each step is tested under
/// load, not between bursts).
fn more_requests(progress: &std::sync::atomic::AtomicU64, n: u64) {
    let from = progress.load(std::sync::atomic::Ordering::Relaxed);
    eventually(T, "more requests through nginx", || {
        (progress.load(std::sync::atomic::Ordering::Relaxed) >= from + n).then_some(())
    });
}

/// Two hosts behind nginx on one PostgreSQL: a rolling HUP, then a rolling USR2 of each
/// host under continuous load, then TERM to one host, and not one request fails.
#[test]
fn a_fleet_behind_nginx_rolls_and_loses_a_host_without_a_failed_request() {
    let test = "a_fleet_behind_nginx_rolls_and_loses_a_host_without_a_failed_request";
    if !need_root(test) {
        return;
    }
    let (Some(ip), Some(nginx_bin)) = (tool("ip"), tool("nginx")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ip and nginx are required under CI"
        );
        eprintln!("SKIPPED {test}: needs iproute2 and nginx");
        return;
    };
    // Addresses of this test's own, distinct per test process.
    let k = std::process::id() % 120;
    let pid = std::process::id() % 100_000;
    let nets: Vec<(String, String)> = [2 * k, 2 * k + 1]
        .iter()
        .map(|o| (format!("10.213.{o}.1"), format!("10.213.{o}.2")))
        .collect();
    let spaces: Vec<Netns> = nets
        .iter()
        .enumerate()
        .map(|(i, (h, n))| {
            Netns::create(
                &ip,
                &format!("corral-t{pid}-{i}"),
                &format!("cr{pid}v{i}"),
                h,
                n,
            )
        })
        .collect();
    let host_side: Vec<String> = nets.iter().map(|(h, _)| h.clone()).collect();
    let Some(cluster) = Cluster::start_on(test, &host_side, Some("10.213.0.0/16")) else {
        return;
    };

    // Users, from this namespace; then the hosts, each reaching PostgreSQL over its veth.
    let dir = TempDir::new("fleet");
    let local = cluster.db().url().to_string();
    let env = [("DATABASE_URL", local.as_str()), ("SECRET_KEY", SECRET)];
    assert_eq!(run(dir.path(), &["migrate", "apply"], &env).code, Some(0));
    create_alice(dir.path(), &env);
    let mut hosts: Vec<Host> = spaces
        .iter()
        .zip(&nets)
        .map(|(ns, (h, n))| {
            let url = format!("postgres://postgres@{h}:{}/postgres", cluster.port);
            let c = Corral::builder()
                .dir(dir.path())
                .wrap([ip.as_str(), "netns", "exec", ns.name.as_str()])
                .args([
                    "-b",
                    &format!("{n}:8000"),
                    "-w",
                    "2",
                    "--graceful-timeout",
                    "10",
                ])
                .env("DATABASE_URL", url)
                .env("SECRET_KEY", SECRET)
                .start();
            let master = c.pid;
            Host { c, master }
        })
        .collect();
    let mut reap = Reap(vec![]);
    let nginx = Nginx::start(
        &nginx_bin,
        &nets
            .iter()
            .map(|(_, n)| format!("{n}:8000"))
            .collect::<Vec<_>>(),
    );
    let login = post_json(
        &nginx.addr(),
        "/api/token/",
        &json!({"username": "alice", "password": "wonderland-42"}),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let auth = format!("Bearer {}", login.json()["access"].as_str().unwrap());

    let traffic = Traffic::start(&nginx.addr(), &auth, 4);
    let progress = traffic.progress.clone();
    more_requests(&progress, 200);
    for h in &hosts {
        h.reload();
        more_requests(&progress, 200);
    }
    for h in &mut hosts {
        h.upgrade(&mut reap);
        more_requests(&progress, 200);
    }
    let gone = hosts.remove(0);
    gone.signal("TERM");
    eventually(T, "the host to stop", || {
        (!alive(gone.master)).then_some(())
    });
    more_requests(&progress, 500);
    let outcomes = traffic.finish();

    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status != 200)
        .map(|o| format!("{}: {}", o.status, o.body))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\nnginx: {}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)],
        std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
    );
    eprintln!(
        "fleet: {} requests through nginx, none failed",
        outcomes.len()
    );
    drop(nginx);
    drop(hosts);
    drop(reap);
    drop(gone);
}
