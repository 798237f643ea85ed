//! Query-string parameters of the listings.

use std::collections::HashMap;

use crate::http::problem::Problem;

pub(super) type Query = HashMap<String, String>;

/// The page size: `limit` (default 100, at most `max`).
pub(super) fn limit(query: &Query, max: usize) -> Result<usize, Problem> {
    match query.get("limit") {
        None => Ok(100.min(max)),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Problem::bad_request(
                "bad_limit",
                format!("limit must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// A numeric keyset cursor (`after`, the last id seen).
pub(super) fn after_id(query: &Query) -> Result<Option<i64>, Problem> {
    query
        .get("after")
        .filter(|t| !t.trim().is_empty())
        .map(|text| {
            text.trim().parse::<i64>().map_err(|_| {
                Problem::bad_request("bad_cursor", "after must be the id of the last item seen")
            })
        })
        .transpose()
}

pub(super) fn flag(query: &Query, name: &str) -> Result<Option<bool>, Problem> {
    query
        .get(name)
        .filter(|t| !t.trim().is_empty())
        .map(|text| match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(Problem::bad_request(
                "bad_flag",
                format!("{name} must be true or false"),
            )),
        })
        .transpose()
}

/// Keyset paging: fetch one more than the page to know whether another page follows.
pub(super) fn page<T, K>(
    mut items: Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<K>) {
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(key);
        (items, next)
    } else {
        (items, None)
    }
}
