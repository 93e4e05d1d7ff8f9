//! Lambda's list pagination: `MaxItems` (at most 50 per page whatever is asked) and opaque
//! `Marker`s, which are the base64 of the sort key of the last item returned. Pure; must not
//! depend on the platform's state.

use base64::Engine;

use super::requests::PageQuery;
use crate::wire::ApiError;

/// AWS's page size cap for list operations.
const PAGE_MAX: usize = 50;

/// A checked `MaxItems` / `Marker` pair.
pub(super) struct Page {
    pub max: usize,
    /// The sort key after which the page starts.
    pub after: Option<String>,
}

impl PageQuery {
    /// Checks `MaxItems`, then `Marker`, as AWS does.
    pub(super) fn check(&self) -> Result<Page, ApiError> {
        let max = max_items(self.max_items.as_deref())?;
        let after = decode_marker(self.marker.as_deref())?;
        Ok(Page { max, after })
    }
}

fn max_items(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(PAGE_MAX),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 1 => Err(ApiError::validation(
                "maxItems",
                s,
                "Member must have value greater than or equal to 1",
            )),
            Ok(n) if n > 10_000 => Err(ApiError::validation(
                "maxItems",
                s,
                "Member must have value less than or equal to 10000",
            )),
            // AWS returns at most 50 items per page whatever MaxItems says.
            Ok(n) => Ok((n as usize).min(PAGE_MAX)),
            Err(_) => Err(ApiError::validation(
                "maxItems",
                s,
                "Member must be a number",
            )),
        },
    }
}

/// Markers are opaque to clients: base64 of the last key returned.
pub(super) fn encode_marker(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// Decodes a `Marker`. Pure; fuzzed.
///
/// # Errors
/// `InvalidParameterValueException` for a marker this platform did not issue.
pub fn decode_marker(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid_parameter("Invalid marker"))
}

/// The items of `items` (sorted by key) after the page's marker, at most `max` of them, and the
/// marker of the next page when more remain.
pub(super) fn page_after<T>(items: Vec<(String, T)>, page: &Page) -> (Vec<T>, Option<String>) {
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| page.after.as_deref().is_none_or(|a| k.as_str() > a));
    let taken: Vec<(String, T)> = rest.by_ref().take(page.max).collect();
    let more = rest.next().is_some();
    finish(taken, more)
}

/// Splits keyed items into the items and the next marker (when `more` remain).
pub(super) fn finish<T>(taken: Vec<(String, T)>, more: bool) -> (Vec<T>, Option<String>) {
    let next = if more {
        taken.last().map(|(k, _)| encode_marker(k))
    } else {
        None
    };
    (taken.into_iter().map(|(_, v)| v).collect(), next)
}
