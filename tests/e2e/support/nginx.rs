//! Debian's nginx in front of corral, on a free loopback port; stopped on drop.

use super::pg::free_port;
use super::process::{eventually, kill, TempDir};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// nginx balancing over `upstreams`, on a free loopback port; stopped on drop.
pub struct Nginx {
    port: u16,
    child: Child,
    pub dir: TempDir,
}

impl Nginx {
    pub fn start(bin: &str, upstreams: &[String]) -> Nginx {
        Nginx::start_as(bin, upstreams, "root", "")
    }

    /// With nginx's workers running as `user`, and `extra` directives in `location /`.
    pub fn start_as(bin: &str, upstreams: &[String], user: &str, extra: &str) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let d = dir.path().display();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process on;\nworker_processes 1;\nuser {user};\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 upstream corral {{\n{servers}    keepalive 16;\n  }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
                 proxy_pass http://corral;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                 proxy_connect_timeout 2s;\n      proxy_next_upstream error timeout http_502 http_503 http_504;\n\
                 proxy_next_upstream_tries 4;\n      {extra}\n    }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-p", &d.to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(T, "nginx to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Nginx { port, child, dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        kill(self.child.id(), "QUIT");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
