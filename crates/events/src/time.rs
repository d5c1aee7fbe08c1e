//! Time constants. Timestamps are UTC milliseconds; the business runs on China time
//! (UTC+8), so hour-of-day features use it.

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// China Standard Time offset from UTC in milliseconds.
pub const CHINA_OFFSET_MS: i64 = 8 * HOUR_MS;

/// Hour of day (0-23) in China time for a UTC millisecond timestamp.
pub fn china_hour_of_day(ts_ms: i64) -> u32 {
    ((ts_ms + CHINA_OFFSET_MS).rem_euclid(DAY_MS) / HOUR_MS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_of_day_is_china_time() {
        // 2017-12-02 00:00 UTC+8 is 2017-12-01 16:00 UTC = 1512144000 s.
        assert_eq!(china_hour_of_day(1_512_144_000_000), 0);
        assert_eq!(china_hour_of_day(1_512_144_000_000 - 1), 23);
        assert_eq!(china_hour_of_day(-1), 7);
    }
}
