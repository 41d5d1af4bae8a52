//! How one value reads in the CLI's tables: durations, sizes, times,
//! labels, status and reason names. Layout is [`super::output`]'s.

use std::collections::HashMap;
use std::time::Duration;

use crate::pb;

/// A project's session quota, where 0 means none of its own.
pub(super) fn quota(max_sessions: u32) -> String {
    if max_sessions == 0 {
        "-".to_owned()
    } else {
        max_sessions.to_string()
    }
}

/// Bytes in the binary units the size flags take.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub(super) fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

pub(super) fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

pub(super) fn status_name(status: i32) -> String {
    pb::SessionStatus::try_from(status).map_or_else(
        |_| status.to_string(),
        |s| {
            s.as_str_name()
                .trim_start_matches("SESSION_STATUS_")
                .to_owned()
        },
    )
}

pub(super) fn reason_name(reason: i32) -> String {
    match pb::EndReason::try_from(reason) {
        Ok(pb::EndReason::Unspecified) => "-".to_owned(),
        Ok(r) => r.as_str_name().trim_start_matches("END_REASON_").to_owned(),
        Err(_) => reason.to_string(),
    }
}

pub(super) fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.map_or_else(|| "-".to_owned(), ToString::to_string)
}

pub(super) fn duration(d: Option<&prost_types::Duration>) -> String {
    d.and_then(|d| Duration::try_from(*d).ok())
        .map_or_else(|| "-".to_owned(), human)
}

/// A duration as people read one: under a minute in one unit with a
/// decimal (`1.7 ms`, `12.3 s`), from a minute on in its two largest whole
/// units (`4m 59s`, `2h 3m`, `3d 4h`), never a run of every unit down to
/// nanoseconds. Truncated, not rounded, so a value is never shown as more
/// than it is (a timeout with 0.9 s left is not "5m").
fn human(d: Duration) -> String {
    const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let secs = d.as_secs();
    if secs < 60 {
        let nanos = d.as_nanos();
        let (scale, unit) = match nanos {
            0 => return "0s".to_owned(),
            1..1_000 => return format!("{nanos} ns"),
            1_000..1_000_000 => (1_000, "µs"),
            1_000_000..1_000_000_000 => (1_000_000, "ms"),
            _ => (1_000_000_000, "s"),
        };
        // Tenths, truncated: 999.96 ms is 999.9 ms, not 1000.0 ms.
        let tenths = nanos * 10 / scale;
        return if tenths.is_multiple_of(10) {
            format!("{} {unit}", tenths / 10)
        } else {
            format!("{}.{} {unit}", tenths / 10, tenths % 10)
        };
    }
    let mut parts = Vec::new();
    let mut rest = secs;
    for (unit, size) in UNITS {
        let count = rest / size;
        rest %= size;
        if count > 0 || !parts.is_empty() {
            parts.push((count, unit));
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, unit)| format!("{count}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn labels(metadata: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    if pairs.is_empty() {
        "-".to_owned()
    } else {
        pairs.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let ms = Duration::from_millis;
        for (d, shown) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(999), "999 ns"),
            (Duration::from_nanos(1_654_701), "1.6 ms"),
            (Duration::from_micros(1_700), "1.7 ms"),
            (Duration::from_nanos(999_960_000), "999.9 ms"),
            (Duration::from_micros(250), "250 µs"),
            (ms(12_345), "12.3 s"),
            (ms(59_999), "59.9 s"),
            (Duration::from_secs(60), "1m"),
            (ms(299_900), "4m 59s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(3_600 + 5), "1h"),
            (Duration::from_secs(2 * 3_600 + 3 * 60 + 59), "2h 3m"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(7 * 86_400 + 4 * 3_600), "7d 4h"),
        ] {
            assert_eq!(human(d), shown, "{d:?}");
        }
    }
}
