//! Where the generated validator reports: instance paths built only when an
//! issue needs one, and the per-item cap on issues.

use crate::MAX_SCHEMA_ISSUES;
use crate::issue::{Issue, pointer_push};

/// A location in the instance, as a chain of steps on the stack.
///
/// Rendering a JSON Pointer allocates, and most values have no issue, so the
/// pointer is only written out when an issue is reported.
#[derive(Clone, Copy, Debug)]
pub(crate) enum At<'a> {
    /// The item itself (pointer `""`).
    Root,
    /// A member of the object at the parent location.
    Key(&'a At<'a>, &'a str),
    /// An element of the array at the parent location.
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    /// The member `name` of this object.
    pub(crate) fn key(&'a self, name: &'a str) -> At<'a> {
        At::Key(self, name)
    }

    /// The element `index` of this array.
    pub(crate) fn index(&'a self, index: usize) -> At<'a> {
        At::Index(self, index)
    }

    /// The RFC 6901 JSON Pointer, `~` and `/` escaped.
    pub(crate) fn pointer(&self) -> String {
        match self {
            At::Root => String::new(),
            At::Key(parent, name) => pointer_push(&parent.pointer(), name),
            At::Index(parent, index) => pointer_push(&parent.pointer(), &index.to_string()),
        }
    }
}

/// Collects at most [`MAX_SCHEMA_ISSUES`] issues and counts the rest.
///
/// The cap bounds the verdict a single hostile item can produce (an object
/// with a million unexpected members would otherwise yield a million issues),
/// and messages beyond it are never even formatted.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    issues: Vec<Issue>,
    omitted: usize,
}

impl Sink {
    /// Reports one issue at `at`; `make` gets the rendered path and returns
    /// the code and message. Past the cap only a count is kept.
    pub(crate) fn push(&mut self, at: &At<'_>, make: impl FnOnce(&str) -> (&'static str, String)) {
        if self.issues.len() >= MAX_SCHEMA_ISSUES {
            self.omitted += 1;
            return;
        }
        let path = at.pointer();
        let (code, message) = make(&path);
        self.issues.push(Issue::new(path, code, message));
    }

    /// The issues, plus one `too-many-issues` issue on the item if any were
    /// left out.
    pub(crate) fn finish(mut self) -> Vec<Issue> {
        if self.omitted > 0 {
            let n = self.omitted;
            self.issues.push(Issue::new(
                "",
                "too-many-issues",
                format!(
                    "{n} more schema issue{} not reported: at most {MAX_SCHEMA_ISSUES} are reported per item",
                    if n == 1 { "" } else { "s" }
                ),
            ));
        }
        self.issues
    }
}
