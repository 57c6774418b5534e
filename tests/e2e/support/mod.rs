//! Test support, shared by every end-to-end test: `use crate::support::*` brings in all of
//! it.
//!
//! - [`process`]: temp dirs, the `corral serve` process ([`Corral`], [`Builder`]), one-shot
//!   commands ([`run`], [`run_stdin`]), signals and `/proc` helpers, [`eventually`].
//! - [`client`]: the raw HTTP/1.1 client ([`http`], [`post_json`], [`Conn`], [`Load`]).
//! - [`db`]: per-test databases ([`TestDb`]), PostgreSQL administration, migration
//!   directories.
//! - [`pg`]: PostgreSQL servers a test owns: a private cluster to stop and start, and
//!   PgBouncer in transaction mode.
//! - [`metrics`]: scraping the master's Prometheus metrics.
//! - [`fs`]: faults of the filesystem: a small tmpfs that can fill up, running corral as
//!   an unprivileged user so that file permissions apply.

#![allow(dead_code)]

mod client;
mod db;
mod fs;
mod metrics;
mod nginx;
mod pg;
mod process;
mod tls;

pub use client::*;
pub use db::*;
pub use fs::*;
pub use metrics::*;
pub use nginx::*;
pub use pg::*;
pub use process::*;
pub use tls::*;
