//! Request timeouts without a timer registration per request.
//!
//! Registering and cancelling a tokio timer for every request showed up in
//! profiles of the hot path. Instead each worker owns a [`DeadlineSlot`] it
//! arms before a request and disarms after; one watchdog task per thread scans
//! the slots every [`TICK`] and wakes the workers whose deadline passed.
//! Timeouts therefore fire up to one tick late, never early.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::clock::now_ns;

/// How often the watchdog looks at deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// One worker's request deadline.
pub(crate) struct DeadlineSlot {
    deadline_ns: Cell<u64>,
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl DeadlineSlot {
    /// Runs `fut` until it completes (`Some`) or the deadline passes (`None`).
    pub(crate) async fn run<F: Future>(&self, deadline_ns: u64, fut: F) -> Option<F::Output> {
        self.fired.set(false);
        self.deadline_ns.set(deadline_ns);
        let mut fut = std::pin::pin!(fut);
        let out = std::future::poll_fn(|cx| {
            if self.fired.get() {
                return Poll::Ready(None);
            }
            match fut.as_mut().poll(cx) {
                Poll::Ready(v) => Poll::Ready(Some(v)),
                Poll::Pending => {
                    let mut waker = self.waker.borrow_mut();
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await;
        self.deadline_ns.set(u64::MAX);
        out
    }
}

/// The per-thread registry of slots and its scanning task.
#[derive(Default)]
pub(crate) struct Watchdog {
    slots: RefCell<Vec<Weak<DeadlineSlot>>>,
}

impl Watchdog {
    /// A new slot for a worker; it unregisters itself when dropped.
    pub(crate) fn slot(&self) -> Rc<DeadlineSlot> {
        let slot = Rc::new(DeadlineSlot {
            deadline_ns: Cell::new(u64::MAX),
            fired: Cell::new(false),
            waker: RefCell::new(None),
        });
        self.slots.borrow_mut().push(Rc::downgrade(&slot));
        slot
    }

    /// Fires expired deadlines forever; spawn once per thread.
    pub(crate) async fn drive(self: Rc<Self>) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            let now = now_ns();
            let mut expired = Vec::new();
            self.slots.borrow_mut().retain(|weak| match weak.upgrade() {
                Some(slot) => {
                    if slot.deadline_ns.get() <= now && !slot.fired.get() {
                        slot.fired.set(true);
                        if let Some(w) = slot.waker.borrow_mut().take() {
                            expired.push(w);
                        }
                    }
                    true
                }
                None => false,
            });
            for waker in expired {
                waker.wake();
            }
        }
    }
}
