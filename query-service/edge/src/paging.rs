//! Page parameters and the links between pages.

use actix_web::{HttpRequest, HttpResponse};
use ibl_projections::credentials::Page;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::wire::base_url;

pub const DEFAULT_PAGE_SIZE: usize = 10;
pub const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based.
    pub page: usize,
    pub size: usize,
}

impl PageRequest {
    pub fn offset(&self) -> usize {
        (self.page - 1).saturating_mul(self.size)
    }

    /// Parses `page` and `page_size`; a size above the maximum is capped.
    pub fn parse(page: Option<&str>, size: Option<&str>) -> Result<Self, ApiError> {
        let page = match page {
            None | Some("") => 1,
            Some(p) => p
                .parse::<usize>()
                .ok()
                .filter(|p| *p >= 1 && *p <= 1_000_000_000)
                .ok_or_else(|| {
                    ApiError::field("page", "A valid page number (1 or more) is required.")
                })?,
        };
        let size = match size {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|s| *s >= 1)
                .ok_or_else(|| {
                    ApiError::field("page_size", "A page size of 1 or more is required.")
                })?
                .min(MAX_PAGE_SIZE),
        };
        Ok(Self { page, size })
    }

    pub fn num_pages(&self, count: usize) -> usize {
        count.div_ceil(self.size).max(1)
    }

    /// DRF's rule: a page past the last is 404, but the first page of an
    /// empty list exists.
    pub fn check_in_range(&self, count: usize) -> Result<(), ApiError> {
        if self.page > self.num_pages(count) {
            Err(ApiError::NotFound("Invalid page.".into()))
        } else {
            Ok(())
        }
    }
}

/// Absolute URL of this request with `page` set to `page`, under the
/// public URL (see [`base_url`]).
pub fn page_url(req: &HttpRequest, page: usize) -> String {
    url_with(req, "page", &page.to_string())
}

/// Absolute URL of this request with parameter `name` set to `value`
/// (a cursor's next page), under the public URL.
pub fn url_with(req: &HttpRequest, name: &str, value: &str) -> String {
    let mut pairs: Vec<(String, String)> = url_pairs(req.query_string())
        .into_iter()
        .filter(|(k, _)| k != name)
        .collect();
    pairs.push((name.into(), value.into()));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{}{}?{}", base_url(req), req.path(), query)
}

/// The `next` and `previous` links, `None` where there is no such page.
pub fn links(req: &HttpRequest, p: PageRequest, count: usize) -> (Option<String>, Option<String>) {
    let next = (p.page < p.num_pages(count) && count > 0).then(|| page_url(req, p.page + 1));
    let previous = (p.page > 1).then(|| page_url(req, p.page - 1));
    (next, previous)
}

/// A page answered as DRF does (the RBAC lists): `{count, next, previous,
/// results}`, each item in its wire shape; 404 past the last page.
pub fn drf_page<T>(
    req: &HttpRequest,
    p: PageRequest,
    page: &Page<T>,
    wire: impl Fn(&T) -> Value,
) -> Result<HttpResponse, ApiError> {
    p.check_in_range(page.count)?;
    let (next, previous) = links(req, p, page.count);
    let results: Vec<Value> = page.items.iter().map(wire).collect();
    Ok(HttpResponse::Ok().json(json!({
        "count": page.count,
        "next": next,
        "previous": previous,
        "results": results,
    })))
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_capped_and_zero_rejected() {
        assert_eq!(PageRequest::parse(None, Some("500")).unwrap().size, 100);
        assert!(PageRequest::parse(None, Some("0")).is_err());
        assert!(PageRequest::parse(Some("0"), None).is_err());
        assert!(PageRequest::parse(Some("x"), None).is_err());
        assert_eq!(
            PageRequest::parse(Some("3"), Some("7")).unwrap().offset(),
            14
        );
    }

    #[test]
    fn out_of_range_pages_are_rejected_but_an_empty_first_page_exists() {
        let p = PageRequest::parse(Some("1"), None).unwrap();
        assert!(p.check_in_range(0).is_ok());
        let p = PageRequest::parse(Some("2"), Some("10")).unwrap();
        assert!(p.check_in_range(10).is_err());
        assert!(p.check_in_range(11).is_ok());
    }
}
