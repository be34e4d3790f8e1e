//! One monotonic clock for the whole engine: nanoseconds as `u64`.
//!
//! Every timestamp the engine takes (intended send, actual send, first byte,
//! end of body) comes from here, so differences are always meaningful and the
//! high-resolution timer can arm absolute deadlines on the same clock.

/// Nanoseconds on `clock`; `None` when the clock cannot be read.
#[cfg(unix)]
#[inline]
fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC` on Unix).
#[cfg(unix)]
#[inline]
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC always exists on Unix.
    clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0)
}

/// CPU time the calling thread has used (ns), exact to the moment of the call.
#[cfg(target_os = "linux")]
pub fn thread_cpu_ns() -> Option<u64> {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
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
