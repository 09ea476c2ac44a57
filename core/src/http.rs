//! The HTTP contract shared by a component and its native twin.
//!
//! Whether a body is accepted as JSON decides between a 415 and a verdict;
//! keeping that decision here means the validate component and the
//! gateway's native handler refuse exactly the same requests with the same
//! problem.

use serde_json::json;

use crate::Problem;

/// The media type of JSON bodies.
pub const JSON: &str = "application/json";

/// `Ok` when `content_type` says JSON (`application/json`, parameters such
/// as `charset` allowed, case-insensitive); otherwise the 415 problem.
pub fn require_json(content_type: Option<&str>) -> Result<(), Problem> {
    let is_json = content_type.is_some_and(|value| {
        let essence = value.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case(JSON)
    });
    if is_json {
        return Ok(());
    }
    let detail = match content_type {
        Some(ct) => format!("the request body must be {JSON}, not {ct:?}"),
        None => format!("the request body must be {JSON}; the Content-Type header is missing"),
    };
    Err(Problem::new(415, "Unsupported Media Type", detail).with("accepted", json!([JSON])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_parameters_in_any_case_is_accepted() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(require_json(Some(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_415_naming_what_was_sent() {
        for bad in [
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
            None,
        ] {
            let problem = require_json(bad).unwrap_err();
            assert_eq!(problem.status(), 415);
            if let Some(ct) = bad {
                assert!(
                    problem.detail().contains(&format!("{ct:?}")),
                    "{}",
                    problem.detail()
                );
            } else {
                assert!(problem.detail().contains("missing"));
            }
        }
    }
}
