//! Parsing of the human-friendly sizes and durations used on the command line.
//!
//! Sizes follow daprd's `--max-body-size` format (`16Mi`, `4M`, `512Ki`,
//! plain bytes); durations follow Go's (`500ms`, `10s`, `1m30s`), as
//! Dapr's YAML writes them, or are plain seconds.

use std::time::Duration;

/// Splits `16Mi` into `(16, "Mi")`; `example` completes the error message.
fn number_and_unit<'a>(text: &'a str, kind: &str, example: &str) -> Result<(u64, &'a str), String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a {kind} (try {example})"))?;
    Ok((number, unit.trim()))
}

/// Parses `16Mi`, `4M`, `512Ki`, `1Gi` or a plain byte count.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = number_and_unit(text, "size", "16Mi, 512Ki or 1048576")?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KB" | "kB" => 1_000,
        "Ki" | "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "Mi" | "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "Gi" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use Ki, Mi, Gi, K, M or G)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration as Go's `time.ParseDuration` does, the format of
/// Dapr's YAML and flags (`500ms`, `10s`, `1m30s`, `1.5h`, `300us`; units
/// `ns`, `us` or `µs`, `ms`, `s`, `m` and `h`), or a plain number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = |why: &str| format!("`{text}` is not a duration: {why} (try 500ms, 10s or 1m30s)");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = text.parse().map_err(|_| bad("too large"))?;
        return Ok(Duration::from_secs(seconds));
    }
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest.find(|c| !is_number(c)).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after.find(is_number).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad(&format!("`{number}` has no unit"))),
            other => {
                return Err(bad(&format!(
                    "unknown unit `{other}` (use ns, us, ms, s, m or h)"
                )));
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad(&format!("`{number}` is not a number")));
        }
        let digits = |part: &str| -> Result<u128, String> {
            if part.is_empty() {
                Ok(0)
            } else {
                part.parse().map_err(|_| bad("too large"))
            }
        };
        // The fraction's digits past nanoseconds cannot matter; dropping
        // them keeps 10^len within u128.
        let fraction = &fraction[..fraction.len().min(18)];
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction_nanos = digits(fraction)? * per_unit / scale;
        let part = digits(whole)?
            .checked_mul(per_unit)
            .and_then(|whole| whole.checked_add(fraction_nanos))
            .ok_or_else(|| bad("too large"))?;
        nanos = nanos.checked_add(part).ok_or_else(|| bad("too large"))?;
        rest = next;
    }
    let seconds = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("too large"))?;
    Ok(Duration::new(seconds, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_dapr_format() {
        assert_eq!(parse_size("16Mi"), Ok(16 << 20));
        assert_eq!(parse_size("4M"), Ok(4_000_000));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("Mi").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999999999999Gi").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 5h "), Ok(Duration::from_secs(5 * 3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::new(3723, 4_000_000))
        );
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("300us"), Ok(Duration::from_micros(300)));
        assert_eq!(parse_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("0.1234567891234567891234s"),
            Ok(Duration::from_nanos(123_456_789))
        );
        for bad in [
            "",
            "soon",
            "5d",
            "1m30",
            "1..5s",
            ".s",
            "-1s",
            "s",
            "1e3s",
            "99999999999999999999999999999999999999h",
            "18446744073709551616",
        ] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.contains("is not a duration"), "{bad}: {error}");
        }
    }
}
