//! The CPU-heavy batch path: validate up to [`MAX_BATCH_ITEMS`] items at once.
//!
//! Clients (importers, CI checks) validate whole catalogues before uploading.
//! Besides checking each item with [`check_item`], a batch detects conflicts
//! *between* items — duplicate ids and names — that no single-item check can
//! see. The verdict is fully deterministic so that a component and the gateway
//! answer with the same bytes, and so responses can be cached or diffed.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::Serialize;
use serde_json::Value;

use crate::issue::{Issue, show, sort_issues};
use crate::item::{check_item, parse_object};
use crate::keys::TrustedKeys;
use crate::problem::{Problem, types};
use crate::{MAX_BATCH_BYTES, MAX_BATCH_ISSUES, MAX_BATCH_ITEMS};

/// The outcome of validating a batch: counts plus one result per item, in
/// input order.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Number of items without issues.
    pub valid: usize,
    /// Number of items with at least one issue.
    pub invalid: usize,
    /// One entry per input item, `results[i].index == i`.
    pub results: Vec<ItemResult>,
}

/// The result for one item of a batch.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ItemResult {
    /// Position of the item in the request's `items` array.
    pub index: usize,
    /// The item's `id` if it is a valid `u32`, else `null`, so clients can
    /// correlate results without counting.
    pub id: Option<u32>,
    /// `errors.is_empty()`, spelled out for convenience.
    pub valid: bool,
    /// Issues, sorted; paths are relative to the item.
    pub errors: Vec<Issue>,
}

impl Verdict {
    /// Compact JSON of the verdict. Deterministic: only derived `Serialize`
    /// impls on structs and sorted vectors, no maps.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail; stay panic-free anyway.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Why a batch could not be validated at all (as opposed to containing invalid
/// items, which is a successful [`Verdict`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The body exceeds [`MAX_BATCH_BYTES`].
    TooLarge {
        /// The body size seen (may be a lower bound if the caller stopped
        /// reading early).
        bytes: usize,
    },
    /// The `items` array has more than [`MAX_BATCH_ITEMS`] elements.
    TooManyItems {
        /// The number of elements found.
        count: usize,
    },
    /// The body is not `{"items": [...]}`; the message says why and where.
    Malformed(String),
}

impl BatchError {
    /// The HTTP status for this error: 413 for the two limits, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } | Self::TooManyItems { .. } => 413,
            Self::Malformed(_) => 400,
        }
    }

    /// The RFC 9457 response for this error; the limits are both in the
    /// detail text and as extension members for programs.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::TooLarge { bytes } => Problem::new(
                413,
                "Request body too large",
                format!(
                    "the request body is {bytes} bytes; a batch may be at most {MAX_BATCH_BYTES} bytes ({} MiB)",
                    MAX_BATCH_BYTES >> 20
                ),
            )
            .with_type(types::BODY_TOO_LARGE)
            .with("max_bytes", Value::from(MAX_BATCH_BYTES)),
            Self::TooManyItems { count } => Problem::new(
                413,
                "Too many items",
                format!("the batch has {count} items; a batch may have at most {MAX_BATCH_ITEMS} items"),
            )
            .with_type(types::TOO_MANY_ITEMS)
            .with("max_items", Value::from(MAX_BATCH_ITEMS)),
            Self::Malformed(message) => {
                Problem::new(400, "Malformed request body", message.clone()).with_type(types::MALFORMED_BODY)
            }
        }
    }
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.to_problem().detail())
    }
}

impl std::error::Error for BatchError {}

/// Validates a batch body `{"items": [...]}`.
///
/// Enforces [`MAX_BATCH_BYTES`] and [`MAX_BATCH_ITEMS`] itself (so no caller
/// can forget), checks every item with [`check_item`], and flags duplicate
/// `id`s (`duplicate-id`) and duplicate `name`s (`duplicate-name`, exact
/// string equality) on every occurrence after the first, naming the first
/// index. Invalid items do not make the call fail: they are reported in the
/// [`Verdict`].
///
/// Issues are listed in full until the verdict holds [`MAX_BATCH_ISSUES`];
/// from the first invalid item that would exceed it on, each invalid item
/// gets one `too-many-issues` issue with the count instead, so the verdict
/// stays bounded (`valid`/`invalid` stay exact).
pub fn validate_batch(body: &[u8], trusted: &TrustedKeys) -> Result<Verdict, BatchError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge { bytes: body.len() });
    }
    let mut envelope = parse_object(body, "batch body").map_err(BatchError::Malformed)?;
    let items = take_items(&mut envelope)?;
    if items.len() > MAX_BATCH_ITEMS {
        return Err(BatchError::TooManyItems { count: items.len() });
    }

    let mut first_id: HashMap<u32, usize> = HashMap::new();
    let mut first_name: HashMap<&str, usize> = HashMap::new();
    let mut results = Vec::with_capacity(items.len());
    let mut valid = 0;
    // Issues listed so far, and whether the cap has been reached.
    let mut listed = 0;
    let mut summarizing = false;

    for (index, item) in items.iter().enumerate() {
        let mut errors = check_item(item, trusted);
        let id = item
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());

        let mut duplicates = false;
        if let Some(id) = id {
            match first_id.entry(id) {
                Entry::Occupied(first) => {
                    duplicates = true;
                    errors.push(Issue::new(
                        "/id",
                        "duplicate-id",
                        format!(
                            "id {id} is already used by the item at index {}",
                            first.get()
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
        }
        if let Some(name) = item.get("name").and_then(Value::as_str) {
            match first_name.entry(name) {
                Entry::Occupied(first) => {
                    duplicates = true;
                    errors.push(Issue::new(
                        "/name",
                        "duplicate-name",
                        format!(
                            "name {} is already used by the item at index {}",
                            show(&Value::String(name.to_owned())),
                            first.get()
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
        }
        if duplicates {
            sort_issues(&mut errors);
        }

        let is_valid = errors.is_empty();
        valid += usize::from(is_valid);
        if !is_valid && (summarizing || listed + errors.len() > MAX_BATCH_ISSUES) {
            summarizing = true;
            errors = vec![too_many_issues(errors.len())];
        }
        listed += errors.len();
        results.push(ItemResult {
            index,
            id,
            valid: is_valid,
            errors,
        });
    }

    Ok(Verdict {
        valid,
        invalid: results.len() - valid,
        results,
    })
}

/// The one issue an item gets once the batch has listed
/// [`MAX_BATCH_ISSUES`] issues.
fn too_many_issues(count: usize) -> Issue {
    Issue::new(
        "",
        "too-many-issues",
        format!(
            "{count} issue{} not listed: a batch verdict lists at most {MAX_BATCH_ISSUES} issues in full",
            if count == 1 { "" } else { "s" }
        ),
    )
}

/// Extracts the `items` array from the envelope, refusing anything else in it
/// (a misspelt member would otherwise be silently ignored).
fn take_items(envelope: &mut Value) -> Result<Vec<Value>, BatchError> {
    let Some(object) = envelope.as_object_mut() else {
        return Err(BatchError::Malformed(
            "batch body must be a JSON object".to_owned(),
        ));
    };
    let mut others: Vec<&String> = object.keys().filter(|k| k.as_str() != "items").collect();
    if !others.is_empty() {
        others.sort();
        let names: Vec<String> = others
            .iter()
            .map(|k| show(&Value::String((*k).clone())))
            .collect();
        return Err(BatchError::Malformed(format!(
            "batch body has unexpected member(s) {}; expected {{\"items\": [...]}}",
            names.join(", ")
        )));
    }
    match object.remove("items") {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(BatchError::Malformed(format!(
            "batch body member \"items\" must be an array, found {}",
            crate::issue::type_name(&other)
        ))),
        None => Err(BatchError::Malformed(
            "batch body lacks the member \"items\"; expected {\"items\": [...]}".to_owned(),
        )),
    }
}
