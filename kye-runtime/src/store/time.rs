//! UTC timestamps with millisecond precision, written as fixed-width RFC 3339 text
//! (`2026-11-21T19:43:12.123Z`) so that stored values sort and compare as text and
//! SQLite's date functions understand them.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`]; times before 1970 are clamped to the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(_) => Timestamp(0),
        }
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// How long ago this was, relative to `now` (zero if it is in the future).
    pub fn age(self, now: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(now.0.saturating_sub(self.0)).unwrap_or(0))
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// The text was not a UTC timestamp of the form `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UTC timestamp (expected YYYY-MM-DDTHH:MM:SS[.fff]Z): {0:?}")]
pub struct ParseTimestampError(String);

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTimestampError(s.chars().take(64).collect());
        let b = s.as_bytes();
        if b.len() < 20 || !s.is_ascii() || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return Err(err());
        }
        if b[13] != b':' || b[16] != b':' || *b.last().ok_or_else(err)? != b'Z' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, ParseTimestampError> {
            let t = &s[r];
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse::<i64>().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let ms = match &s[19..s.len() - 1] {
            "" => 0,
            frac if frac.starts_with('.') && frac.len() >= 2 => {
                let digits = &frac[1..];
                if !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(err());
                }
                let mut padded: String = digits.chars().take(3).collect();
                while padded.len() < 3 {
                    padded.push('0');
                }
                padded.parse::<i64>().map_err(|_| err())?
            }
            _ => return Err(err()),
        };
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return Err(err());
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        Ok(Timestamp(
            ((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms,
        ))
    }
}

/// Serialized as its RFC 3339 text.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        for ms in [
            0,
            1,
            999,
            86_399_999,
            951_782_400_000,
            1_795_290_192_123,
            4_102_444_800_000,
        ] {
            let t = Timestamp::from_unix_millis(ms);
            let text = t.to_string();
            assert_eq!(text.len(), 24, "{text}");
            assert_eq!(text.parse::<Timestamp>().unwrap(), t, "{text}");
        }
        assert_eq!(
            Timestamp::from_unix_millis(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        // 2000-02-29 (leap day) 00:00 UTC
        assert_eq!(
            Timestamp::from_unix_millis(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_without_fraction_and_rejects_garbage() {
        assert_eq!(
            "1970-01-01T00:01:00Z".parse::<Timestamp>().unwrap(),
            Timestamp::from_unix_millis(60_000)
        );
        for bad in [
            "",
            "yesterday",
            "1970-13-01T00:00:00Z",
            "1970-01-01 00:00:00",
            "1970-01-01T00:00:00.xZ",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Timestamp::from_unix_millis(1_000).to_string();
        let b = Timestamp::from_unix_millis(1_795_290_192_123).to_string();
        assert!(a < b);
    }
}
