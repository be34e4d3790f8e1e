//! One monotonic clock for the whole engine: nanoseconds as `u64`.
//!
//! Every timestamp the engine takes (intended send, actual send, first byte,
//! end of body) comes from here, so differences are always meaningful and the
//! high-resolution timer can arm absolute deadlines on the same clock.

/// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC` on Unix).
#[cfg(unix)]
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Unix.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds on the monotonic clock (portable fallback).
#[cfg(not(unix))]
pub fn now_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Microseconds between two clock readings, never negative.
#[inline]
pub fn micros_between(from_ns: u64, to_ns: u64) -> u64 {
    to_ns.saturating_sub(from_ns) / 1_000
}
