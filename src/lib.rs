//! corral: a pre-fork process manager for the web, with a bundled JWT-auth API that is
//! wire-compatible with Django REST Framework + djangorestframework-simplejwt.
//!
//! A master process binds the listening sockets, applies pending database migrations,
//! then starts and supervises worker processes; each worker serves HTTP/1.1 with tokio and
//! hyper. The master restarts dead or hung workers, reloads without failing a request, and
//! shuts down within the platform's grace period.
//!
//! # Layout
//!
//! Layers point one way: the binary (`main.rs`) hands the bundled [`app`] to the core,
//! and nothing in the core names the app.
//!
//! - The core's entry: [`Server`] and the dispatch of commands (`cmd`), the command line
//!   (`cli`, with the typed argv one corral process hands another), and [`App`], the one
//!   value through which an application plugs in ([`service`]).
//! - [`config`]: the typed configuration, loaded in layers (flags > env > file >
//!   defaults), and its handoff to child processes.
//! - `master`: the supervision loop (single-threaded, no runtime, no database), made of
//!   small owners: the arbiter, reconciliation, generations, spawning, systemd, the dev
//!   reloader and the binary upgrade.
//! - [`worker`], [`http`]: a worker process and its HTTP server (limits, timeouts,
//!   draining, access log).
//! - [`storage`]: database URLs, pools and the migration runner.
//! - `sys`: the OS layer, the only module with `unsafe`.
//! - [`logging`], [`error`]: log output, the one exit-code table.
//! - [`app`]: the bundled JWT app (simplejwt's endpoints and errors, users, tokens, its
//!   migrations and its `user` command), handed to the core as one [`App`] like any
//!   other service (it also uses a few crate-internal helpers: inotify, the password
//!   prompt, thread priorities).
//!
//! # Serving your own service
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::{Request, Response};
//!
//! fn main() -> std::process::ExitCode {
//!     corral::Server::new(corral::App::new(|_ctx: corral::worker::Context| async {
//!         Ok(hyper::service::service_fn(|_req: Request<corral::http::RequestBody>| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(Full::new(bytes::Bytes::from("hi\n"))))
//!         }))
//!     }))
//!     .run()
//! }
//! ```

#![deny(unsafe_code)]

pub mod app;
mod cli;
mod cmd;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
mod master;
pub mod metrics;
pub mod service;
pub mod storage;
#[allow(unsafe_code)]
mod sys;
pub mod worker;

pub use cmd::Server;
pub use service::App;
