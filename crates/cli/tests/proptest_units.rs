//! Properties of the units users type: what is printed parses back to what
//! was meant (durations, rates, percentages, headers), and printed latencies
//! (`fmt_ms`, used in every text report) parse as durations within their
//! display precision.

use std::time::Duration;

use chokepoint::units::{parse_duration, parse_header, parse_percent, parse_rate};
use chokepoint_report::text::fmt_ms;
use proptest::prelude::*;

const UNITS: [(&str, u64); 6] = [
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// `{n}{unit}` is n units, to the nanosecond.
    #[test]
    fn whole_durations_parse_exactly(n in 0u64..100_000, unit in 0..UNITS.len(), space in any::<bool>()) {
        let (name, ns) = UNITS[unit];
        let text = if space { format!(" {n} {name} ") } else { format!("{n}{name}") };
        let got = parse_duration(&text).unwrap();
        let want = Duration::from_nanos(n * ns);
        let diff = got.abs_diff(want);
        prop_assert!(diff <= Duration::from_nanos(1), "{text:?}: {got:?} vs {want:?}");
    }

    /// Fractions (`1.5s`) to within a nanosecond per unit of float precision.
    #[test]
    fn fractional_durations_parse(whole in 0u32..10_000, frac in 0u32..1000, unit in 0..UNITS.len()) {
        let (name, ns) = UNITS[unit];
        let text = format!("{whole}.{frac:03}{name}");
        let want = (f64::from(whole) + f64::from(frac) / 1000.0) * ns as f64;
        let got = parse_duration(&text).unwrap().as_nanos() as f64;
        prop_assert!((got - want).abs() <= 1.0 + want * 1e-12, "{text:?}: {got} vs {want}");
    }

    /// A latency as reports print it reads back within what was printed.
    #[test]
    fn printed_latencies_parse_back(ms in prop_oneof![0.0f64..1.0, 1.0f64..1000.0, 1000.0f64..1e7]) {
        let printed = fmt_ms(ms);
        let back = parse_duration(&printed).unwrap().as_secs_f64() * 1e3;
        let precision = if ms < 1.0 {
            0.0005
        } else if ms < 10.0 {
            0.005
        } else if ms < 100.0 {
            0.05
        } else if ms < 1000.0 {
            0.5
        } else {
            5.0
        };
        prop_assert!((back - ms).abs() <= precision * 1.0001 + 1e-9, "{ms} printed {printed:?} read {back}");
    }

    /// `{n}`, `{n}/s`, `{n}/m`, `{n}/h` are n per second, minute, hour.
    #[test]
    fn rates_parse(n in 1u32..1_000_000, per in 0usize..4) {
        let (suffix, divisor) = [("", 1.0), ("/s", 1.0), ("/m", 60.0), ("/h", 3600.0)][per];
        let text = format!("{n}{suffix}");
        let got = parse_rate(&text).unwrap();
        let want = f64::from(n) / divisor;
        prop_assert!((got - want).abs() <= want * 1e-12, "{text:?}: {got} vs {want}");
    }

    /// Percentages within 0..100 are fractions; anything else is refused.
    #[test]
    fn percentages_parse(p in 0.0f64..=100.0, outside in 100.0001f64..1e6) {
        let got = parse_percent(&format!("{p}%")).unwrap();
        prop_assert!((got - p / 100.0).abs() <= 1e-12);
        let too_big = format!("{outside}%");
        prop_assert!(parse_percent(&too_big).is_err(), "{}", too_big);
        let no_sign = p.to_string();
        prop_assert!(parse_percent(&no_sign).is_err(), "no % sign: {}", no_sign);
    }

    /// `Name: value` headers come back as they were typed (value trimmed),
    /// and a line break in a value is always refused (no header injection).
    #[test]
    fn headers_parse_and_refuse_injection(
        name in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}",
        value in "[ -~]{0,40}",
        injected in "[ -~]{0,10}",
        brk in prop::sample::select(vec!["\r", "\n", "\r\n"]),
    ) {
        let (n, v) = parse_header(&format!("{name}: {value}")).unwrap();
        prop_assert_eq!(n, name.clone());
        prop_assert_eq!(v, value.trim());
        let smuggled = format!("{name}: {value}{brk}X-Injected: {injected}");
        prop_assert!(parse_header(&smuggled).is_err(), "{smuggled:?}");
    }
}
