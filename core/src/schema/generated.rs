//! The validator `build.rs` generates from `schemas/item.schema.json`: one
//! function per schema node, calling the helpers imported here.
//!
//! The generator writes one block per keyword group so that it stays simple;
//! when a group has a single check, clippy would rather see it collapsed.
#![allow(clippy::collapsible_if)]

use std::cmp::Ordering;

use serde_json::Value;

use super::date_time::is_date_time;
use super::messages;
use super::numbers::{Limit, compare, is_integer};
use super::sink::{At, Sink};
use super::unique::duplicate;

include!(concat!(env!("OUT_DIR"), "/item_schema.rs"));
