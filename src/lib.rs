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
//! - [`server`]: the entry point a binary calls ([`Server`]), command dispatch.
//! - [`cli`], [`config`]: command line and layered configuration (flags > env > file > defaults).
//! - [`master`]: the supervision loop (single-threaded, no runtime, no database).
//! - [`worker`], [`http`]: a worker process and its HTTP server (limits, timeouts, draining).
//! - [`app`], [`auth`]: the bundled JWT app (simplejwt's endpoints and errors).
//! - [`storage`]: SQLite/PostgreSQL access and the migration runner.
//! - [`sys`]: the OS layer, the only module with `unsafe`.
//! - [`logging`], [`error`]: log output, exit codes.
//!
//! # Serving your own service
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::{Request, Response};
//!
//! fn main() -> std::process::ExitCode {
//!     corral::Server::new(|_ctx: corral::worker::Context| async {
//!         Ok(hyper::service::service_fn(|_req: Request<corral::http::RequestBody>| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(Full::new(bytes::Bytes::from("hi\n"))))
//!         }))
//!     })
//!     .run()
//! }
//! ```

#![deny(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
pub mod master;
pub mod server;
pub mod storage;
#[allow(unsafe_code)]
pub mod sys;
pub mod worker;

pub use server::Server;
