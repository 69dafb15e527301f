//! Value syntax, as git-sync (i.e. Go) parses it: durations
//! (`time.ParseDuration`: `100ms`, `1m30s`, `1.5s`, `0`), booleans
//! (`strconv.ParseBool`), integers (`strconv.ParseInt(s, 0, 64)`: `0x`, `0o`,
//! leading-`0` octal, `0b`, `_`), signals, byte sizes (`KiB`, `MiB`), git ref
//! names and the transport a `--repo` names.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * 1024;

pub(super) const SUPPORTED_SCHEMES: &[&str] = &["https", "http", "git", "ssh", "file"];

/// The transport a repo string names, lower-cased: the URL scheme, `ssh` for
/// git's scp-like `[user@]host:path` form, `None` for a local path.
pub(super) fn repo_scheme(repo: &str) -> Option<String> {
    if let Some(i) = repo.find("://") {
        return Some(repo[..i].to_ascii_lowercase());
    }
    match (repo.find(':'), repo.find('/')) {
        (Some(colon), Some(slash)) if colon < slash => Some("ssh".into()),
        (Some(_), None) => Some("ssh".into()),
        _ => None,
    }
}

pub(super) fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

pub(super) fn nanos_to_duration(ns: i64) -> Option<Duration> {
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

pub(super) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses a Go duration string (`time.ParseDuration`) into signed
/// nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?unit)+` or a bare `0`.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_digits = &rest[..int_end];
        rest = &rest[int_end..];
        let mut frac_digits = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            frac_digits = &after_dot[..frac_end];
            rest = &after_dot[frac_end..];
            if int_digits.is_empty() && frac_digits.is_empty() {
                return Err(invalid());
            }
        } else if int_digits.is_empty() {
            return Err(invalid());
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let unit_ns: u128 = match unit {
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ns, us, ms, s, m or h)"
                ))
            }
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(format!("invalid duration {s:?}: unknown unit {other:?}")),
        };
        let overflow = || format!("invalid duration {s:?}: too large");
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        // Fractional digits beyond 18 cannot matter at nanosecond resolution.
        let frac_digits = &frac_digits[..frac_digits.len().min(18)];
        let frac_ns = if frac_digits.is_empty() {
            0
        } else {
            let frac: u128 = frac_digits.parse().map_err(|_| invalid())?;
            frac * unit_ns / 10u128.pow(frac_digits.len() as u32)
        };
        total = int
            .checked_mul(unit_ns)
            .and_then(|v| v.checked_add(frac_ns))
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= LIMIT)
            .ok_or_else(overflow)?;
    }
    if neg {
        // -(2^63) is representable.
        Ok(i64::try_from(-(total as i128)).map_err(|_| invalid())?)
    } else {
        i64::try_from(total).map_err(|_| format!("invalid duration {s:?}: too large"))
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?} (use true or false)")),
    }
}

/// Go `strconv.ParseInt(s, 0, 64)`: optional sign, then decimal, `0x` hex,
/// `0o` or leading-`0` octal, `0b` binary, with `_` allowed between digits.
pub fn parse_go_int(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid integer {s:?}");
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Underscores: only between digits, or right after a base prefix.
    if digits.contains('_') {
        let bytes = digits.as_bytes();
        let bad_start = bytes.first() == Some(&b'_') && !prefixed;
        if bad_start || bytes.last() == Some(&b'_') || digits.contains("__") {
            return Err(invalid());
        }
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid());
    }
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|e| {
        use std::num::IntErrorKind::PosOverflow;
        if *e.kind() == PosOverflow {
            format!("integer {s:?} is out of range")
        } else {
            invalid()
        }
    })?;
    let value = if neg {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or_else(|| format!("integer {s:?} is out of range"))
}

/// A signal name (`HUP`, `SIGHUP`, any case) or number (`1`) to its number.
/// SIGKILL and SIGSTOP are refused as they cannot be caught.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let signal = match parse_go_int(s) {
        Ok(n) => i32::try_from(n)
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .ok_or_else(|| format!("unknown signal number {n}"))?,
        Err(_) => {
            let upper = s.trim().to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_str(&name).map_err(|_| format!("unknown signal {s:?}"))?
        }
    };
    if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
        return Err(format!("{} cannot be caught", signal.as_str()));
    }
    Ok(signal as i32)
}

/// Parses a size in bytes: a decimal number, optionally followed by `KiB` or
/// `MiB` (any case, optionally after a space), or `B`.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let invalid =
        || format!("invalid size {s:?} (bytes, or a number with a KiB or MiB suffix, e.g. 5MiB)");
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    if number.is_empty() {
        return Err(invalid());
    }
    let multiplier = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => KIB,
        "mib" => MIB,
        _ => return Err(invalid()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Checks a `--ref`: `HEAD`, a full 40-hex SHA, or a valid git ref name.
/// A name of hex digits (a date tag `20240115`, a branch `deadbeef`) is a
/// ref name, as for git's fetch: only the remote can tell it from an
/// abbreviated SHA, which then fails the sync saying so.
pub fn validate_ref(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("must not be empty".into());
    }
    if r == "HEAD" || (r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Ok(());
    }
    if let Some(c) = r.chars().find(|c| c.is_control()) {
        return Err(format!("{r:?} must not contain control characters ({c:?})"));
    }
    if r.contains(' ') {
        return Err(format!("{r:?} must not contain spaces"));
    }
    if let Some(c) = r.chars().find(|c| "~^:?*[\\".contains(*c)) {
        return Err(format!("{r:?} must not contain {c:?}"));
    }
    if r.contains("..") {
        return Err(format!("{r:?} must not contain \"..\""));
    }
    if r.contains("@{") || r == "@" {
        return Err(format!("{r:?} is not a valid ref name"));
    }
    if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        return Err(format!(
            "{r:?} must not start or end with '/' or contain \"//\""
        ));
    }
    if r.ends_with('.') {
        return Err(format!("{r:?} must not end with '.'"));
    }
    if r.split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock"))
    {
        return Err(format!(
            "{r:?}: ref components must not start with '.' or end with \".lock\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    #[test]
    fn go_duration_forms() {
        let ok = |s: &str, d: Duration| {
            assert_eq!(
                parse_go_duration(s).map(nanos_to_duration),
                Ok(Some(d)),
                "{s}"
            )
        };
        ok("100ms", Duration::from_millis(100));
        ok("10s", Duration::from_secs(10));
        ok("1m30s", Duration::from_secs(90));
        ok("1h", Duration::from_secs(3600));
        ok("0s", Duration::ZERO);
        ok("0", Duration::ZERO);
        ok("1.5s", Duration::from_millis(1500));
        ok(".5s", Duration::from_millis(500));
        ok("1h2m3.25s", Duration::from_millis(3_723_250));
        ok("10us", Duration::from_micros(10));
        ok("10µs", Duration::from_micros(10));
        ok("7ns", Duration::from_nanos(7));
        ok("+3s", Duration::from_secs(3));
        assert_eq!(parse_go_duration("-1s"), Ok(-1_000_000_000));
        for bad in [
            "",
            "abc",
            "10",
            "1x",
            "s",
            ".s",
            "1.2.3s",
            "1 s",
            "-",
            "9999999999999h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be invalid");
        }
        assert_eq!(
            parse_go_duration("abc"),
            Err("invalid duration \"abc\"".to_string())
        );

        // Through the flags: every form accepted where the minimum allows it.
        for (form, d) in [
            ("100ms", Duration::from_millis(100)),
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
        ] {
            let arg = format!("--period={form}");
            let c = config(&with(&[&arg]), &[]);
            assert_eq!(c.period, d, "{form}");
        }
        for zero in ["0s", "0"] {
            let c = config(&base(), &[("GITSYNC_STALE_WORKTREE_TIMEOUT", zero)]);
            assert_eq!(c.stale_worktree_timeout, Duration::ZERO);
        }
    }

    #[test]
    fn bool_forms() {
        assert!(config(&with(&["--one-time"]), &[]).one_time);
        assert!(config(&with(&["--one-time=true"]), &[]).one_time);
        assert!(!config(&with(&["--one-time=false"]), &[]).one_time);
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(config(&base(), &[("GITSYNC_ONE_TIME", t)]).one_time, "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert!(!config(&base(), &[("GITSYNC_ONE_TIME", f)]).one_time, "{f}");
        }
        // The flag beats the env.
        assert!(
            !config(
                &with(&["--one-time=false"]),
                &[("GITSYNC_ONE_TIME", "true")]
            )
            .one_time
        );
        let p = problems(&base(), &[("GITSYNC_GROUP_WRITE", "yes")]);
        assert_eq!(
            p,
            vec![
                "--group-write (GITSYNC_GROUP_WRITE): invalid boolean \"yes\" (use true or false)"
                    .to_string()
            ]
        );
        let p = problems(&with(&["--one-time="]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[test]
    fn ref_validation() {
        let sha = "0123456789abcdef0123456789ABCDEF01234567";
        for good in [
            "HEAD",
            "main",
            "release/v1.2",
            "refs/heads/main",
            "v1.0.0",
            "beef",
            "deadbeef",
            "20240115",
            &sha[..39],
            sha,
        ] {
            assert_eq!(validate_ref(good), Ok(()), "{good}");
        }
        for bad in [
            "", "a b", "a..b", "a\tb", "a~1", "a^", "a:b", "-", "/a", "a/", "a//b", "a.", ".a",
            "a/.b", "a.lock", "@", "a@{1}", "a*", "a[", "a\\b",
        ] {
            if bad == "-" {
                continue; // a valid (if odd) ref name
            }
            assert!(validate_ref(bad).is_err(), "{bad:?} should be invalid");
        }
        let c = config(&with(&["--ref", sha]), &[]);
        assert_eq!(c.git_ref, sha);
        let p = problems(&with(&["--ref="]), &[]);
        assert_eq!(
            p,
            vec!["--ref (GITSYNC_REF): must not be empty".to_string()]
        );
    }

    #[test]
    fn go_int_forms() {
        assert_eq!(parse_go_int("42"), Ok(42));
        assert_eq!(parse_go_int("-7"), Ok(-7));
        assert_eq!(parse_go_int("+7"), Ok(7));
        assert_eq!(parse_go_int("0x1F"), Ok(31));
        assert_eq!(parse_go_int("010"), Ok(8));
        assert_eq!(parse_go_int("0o17"), Ok(15));
        assert_eq!(parse_go_int("0b101"), Ok(5));
        assert_eq!(parse_go_int("1_000"), Ok(1000));
        assert_eq!(parse_go_int("0"), Ok(0));
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            "",
            "-",
            "x",
            "1.5",
            "08",
            "_1",
            "1_",
            "1__0",
            "0x",
            "--1",
            "+-1",
            "9223372036854775808",
        ] {
            assert!(parse_go_int(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
