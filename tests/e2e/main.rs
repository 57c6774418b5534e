//! End-to-end tests: every test starts the real `corral` binary, on port 0, and drives it
//! with real HTTP clients, real signals and a real database.

mod support; // the server as a process, a raw HTTP client, per-test databases

mod api; // the JWT app: simplejwt parity, tokens, attacks, keys, rotation, outages, users, secrets
mod cli; // usage errors, help, the words of log lines
mod config; // flags, env, file, `check`, `config`, binds, pidfile
mod faults; // a full disk, a read-only or deleted database file, an unopenable path
mod http; // limits, timeouts, request ids, access log
mod master; // supervision, signals, reloads, recycling, shutdown, boot failure
mod migrate; // migrations at boot, the migrate CLI, locking, SQLite and PostgreSQL
mod observe; // metrics from the master, the control socket, status, ctl, top, process titles
mod platform; // systemd, USR2 upgrades, Heroku and honcho, --reload
mod proxy; // behind a proxy: forwarded headers, PROXY protocol, Heroku, queue time, timeouts, privileges
mod tls; // TLS and HTTP/2: curl, openssl s_client, h2load, rotation, rapid reset
