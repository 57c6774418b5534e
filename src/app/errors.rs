//! [`ApiError`]: every answer of the JWT app that is not a success, with the status, the
//! body and the headers simplejwt 5.5.1 and DRF give it. Every simplejwt and DRF error
//! text is written here, once (see `reference/jwt.md` §1.3); the views' descriptions for
//! `OPTIONS` stay beside their routes.

use super::auth::{Kind, TokenError};
use super::reply::Reply;
use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

/// DRF `CharField` messages.
pub(super) const FIELD_REQUIRED: &str = "This field is required.";
pub(super) const FIELD_NULL: &str = "This field may not be null.";
pub(super) const FIELD_BLANK: &str = "This field may not be blank.";
pub(super) const FIELD_NOT_STRING: &str = "Not a valid string.";
pub(super) const FIELD_NULL_CHARACTERS: &str = "Null characters are not allowed.";
/// Django's own 404 page (`DEBUG = False`), for a path no view serves.
const DJANGO_NOT_FOUND: &str = "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";

/// simplejwt's message for a token error.
fn token_message(e: TokenError) -> &'static str {
    match e {
        TokenError::Invalid => "Token is invalid",
        TokenError::Expired => "Token is expired",
        TokenError::WrongType => "Token has wrong type",
        TokenError::NoType => "Token has no type",
        TokenError::NoId => "Token has no id",
        TokenError::NoExp => "Token has no 'exp' claim",
        TokenError::Blacklisted => "Token is blacklisted",
        TokenError::NoRefreshExp => "Token has no 'refresh_exp' claim",
        TokenError::RefreshExpired => "Token 'refresh_exp' claim has expired",
    }
}

/// What went wrong, in simplejwt's and DRF's terms.
#[derive(Debug)]
pub(super) enum ApiError {
    /// Login with a wrong password, an unknown user or an inactive one.
    NoActiveAccount,
    /// Refresh for a user who is gone or inactive (simplejwt ≥ 5.4).
    NoActiveAccountForToken,
    /// A token the token views refuse.
    TokenNotValid(TokenError),
    /// A Bearer token `JWTAuthentication` refuses: why each of `auth.auth_token_classes`
    /// refused it, in order.
    NotValidForAnyType(Vec<(Kind, TokenError)>),
    NoCredentials,
    BadAuthorizationHeader,
    NoUserIdentification,
    UserNotFound,
    UserInactive,
    /// `/verify/` of a blacklisted token.
    VerifyBlacklisted,
    /// The database cannot be reached: try again.
    Unavailable,
    /// The database refused for another reason, or a token could not be signed.
    ServerError,
    NotFound,
    MethodNotAllowed {
        method: Method,
        allow: &'static str,
    },
    UnsupportedMediaType(String),
    BodyTooLarge,
    MalformedBody,
    /// `JSON parse error - …`, in Python's words.
    JsonParse(String),
    /// `Multipart form parse error - …`, in Django's words where they are known.
    MultipartParse(String),
    /// The `Accept` header asks for nothing JSON can satisfy (DRF's 406).
    NotAcceptable,
    /// Too many failed logins (DRF's 429): try again in this many seconds.
    Throttled {
        wait: u64,
    },
    /// A JSON body that is not an object: Python's type name.
    NotAnObject(&'static str),
    /// Field errors, each field with its messages.
    Fields(Map<String, Value>),
    /// `/readyz`: the database does not answer, or `answers` but cannot take writes.
    NotReady {
        answers: bool,
    },
    /// `/readyz` during `--shutdown-delay`: still serving, but the load balancer should
    /// stop sending.
    ShuttingDown,
}

impl ApiError {
    /// Why authentication failed, as simplejwt's `code` says it (`not_authenticated`
    /// where DRF sends no code): the `code` label of `corral_auth_failures_total`.
    pub(super) fn auth_code(&self) -> Option<&'static str> {
        use ApiError::*;
        Some(match self {
            NotValidForAnyType(_) | NoUserIdentification => "token_not_valid",
            BadAuthorizationHeader => "bad_authorization_header",
            UserNotFound => "user_not_found",
            UserInactive => "user_inactive",
            NoCredentials => "not_authenticated",
            _ => return None,
        })
    }

    /// The response. `www_authenticate` is `Bearer realm="api"` with the first configured
    /// scheme; every 401 carries it, as DRF's do.
    pub(super) fn reply(self, www_authenticate: &HeaderValue) -> Reply {
        use ApiError::*;
        let unauthorized = |body: Value| {
            Reply::new(StatusCode::UNAUTHORIZED, body)
                .header_value(WWW_AUTHENTICATE, www_authenticate.clone())
        };
        match self {
            NoActiveAccount => unauthorized(
                json!({ "detail": "No active account found with the given credentials" }),
            ),
            NoActiveAccountForToken => {
                unauthorized(json!({ "detail": "No active account found for the given token." }))
            }
            TokenNotValid(e) => {
                unauthorized(json!({ "detail": token_message(e), "code": "token_not_valid" }))
            }
            NotValidForAnyType(refusals) => unauthorized(json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": refusals.iter().map(|(k, e)| json!({ "token_class": k.class_name(), "token_type": k.as_str(), "message": token_message(*e) })).collect::<Vec<_>>(),
            })),
            NoCredentials => {
                unauthorized(json!({ "detail": "Authentication credentials were not provided." }))
            }
            BadAuthorizationHeader => unauthorized(json!({
                "detail": "Authorization header must contain two space-delimited values",
                "code": "bad_authorization_header",
            })),
            NoUserIdentification => unauthorized(json!({
                "detail": "Token contained no recognizable user identification",
                "code": "token_not_valid",
            })),
            UserNotFound => {
                unauthorized(json!({ "detail": "User not found", "code": "user_not_found" }))
            }
            UserInactive => {
                unauthorized(json!({ "detail": "User is inactive", "code": "user_inactive" }))
            }
            VerifyBlacklisted => Reply::new(
                StatusCode::BAD_REQUEST,
                json!({ "non_field_errors": [token_message(TokenError::Blacklisted)] }),
            ),
            Unavailable => Reply::detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable, try again later.",
            )
            .header(RETRY_AFTER, "1"),
            ServerError => {
                Reply::detail(StatusCode::INTERNAL_SERVER_ERROR, crate::http::SERVER_ERROR)
            }
            NotFound => Reply::html(StatusCode::NOT_FOUND, DJANGO_NOT_FOUND),
            MethodNotAllowed { method, allow } => Reply::detail(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("Method \"{method}\" not allowed."),
            )
            .header_value(ALLOW, HeaderValue::from_static(allow)),
            UnsupportedMediaType(content_type) => Reply::detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Unsupported media type \"{content_type}\" in request."),
            ),
            BodyTooLarge => {
                Reply::detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large.")
            }
            MalformedBody => Reply::detail(StatusCode::BAD_REQUEST, "Malformed request body."),
            MultipartParse(why) => Reply::detail(
                StatusCode::BAD_REQUEST,
                &format!("Multipart form parse error - {why}"),
            ),
            Throttled { wait } => Reply::detail(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Request was throttled. Expected available in {wait} second{}.",
                    if wait == 1 { "" } else { "s" }
                ),
            )
            .header(RETRY_AFTER, &wait.to_string()),
            NotAcceptable => Reply::detail(
                StatusCode::NOT_ACCEPTABLE,
                "Could not satisfy the request Accept header.",
            ),
            JsonParse(why) => Reply::detail(
                StatusCode::BAD_REQUEST,
                &format!("JSON parse error - {why}"),
            ),
            // DRF's serializer: `null` is "no data", anything else not an object is named.
            NotAnObject("NoneType") => Reply::new(
                StatusCode::BAD_REQUEST,
                json!({ "non_field_errors": ["No data provided"] }),
            ),
            NotAnObject(t) => Reply::new(
                StatusCode::BAD_REQUEST,
                json!({ "non_field_errors": [format!("Invalid data. Expected a dictionary, but got {t}.")] }),
            ),
            Fields(errors) => Reply::new(StatusCode::BAD_REQUEST, Value::Object(errors)),
            NotReady { answers } => Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "unavailable", "detail": if answers {
                    "The database cannot take writes."
                } else {
                    "The database is unreachable."
                } }),
            )
            .header(RETRY_AFTER, "1"),
            ShuttingDown => Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "shutting down", "detail": "This server is shutting down." }),
            ),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    /// Unreachable → 503 (the worker stays up), anything else → 500; both logged here.
    fn from(e: crate::storage::StorageError) -> ApiError {
        match e {
            crate::storage::StorageError::Unavailable(_) => {
                tracing::warn!("database unavailable: {e}");
                ApiError::Unavailable
            }
            other => {
                tracing::error!("storage error: {other}");
                ApiError::ServerError
            }
        }
    }
}

impl From<super::auth::SignError> for ApiError {
    fn from(e: super::auth::SignError) -> ApiError {
        tracing::error!("{e}");
        ApiError::ServerError
    }
}
