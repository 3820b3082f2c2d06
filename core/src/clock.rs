//! Time, injectable so that tests can move it (trust, quotas and expiry depend on it).
//!
//! Warden stores times as Unix microseconds and shows them as RFC 3339 in UTC.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A source of the current time, in Unix microseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix microseconds.
    fn now_micros(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `micros`.
    pub fn at(micros: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(micros)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Formats Unix microseconds as RFC 3339 (UTC, six fractional digits).
pub fn format_micros(micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let Ok(year @ 0..=9999) = u32::try_from(y) else {
        return format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        );
    };
    // Digit by digit: every decision and audit record formats a time, and `format!` costs
    // more than the rest of this function.
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    for (range, value) in [
        (0..4, year),
        (5..7, mo.into()),
        (8..10, d.into()),
        (11..13, t.hour().into()),
        (14..16, t.minute().into()),
        (17..19, t.second().into()),
        (20..26, t.microsecond()),
    ] {
        let mut v = value;
        for digit in text[range].iter_mut().rev() {
            *digit = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    String::from_utf8(text.to_vec()).expect("ASCII digits")
}

/// Parses RFC 3339 into Unix microseconds.
pub fn parse_micros(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

/// A moment given as an RFC 3339 time or as a span before `now`: `30d`, `12h`, `15m`
/// (days, hours, minutes; a whole number up to ten years), as Unix microseconds.
pub fn parse_moment(s: &str, now: i64) -> Option<i64> {
    if let Some(t) = parse_micros(s) {
        return Some(t);
    }
    let unit: i64 = match s.chars().last()? {
        'd' => 86_400_000_000,
        'h' => 3_600_000_000,
        'm' => 60_000_000,
        _ => return None,
    };
    let n: u32 = s[..s.len() - 1].parse().ok()?;
    let span = i64::from(n).checked_mul(unit)?;
    (span <= 3_650 * 86_400_000_000).then(|| now.saturating_sub(span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_times_or_spans_before_now() {
        let now = parse_micros("2026-12-02T12:00:00Z").unwrap();
        let at = |s| parse_moment(s, now).map(format_micros);
        assert_eq!(at("30d").as_deref(), Some("2026-11-02T12:00:00.000000Z"));
        assert_eq!(at("12h").as_deref(), Some("2026-12-02T00:00:00.000000Z"));
        assert_eq!(at("15m").as_deref(), Some("2026-12-02T11:45:00.000000Z"));
        assert_eq!(
            at("2026-01-01T00:00:00Z").as_deref(),
            Some("2026-01-01T00:00:00.000000Z")
        );
        for bad in ["", "d", "30", "-3d", "3.5d", "30w", "99999d", "yesterday"] {
            assert_eq!(parse_moment(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn round_trips() {
        let now = SystemClock.now_micros();
        assert_eq!(parse_micros(&format_micros(now)), Some(now));
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_764_151_199_123_456),
            "2025-11-26T09:59:59.123456Z"
        );
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_micros(253_402_300_799_999_999),
            "9999-12-31T23:59:59.999999Z"
        );
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let micros = x.rem_euclid(4_000_000_000_000_000);
            assert_eq!(
                parse_micros(&format_micros(micros)),
                Some(micros),
                "{micros}"
            );
        }
        assert_eq!(
            parse_micros("2026-11-26T10:00:00+01:00"),
            parse_micros("2026-11-26T09:00:00Z")
        );
        assert_eq!(parse_micros("yesterday"), None);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(5);
        assert_eq!(c.now_micros(), 5);
        c.advance(10);
        assert_eq!(c.now_micros(), 15);
    }
}
