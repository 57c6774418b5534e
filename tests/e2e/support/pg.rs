//! PostgreSQL servers a test owns: a private cluster it may stop and start ([`Cluster`],
//! from Debian's `postgresql` binaries), and PgBouncer in transaction mode in front of
//! the shared server ([`Bouncer`]). Both refuse to run as root, so as root they run as
//! the `postgres` user (`setpriv`, which execs: the pid is the server's own). Without
//! the binaries a test says it skipped; under `CI=true` it fails instead.

#![allow(dead_code)]

use super::db::TestDb;
use super::process::{eventually, TempDir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The directory of Debian's PostgreSQL server binaries (`initdb`, `pg_ctl`).
fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Says why a test cannot run (or fails under CI).
fn skip<T>(test: &str, why: &str) -> Option<T> {
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    None
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command run as `postgres` when this process is root (servers refuse root).
fn as_server_user(program: &Path) -> Command {
    if root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "postgres",
            "--regid",
            "postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Gives a directory to the server user, so it may write there.
fn hand_over(dir: &Path) {
    if root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "chown {}", dir.display());
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL cluster of the test's own on 127.0.0.1, stopped on drop.
pub struct Cluster {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
    /// Addresses it listens on besides 127.0.0.1.
    also: Vec<String>,
}

impl Cluster {
    /// `None` (after saying so) without the server binaries, outside CI.
    pub fn start(test: &str) -> Option<Cluster> {
        Cluster::start_on(test, &[], None)
    }

    /// Also listening on `also` (the test's own addresses), trusting clients from
    /// `network` (CIDR).
    pub fn start_on(test: &str, also: &[String], network: Option<&str>) -> Option<Cluster> {
        let Some(bin) = pg_bin() else {
            return skip(
                test,
                "PostgreSQL's server binaries (initdb, pg_ctl) are not installed",
            );
        };
        let dir = TempDir::new("pgcluster");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        hand_over(dir.path());
        let out = as_server_user(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(net) = network {
            let hba = dir.join("data/pg_hba.conf");
            let mut f = std::fs::OpenOptions::new().append(true).open(&hba).unwrap();
            writeln!(f, "host all all {net} trust").unwrap();
        }
        let c = Cluster {
            port: free_port(),
            dir,
            bin,
            also: also.to_vec(),
        };
        c.pg_ctl(&["start", "-o", &c.server_options()]);
        Some(c)
    }

    fn server_options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off -c max_connections=60",
            self.port,
            self.dir.path().display(),
            std::iter::once("127.0.0.1")
                .chain(self.also.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    /// `pg_ctl ARGS…` on this cluster, waiting for it to finish (`-w`).
    fn pg_ctl(&self, args: &[&str]) {
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Its `postgres` database, as a [`TestDb`] (removed with the cluster).
    pub fn db(&self) -> TestDb {
        TestDb::Elsewhere {
            url: format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
        }
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server (fast: connections are closed at once).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// Starts it again, with the same options.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-o", &self.server_options()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "stop", "-m", "immediate"])
            .output();
    }
}

/// PgBouncer in transaction pooling mode on 127.0.0.1, in front of the server at
/// `127.0.0.1:5432`; killed on drop.
pub struct Bouncer {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Bouncer {
    /// `None` (after saying so) without `pgbouncer`, outside CI.
    pub fn start(test: &str, server_port: u16) -> Option<Bouncer> {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let Some(bin) = bin else {
            return skip(
                test,
                "pgbouncer is not installed (Debian's pgbouncer package)",
            );
        };
        let dir = TempDir::new("pgbouncer");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let port = free_port();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = 4\nmax_client_conn = 200\n\
                 ignore_startup_parameters = extra_float_digits,options\n",
                dir.join("users.txt").display()
            ),
        )
        .unwrap();
        hand_over(dir.path());
        let child = as_server_user(&bin)
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let b = Bouncer {
            port,
            child,
            _dir: dir,
        };
        eventually(Duration::from_secs(10), "pgbouncer to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(b)
    }

    /// The URL of database `db` through the pooler.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
