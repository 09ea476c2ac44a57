//! JSON Schema's view of numbers: what counts as an integer, and exact
//! comparison against `minimum`/`maximum`.
//!
//! A JSON number arrives as a `u64`, an `i64` or an `f64` (whichever
//! `serde_json` picked). Comparing them by first converting to `f64` would be
//! wrong at the bounds that matter here (2^53 - 1 and 2^53 are the same
//! double), so every comparison is exact.

use std::cmp::Ordering;

use serde_json::Number;

/// A `minimum`/`maximum` bound from the schema, in the form it was written.
///
/// The item schema only has non-negative integer bounds today; the other
/// forms cost nothing and keep a schema edit from needing generator work.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub(crate) enum Limit {
    /// A non-negative integer.
    Unsigned(u64),
    /// A negative integer.
    Signed(i64),
    /// Anything with a fraction or an exponent.
    Float(f64),
}

/// JSON Schema's `integer`: any number with a zero fractional part, so `1.0`
/// and `1e2` count (the item's own rules flag them separately).
pub(crate) fn is_integer(value: &serde_json::Value) -> bool {
    let serde_json::Value::Number(n) = value else {
        return false;
    };
    n.is_u64() || n.is_i64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// Compares a JSON number with a schema bound, exactly.
pub(crate) fn compare(n: &Number, limit: Limit) -> Ordering {
    let left = if let Some(u) = n.as_u64() {
        Exact::Integer(i128::from(u))
    } else if let Some(i) = n.as_i64() {
        Exact::Integer(i128::from(i))
    } else {
        // serde_json never produces NaN or infinities.
        Exact::Float(n.as_f64().unwrap_or(0.0))
    };
    let right = match limit {
        Limit::Unsigned(u) => Exact::Integer(i128::from(u)),
        Limit::Signed(i) => Exact::Integer(i128::from(i)),
        Limit::Float(f) => Exact::Float(f),
    };
    match (left, right) {
        (Exact::Integer(a), Exact::Integer(b)) => a.cmp(&b),
        (Exact::Integer(a), Exact::Float(f)) => integer_vs_float(a, f),
        (Exact::Float(f), Exact::Integer(b)) => integer_vs_float(b, f).reverse(),
        (Exact::Float(a), Exact::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

enum Exact {
    Integer(i128),
    Float(f64),
}

/// `a` compared with `f`, without rounding either.
fn integer_vs_float(a: i128, f: f64) -> Ordering {
    // 2^127: every i128 lies strictly inside (-2^127 - 1, 2^127).
    const BOUND: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f >= BOUND {
        return Ordering::Less;
    }
    if f < -BOUND {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // Exact: `whole` is integral and within i128's range.
    #[allow(clippy::cast_possible_truncation)]
    let whole_int = whole as i128;
    match a.cmp(&whole_int) {
        Ordering::Equal => 0.0.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(v: serde_json::Value) -> Number {
        match v {
            serde_json::Value::Number(n) => n,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn integers_as_json_schema_sees_them() {
        for yes in [
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(1.0),
            json!(1e2),
            json!(-0.0),
            json!(1e300),
        ] {
            assert!(is_integer(&yes), "{yes}");
        }
        for no in [json!(1.5), json!(-0.5), json!("1"), json!(null)] {
            assert!(!is_integer(&no), "{no}");
        }
    }

    #[test]
    fn comparisons_are_exact_at_2_pow_53() {
        let max = Limit::Unsigned(9_007_199_254_740_991);
        assert_eq!(
            compare(&num(json!(9_007_199_254_740_991u64)), max),
            Ordering::Equal
        );
        assert_eq!(
            compare(&num(json!(9_007_199_254_740_992u64)), max),
            Ordering::Greater
        );
        assert_eq!(
            compare(&num(json!(9_007_199_254_740_992.0)), max),
            Ordering::Greater
        );
        assert_eq!(
            compare(&num(json!(9_007_199_254_740_990.5)), max),
            Ordering::Less
        );
        assert_eq!(
            compare(&num(json!(-0.0)), Limit::Unsigned(0)),
            Ordering::Equal
        );
        assert_eq!(
            compare(&num(json!(-1e-300)), Limit::Unsigned(0)),
            Ordering::Less
        );
        assert_eq!(
            compare(&num(json!(1e-300)), Limit::Unsigned(0)),
            Ordering::Greater
        );
        assert_eq!(compare(&num(json!(-1)), Limit::Unsigned(0)), Ordering::Less);
        assert_eq!(
            compare(&num(json!(i64::MIN)), Limit::Signed(i64::MIN)),
            Ordering::Equal
        );
        assert_eq!(
            compare(&num(json!(u64::MAX)), Limit::Float(1.8e19)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&num(json!(1e300)), Limit::Unsigned(u64::MAX)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&num(json!(-1e300)), Limit::Signed(-1)),
            Ordering::Less
        );
        assert_eq!(
            compare(&num(json!(4_294_967_295.5)), Limit::Unsigned(4_294_967_295)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&num(json!(1.5)), Limit::Float(1.25)),
            Ordering::Greater
        );
    }
}
