//! The `date-time` format: RFC 3339 `date-time`, exactly as `jsonschema` 0.61
//! checks it.
//!
//! Exactness matters more than taste here: the generated validator must
//! accept and refuse the same strings the reference implementation does
//! (`tests/schema_equivalence.rs` compares them). That means: `T` or `t` as
//! the separator (the first one found), `Z` or `z` for UTC, fractional seconds
//! of any length, numeric offsets up to `23:59`, a real calendar (leap years
//! included) and a leap second (`:60`) only where it falls on 23:59 UTC once
//! the offset is applied.

/// Whether `text` is an RFC 3339 `date-time`.
pub(crate) fn is_date_time(text: &str) -> bool {
    let Some(t) = text.bytes().position(|b| b == b'T' || b == b't') else {
        return false;
    };
    // `T` is ASCII, so both halves start on character boundaries.
    let (date, time) = text.split_at(t);
    is_date(date.as_bytes()) && is_time(&time.as_bytes()[1..])
}

/// `YYYY-MM-DD`, with the day valid for the month and year.
fn is_date(bytes: &[u8]) -> bool {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *bytes else {
        return false;
    };
    let (Some(year), Some(month), Some(day)) = (
        digits(&[y0, y1, y2, y3]),
        digits(&[m0, m1]),
        digits(&[d0, d1]),
    ) else {
        return false;
    };
    if !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 31,
    };
    day <= days
}

/// `HH:MM:SS[.frac](Z|z|+HH:MM|-HH:MM)`.
fn is_time(bytes: &[u8]) -> bool {
    let len = bytes.len();
    // The shortest time is `HH:MM:SSZ`.
    if len < 9 || bytes[2] != b':' || bytes[5] != b':' {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) = (
        digits(&bytes[0..2]),
        digits(&bytes[3..5]),
        digits(&bytes[6..8]),
    ) else {
        return false;
    };
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 8;
    if bytes[i] == b'.' {
        i += 1;
        let start = i;
        while i < len && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if i == len {
        return false;
    }
    match bytes[i] {
        b'Z' | b'z' => i == len - 1 && (second != 60 || (hour == 23 && minute == 59)),
        sign @ (b'+' | b'-') => {
            // Exactly `HH:MM` after the sign.
            let [oh0, oh1, b':', om0, om1] = bytes[i + 1..] else {
                return false;
            };
            let (Some(offset_hour), Some(offset_minute)) =
                (digits(&[oh0, oh1]), digits(&[om0, om1]))
            else {
                return false;
            };
            if offset_hour > 23 || offset_minute > 59 {
                return false;
            }
            if second != 60 {
                return true;
            }
            // A leap second is only ever inserted at 23:59:60 UTC.
            let local = i32::from(hour) * 60 + i32::from(minute);
            let offset = i32::from(offset_hour) * 60 + i32::from(offset_minute);
            let utc = if sign == b'+' {
                local - offset
            } else {
                local + offset
            };
            utc.rem_euclid(24 * 60) == 23 * 60 + 59
        }
        _ => false,
    }
}

/// The value of a run of ASCII digits, or `None` if any byte is not one.
fn digits(bytes: &[u8]) -> Option<u16> {
    bytes.iter().try_fold(0u16, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::is_date_time;

    #[test]
    fn accepts_rfc3339() {
        for ok in [
            "2024-05-01T12:30:00Z",
            "2024-05-01t12:30:00z",
            "2024-05-01T12:30:00.123456789+05:30",
            "2024-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2017-01-01T00:59:60+01:00",
            "2016-12-31T22:59:60-01:00",
            "2016-12-31T18:29:60-05:30",
            "2024-05-01T12:30:00+23:59",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_the_rest() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:30:00",
            "2024-05-01 12:30:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-00T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-05-01T12:30:61Z",
            "2024-05-01T12:30:60Z",
            "2024-05-01T23:59:60+01:00",
            "2024-05-01T12:30:00.Z",
            "2024-05-01T12:30:00+24:00",
            "2024-05-01T12:30:00+05:60",
            "2024-05-01T12:30:00+0530",
            "2024-05-01T12:30:00+05:30Z",
            "2024-05-01T12:30:00ZZ",
            "2024-5-01T12:30:00Z",
            "２024-05-01T12:30:00Z",
            "2024-05-01T12:30:0０Z",
            "+2024-05-01T12:30:00Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }
}
