//! Instants as the system keeps them: UTC, integer microseconds since the Unix epoch.
//! The wire writes RFC 3339 with an offset; the database keeps the integer.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 time with an offset (e.g. 2026-01-01T08:00:00+08:00)")]
pub struct TimestampError;

impl Timestamp {
    pub const fn from_unix_micros(us: i64) -> Timestamp {
        Timestamp(us)
    }

    pub const fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp(secs * 1_000_000)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimestampError> {
        let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimestampError)?;
        let us = t.unix_timestamp_nanos() / 1_000;
        i64::try_from(us).map(Timestamp).map_err(|_| TimestampError)
    }

    /// RFC 3339 in UTC (`Z`), to the second unless there are sub-second parts.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000;
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        t.format(&Rfc3339).unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_keeps_utc() {
        let t = Timestamp::parse_rfc3339("2026-01-01T08:00:00+08:00").unwrap();
        assert_eq!(t.unix_secs(), 1_767_225_600);
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00Z");
        assert!(Timestamp::parse_rfc3339("2026-01-01 08:00:00").is_err());
        assert!(Timestamp::parse_rfc3339("2026-01-01T08:00:00").is_err());
    }
}
