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
    /// Too many requests from one client; the whole seconds to wait.
    #[error("too many requests: retry in {0} s")]
    TooManyRequests(u64),
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
            ApiError::TooManyRequests(_) => "too_many_requests",
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
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
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
            ApiError::TooManyRequests(seconds) => {
                response.insert_header(("Retry-After", (*seconds).max(1).to_string()));
            }
            // A backend that did not answer, or read models behind the
            // position asked for: worth a retry soon.
            ApiError::Unavailable(_) => {
                response.insert_header(("Retry-After", "1"));
            }
            _ => {}
        }
        response.json(Value::Object(body))
    }
}

/// The body of an error answer raised around our routes rather than by
/// them (by actix, or a route that answered a bare status): the table's
/// shape, `{"detail": "Method not allowed.", "code": "method_not_allowed"}`.
/// A status of the table keeps the table's code; any other gets its reason
/// phrase in snake_case.
pub fn status_body(status: StatusCode) -> Value {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = match table_code(status) {
        Some(code) => code.to_owned(),
        None => reason
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("_"),
    };
    json!({"detail": sentence(reason), "code": code})
}

/// The code of the table for `status`, where the table has the status.
fn table_code(status: StatusCode) -> Option<&'static str> {
    let representative = match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(String::new()),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(String::new()),
        StatusCode::FORBIDDEN => ApiError::Forbidden(String::new()),
        StatusCode::NOT_FOUND => ApiError::NotFound(String::new()),
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout(0),
        StatusCode::CONFLICT => ApiError::Conflict(String::new()),
        StatusCode::GONE => ApiError::Gone(String::new()),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(0),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(String::new()),
        StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests(1),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(String::new()),
        StatusCode::INTERNAL_SERVER_ERROR => ApiError::Internal(String::new()),
        _ => return None,
    };
    debug_assert_eq!(representative.status_code(), status);
    Some(representative.code())
}

/// "Request Header Fields Too Large" as "Request header fields too large."
/// (words in capitals, such as URI, stay so).
fn sentence(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len() + 1);
    for (i, word) in reason.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
            if word.len() > 1 && word.chars().skip(1).any(|c| c.is_ascii_lowercase()) {
                out.push_str(&word.to_ascii_lowercase());
                continue;
            }
        }
        out.push_str(word);
    }
    out.push('.');
    out
}

/// Whether an answer's body is JSON by its content type (`application/json`,
/// `application/scim+json`...).
pub fn is_json(content_type: Option<&actix_web::http::header::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

impl From<ibl_projections::assertions::ReadError> for ApiError {
    fn from(e: ibl_projections::assertions::ReadError) -> Self {
        ApiError::Unavailable(e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_statuses_get_the_tables_shape() {
        assert_eq!(
            status_body(StatusCode::METHOD_NOT_ALLOWED),
            json!({"detail": "Method not allowed.", "code": "method_not_allowed"})
        );
        assert_eq!(
            status_body(StatusCode::URI_TOO_LONG),
            json!({"detail": "URI too long.", "code": "uri_too_long"})
        );
        assert_eq!(
            status_body(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            json!({"detail": "Request header fields too large.", "code": "request_header_fields_too_large"})
        );
        assert_eq!(status_body(StatusCode::IM_A_TEAPOT)["code"], "i_m_a_teapot");
    }

    #[test]
    fn statuses_of_the_table_keep_its_codes() {
        for error in [
            ApiError::BadRequest("x".into()),
            ApiError::Unauthorized("x".into()),
            ApiError::Forbidden("x".into()),
            ApiError::NotFound("x".into()),
            ApiError::RequestTimeout(3),
            ApiError::Conflict("x".into()),
            ApiError::Gone("x".into()),
            ApiError::PayloadTooLarge(1),
            ApiError::UnsupportedMediaType("x".into()),
            ApiError::TooManyRequests(2),
            ApiError::Unavailable("x".into()),
            ApiError::Internal("x".into()),
        ] {
            assert_eq!(
                status_body(error.status_code())["code"],
                error.code(),
                "{error:?}"
            );
        }
        assert_eq!(status_body(StatusCode::NOT_FOUND)["detail"], "Not found.");
    }

    #[test]
    fn json_content_types_are_recognised() {
        use actix_web::http::header::HeaderValue;
        let json = |v: &str| is_json(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(json("application/json"));
        assert!(json("application/scim+json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(!json("text/plain; charset=utf-8"));
        assert!(!json("application/jsonx"));
        assert!(!is_json(None));
    }
}
