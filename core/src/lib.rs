//! # items-core
//!
//! The one place where "what is a valid item" is decided.
//!
//! This crate is compiled into three Spin components (for `wasm32-wasip2`)
//! *and* into the native gateway. Keeping every rule here — and keeping the
//! crate pure (no I/O, no clocks, no randomness, no threads) — is what lets
//! both sides return byte-identical answers for the same input: the gateway
//! can pre-validate or fall back to local validation and a client can never
//! tell which side answered.
//!
//! The crate is organised one concept per module:
//!
//! * [`schema`]  — the item's shape: a validator generated at build time from
//!   `schemas/item.schema.json`, reporting stable [`Issue`] codes.
//! * [`item`]    — the typed [`Item`], [`check_item`] (schema + rules JSON
//!   Schema cannot express) and the create path [`check_new_item`].
//! * [`signing`] — RFC 8785 canonical payloads and Ed25519 signatures.
//! * [`keys`]    — the allow-list of trusted public keys.
//! * [`batch`]   — the CPU-heavy batch validation path.
//! * `json`      — strict JSON reading: duplicate member names are refused.
//! * [`problem`] — RFC 9457 problem details shared by every HTTP surface.
//! * [`issue`]   — the unit of feedback: one problem with one item.
//! * [`http`]    — the HTTP contract a component and its native twin share.

pub mod batch;
pub mod http;
pub mod issue;
pub mod item;
mod json;
pub mod keys;
pub mod problem;
pub mod schema;
pub mod signing;

pub use batch::{BatchError, ItemResult, Verdict, validate_batch};
pub use issue::Issue;
pub use item::{Item, Price, Rejection, Signature, check_item, check_new_item};
pub use keys::{KeyListError, TrustedKeys};
pub use problem::Problem;
pub use signing::{SigningError, sign_item, signing_payload, verify_item_signature};

/// Largest accepted body for creating one item (1 MiB).
///
/// A single item is at most a few KiB when valid (200-char name, 4000-char
/// description, 16 short tags); a generous but finite cap keeps a hostile
/// client from making a component buffer arbitrary amounts of memory.
/// Enforcing it while reading the body is the caller's job, because only the
/// caller sees the stream.
pub const MAX_ITEM_BYTES: usize = 1 << 20;

/// Largest accepted body for batch validation (16 MiB).
///
/// Big enough for [`MAX_BATCH_ITEMS`] realistic items, small enough that a
/// whole batch can be parsed in memory inside a Wasm component.
/// [`validate_batch`] checks it itself so that no caller can forget.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// Most items accepted in one batch.
///
/// Bounds the CPU time of one request (signature verification dominates) and
/// the size of the verdict, independently of how compact the items are.
pub const MAX_BATCH_ITEMS: usize = 10_000;

/// Most schema issues reported for one item (then one `too-many-issues`
/// issue says how many more there were).
///
/// A valid-looking item has a handful of issues at most; the cap bounds what
/// one hostile item (thousands of unexpected members, say) can add to a
/// verdict, and the work of formatting messages nobody will read.
pub const MAX_SCHEMA_ISSUES: usize = 64;

/// Most issues reported in full across one batch verdict.
///
/// Items are reported in order; once the issues reported so far plus an
/// item's own would exceed this, that item and every later invalid item get a
/// single `too-many-issues` issue instead of their list. Together with
/// [`MAX_BATCH_ITEMS`] this bounds the verdict's size whatever the input.
pub const MAX_BATCH_ISSUES: usize = 10_000;
