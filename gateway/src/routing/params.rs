//! Which path parameter values may be forwarded at all.
//!
//! A `{param}` is substituted into the backend path as one segment (see
//! [`super::fill_template`], which percent-encodes `/`), but the backend
//! decodes it again: Spin's router, a component's `spin-path-info`, or a
//! proxy in between may then see `/items/..`, `/items/a/b` or a NUL and
//! address another resource than the public route promised. Values that
//! can only mean that are refused here, before any backend is involved.

use std::fmt;

/// Why a decoded path parameter value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsafe {
    /// `.` or `..`: a dot segment (RFC 3986 §5.2.4) that climbs the path.
    DotSegment,
    /// Contains `/`, which would add a path segment once decoded.
    Slash,
    /// Contains `\`, a path separator to some servers and file systems.
    Backslash,
    /// Contains NUL, which truncates strings in C-based consumers.
    Nul,
    /// The percent-encoded bytes are not UTF-8: the value cannot be
    /// forwarded as sent.
    NotUtf8,
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unsafe::DotSegment => "is a dot segment (`.` or `..`)",
            Unsafe::Slash => "contains `/`",
            Unsafe::Backslash => "contains `\\`",
            Unsafe::Nul => "contains a NUL character",
            Unsafe::NotUtf8 => "is not valid UTF-8 once percent-decoded",
        })
    }
}

/// Checks one percent-decoded value.
pub fn check(decoded: &str) -> Result<(), Unsafe> {
    if decoded == "." || decoded == ".." {
        return Err(Unsafe::DotSegment);
    }
    for c in decoded.chars() {
        match c {
            '/' => return Err(Unsafe::Slash),
            '\\' => return Err(Unsafe::Backslash),
            '\0' => return Err(Unsafe::Nul),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values_pass() {
        for ok in ["7", "a b", "...", ".hidden", "a.b", "..a", "é", "%"] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn unsafe_values_are_named() {
        assert_eq!(check("."), Err(Unsafe::DotSegment));
        assert_eq!(check(".."), Err(Unsafe::DotSegment));
        assert_eq!(check("a/b"), Err(Unsafe::Slash));
        assert_eq!(check("/"), Err(Unsafe::Slash));
        assert_eq!(check("a\\b"), Err(Unsafe::Backslash));
        assert_eq!(check("a\0"), Err(Unsafe::Nul));
    }
}
