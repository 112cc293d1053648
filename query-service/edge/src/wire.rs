//! The JSON shapes of the API, as the seed and the `iblai` client expect.

use actix_web::HttpRequest;
use chrono::{DateTime, SecondsFormat, Utc};
use ibl_projections::assertions::AssertionView;
use ibl_projections::credentials::{ApiKeyView, CredentialView, IssuerView};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::paging::{links, PageRequest, MAX_PAGE_SIZE};

/// RFC 3339 UTC with a `Z`, as the API writes every instant.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Where clients reach the API: the base of every URL it writes (`scheme://
/// host[:port][/prefix]`, no trailing `/`). Configured, never taken from a
/// request: `Host` and `X-Forwarded-Host` are the client's to choose, and a
/// link built from them would point wherever the client said (a cache could
/// then serve that link to others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Checks a configured URL: `http` or `https`, a host, an optional port
    /// and path, no user, query or fragment. A trailing `/` is dropped.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| Err(format!("{text:?} is not a public URL: {why}"));
        let text = text.trim();
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return refuse("it contains white space");
        }
        if text.contains('#') || text.contains('?') {
            return refuse("a query or a fragment is not allowed");
        }
        let Ok(uri) = text.parse::<actix_web::http::Uri>() else {
            return refuse("it does not parse as a URL");
        };
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => "http",
            Some("https") => "https",
            _ => return refuse("the scheme must be http or https"),
        };
        let Some(authority) = uri.authority() else {
            return refuse("it has no host");
        };
        if authority.as_str().contains('@') {
            return refuse("a user name or password is not allowed");
        }
        if authority.host().is_empty() {
            return refuse("it has no host");
        }
        let path = uri.path().trim_end_matches('/');
        Ok(PublicUrl(format!(
            "{scheme}://{}{path}",
            authority.as_str().to_ascii_lowercase()
        )))
    }

    /// `http://` and the address the server listens on (its real port).
    pub fn of_listener(addr: std::net::SocketAddr) -> Self {
        PublicUrl(format!("http://{addr}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The base URL of the API: the configured [`PublicUrl`] (in app data), else
/// the address the request came in on. Never a request header.
pub fn base_url(req: &HttpRequest) -> String {
    match req.app_data::<PublicUrl>() {
        Some(url) => url.0.clone(),
        None => format!("http://{}", req.app_config().local_addr()),
    }
}

/// `{"status": {"success": true, "description": ...}, "result": ...}`
pub fn envelope<T: Serialize>(description: &str, result: T) -> Envelope<'_, T> {
    Envelope {
        status: EnvelopeStatus {
            success: true,
            description,
        },
        result,
    }
}

#[derive(Serialize)]
pub struct Envelope<'a, T> {
    status: EnvelopeStatus<'a>,
    result: T,
}

#[derive(Serialize)]
struct EnvelopeStatus<'a> {
    success: bool,
    description: &'a str,
}

/// The page fields of every credentials list (`next`/`previous` are `""`
/// when there is no such page).
pub fn credentials_page<T: Serialize>(
    req: &HttpRequest,
    p: PageRequest,
    count: usize,
    data: Vec<T>,
) -> CredentialsPage<T> {
    let (next, previous) = links(req, p, count);
    CredentialsPage {
        next: next.unwrap_or_default(),
        previous: previous.unwrap_or_default(),
        count,
        data,
        num_pages: p.num_pages(count),
        page_number: p.page,
        max_page_size: MAX_PAGE_SIZE,
    }
}

#[derive(Serialize)]
pub struct CredentialsPage<T> {
    next: String,
    previous: String,
    count: usize,
    data: Vec<T>,
    num_pages: usize,
    page_number: usize,
    max_page_size: usize,
}

/// The URL of a credential: its detail route, under the user who created it.
pub fn credential_url(base: &str, c: &CredentialView) -> String {
    let user = if c.created_by.is_empty() {
        "0"
    } else {
        &c.created_by
    };
    format!(
        "{base}/api/credentials/orgs/{}/users/{user}/{}",
        c.platform, c.entity_id
    )
}

pub fn credential(base: &str, c: &CredentialView) -> Value {
    let f = &c.fields;
    json!({
        "credential_id": c.entity_id,
        "entity_id": c.entity_id,
        "credential_url": credential_url(base, c),
        "name": f.name,
        "description": f.description,
        "credential_type": f.credential_type,
        "issuer": f.issuer,
        "issued_on": time(c.created_at),
        "expires_at": f.expires_at.map(time),
        "revoked": c.retired,
        "html_template": f.html_template,
        "css_template": f.css_template,
        "icon_image": f.icon_image,
        "background_image": f.background_image,
        "thumbnail_image": f.thumbnail_image,
        "criteria_url": f.criteria_url,
        "criteria_text": f.criteria_text,
        "issuing_signal": f.issuing_signal,
        "course": f.course,
        "program": f.program,
        "platform_key": c.platform,
    })
}

fn string_map(pairs: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    Value::Object(m)
}

/// Public verification URL of an assertion.
pub fn verification_url(base: &str, entity_id: &str) -> String {
    format!("{base}/api/credentials/public/assertions/{entity_id}/")
}

/// An assertion as the `iblai` `Assertion` model reads it: camelCase keys,
/// required strings never null. Borrowed from the view and serialized as
/// it is written (no JSON tree in between: a page holds up to 100).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assertion<'a> {
    entity_id: &'a str,
    issued_on: String,
    credential_details: CredentialDetails<'a>,
    recipient: &'a ibl_events::credentials::Recipient,
    metadata: &'a Value,
    course: IdOf<'a>,
    program: IdOf<'a>,
    narrative: &'a str,
    evidence: &'a [ibl_events::credentials::Evidence],
    revoked: bool,
    revocation_reason: &'a str,
    revoked_on: Option<String>,
    acceptance: &'static str,
    expires: String,
    status: &'static str,
    verification_url: String,
    #[serde(rename = "platform_key")]
    platform_key: &'a str,
}

/// `credentialDetails`: the credential's fields, or only its id when the
/// credential is gone.
#[derive(Serialize)]
struct CredentialDetails<'a> {
    #[serde(rename = "entityId")]
    entity_id: &'a str,
    credential_id: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    fields: Option<DetailFields<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DetailFields<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(rename = "credential_type")]
    credential_type: &'a str,
    issuer: &'a str,
    icon_image: &'a str,
    thumbnail_image: &'a str,
    background_image: &'a str,
    criteria_url: &'a str,
    criteria_text: &'a str,
}

/// `{"id": ...}`, or `{}` without one.
#[derive(Serialize)]
struct IdOf<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

pub fn assertion<'a>(
    base: &str,
    a: &'a AssertionView,
    c: Option<&'a CredentialView>,
    now: DateTime<Utc>,
) -> Assertion<'a> {
    let credential_details = match c {
        Some(c) => {
            let f = &c.fields;
            CredentialDetails {
                entity_id: &c.entity_id,
                credential_id: &c.entity_id,
                fields: Some(DetailFields {
                    name: &f.name,
                    description: &f.description,
                    credential_type: f.credential_type.as_deref().unwrap_or_default(),
                    issuer: f.issuer.as_deref().unwrap_or_default(),
                    icon_image: &f.icon_image,
                    thumbnail_image: &f.thumbnail_image,
                    background_image: &f.background_image,
                    criteria_url: &f.criteria_url,
                    criteria_text: &f.criteria_text,
                }),
            }
        }
        None => CredentialDetails {
            entity_id: &a.credential_id,
            credential_id: &a.credential_id,
            fields: None,
        },
    };
    Assertion {
        entity_id: &a.entity_id,
        issued_on: time(a.issued_on),
        credential_details,
        recipient: &a.recipient,
        metadata: &a.metadata,
        course: IdOf {
            id: c.and_then(|c| c.fields.course.as_deref()),
        },
        program: IdOf {
            id: c.and_then(|c| c.fields.program.as_deref()),
        },
        narrative: &a.narrative,
        evidence: &a.evidence,
        revoked: a.revoked.is_some(),
        revocation_reason: a.revoked.as_ref().map_or("", |r| r.reason.as_str()),
        revoked_on: a.revoked.as_ref().map(|r| time(r.at)),
        acceptance: "Unaccepted",
        expires: a.expires.map(time).unwrap_or_default(),
        status: assertion_status(a, c, now),
        verification_url: verification_url(base, &a.entity_id),
        platform_key: &a.platform,
    }
}

/// Whether an assertion verifies: `revoked` when it was revoked or its
/// credential was retired or deleted (`c` is `None`), else `expired` once
/// past its expiry, else `valid`.
pub fn assertion_status(
    a: &AssertionView,
    c: Option<&CredentialView>,
    now: DateTime<Utc>,
) -> &'static str {
    if a.revoked.is_some() || c.is_none_or(|c| c.retired) {
        "revoked"
    } else if a.expired(now) {
        "expired"
    } else {
        "valid"
    }
}

/// What the public verification route shows of an assertion: what a
/// verifier needs (the credential's name and image, the issuer, the dates,
/// the status, the recipient's name) and nothing else: no email, username,
/// metadata, narrative, evidence or revocation reason. Shaped as the
/// client's `Assertion` (its required fields present, as strings).
pub fn public_assertion(
    base: &str,
    a: &AssertionView,
    c: Option<&CredentialView>,
    issuer: Option<&IssuerView>,
    now: DateTime<Utc>,
) -> Value {
    let status = assertion_status(a, c, now);
    let (name, image) = c.map_or(("", ""), |c| {
        let f = &c.fields;
        let image = if f.icon_image.is_empty() {
            &f.thumbnail_image
        } else {
            &f.icon_image
        };
        (f.name.as_str(), image.as_str())
    });
    let (issuer_name, issuer_url, issuer_image) = issuer.map_or(("", "", ""), |i| {
        let f = &i.fields;
        (f.name.as_str(), f.url.as_str(), f.icon_image.as_str())
    });
    json!({
        "entityId": a.entity_id,
        "issuedOn": time(a.issued_on),
        "expires": a.expires.map(time).unwrap_or_default(),
        "status": status,
        "valid": status == "valid",
        "revoked": status == "revoked",
        "revocationReason": "",
        "credentialDetails": string_map(&[("name", name), ("image", image), ("issuer", issuer_name)]),
        "issuer": string_map(&[("name", issuer_name), ("url", issuer_url), ("image", issuer_image)]),
        "recipient": string_map(&[("name", &a.recipient.name)]),
        "course": {},
        "program": {},
        "verificationUrl": verification_url(base, &a.entity_id),
    })
}

pub fn issuer(base: &str, i: &IssuerView) -> Value {
    let f = &i.fields;
    json!({
        "entityId": i.entity_id,
        "name": f.name,
        "org": i.platform,
        "signatories": f.signatories,
        "url": if f.url.is_empty() { format!("{base}/api/credentials/orgs/{}/issuers/{}", i.platform, i.entity_id) } else { f.url.clone() },
        "iconImage": f.icon_image,
        "description": f.description,
        "email": f.email,
        "created": time(i.created_at),
    })
}

/// `PlatformApiKey`; `key` is the secret only when it was just created.
pub fn api_key(k: &ApiKeyView, key: &str) -> Value {
    json!({
        "username": k.username,
        "name": k.name,
        "key": key,
        "platform_key": k.platform,
        "expires": time(k.expires.unwrap_or_else(far_future)),
        "expires_in": Value::Null,
        "created": time(k.created),
    })
}

/// What `expires` shows for a key that does not expire (the client's model
/// requires a date).
pub fn far_future() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_http_or_https_with_a_host_and_no_query() {
        let ok = |text: &str| PublicUrl::parse(text).map(|u| u.as_str().to_owned());
        assert_eq!(
            ok("https://api.example.com").as_deref(),
            Ok("https://api.example.com")
        );
        assert_eq!(
            ok("https://api.example.com/").as_deref(),
            Ok("https://api.example.com")
        );
        assert_eq!(
            ok(" HTTP://API.Example.com:8443/ibl/ ").as_deref(),
            Ok("http://api.example.com:8443/ibl")
        );
        assert_eq!(ok("http://[::1]:8080").as_deref(), Ok("http://[::1]:8080"));
        for bad in [
            "",
            "api.example.com",
            "ftp://api.example.com",
            "https://",
            "https:///path",
            "https://api.example.com/?a=1",
            "https://api.example.com/#top",
            "https://user:pw@api.example.com",
            "https://api.example.com/a b",
            "https://api.exa\u{7f}mple.com",
            "javascript:alert(1)",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_default_is_the_listen_address() {
        let addr: std::net::SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(
            PublicUrl::of_listener(addr).as_str(),
            "http://127.0.0.1:4321"
        );
        let addr: std::net::SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(PublicUrl::of_listener(addr).as_str(), "http://[::1]:80");
    }
}
