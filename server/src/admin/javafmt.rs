//! How Java prints things, for answers that must match ZooKeeper's byte for byte.
//!
//! Owns: `Double.toString`, `java.util.Date.toString` (in UTC), `InetSocketAddress.toString`,
//! `Long.toHexString`, and ZooKeeper's rounding of averages (`AvgMinMaxCounter.getAvg`).
//! Must never touch: clocks, sockets, files; every function is pure.
//!
//! Reference: `server/tests/data/java/JavaFormatting.java` and its committed output, checked by
//! this module's tests.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// `Long.toHexString(v)`: lower-case hex of the two's complement bits, no padding.
pub fn hex(v: i64) -> String {
    format!("{:x}", v as u64)
}

/// `Double.toString(d)`.
///
/// Decimal notation with at least one fractional digit for magnitudes in [1e-3, 1e7), otherwise
/// `d.dddE±n`; `NaN`, `Infinity`, `-Infinity`, `0.0`, `-0.0`. Digits are the shortest that
/// round-trip (what JDK 19 and later print). Known differences, none of which a latency or a
/// rounded average can hit: JDK 17 sometimes prints one digit more for values that are not
/// short decimals (`1.0E23` comes out as `9.999999999999999E22`), and every JDK prefers a
/// closer two-digit decimal when the shortest has one digit but is far from the value, which
/// only happens for the smallest subnormals (`Double.MIN_VALUE` is `4.9E-324`, here
/// `5.0E-324`).
pub fn double_to_string(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let magnitude = d.abs();
    if (1e-3..1e7).contains(&magnitude) {
        let mut s = format!("{d}");
        if !s.contains('.') {
            s.push_str(".0");
        }
        return s;
    }
    // Rust's `{:e}` gives the shortest round-trip digits as `d.ddde-n` or `de7`.
    let s = format!("{d:e}");
    let (mantissa, exponent) = s.split_once('e').expect("{:e} always has an exponent");
    let mantissa =
        if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
    format!("{mantissa}E{exponent}")
}

/// ZooKeeper's average of a summary (`AvgMinMaxCounter.getAvg`): `total / count` as a double,
/// rounded half-up to 4 decimal places on its exact binary value (`new BigDecimal(avg)
/// .setScale(4, HALF_UP)`), 0 when there are no samples.
pub fn rounded_average(total: i64, count: i64) -> f64 {
    if count <= 0 {
        return 0.0;
    }
    round_half_up_4(total as f64 / count as f64)
}

/// Rounds the exact value of `x` half-up (away from zero) to 4 decimal places.
pub fn round_half_up_4(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let negative = x < 0.0;
    let bits = x.abs().to_bits();
    let exponent_bits = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    // x = mantissa * 2^exponent exactly.
    let (mantissa, exponent) = if exponent_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), exponent_bits - 1075)
    };
    if exponent >= 0 {
        return x; // an integer already
    }
    let scaled = u128::from(mantissa) * 10_000; // < 2^67
    let shift = (-exponent) as u32;
    let quotient = if shift >= 100 {
        0 // far below half a unit of 1e-4
    } else {
        let q = scaled >> shift;
        let remainder = scaled & ((1u128 << shift) - 1);
        if remainder >= (1u128 << (shift - 1)) {
            q + 1
        } else {
            q
        }
    };
    // BigDecimal.doubleValue() is correctly rounded, and so is this division of two exactly
    // representable values.
    let rounded = quotient as f64 / 10_000.0;
    if negative {
        -rounded
    } else {
        rounded
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `new java.util.Date(epoch_ms).toString()` on a JVM whose time zone is UTC:
/// `EEE MMM dd HH:mm:ss zzz yyyy`, e.g. `Fri Nov 11 04:16:53 UTC 2022`.
pub fn date_to_string(epoch_ms: i64) -> String {
    let seconds = epoch_ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        year
    )
}

/// Logback's `%d{ISO8601}` in UTC: `yyyy-MM-dd HH:mm:ss,SSS`.
pub fn iso8601_utc(epoch_ms: i64) -> String {
    let seconds = epoch_ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02},{:03}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        epoch_ms.rem_euclid(1000)
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `InetSocketAddress.toString()` of a resolved address without a host name, as JDK 14 and
/// later print it: `/127.0.0.1:2181`, `/[0:0:0:0:0:0:0:1]:2181`. IPv4-mapped IPv6 addresses
/// print as IPv4 (Java turns them into `Inet4Address`); `None` prints `null`.
pub fn socket_address(addr: Option<SocketAddr>) -> String {
    let Some(addr) = addr else {
        return "null".to_string();
    };
    let ip = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match (ip, addr) {
        (IpAddr::V4(v4), _) => format!("/{v4}:{}", addr.port()),
        (IpAddr::V6(v6), SocketAddr::V6(sa)) => {
            let mut s = String::from("/[");
            for (i, group) in v6.segments().iter().enumerate() {
                if i > 0 {
                    s.push(':');
                }
                let _ = write!(s, "{group:x}");
            }
            if sa.scope_id() != 0 {
                let _ = write!(s, "%{}", sa.scope_id());
            }
            let _ = write!(s, "]:{}", addr.port());
            s
        }
        (IpAddr::V6(_), SocketAddr::V4(_)) => unreachable!("a V4 socket address has a V4 ip"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_as_logback_writes_it() {
        assert_eq!(iso8601_utc(0), "1970-01-01 00:00:00,000");
        // 2022-11-11T04:16:53.123Z
        assert_eq!(iso8601_utc(1_668_140_213_123), "2022-11-11 04:16:53,123");
    }

    /// The known differences of `double_to_string` (IEEE bits): JDK 17 prints the first two with
    /// a superfluous digit (JDK-4511638, fixed in JDK 19); the last is `Double.MIN_VALUE`, where
    /// Java picks the closer two-digit `4.9E-324` over the shortest `5E-324`.
    const KNOWN_DIFFERENCES: [&str; 3] = ["44b52d02c7e14af6", "447c7e83209e90b2", "1"];

    #[test]
    fn matches_the_jdk() {
        let reference = include_str!("../../tests/data/java/java-formatting.txt");
        let mut checked = 0;
        for line in reference.lines() {
            let (kind, rest) = line.split_once(' ').unwrap();
            match kind {
                "double" => {
                    let (bits, expected) = rest.split_once(' ').unwrap();
                    if KNOWN_DIFFERENCES.contains(&bits) {
                        continue;
                    }
                    let d = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
                    assert_eq!(double_to_string(d), expected, "{line}");
                }
                "avg" => {
                    let f: Vec<&str> = rest.split(' ').collect();
                    let avg = rounded_average(f[0].parse().unwrap(), f[1].parse().unwrap());
                    assert_eq!(double_to_string(avg), f[2], "{line}");
                }
                "date" => {
                    let (ms, expected) = rest.split_once(' ').unwrap();
                    assert_eq!(date_to_string(ms.parse().unwrap()), expected, "{line}");
                }
                "addr" => {
                    let f: Vec<&str> = rest.split(' ').collect();
                    let ip: IpAddr = f[0].parse().unwrap();
                    let addr = SocketAddr::new(ip, f[1].parse().unwrap());
                    assert_eq!(socket_address(Some(addr)), f[2], "{line}");
                }
                other => panic!("unknown reference line kind {other}"),
            }
            checked += 1;
        }
        assert!(checked >= 50, "reference file looks truncated");
    }

    #[test]
    fn hex_is_twos_complement() {
        assert_eq!(hex(0), "0");
        assert_eq!(hex(0x1000027887b0000), "1000027887b0000");
        assert_eq!(hex(-1), "ffffffffffffffff");
    }

    #[test]
    fn rounding_is_half_up_on_the_exact_value() {
        assert_eq!(round_half_up_4(0.03125), 0.0313);
        assert_eq!(round_half_up_4(-0.03125), -0.0313);
        assert_eq!(round_half_up_4(1e-300), 0.0);
        assert_eq!(round_half_up_4(12.0), 12.0);
        assert_eq!(rounded_average(5, 0), 0.0);
    }

    #[test]
    fn null_address() {
        assert_eq!(socket_address(None), "null");
    }
}
