//! Human-friendly sizes ("64MiB") and durations ("50ms") for flags and config files.

use std::time::Duration;

use tokio::time::Instant;

/// Parse a byte count: a plain number, or a number with a suffix `B`, `K`/`KB`/`KiB`,
/// `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case-insensitive). `KB` and `KiB` both
/// mean 1024: a cache budget is never meant in powers of ten. A number with a fraction
/// (`1.5GiB`) must come to a whole number of bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number = number.replace('_', "");
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} in {text:?} (use B, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    let invalid = || format!("invalid size {text:?}: expected e.g. 1048576, 512KiB or 64MiB");
    let too_large = || format!("size {text:?} is too large");
    if !number.contains('.') {
        // Integers exactly, however large.
        let value: u64 = number
            .parse()
            .map_err(|e: std::num::ParseIntError| match e.kind() {
                std::num::IntErrorKind::PosOverflow => too_large(),
                _ => invalid(),
            })?;
        return value.checked_mul(1 << shift).ok_or_else(too_large);
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(too_large());
    }
    if bytes.fract() != 0.0 {
        return Err(format!(
            "size {text:?} is not a whole number of bytes ({bytes} B)"
        ));
    }
    Ok(bytes as u64)
}

/// Parse a duration: a number with a unit `ns`, `us`, `ms`, `s`, `m` or `h`, e.g. `50ms`,
/// `1.5s`, `2m`. A bare `0` is zero; any other bare number is an error, since it is
/// ambiguous.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "duration {text:?} has no unit (write e.g. 50ms, 1s, 2m)"
            ));
        }
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (use ns, us, ms, s, m or h)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 50ms, 1.5s or 2m"))?;
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("duration {text:?} is out of range"))
}

/// Render a byte count for people, e.g. `1.1 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// `start + d`, or about 30 years after `start` when that is past what an `Instant`
/// holds (a timeout flag of "a million years" means "never", not a panic).
pub(crate) fn deadline_after(start: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    start
        .checked_add(d)
        .or_else(|| start.checked_add(FAR))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size(" 2 GiB "), Ok(2 << 30));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
        // Integers are exact, up to the last byte a u64 holds.
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("9007199254740993"), Ok(9_007_199_254_740_993));
    }

    #[test]
    fn bad_sizes_say_why() {
        let e = parse_size("64XB").unwrap_err();
        assert!(e.contains("unknown size suffix"), "{e}");
        let e = parse_size("MiB").unwrap_err();
        assert!(e.contains("invalid size"), "{e}");
        assert!(parse_size("").is_err());
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_size("18446744073709551616")
                .unwrap_err()
                .contains("too large")
        );
        for fractional in ["1.5", "1.5B", "0.1KiB"] {
            let e = parse_size(fractional).unwrap_err();
            assert!(e.contains("whole number of bytes"), "{fractional}: {e}");
        }
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse_duration("50").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown duration unit")
        );
        assert!(
            parse_duration("ms")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1_102_408), "1.1 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
