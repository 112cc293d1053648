//! Request extractors shared by both services: the JSON body with our
//! limits and the authenticated caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use chrono::Utc;
use futures_util::StreamExt;
use ibl_projections::credentials::{ApiKeyView, PlatformView};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::ReadState;

/// Largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;

/// How long a request body may take to arrive in full, from the moment the
/// route starts reading it (app data; [`BodyTimeout::DEFAULT`] without it).
/// A client that announces a body and sends it slowly, or never, holds a
/// connection and a buffer no longer than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl BodyTimeout {
    pub const DEFAULT: BodyTimeout = BodyTimeout(Duration::from_secs(30));
}

/// A JSON body: at most [`MAX_BODY`] bytes, a JSON content type, valid UTF-8,
/// no NUL character in any string, and the shape of `T`.
pub struct JsonBody<T> {
    pub value: T,
    raw: web::Bytes,
}

impl<T> JsonBody<T> {
    /// SHA-256 of the raw body, for `Idempotency-Key` checks (computed on
    /// demand: reads never need it).
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(&self.raw))
    }
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

const NUL_IN_STRING: &str = "Strings may not contain NUL characters.";

/// Any JSON value, walked and dropped: on the way serde_json checks every
/// number's range and every string's escapes (no lone UTF-16 surrogate),
/// and strings holding NUL are refused, in every field, even those a body
/// type ignores (which serde skips without looking). Allocates nothing for
/// strings without escapes.
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Strict)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Strict, E> {
        if v.contains('\0') {
            return Err(E::custom(NUL_IN_STRING));
        }
        Ok(Strict)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        while map.next_entry::<Strict, Strict>()?.is_some() {}
        Ok(Strict)
    }
}

/// Whether a JSON text may hold what only [`Strict`] finds: an escape (a
/// NUL or a lone surrogate can only come escaped) or a number that may be
/// out of range (an exponent, or more digits than any finite double has
/// before its point). A byte scan; it may say yes in vain, never no in vain.
fn needs_strict(text: &[u8]) -> bool {
    let mut digits = 0usize;
    let mut previous = 0u8;
    for &b in text {
        match b {
            b'\\' => return true,
            b'e' | b'E' if previous.is_ascii_digit() || previous == b'.' => return true,
            b'0'..=b'9' => {
                digits += 1;
                if digits > 300 {
                    return true;
                }
            }
            _ => digits = 0,
        }
        previous = b;
    }
    false
}

/// Parses a body already read: the checks of [`JsonBody`] but the size.
/// When the text may hold what the body type would skip unseen, one pass
/// checks all of it ([`Strict`]); then one pass reads it into `T`. No
/// intermediate tree.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest("The body is not valid UTF-8.".into()))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    let refused = |e: serde_json::Error, what: &str| {
        if e.to_string().starts_with(NUL_IN_STRING) {
            ApiError::BadRequest(NUL_IN_STRING.into())
        } else {
            ApiError::BadRequest(format!("{what}: {e}"))
        }
    };
    if needs_strict(text.as_bytes()) {
        serde_json::from_str::<Strict>(text).map_err(|e| refused(e, "JSON parse error"))?;
    }
    serde_json::from_str(text).map_err(|e| refused(e, "Invalid body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_but_an_escaped_backslash_is_not_one() {
        let nul = |t: &[u8]| parse_json::<serde_json::Value>(t).is_err();
        assert!(nul(br#"{"a": "x\u0000y"}"#));
        assert!(nul(br#"{"\u0000": 1}"#));
        assert!(nul(br#"["\\\u0000"]"#), "an escaped backslash, then a NUL");
        assert!(
            !nul(br#"{"a": "\\u0000"}"#),
            "a backslash, then the text u0000"
        );
        assert!(nul(br#"{"a": "\u00001"}"#), "a NUL, then the digit 1");
        assert!(!nul(br#"{"a": "\u0001"}"#));
    }

    #[test]
    fn the_strict_pass_runs_whenever_it_could_find_something() {
        for text in [
            r#"{"a": "\u0000"}"#,
            r#"{"a": 1e400}"#,
            r#"{"a": 1.E400}"#,
            r#"{"a": [2.5e-3]}"#,
        ] {
            assert!(needs_strict(text.as_bytes()), "{text}");
        }
        let long = format!(r#"{{"a": {}}}"#, "9".repeat(400));
        assert!(needs_strict(long.as_bytes()));
        for text in [
            r#"{"platform_key": "acme", "resources": ["/platforms/1/"], "user_id": 42}"#,
            r#"{"name": "eee", "n": -1.5, "e": true}"#,
        ] {
            assert!(!needs_strict(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn ignored_fields_are_checked_too() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            #[allow(dead_code)]
            name: Option<String>,
        }
        let ok = |t: &[u8]| parse_json::<Body>(t).is_ok();
        assert!(ok(br#"{"x": ["\ud83d\ude00", 1e300, {"y": null}]}"#));
        assert!(!ok(br#"{"x": "\ud83d"}"#), "a lone high surrogate");
        assert!(!ok(br#"{"x": "\ude00"}"#), "a lone low surrogate");
        assert!(!ok(br#"{"x": 1e400}"#), "a number out of range");
        assert!(!ok(br#"{"x": {"\u0000": 1}}"#), "NUL in a nested key");
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
        let timeout = req
            .app_data::<BodyTimeout>()
            .copied()
            .unwrap_or(BodyTimeout::DEFAULT)
            .0;
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
            // One deadline for the whole body, not one per chunk: a byte a
            // second would renew a per-chunk timer forever.
            let read = async {
                let mut body = web::BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk
                        .map_err(|e| ApiError::BadRequest(format!("Bad request body: {e}")))?;
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(ApiError::PayloadTooLarge(MAX_BODY));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            };
            let body = tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| ApiError::RequestTimeout(timeout.as_secs()))??;
            let value = parse_json(&body)?;
            Ok(JsonBody {
                value,
                raw: body.freeze(),
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
    pub platform: Arc<PlatformView>,
    pub key: Arc<ApiKeyView>,
    /// The grants of the key's user, as the guard read them (empty until
    /// it did, and for a user without any).
    pub grants: Arc<Vec<ibl_events::rbac::Grant>>,
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
pub async fn authenticate(req: &HttpRequest, read: &ReadState) -> Result<Principal, ApiError> {
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
    let (key, platform) = read
        .keys
        .api_key_by_hash(&hash_secret(secret))
        .await?
        .filter(|(k, _)| k.expires.is_none_or(|e| e > Utc::now()))
        .ok_or_else(|| ApiError::Unauthorized("Invalid API key.".into()))?;
    Ok(Principal {
        platform,
        key,
        grants: Arc::default(),
    })
}

/// The caller of a route that judges its grants itself (the permission
/// check: one read for the caller and the user it asks about): the key,
/// authenticated, and no guard. The route must refuse a user that is not
/// active ([`crate::guard::active`]).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    /// With `X-Min-Position`, or strong reads configured, the read models
    /// first reach that position (see [`crate::request::fresh`]): a key
    /// revoked, or a grant removed, by an earlier write is judged as it now
    /// is, not as a lagging model shows it.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let read = read_state(&req)?;
            if crate::request::waits(&req, read) {
                crate::request::fresh(&req, read).await?;
            }
            authenticate(&req, read).await.map(Caller)
        })
    }
}

fn read_state(req: &HttpRequest) -> Result<&web::Data<ReadState>, ApiError> {
    req.app_data::<web::Data<ReadState>>()
        .ok_or_else(|| ApiError::Internal("read state not configured".into()))
}

/// The caller, judged by the guard of the route, on the read models as
/// they are (after [`Caller`]'s wait).
impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let Caller(mut principal) = caller.await?;
            principal.grants = crate::guard::enforce(&req, read_state(&req)?, &principal).await?;
            Ok(principal)
        })
    }
}
