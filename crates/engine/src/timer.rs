//! A per-thread high-resolution timer for intended send times.
//!
//! tokio's timer wheel has millisecond granularity, which alone would put the
//! schedule lag P99 near 1 ms. On Linux each runtime thread owns one
//! `timerfd` armed at the earliest waiting deadline (absolute, monotonic);
//! waiters sit in a heap and are woken on the same thread when it fires.
//! Elsewhere the timer falls back to tokio's sleep.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::clock::now_ns;

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
        armed_ns: Cell<u64>,
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
            })
        }

        pub(super) fn arm_if_earlier(&self, deadline_ns: u64) {
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

        /// Waits until the armed deadline expires, then disarms.
        pub(super) async fn wait_expired(&self) -> io::Result<()> {
            loop {
                let mut guard = self.fd.readable().await?;
                let mut expirations = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer from our own descriptor.
                let n = unsafe {
                    libc::read(
                        self.fd.get_ref().as_raw_fd(),
                        expirations.as_mut_ptr().cast(),
                        8,
                    )
                };
                if n == 8 {
                    self.armed_ns.set(u64::MAX);
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::WouldBlock {
                    return Err(err);
                }
                guard.clear_ready();
            }
        }
    }
}
