//! A service of your own, served by corral's master: same binding, workers, reloads,
//! limits, request ids and access log as the bundled JWT app.
//!
//! ```text
//! cargo run --example custom_service -- serve -b 127.0.0.1:8080 -w 2
//! curl -s localhost:8080/             # {"hello":"world","worker":1234,"generation":1}
//! curl -s -d 'some bytes' localhost:8080/echo
//! curl -s 'localhost:8080/slow?ms=3000'   # a slow handler (try --request-timeout 1)
//! kill -HUP <master pid>              # new workers, no failed request
//! ```
//!
//! The binary is re-executed for each worker, so `main` must only call `Server::run`;
//! the factory closure runs in every worker, after its event loop has started.
//!
//! It brings nothing else, so it gets nothing else: no `user` command, no `[auth]` keys,
//! no tables and no migration step at boot. A service with a schema of its own embeds
//! its migrations and hands them over the same way the JWT app does:
//!
//! ```text
//! use corral::storage::migrate::{Embedded, Migrations};
//! const SQLITE: &[Embedded] = &[Embedded { version: 1, name: "visits",
//!     up: include_str!("migrations/sqlite/0001_visits.up.sql"), down: None }];
//! corral::App::new(factory).migrations(Migrations { postgres: POSTGRES, sqlite: SQLITE, source_dir: None })
//! ```

use bytes::Bytes;
use corral::http::RequestBody;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;

async fn handle(
    generation: u64,
    req: Request<RequestBody>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    };
    match req.uri().path() {
        "/" => {
            let body = serde_json::json!({"hello": "world", "worker": std::process::id(), "generation": generation});
            reply(StatusCode::OK, body.to_string())
        }
        "/echo" => match req.into_body().collect().await {
            Ok(b) => reply(
                StatusCode::OK,
                serde_json::json!({"bytes": b.to_bytes().len()}).to_string(),
            ),
            // Bodies are capped by --limit-request-body: past it, reading fails.
            Err(_) => reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"detail":"too large"}"#.into(),
            ),
        },
        "/slow" => {
            // A handler that takes its time: what --request-timeout cancels.
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000u64);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            reply(
                StatusCode::OK,
                serde_json::json!({"slept_ms": ms}).to_string(),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, r#"{"detail":"Not found."}"#.into()),
    }
}

fn main() -> std::process::ExitCode {
    corral::Server::new(corral::App::new(
        |ctx: corral::worker::Context| async move {
            let generation = ctx.generation;
            Ok(hyper::service::service_fn(move |req| {
                handle(generation, req)
            }))
        },
    ))
    .run()
}
