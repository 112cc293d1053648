//! Request extractors shared by both services: the JSON body with our
//! limits and the authenticated caller.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use chrono::Utc;
use futures_util::StreamExt;
use ibl_projections::credentials::{ApiKeyView, PlatformView};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::ReadState;

/// Largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;

/// A JSON body: at most [`MAX_BODY`] bytes, a JSON content type, valid UTF-8,
/// no NUL character in any string, and the shape of `T`.
pub struct JsonBody<T> {
    pub value: T,
    /// SHA-256 of the raw body, for `Idempotency-Key` checks.
    pub hash: String,
}

fn content_type_ok(req: &HttpRequest) -> bool {
    match req.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| {
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime == "application/scim+json" || mime.ends_with("+json")
        }),
    }
}

/// Whether JSON text holds a NUL character in a string. Raw control
/// characters are not valid JSON, so a NUL can only come as the escape
/// `\u0000` (a `\u` preceded by an odd run of backslashes).
fn has_nul(text: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, b) in text.iter().enumerate() {
        if *b == b'\\' {
            backslashes += 1;
            continue;
        }
        if *b == b'u' && backslashes % 2 == 1 && text.get(i + 1..i + 5) == Some(b"0000") {
            return true;
        }
        backslashes = 0;
    }
    false
}

/// Parses a body already read: the checks of [`JsonBody`] but the size.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest("The body is not valid UTF-8.".into()))?;
    if has_nul(text.as_bytes()) {
        return Err(ApiError::BadRequest(
            "Strings may not contain NUL characters.".into(),
        ));
    }
    // Parsed to a `Value` first: that validates every string, even those of
    // fields `T` ignores (a lone surrogate anywhere is a 400).
    let value: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("JSON parse error: {e}")))?
    };
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("Invalid body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_but_an_escaped_backslash_is_not_one() {
        assert!(has_nul(br#"{"a": "x\u0000y"}"#));
        assert!(has_nul(br#"{"\u0000": 1}"#));
        assert!(
            has_nul(br#"["\\\u0000"]"#),
            "an escaped backslash, then a NUL"
        );
        assert!(
            !has_nul(br#"{"a": "\\u0000"}"#),
            "a backslash, then the text u0000"
        );
        assert!(has_nul(br#"{"a": "\u00001"}"#), "a NUL, then the digit 1");
        assert!(!has_nul(br#"{"a": "\u0001"}"#));
    }

    #[test]
    fn bodies_parse_into_their_type_or_fail_with_a_400() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            name: String,
        }
        assert_eq!(
            parse_json::<Body>(br#"{"name": "x"}"#).map(|b| b.name).ok(),
            Some("x".into())
        );
        assert!(matches!(
            parse_json::<Body>(br#"{"name": 1}"#),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(br#"{"name": "a\u0000"}"#),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(&[0xff, 0xfe]),
            Err(ApiError::BadRequest(_))
        ));
        let surrogate = br#"{"name": "x", "ignored": "\ud800"}"#;
        assert!(
            matches!(parse_json::<Body>(surrogate), Err(ApiError::BadRequest(_))),
            "even in an ignored field"
        );
        assert!(
            matches!(parse_json::<Body>(b""), Err(ApiError::BadRequest(_))),
            "{{}} lacks name"
        );
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let ok_type = content_type_ok(req);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !ok_type {
                return Err(ApiError::UnsupportedMediaType(
                    "Send the body as application/json.".into(),
                ));
            }
            if declared.is_some_and(|n| n > MAX_BODY) {
                return Err(ApiError::PayloadTooLarge(MAX_BODY));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::BadRequest(format!("Bad request body: {e}")))?;
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ApiError::PayloadTooLarge(MAX_BODY));
                }
                body.extend_from_slice(&chunk);
            }
            let value = parse_json(&body)?;
            Ok(JsonBody {
                value,
                hash: hex::encode(Sha256::digest(&body)),
            })
        })
    }
}

/// SHA-256 of an API key secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The caller: the platform and user that own the API key it presented.
#[derive(Debug, Clone)]
pub struct Principal {
    pub platform: PlatformView,
    pub key: ApiKeyView,
}

impl Principal {
    /// Checks that the key belongs to `platform_key`: 403 otherwise.
    pub fn require_platform(&self, platform_key: &str) -> Result<(), ApiError> {
        if self.platform.key == platform_key {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "This API key does not belong to that platform.".into(),
            ))
        }
    }
}

/// Authenticates a request by its `Authorization: Api-Token <key>` header.
pub fn authenticate(req: &HttpRequest, read: &ReadState) -> Result<Principal, ApiError> {
    let header = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("Authentication credentials were not provided.".into())
    })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Invalid Authorization header.".into()))?;
    let secret = value
        .strip_prefix("Api-Token ")
        .or_else(|| value.strip_prefix("Token "))
        .or_else(|| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("Use 'Authorization: Api-Token <key>'.".into()))?;
    let key = read
        .models
        .api_key_by_hash(&hash_secret(secret))
        .filter(|k| k.expires.is_none_or(|e| e > Utc::now()))
        .ok_or_else(|| ApiError::Unauthorized("Invalid API key.".into()))?;
    let platform = read
        .models
        .platform(&key.platform)
        .ok_or_else(|| ApiError::Unauthorized("Invalid API key.".into()))?;
    Ok(Principal { platform, key })
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<ReadState>>() {
            Some(read) => authenticate(req, read).and_then(|principal| {
                crate::guard::enforce(req, read, &principal)?;
                Ok(principal)
            }),
            None => Err(ApiError::Internal("read state not configured".into())),
        };
        std::future::ready(result)
    }
}
