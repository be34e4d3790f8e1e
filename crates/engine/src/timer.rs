//! A per-thread high-resolution timer for intended send times.
//!
//! tokio's timer wheel has millisecond granularity, which alone would put the
//! schedule lag P99 near 1 ms. On Linux each runtime thread owns one
//! `timerfd` armed at the earliest waiting deadline (absolute, monotonic);
//! waiters sit in a heap and are woken on the same thread when it fires.
//! Elsewhere the timer falls back to tokio's sleep.
//!
//! At high rates the timer coalesces: it fires at most once per
//! [`MIN_FIRE_GAP_NS`] and then wakes every waiter already due. At 100,000
//! req/s on one thread that is one wake-up (an `epoll_wait` return and one
//! `timerfd_settime`) per about five requests instead of three syscalls per
//! request; a deadline is late by at most the gap, and only when deadlines
//! come closer together than that (at 1,000 req/s, uniform arrivals, never).
//! A thread that is saturated (CPU demand 80% or more, measured by the
//! run's heartbeat) coalesces over [`BUSY_FIRE_GAP_NS`] instead: its slots
//! are late anyway, and fewer, larger batches of sends cost it less CPU (at
//! 100,000 req/s beside nginx on 2 cores: 0.83-0.91 of a core instead of
//! 0.94-0.96, lag P99 9-18 ms instead of 11-48 ms, three runs each).
//! The expiry count is never read: re-arming resets it, and a wake-up counts
//! as an expiry when the clock has passed the armed deadline.
//!
//! At low rates the timer wakes early and spins: a thread asleep in
//! `epoll_wait` takes tens of microseconds to run again after its timer
//! expires (about 45 us here), and that wake-up delay would be schedule lag
//! in every request. When the timer has been idle at least
//! [`SPIN_MIN_IDLE_NS`], it is armed [`EARLY_NS`] before the deadline and the
//! remainder is spun off on the clock (at 1,000 req/s: at most 60 us of
//! spinning per request, 6% of a core). At higher rates the thread is awake
//! anyway and the timer fires on time, without spinning.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::clock::now_ns;

/// The timer fires at most once per this many nanoseconds.
pub(crate) const MIN_FIRE_GAP_NS: u64 = 50_000;
/// The gap while the thread is saturated.
pub(crate) const BUSY_FIRE_GAP_NS: u64 = 150_000;
/// An idle timer wakes this long before the deadline and spins the rest.
pub(crate) const EARLY_NS: u64 = 60_000;
/// The timer counts as idle when the deadline is this long after its last fire.
pub(crate) const SPIN_MIN_IDLE_NS: u64 = 500_000;

struct Entry {
    deadline_ns: u64,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline_ns, self.seq) == (other.deadline_ns, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline_ns, self.seq).cmp(&(other.deadline_ns, other.seq))
    }
}

/// The timer of one runtime thread. Not `Send`: waiters and driver share the thread.
pub(crate) struct HiResTimer {
    heap: RefCell<BinaryHeap<Reverse<Entry>>>,
    seq: Cell<u64>,
    stopped: Cell<bool>,
    /// Times the timer fired (woke due waiters).
    fires: Cell<u64>,
    #[cfg(target_os = "linux")]
    fd: linux::TimerFd,
}

impl HiResTimer {
    /// Creates the timer; on Linux this opens a timerfd registered with the current runtime.
    pub(crate) fn new() -> std::io::Result<Rc<Self>> {
        Ok(Rc::new(HiResTimer {
            heap: RefCell::new(BinaryHeap::new()),
            seq: Cell::new(0),
            stopped: Cell::new(false),
            fires: Cell::new(0),
            #[cfg(target_os = "linux")]
            fd: linux::TimerFd::new()?,
        }))
    }

    /// Waits until the monotonic clock reaches `deadline_ns`.
    /// Returns `false` when the timer was stopped before the deadline.
    pub(crate) fn sleep_until(self: &Rc<Self>, deadline_ns: u64) -> Sleep {
        Sleep {
            timer: self.clone(),
            deadline_ns,
            registered: false,
        }
    }

    /// Coalesces fires over [`BUSY_FIRE_GAP_NS`] while `busy`, else over
    /// [`MIN_FIRE_GAP_NS`].
    pub(crate) fn set_busy(&self, busy: bool) {
        #[cfg(target_os = "linux")]
        self.fd.gap_ns.set(if busy {
            BUSY_FIRE_GAP_NS
        } else {
            MIN_FIRE_GAP_NS
        });
        #[cfg(not(target_os = "linux"))]
        let _ = busy;
    }

    /// Wakes every waiter and makes all current and future sleeps return `false`.
    pub(crate) fn stop(&self) {
        self.stopped.set(true);
        let drained: Vec<_> = self.heap.borrow_mut().drain().collect();
        for Reverse(entry) in drained {
            entry.waker.wake();
        }
    }

    fn register(&self, deadline_ns: u64, waker: Waker) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.heap.borrow_mut().push(Reverse(Entry {
            deadline_ns,
            seq,
            waker,
        }));
        #[cfg(target_os = "linux")]
        self.fd.arm_if_earlier(deadline_ns);
    }

    /// Wakes every waiter whose deadline has passed; returns the next deadline.
    fn fire_due(&self) -> Option<u64> {
        self.fires.set(self.fires.get() + 1);
        let now = now_ns();
        let mut due = Vec::new();
        let next = {
            let mut heap = self.heap.borrow_mut();
            while let Some(Reverse(top)) = heap.peek() {
                if top.deadline_ns > now {
                    break;
                }
                due.push(heap.pop().expect("peeked").0.waker);
            }
            heap.peek().map(|Reverse(e)| e.deadline_ns)
        };
        for waker in due {
            waker.wake();
        }
        next
    }

    /// Runs the timer: must be spawned once on the owning thread's `LocalSet`.
    pub(crate) async fn drive(self: Rc<Self>) {
        #[cfg(target_os = "linux")]
        loop {
            if self.fd.wait_expired().await.is_err() {
                return;
            }
            // An early wake-up: spin to the earliest deadline when it is near.
            let first = self.heap.borrow().peek().map(|Reverse(e)| e.deadline_ns);
            if let Some(first) = first {
                let now = now_ns();
                if first > now && first - now <= EARLY_NS {
                    while now_ns() < first {
                        std::hint::spin_loop();
                    }
                }
            }
            self.fd.fired(now_ns());
            if let Some(next) = self.fire_due() {
                self.fd.arm_if_earlier(next);
            }
        }
        #[cfg(not(target_os = "linux"))]
        loop {
            let next = self.fire_due();
            let wait = match next {
                Some(deadline) => deadline.saturating_sub(now_ns()),
                None => 1_000_000,
            };
            tokio::time::sleep(std::time::Duration::from_nanos(wait.min(1_000_000))).await;
        }
    }
}

/// Future returned by [`HiResTimer::sleep_until`].
pub(crate) struct Sleep {
    timer: Rc<HiResTimer>,
    deadline_ns: u64,
    registered: bool,
}

impl Future for Sleep {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.timer.stopped.get() {
            return Poll::Ready(false);
        }
        if now_ns() >= self.deadline_ns {
            return Poll::Ready(true);
        }
        // Re-register on every early poll: a spurious wake-up consumed the old entry
        // or will find a stale waker, both harmless.
        let deadline = self.deadline_ns;
        self.timer.register(deadline, cx.waker().clone());
        self.registered = true;
        Poll::Pending
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::Cell;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use tokio::io::unix::AsyncFd;

    /// A non-blocking `CLOCK_MONOTONIC` timerfd armed with absolute deadlines.
    pub(super) struct TimerFd {
        fd: AsyncFd<OwnedFd>,
        /// The deadline the descriptor is armed at (`u64::MAX`: disarmed).
        armed_ns: Cell<u64>,
        /// When the timer last fired: the next fire is at least
        /// `gap_ns` later.
        fired_ns: Cell<u64>,
        /// Least time between two fires.
        pub(super) gap_ns: Cell<u64>,
    }

    impl TimerFd {
        pub(super) fn new() -> io::Result<Self> {
            // SAFETY: plain syscall; the returned descriptor is owned below.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh descriptor that nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: `owned` is a valid open descriptor that the AsyncFd owns until dropped.
            let fd =
                unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
                    .map_err(|e| e.into_parts().1)?;
            Ok(TimerFd {
                fd,
                armed_ns: Cell::new(u64::MAX),
                fired_ns: Cell::new(0),
                gap_ns: Cell::new(super::MIN_FIRE_GAP_NS),
            })
        }

        /// Records a fire at `now_ns`.
        pub(super) fn fired(&self, now_ns: u64) {
            self.fired_ns.set(now_ns);
        }

        pub(super) fn arm_if_earlier(&self, deadline_ns: u64) {
            let fired = self.fired_ns.get();
            let mut deadline_ns = deadline_ns.max(fired + self.gap_ns.get());
            if deadline_ns - fired >= super::SPIN_MIN_IDLE_NS {
                deadline_ns -= super::EARLY_NS;
            }
            if deadline_ns >= self.armed_ns.get() {
                return;
            }
            self.armed_ns.set(deadline_ns);
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                    tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
                },
            };
            // SAFETY: valid descriptor and itimerspec; old value not requested.
            unsafe {
                libc::timerfd_settime(
                    self.fd.get_ref().as_raw_fd(),
                    libc::TFD_TIMER_ABSTIME,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
        }

        /// Waits until the armed deadline expires, then counts the timer disarmed.
        ///
        /// The expiry count is not read (one syscall per fire saved): the next
        /// `timerfd_settime` resets it, and the descriptor is registered
        /// edge-triggered, so the next expiry is a new event. A wake-up is an
        /// expiry when the clock has reached the armed deadline.
        pub(super) async fn wait_expired(&self) -> io::Result<()> {
            loop {
                let mut guard = self.fd.readable().await?;
                guard.clear_ready();
                let armed = self.armed_ns.get();
                if armed != u64::MAX && crate::clock::now_ns() >= armed {
                    self.armed_ns.set(u64::MAX);
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// 400 deadlines 10 µs apart (100,000 per second): every sleeper wakes at
    /// or after its deadline, and the timer fires about once per gap, not once
    /// per deadline.
    #[test]
    fn dense_deadlines_are_coalesced_and_never_early() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let timer = HiResTimer::new().unwrap();
            tokio::task::spawn_local(timer.clone().drive());
            let start = now_ns() + 20_000_000;
            let n = 400u64;
            let mut tasks = Vec::new();
            for i in 0..n {
                let deadline = start + i * 10_000;
                let t = timer.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    assert!(t.sleep_until(deadline).await);
                    now_ns() >= deadline
                }));
            }
            for task in tasks {
                assert!(task.await.unwrap(), "a sleeper woke before its deadline");
            }
            let span = (n - 1) * 10_000;
            let fires = timer.fires.get();
            // Once per gap over the span, plus slack for a descheduled thread
            // (without the gap it fires about once per deadline).
            assert!(
                fires <= span / MIN_FIRE_GAP_NS.max(25_000) + 5,
                "{fires} fires for {n} deadlines over {span} ns"
            );
            timer.stop();
        });
    }
}
