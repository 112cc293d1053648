//! The one error type of the HTTP API and its table of statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};

/// Every failure a route can answer with. `status_code` is the one table
/// that maps them to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input, with a message per field.
    #[error("invalid input")]
    Validation(Map<String, Value>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive in full within this many seconds.
    #[error("the request body did not arrive within {0} seconds")]
    RequestTimeout(u64),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the Idempotency-Key was already used with another request body")]
    IdempotencyKeyReused,
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours, logged in full; the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A validation error on one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut map = Map::new();
        map.insert(name.to_owned(), json!([message.into()]));
        ApiError::Validation(map)
    }

    pub fn not_found() -> Self {
        ApiError::NotFound("Not found.".into())
    }

    /// A stable machine-readable code for the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "invalid",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "not_authenticated",
            ApiError::Forbidden(_) => "permission_denied",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = match self {
            ApiError::Validation(fields) => {
                let mut body = fields.clone();
                body.insert("detail".into(), json!("Invalid input."));
                body
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                let mut body = Map::new();
                body.insert("detail".into(), json!("Internal error."));
                body
            }
            other => {
                let mut body = Map::new();
                body.insert("detail".into(), json!(other.to_string()));
                body
            }
        };
        body.insert("code".into(), json!(self.code()));
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Api-Token"));
            }
            // The rest of the body may still come: the connection cannot
            // carry another request.
            ApiError::RequestTimeout(_) => {
                response.force_close();
            }
            _ => {}
        }
        response.json(Value::Object(body))
    }
}

impl From<ibl_events::StoreError> for ApiError {
    fn from(e: ibl_events::StoreError) -> Self {
        match e {
            ibl_events::StoreError::Conflict { .. } => {
                ApiError::Conflict("The resource was changed by another request; retry.".into())
            }
            ibl_events::StoreError::Invalid(m) => ApiError::Internal(m),
            ibl_events::StoreError::Unavailable(m) => {
                ApiError::Unavailable(format!("The event store is unavailable: {m}"))
            }
        }
    }
}
