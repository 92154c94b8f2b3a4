//! Object ids and timestamps in StackStorm's formats.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A new 24-hex-digit id shaped like a MongoDB ObjectId (StackStorm's ids): 4 bytes of Unix
/// seconds, 5 random bytes chosen once per process, 3 bytes of a counter that starts at a
/// random value.
///
/// As with MongoDB, ids made by one process increase (within the 16 million ids of each
/// second), so a new row's key lands at the end of its indexes. Random bytes per id scattered
/// every insert across the index and made each commit write far more pages.
pub fn object_id() -> String {
    static PROCESS: OnceLock<[u8; 5]> = OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        let random = uuid::Uuid::new_v4();
        COUNTER.store(
            u32::from_be_bytes([0, random.as_bytes()[5], random.as_bytes()[6], 0]),
            Ordering::Relaxed,
        );
        let mut bytes = [0u8; 5];
        bytes.copy_from_slice(&random.as_bytes()[..5]);
        bytes
    });
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..9].copy_from_slice(process);
    bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    hex::encode(bytes)
}

/// Whether `s` looks like an object id (24 hex digits).
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Now, as StackStorm renders timestamps: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn now() -> String {
    format_time(chrono::Utc::now())
}

/// The time `age` ago, in the stored format (what retention compares with).
pub fn ago(age: std::time::Duration) -> String {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    format_time(
        chrono::Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
}

/// The time `age` from now, in the stored format (capped at 100 years, which keeps its
/// four-digit year: stored times compare as text).
pub fn after(age: std::time::Duration) -> String {
    let age = age.min(std::time::Duration::from_secs(100 * 365 * 86_400));
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::zero());
    format_time(chrono::Utc::now() + age)
}

/// The time `age` after `time` (a stored timestamp), in the stored format, capped at 100 years
/// after it as [`after`] is; `None` when `time` is not a timestamp.
pub fn later(time: &str, age: std::time::Duration) -> Option<String> {
    let age = age.min(std::time::Duration::from_secs(100 * 365 * 86_400));
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::zero());
    Some(format_time(parse_time(time)?.checked_add_signed(age)?))
}

/// How long until `time` (a stored timestamp): zero once it passed; `None` when it is not a
/// timestamp.
pub fn until(time: &str) -> Option<std::time::Duration> {
    let left = parse_time(time)? - chrono::Utc::now();
    Some(left.to_std().unwrap_or_default())
}

/// A time as StackStorm renders timestamps.
pub fn format_time(time: chrono::DateTime<chrono::Utc>) -> String {
    // `%Y-%m-%dT%H:%M:%S%.6fZ`, without parsing a format string on every call.
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Parses a timestamp in the forms StackStorm accepts
/// (`^\d{4}-\d{2}-\d{2}(\s|T)\d{2}:\d{2}:\d{2}(\.\d{3,6})?(Z|\+00|\+0000|\+00:00)$`).
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim();
    let (body, _) = ["Z", "+00:00", "+0000", "+00"]
        .iter()
        .find_map(|z| s.strip_suffix(z).map(|b| (b, z)))?;
    let body = body.replacen(' ', "T", 1);
    let naive = chrono::NaiveDateTime::parse_from_str(&body, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex_and_increase() {
        let ids: Vec<String> = (0..1000).map(|_| object_id()).collect();
        assert!(ids.iter().all(|id| is_object_id(id)));
        // Same process: increasing (unless the second changes, which only increases them too,
        // or the 24-bit counter wraps, which needs 16 million ids).
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{:?}", &ids[..3]);
        assert_eq!(ids[0][8..18], ids[999][8..18], "one process part");
    }

    #[test]
    fn later_adds_and_until_counts_down() {
        let start = "2026-11-29T16:23:00.123456Z";
        assert_eq!(
            later(start, std::time::Duration::from_millis(100)).as_deref(),
            Some("2026-11-29T16:23:00.223456Z")
        );
        // 10**10 ms (StackStorm's `test_re_run_with_very_large_delay`): 115 days on.
        assert_eq!(
            later(start, std::time::Duration::from_millis(10_000_000_000)).as_deref(),
            Some("2027-03-25T10:09:40.123456Z")
        );
        // Capped: the year keeps four digits.
        let far = later(start, std::time::Duration::MAX).unwrap();
        assert!(far.starts_with("2126-"), "{far}");
        assert_eq!(later("soon", std::time::Duration::ZERO), None);
        assert_eq!(until(start), Some(std::time::Duration::ZERO));
        assert!(
            until(&after(std::time::Duration::from_secs(60))).unwrap()
                > std::time::Duration::from_secs(50)
        );
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("2026-11-29T16:23:00.123456Z").unwrap();
        assert_eq!(format_time(t), "2026-11-29T16:23:00.123456Z");
        assert_eq!(
            format_time(parse_time("2026-11-29 16:23:00+00:00").unwrap()),
            "2026-11-29T16:23:00.000000Z"
        );
        assert!(parse_time("2026-11-29T16:23:00+01:00").is_none());
    }
}
