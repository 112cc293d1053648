//! What every request about a platform starts from: the query string, the
//! platform it is about (the caller's key must belong to it), the paths of
//! the credentials routes, and read-your-writes (`X-Min-Position`).

use std::collections::HashMap;

use actix_web::{HttpMessage, HttpRequest};

use crate::error::ApiError;
use crate::extract::Principal;
use crate::paging::PageRequest;
use crate::{position, ReadState};

/// The query string of a request, parsed once.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {e}")))?;
        if pairs
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError::BadRequest(
                "Query parameters may not contain NUL.".into(),
            ));
        }
        Ok(Params(pairs.into_iter().collect()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter: `true`/`false` (also `1`/`0`, `yes`/`no`).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(_) => Err(ApiError::field(name, "Must be true or false.")),
        }
    }

    pub fn page(&self) -> Result<PageRequest, ApiError> {
        PageRequest::parse(
            self.0.get("page").map(String::as_str),
            self.0.get("page_size").map(String::as_str),
        )
    }
}

/// The platform a credentials request is about: `platform_org` in the query
/// wins over `{org}` in the path. The caller's key must belong to it.
pub fn platform_of(principal: &Principal, org: &str, params: &Params) -> Result<String, ApiError> {
    let key = params.get("platform_org").unwrap_or(org).to_owned();
    principal.require_platform(&key)?;
    Ok(key)
}

/// The start of every platform-scoped read: the query parsed, the key's
/// platform checked, and `X-Min-Position` honoured.
pub async fn scoped(
    req: &HttpRequest,
    read: &ReadState,
    principal: &Principal,
    org: &str,
) -> Result<(Params, String), ApiError> {
    let params = Params::of(req)?;
    let platform = platform_of(principal, org, &params)?;
    fresh(req, read).await?;
    Ok((params, platform))
}

/// Marks a request whose read models [`fresh`] has already waited for.
#[derive(Clone, Copy)]
struct Fresh;

/// Whether [`fresh`] makes this request wait (it has `X-Min-Position`, or
/// strong reads are configured).
pub fn waits(req: &HttpRequest, read: &ReadState) -> bool {
    read.strong_reads.is_some() || req.headers().contains_key(position::MIN_HEADER)
}

/// Honours `X-Min-Position`: waits until the read models have applied the
/// position of that token (read-your-writes for a client that got it from
/// a write's `X-Position`). A token this server did not write is a 400.
/// Without the header, with strong reads configured, waits for the last
/// position the store had committed.
pub async fn fresh(req: &HttpRequest, read: &ReadState) -> Result<(), ApiError> {
    if req.extensions().contains::<Fresh>() {
        return Ok(()); // (the key's extractor waited already)
    }
    let Some(position) = wanted(req, read).await? else {
        return Ok(());
    };
    wait(read, &read.projections, position).await?;
    req.extensions_mut().insert(Fresh);
    Ok(())
}

/// The position a read must wait for: its `X-Min-Position`, or with strong
/// reads the store's last commit; `None`: none.
pub async fn wanted(req: &HttpRequest, read: &ReadState) -> Result<Option<u64>, ApiError> {
    Ok(Some(
        match (req.headers().get(position::MIN_HEADER), &read.strong_reads) {
            (Some(value), _) => value
                .to_str()
                .map_err(|_| position::InvalidToken)
                .and_then(|token| read.positions.decode(token.trim()))?,
            (None, Some(store)) => store.last_committed().await?,
            (None, None) => return Ok(None),
        },
    ))
}

/// Waits until `models` have applied `position`, at most the read's wait
/// (then 503).
pub async fn wait(
    read: &ReadState,
    models: &ibl_projections::Projections,
    position: u64,
) -> Result<(), ApiError> {
    if models.wait_for(position, read.min_position_wait).await {
        Ok(())
    } else {
        Err(ApiError::Unavailable(
            "The read models have not reached that position yet; retry.".into(),
        ))
    }
}

#[derive(serde::Deserialize)]
pub struct OrgUser {
    pub org: String,
    pub user: String,
}

#[derive(serde::Deserialize)]
pub struct OrgUserEntity {
    pub org: String,
    pub user: String,
    pub entity_id: String,
}
