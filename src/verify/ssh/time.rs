//! The `valid-after`/`valid-before` timestamps of `allowed_signers`
//! (`YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`, OpenSSH's `parse_absolute_time`).
//!
//! ssh-keygen reads a time without `Z` in the machine's local time zone; we
//! read every time as UTC (containers run in UTC, and a window must not move
//! with the node's zone). A `Z` or `UTC` suffix is accepted and changes
//! nothing. The messages say so.

/// What the messages say about time zones.
pub(super) const UTC_NOTE: &str = "times without Z are read as UTC";

/// Seconds since the Unix epoch of an allowed_signers timestamp.
pub(super) fn parse(text: &str) -> Result<u64, String> {
    let digits = strip_utc_suffix(text);
    let bad = || {
        format!(
            "invalid time {text:?}: expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, \
             optionally followed by Z ({UTC_NOTE})"
        )
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |at: usize, len: usize| -> u64 {
        digits[at..at + len]
            .bytes()
            .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
    };
    let (year, month, day) = (field(0, 4), field(4, 2), field(6, 2));
    let (hour, minute) = if digits.len() >= 12 {
        (field(8, 2), field(10, 2))
    } else {
        (0, 0)
    };
    let second = if digits.len() == 14 { field(12, 2) } else { 0 };
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid || year < 1970 {
        return Err(bad());
    }
    let seconds = days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    // OpenSSH treats 0 as "no limit" and refuses it as a time.
    if seconds == 0 {
        return Err(bad());
    }
    Ok(seconds)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for messages.
pub(super) fn format(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn strip_utc_suffix(text: &str) -> &str {
    // Byte comparisons: the suffixes are ASCII, so cutting before them
    // always lands on a character boundary.
    let b = text.as_bytes();
    let n = b.len();
    if n > 1 && b[n - 1].eq_ignore_ascii_case(&b'z') {
        &text[..n - 1]
    } else if n > 3 && b[n - 3..].eq_ignore_ascii_case(b"utc") {
        &text[..n - 3]
    } else {
        text
    }
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date (year ≥ 1970): whole years, then months.
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let years: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let months: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years + months + day - 1
}

/// The inverse of [`days_since_epoch`].
fn civil_from_days(mut days: u64) -> (u64, u64, u64) {
    let mut year = 1970;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    while days >= days_in_month(year, month) {
        days -= days_in_month(year, month);
        month += 1;
    }
    (year, month, days + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_lengths_and_the_suffixes() {
        // `date -u -d 2024-02-29 +%s` = 1709164800
        assert_eq!(parse("20240229"), Ok(1_709_164_800));
        assert_eq!(parse("20240229Z"), Ok(1_709_164_800));
        assert_eq!(parse("20240229UTC"), Ok(1_709_164_800));
        assert_eq!(
            parse("202402291234"),
            Ok(1_709_164_800 + 12 * 3600 + 34 * 60)
        );
        assert_eq!(
            parse("20240229123456z"),
            Ok(1_709_164_800 + 12 * 3600 + 34 * 60 + 56)
        );
        assert_eq!(format(1_709_164_800 + 45_296), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn impossible_dates_are_refused_with_the_format() {
        for bad in [
            "20230229",
            "20241301",
            "20240100",
            "202401011",
            "2024010112",
            "20240101246000",
            "19691231",
            "19700101",
            "2024-01-01",
            "",
            "Z",
            "２０２４０１０１",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("YYYYMMDD") && err.contains("UTC"), "{err}");
        }
    }

    #[test]
    fn format_inverts_parse() {
        for t in [
            "19700101000001",
            "20000229235959",
            "21000301000000",
            "20261204091000",
        ] {
            let s = parse(t).expect(t);
            let f = format(s);
            let back: String = f.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(back, t);
        }
    }
}
