//! The bundled application.

pub mod users;

use crate::http::{json_error, RequestBody};
use crate::master::Hooks;
use crate::worker::{BootError, Context};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

pub const HOOKS: Hooks = Hooks {
    prepare: |_| Ok(()),
    check: |_| Ok(()),
};

pub async fn boot(
    _ctx: Context,
) -> Result<
    impl hyper::service::Service<
            Request<RequestBody>,
            Response = Response<Full<Bytes>>,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone
        + Send
        + Sync,
    BootError,
> {
    Ok(hyper::service::service_fn(
        |req: Request<RequestBody>| async move {
            let resp = match req.uri().path() {
                "/healthz" => {
                    let mut r =
                        Response::new(Full::new(Bytes::from_static(b"{\"status\":\"ok\"}")));
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                _ => json_error(StatusCode::NOT_FOUND, "Not found."),
            };
            Ok::<_, std::convert::Infallible>(resp)
        },
    ))
}
