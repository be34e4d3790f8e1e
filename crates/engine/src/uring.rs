//! Plain-text HTTP/1.1 over io_uring: one ring per runtime thread, no tokio.
//!
//! Why: on loopback most of a load generator's CPU is the kernel's, and with
//! epoll every request costs at least two system calls (a `send` and a
//! `recv`), each a kernel entry that also pays the machine's speculative-
//! execution mitigations. Here one `io_uring_enter` submits every send that
//! is due and collects many responses (`docs/performance.md` has the
//! measurements behind each choice below).
//!
//! How, per runtime thread:
//! - Each connection has one *multishot* `recvmsg` armed for its socket's
//!   whole life; responses land in a shared ring of provided buffers
//!   (bounded memory whatever the number of connections) and are read by the
//!   same [`ResponseReader`] as the tokio path: one parser, one set of framing
//!   rules. A request is one `send`.
//! - Response times come from the kernel: `SO_TIMESTAMPNS` stamps each
//!   arriving segment, so a response that waits in the socket while the
//!   thread handles others is still timed when it arrived. That lets the
//!   thread wait for several completions per wake-up without misreading
//!   latency. Send times are read just before the `io_uring_enter` that
//!   submits them.
//! - Small bodiless requests are sent *quietly* (`IOSQE_CQE_SKIP_SUCCESS`):
//!   only a failed send posts a completion, so a busy loop's wake-ups count
//!   responses only.
//! - A reused connection's socket is also put in the ring's table of
//!   registered files (one system call, at its second request), and its
//!   sends and receives name the slot: the kernel skips the descriptor
//!   lookup and reference count (`fget`/`fput`) each operation would
//!   otherwise pay. Closing empties the slot first (the slot holds the
//!   socket open).
//! - Polled receive mode: a closed-model thread that is busy with at least
//!   [`POLL_MIN_IN_FLIGHT`] requests in flight cancels its armed receives
//!   and instead, each loop, tries one non-blocking `recvmsg`
//!   (`MSG_DONTWAIT`) on every connection whose request is old enough to be
//!   likely answered, all in one submit, then sleeps until the next one is.
//!   With no receive armed, the server's send wakes no one: against one
//!   nginx worker that cut nginx's CPU per request by 3-7% (it is the
//!   server's cost that sets throughput there). The age is tuned so that
//!   most polls find a response; the kernel receive stamps keep latency
//!   exact while a response waits for its poll. A slow target (polls mostly
//!   empty at the longest age) or fewer requests in flight turn it off.
//! - The open model polls too, from two demand windows in a row at
//!   [`BATCH_DEMAND_PERMILLE`] (it wakes for its timers anyway), but walks
//!   its requests oldest first, polling at most a budget of them each loop
//!   (a server answers roughly in order; the budget follows how many were
//!   answered) and passing over one found empty a moment ago (a slow
//!   response among fast ones). Slots that came due during the wait are
//!   sent in the same submit as the polls. It goes back to armed receives
//!   for a second when every slot of a demand window went out over 1 ms
//!   late (connections short: a response waiting for its poll holds one a
//!   late slot needs). Against one nginx worker that cut nginx's CPU per
//!   request by 7-11% at 50,000 req/s (4-18% from 20,000 to 80,000) and
//!   raised the generator's requests per CPU-second by 5-12%
//!   (`docs/performance.md`, session 9).
//! - The loop waits for about half of its requests in flight (at most
//!   [`MAX_BATCH`]) or the next timer, whichever comes first. Timers (intended
//!   send times) follow the same coalescing and early wake-up rules as the
//!   tokio path's [`crate::timer`].
//! - Request deadlines are scanned every [`crate::deadline::TICK`]; the
//!   coordinator's commands arrive on the same channel as for tokio threads,
//!   with an eventfd (read by the ring) to wake a sleeping thread.
//!
//! Semantics match the tokio path (`run.rs`): the same schedule claims, the
//! same timings, error kinds, keep-alive retry of a stale connection, and
//! preconnect/gate protocol with the coordinator.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use tokio::sync::mpsc as tmpsc;

use crate::clock::{micros_between, now_ns};
use crate::deadline::TICK;
use crate::http1::{ExchangeError, Response, ResponseReader, MAX_HEAD};
use crate::recorder::{ErrorKind, Timings};
use crate::run::{
    classify, Command, DemandMeter, Shared, ThreadShared, HEARTBEAT_EVERY, SATURATED_PERMILLE,
};
use crate::schedule::{LoadModel, Slot};
use crate::timer::{BUSY_FIRE_GAP_NS, EARLY_NS, MIN_FIRE_GAP_NS, SPIN_MIN_IDLE_NS};

/// Submission queue entries per ring (a full queue is submitted early).
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries (the kernel keeps overflow, none is lost).
const CQ_ENTRIES: u32 = 8192;
/// Provided receive buffers per thread, and their size: 8 MiB per thread
/// whatever the number of connections.
const BUF_COUNT: u16 = 1024;
const BUF_SIZE: usize = 8 * 1024;
const BUF_GROUP: u16 = 0;
/// The most completions one wake-up waits for.
pub(crate) const MAX_BATCH: usize = 32;
/// A thread batches only while it wants a CPU at least this much of the
/// time (thousandths): then CPU per request is what limits the load, and a
/// wake-up waits for up to half the requests in flight. A thread that
/// mostly waits gains nothing from batching, and against a server that is
/// not saturated every moment a response waits for its batch is a moment
/// its connection does not load the server (a closed model against 5-15 ms
/// responses lost 14% of its throughput to a loop that always batched).
const BATCH_DEMAND_PERMILLE: u64 = 300;
/// Longest sleep in the kernel when nothing else bounds it.
const MAX_SLEEP_NS: u64 = 100_000_000;

const OP_CONNECT: u64 = 1;
const OP_SEND: u64 = 2;
const OP_RECV: u64 = 3;
const OP_CLOSE: u64 = 4;
/// A send that posts a completion only when it fails
/// (`IOSQE_CQE_SKIP_SUCCESS`): not counted in `ops`.
const OP_SEND_QUIET: u64 = 5;
/// A one-shot non-blocking `recvmsg` of the polled receive mode.
const OP_RECV_POLL: u64 = 6;
/// Cancels a connection's multishot receive (entering the polled mode).
const OP_CANCEL: u64 = 7;
/// Polled receive mode: the shortest and longest sleep between two polls.
const POLL_PERIOD_MIN_NS: u64 = 10_000;
const POLL_PERIOD_MAX_NS: u64 = 1_000_000;
/// The longest a request waits before its connection is first polled.
const POLL_AGE_MAX_NS: u64 = 10_000_000;
/// Leaves the polled mode when, with the first poll of a request already at
/// its latest, empty receives outnumber responses this many times over a
/// demand window (a slow target: a woken wait then costs less than polling).
const POLL_GIVE_UP_RATIO: u64 = 4;
/// The polled mode is for a thread with at least this many requests in
/// flight, and ends below half of it: with fewer, the server's queue is
/// short enough that a response waiting for its poll leaves the server
/// idle (measured against one nginx worker: 10 connections lost 15-25% of
/// their throughput, 50 gained 3-7%).
const POLL_MIN_IN_FLIGHT: usize = 40;
/// An open-model thread polls from [`BATCH_DEMAND_PERMILLE`] of CPU demand
/// and stops below this (polling itself lowers the demand a little).
const OPEN_POLL_LEAVE_PERMILLE: u64 = 200;
/// An open-model thread stops polling (for [`ARMED_AFTER_POLLED_NS`]) when
/// every slot of a demand window went out at least this late.
const OPEN_POLL_MAX_LATE_NS: u64 = 1_000_000;
/// An open-model request found empty is polled again after a quarter of its
/// age, at most this much later.
const OPEN_REPOLL_MAX_NS: u64 = 200_000;
/// After leaving the polled mode, stay armed at least this long.
const ARMED_AFTER_POLLED_NS: u64 = 1_000_000_000;
/// The largest request sent quietly. A send this small into a socket whose
/// previous exchange is over completes as it is submitted (the send buffer
/// holds far more), so no completion is needed to know its bytes have left
/// and that the next request cannot overtake it.
const QUIET_SEND_MAX: usize = 4096;
const WAKE_UD: u64 = u64::MAX;
/// Registered-file slots per ring (slot = connection index; connections past
/// it use their plain descriptor). Capped by `RLIMIT_NOFILE` as the kernel
/// requires.
const FIXED_FILES_MAX: u32 = 16_384;

/// Builds an operation on a connection's socket: through its registered
/// slot when it has one (no descriptor lookup per operation), else through
/// its descriptor.
macro_rules! on_socket {
    ($c:expr, $idx:expr, |$t:ident| $body:expr) => {
        if $c.fixed {
            let $t = types::Fixed($idx as u32);
            $body
        } else {
            let $t = types::Fd($c.fd);
            $body
        }
    };
}

fn user_data(idx: usize, gen: u32, op: u64) -> u64 {
    (idx as u64) << 32 | u64::from(gen & 0x00ff_ffff) << 8 | op
}

fn split_user_data(ud: u64) -> (usize, u32, u64) {
    (
        (ud >> 32) as usize,
        ((ud >> 8) & 0x00ff_ffff) as u32,
        ud & 0xff,
    )
}

/// Whether this kernel (and sandbox) offers what the io_uring path needs:
/// a ring with deferred task work (Linux 6.1, which also brings multishot
/// `recvmsg`) and a provided-buffer ring. Probed once per process.
pub(crate) fn available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let ring = new_ring().map_err(|e| format!("io_uring_setup: {e}"))?;
            let mut probe = io_uring::Probe::new();
            ring.submitter()
                .register_probe(&mut probe)
                .map_err(|e| format!("io_uring probe: {e}"))?;
            for (code, name) in [
                (opcode::RecvMsg::CODE, "recvmsg"),
                (opcode::Send::CODE, "send"),
                (opcode::Connect::CODE, "connect"),
                (opcode::Close::CODE, "close"),
                (opcode::AsyncCancel::CODE, "cancel"),
                (opcode::Read::CODE, "read"),
            ] {
                if !probe.is_supported(code) {
                    return Err(format!("io_uring lacks {name}"));
                }
            }
            BufRing::new(&ring, 2, 64)
                .map(drop)
                .map_err(|e| format!("io_uring buffer ring: {e}"))
        })
        .clone()
}

fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
}

/// Wakes an io_uring thread asleep in the kernel (an eventfd its ring reads).
pub(crate) struct Wake {
    fd: OwnedFd,
}

impl Wake {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Wake {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the thread's ring see a completion.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local to an eventfd we own. A full
        // counter (EAGAIN) already means "awake"; nothing to handle.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The ring of provided buffers multishot receives take from.
struct BufRing {
    entries: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    count: u16,
    size: usize,
    bufs: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring, count: u16, size: usize) -> io::Result<Self> {
        let layout = std::alloc::Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a non-zero layout; freed in Drop with the same layout.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut this = BufRing {
            entries,
            layout,
            count,
            size,
            bufs: vec![0; usize::from(count) * size],
            tail: 0,
        };
        // SAFETY: page-aligned memory for `count` entries that outlives the
        // registration (unregistered when the ring is dropped, before us).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, BUF_GROUP, 0)?;
        }
        for bid in 0..count {
            this.recycle(bid);
        }
        this.publish();
        Ok(this)
    }

    /// Gives buffer `bid` back to the kernel (visible after [`Self::publish`]).
    fn recycle(&mut self, bid: u16) {
        let idx = self.tail & (self.count - 1);
        // SAFETY: `idx` < count; the buffer address is inside `bufs`.
        unsafe {
            let entry = &mut *self.entries.add(usize::from(idx));
            entry.set_addr(self.bufs.as_mut_ptr().add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the registered ring, shared with the kernel.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`, with a lifetime not tied to
    /// `self`: the caller must not recycle the buffer while it holds them.
    fn data<'a>(&self, bid: u16, len: usize) -> &'a [u8] {
        let len = len.min(self.size);
        // SAFETY: inside `bufs`, which lives as long as the driver; the kernel
        // does not write a buffer it handed out until it is recycled.
        unsafe {
            std::slice::from_raw_parts(self.bufs.as_ptr().add(usize::from(bid) * self.size), len)
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connecting before any slot was claimed.
    Preconnecting,
    /// Waiting for the coordinator's start gate.
    Gated,
    /// Holding a claimed slot until its intended time.
    Waiting,
    /// Connecting to send the claimed request.
    Connecting,
    /// Request sent, response being read.
    Busy,
    /// The worker is gone; its memory is freed once no operation names it.
    Exited,
}

/// Room for one control message holding a `timespec` (`CMSG_SPACE`), aligned
/// as a `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; 32]);

/// One connection (a worker of the tokio path) and its request in progress.
struct Conn {
    lane: usize,
    state: State,
    /// Bumped for every new socket: completions of an older one are ignored.
    gen: u32,
    fd: RawFd,
    /// The socket also sits in the ring's registered-file slot numbered as
    /// the connection.
    fixed: bool,
    /// Operations in flight that name this connection.
    ops: u32,
    recv_armed: bool,
    connect_pending: bool,
    /// A send has not completed yet (a server may answer before it has read
    /// the whole request: the connection is then not reused, or the next
    /// request's bytes could overtake the rest of this one's). Never set by
    /// a quiet send: it is small and has no body, so it has left before a
    /// response to it can come.
    send_pending: bool,
    /// A polled receive is in the ring.
    poll_out: bool,
    /// Not polled again before this (after an empty poll).
    poll_at_ns: u64,
    /// The polled receive's message header and control buffer (its kernel
    /// receive stamp); the connection is boxed, so their addresses hold.
    poll_msg: libc::msghdr,
    poll_control: Control,
    /// Claimed a first slot (the coordinator counts workers still starting).
    started: bool,
    addr_idx: usize,
    sockaddr: libc::sockaddr_storage,
    socklen: libc::socklen_t,
    connect_started_ns: u64,
    slot: Slot,
    request_idx: usize,
    trace: Option<(u128, u64)>,
    t: Timings,
    reader: ResponseReader,
    /// Bytes of an incomplete head (or that came with no request out).
    carry: Vec<u8>,
    /// Exchanges on the current socket.
    exchanges: u64,
    attempt: u8,
    deadline_ns: u64,
    scratch: Vec<u8>,
}

impl Conn {
    fn new(lane: usize) -> Self {
        Conn {
            lane,
            state: State::Gated,
            gen: 0,
            fd: -1,
            fixed: false,
            ops: 0,
            recv_armed: false,
            connect_pending: false,
            send_pending: false,
            poll_out: false,
            poll_at_ns: 0,
            // SAFETY: all-zero is a valid msghdr (no name, no iovec).
            poll_msg: unsafe { std::mem::zeroed() },
            poll_control: Control([0; 32]),
            started: false,
            addr_idx: 0,
            // SAFETY: all-zero is a valid sockaddr_storage.
            sockaddr: unsafe { std::mem::zeroed() },
            socklen: 0,
            connect_started_ns: 0,
            slot: Slot {
                intended_ns: 0,
                warmup: false,
            },
            request_idx: 0,
            trace: None,
            t: Timings::default(),
            reader: ResponseReader::new(false),
            carry: Vec::new(),
            exchanges: 0,
            attempt: 0,
            deadline_ns: u64::MAX,
            scratch: Vec::new(),
        }
    }
}

/// How a request ended, for [`Driver::finish`].
enum Outcome {
    Response(Response),
    Failed(ErrorKind),
}

/// Runs one runtime thread on io_uring. Falls back to the tokio thread when
/// the ring cannot be set up after all.
pub(crate) fn thread_main(
    shared: Arc<Shared>,
    mine: Arc<ThreadShared>,
    commands: tmpsc::UnboundedReceiver<Command>,
    wake: Arc<Wake>,
    idx: usize,
) {
    let driver = match Driver::new(shared.clone(), mine.clone(), &wake, idx) {
        Ok(d) => d,
        Err(_) => return crate::run::thread_main(shared, mine, commands, idx),
    };
    driver.run(commands);
}

struct Driver {
    shared: Arc<Shared>,
    mine: Arc<ThreadShared>,
    ring: IoUring,
    bufs: BufRing,
    /// The template multishot `recvmsg` reads (name and control lengths).
    msghdr: Box<libc::msghdr>,
    wake_fd: RawFd,
    wake_buf: Box<u64>,
    /// Size of the ring's registered-file table (0: none).
    fixed_slots: u32,
    conns: Vec<Option<Box<Conn>>>,
    /// Free slots, each with the generation its next connection starts at:
    /// a quiet send's failure may still name the slot's previous socket.
    free: Vec<(usize, u32)>,
    /// Connections holding a slot, by intended time.
    waiting: BinaryHeap<Reverse<(u64, usize)>>,
    gated: Vec<usize>,
    /// Connections whose send was queued since the last submit: their send
    /// time is read just before it.
    to_stamp: Vec<usize>,
    /// How many of those sends post a completion when they succeed.
    loud_sends: usize,
    /// Requests in flight on this thread.
    busy: usize,
    gate_open: bool,
    stopping: bool,
    open_model: bool,
    rng: fastrand::Rng,
    /// When timers last fired, and the least gap between two fire wake-ups.
    fired_ns: u64,
    gap_ns: u64,
    next_scan_ns: u64,
    next_beat_ns: u64,
    demand: DemandMeter,
    /// CLOCK_REALTIME minus the engine clock, read at each wake-up (kernel
    /// receive stamps are on the real-time clock).
    real_offset: i64,
    /// When the last wait returned.
    woke_ns: u64,
    ops_total: u64,
    cqes: Vec<(u64, i32, u32)>,
    /// The thread is busy enough to batch completions.
    batching: bool,
    /// The polled receive mode (no receive armed between polls; see the
    /// module notes) and its state.
    polled: bool,
    force_receive: Option<bool>,
    /// A connection is polled once its request is this old (tuned so that
    /// most polls find a response), and again after an empty poll no sooner
    /// than a quarter of it later.
    poll_age_ns: u64,
    /// When the next connection becomes due for a poll.
    poll_next_ns: u64,
    poll_hits: u64,
    poll_empties: u64,
    window_hits: u64,
    window_empties: u64,
    /// Demand windows in a row at or over [`BATCH_DEMAND_PERMILLE`].
    busy_windows: u32,
    /// The least late a slot went out in this demand window (open model;
    /// `u64::MAX` when none went out).
    window_late_ns: u64,
    armed_until_ns: u64,
    /// Connections whose polled receive filled a whole buffer: polled
    /// again at once.
    repoll: Vec<usize>,
    /// Receives that brought bytes, armed and polled (published to
    /// [`ThreadShared`] when the thread ends).
    armed_receives: u64,
    polled_receives: u64,
    /// Open model, polled: requests out, oldest first (connection,
    /// generation, send time; entries of finished requests are dropped as
    /// the walk meets them).
    poll_queue: VecDeque<(usize, u32, u64)>,
    poll_scratch: Vec<(usize, u32, u64)>,
    /// How many of the oldest to poll per loop, how many the last walk
    /// polled, and whether all of those were answered (poll on at once).
    poll_budget: usize,
    poll_batch: usize,
    poll_more: bool,
}

impl Driver {
    fn new(
        shared: Arc<Shared>,
        mine: Arc<ThreadShared>,
        wake: &Wake,
        idx: usize,
    ) -> io::Result<Self> {
        let ring = new_ring()?;
        let bufs = BufRing::new(&ring, BUF_COUNT, BUF_SIZE)?;
        let fixed_slots = fixed_file_slots();
        let fixed_slots = match ring.submitter().register_files_sparse(fixed_slots) {
            Ok(()) => fixed_slots,
            Err(_) => 0,
        };
        // SAFETY: all-zero is a valid msghdr; only the lengths are read.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: pure arithmetic.
        msghdr.msg_controllen =
            unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::timespec>() as u32) } as _;
        // The kernel's hrtimers would otherwise round our waits up by the
        // default 50 us of slack.
        // SAFETY: prctl on the calling thread only.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
        let open_model = matches!(shared.schedule.model(), LoadModel::Open { .. });
        let force_receive = forced_receive_mode();
        let now = now_ns();
        let mut driver = Driver {
            rng: fastrand::Rng::with_seed(
                shared.seed ^ (idx as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            shared,
            mine,
            ring,
            bufs,
            msghdr,
            wake_fd: wake.fd.as_raw_fd(),
            wake_buf: Box::new(0),
            fixed_slots,
            conns: Vec::new(),
            free: Vec::new(),
            waiting: BinaryHeap::new(),
            gated: Vec::new(),
            to_stamp: Vec::new(),
            loud_sends: 0,
            busy: 0,
            gate_open: false,
            stopping: false,
            open_model,
            fired_ns: 0,
            gap_ns: MIN_FIRE_GAP_NS,
            next_scan_ns: now + TICK.as_nanos() as u64,
            next_beat_ns: now,
            demand: DemandMeter::new(),
            real_offset: 0,
            woke_ns: now,
            ops_total: 0,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            batching: false,
            polled: force_receive == Some(true),
            force_receive,
            poll_age_ns: 0,
            poll_next_ns: u64::MAX,
            poll_hits: 0,
            poll_empties: 0,
            window_hits: 0,
            window_empties: 0,
            busy_windows: 0,
            window_late_ns: u64::MAX,
            armed_until_ns: 0,
            repoll: Vec::new(),
            armed_receives: 0,
            polled_receives: 0,
            poll_queue: VecDeque::new(),
            poll_scratch: Vec::new(),
            poll_budget: 8,
            poll_batch: 0,
            poll_more: false,
        };
        driver.arm_wake();
        Ok(driver)
    }

    fn run(mut self, mut commands: tmpsc::UnboundedReceiver<Command>) {
        'outer: loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::SpawnWorker(lane)) => self.spawn(lane),
                    Ok(Command::Stop) => self.stop(),
                    Ok(Command::Shutdown) | Err(tmpsc::error::TryRecvError::Disconnected) => {
                        break 'outer
                    }
                    Err(tmpsc::error::TryRecvError::Empty) => break,
                }
            }
            let mut now = now_ns();
            if !self.gate_open && *self.shared.gate.borrow() {
                self.gate_open = true;
                for idx in std::mem::take(&mut self.gated) {
                    self.claim(idx, now);
                }
            }
            now = self.fire_timers(now);
            if now >= self.next_scan_ns {
                self.next_scan_ns = now + TICK.as_nanos() as u64;
                self.scan_deadlines(now);
            }
            if now >= self.next_beat_ns {
                self.next_beat_ns = now + HEARTBEAT_EVERY.as_nanos() as u64;
                self.mine.heartbeat_ns.store(now, Ordering::Relaxed);
                if let Some(permille) = self.demand.sample(now) {
                    if !self.polled {
                        // (A polling thread's demand says how often it polls.)
                        self.batching = permille >= BATCH_DEMAND_PERMILLE;
                    }
                    self.choose_receive_mode(now, permille);
                    self.mine.demand_permille.store(permille, Ordering::Relaxed);
                    self.gap_ns = if permille >= SATURATED_PERMILLE {
                        BUSY_FIRE_GAP_NS
                    } else {
                        MIN_FIRE_GAP_NS
                    };
                }
            }
            self.submit_and_wait(now);
            if self.polled {
                self.poll_receives();
            }
            self.complete();
            while !self.repoll.is_empty() {
                for idx in std::mem::take(&mut self.repoll) {
                    self.push_polled_recv(idx);
                }
                let _ = self.ring.submit();
                self.complete();
            }
            if self.polled {
                self.tune_poll_age();
                // Open model: a full batch of answers says more may be
                // waiting (after a stall of the server): poll on at once.
                let mut passes = 0;
                while self.poll_more && passes < 8 {
                    passes += 1;
                    self.poll_receives();
                    self.complete();
                    self.tune_poll_age();
                }
            }
        }
        self.shutdown();
    }

    // ---- the wait ----

    /// When the loop must be awake again for timers, deadlines and heartbeats.
    fn wake_at(&self, now: u64) -> u64 {
        let mut at = now + MAX_SLEEP_NS;
        if let Some(Reverse((first, _))) = self.waiting.peek() {
            let mut arm = (*first).max(self.fired_ns + self.gap_ns);
            if arm.saturating_sub(self.fired_ns) >= SPIN_MIN_IDLE_NS {
                // Idle: wake early and spin the rest (wake-up latency).
                arm = arm.saturating_sub(EARLY_NS);
            }
            at = at.min(arm);
        }
        if self.busy > 0 || self.ops_total > 0 {
            at = at.min(self.next_scan_ns);
        }
        if self.open_model || self.busy > 0 {
            at = at.min(self.next_beat_ns);
        }
        if !self.gate_open && !self.gated.is_empty() {
            // The gate is a tokio watch: look again soon.
            at = at.min(now + 1_000_000);
        }
        at
    }

    /// Stamps the sends queued since the last submit with the time of the
    /// submit about to carry them.
    fn stamp_sends(&mut self, stamp: u64) {
        if self.polled && !self.to_stamp.is_empty() {
            self.poll_next_ns = self.poll_next_ns.min(stamp + self.poll_age_ns);
        }
        for &idx in &self.to_stamp {
            if let Some(c) = self.conns[idx].as_deref_mut() {
                if c.t.connect_us.is_none() && c.attempt == 0 {
                    c.t.sent_ns = stamp;
                    c.deadline_ns = stamp + self.shared.timeout.as_nanos() as u64;
                }
                c.t.written_ns = stamp;
                if self.polled && self.open_model {
                    self.poll_queue.push_back((idx, c.gen, stamp));
                }
            }
        }
        self.to_stamp.clear();
    }

    fn submit_and_wait(&mut self, now: u64) {
        let stamp = now_ns();
        // Sends complete as they are submitted; those that post a completion
        // (large or traced requests) are counted on top of the one response
        // an idle thread waits for. A busy thread's batch counts every
        // completion alike.
        let sends = std::mem::take(&mut self.loud_sends);
        self.stamp_sends(stamp);
        let at = self.wake_at(now);
        // A wait for at least one completion (with a zero timeout when a
        // timer is due now) also runs the deferred receive work.
        let want = if self.polled {
            // Only the timeout ends this wait (or a full queue).
            CQ_ENTRIES as usize
        } else if self.batching {
            (self.busy / 2).clamp(1, MAX_BATCH)
        } else {
            sends + 1
        };
        let mut wait_ns = at.saturating_sub(stamp);
        if self.polled && self.busy > 0 {
            let due = self.poll_next_ns.saturating_sub(stamp);
            let least = if self.open_model {
                self.gap_ns
            } else {
                POLL_PERIOD_MIN_NS
            };
            wait_ns = wait_ns.min(due.clamp(least, POLL_PERIOD_MAX_NS));
        }
        let ts = types::Timespec::new()
            .sec(wait_ns / 1_000_000_000)
            .nsec((wait_ns % 1_000_000_000) as u32);
        let args = types::SubmitArgs::new().timespec(&ts);
        let result = self.ring.submitter().submit_with_args(want, &args);
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(_) => {
                // Nothing sensible to do but not spin: the next wait retries.
                std::thread::yield_now();
            }
        }
    }

    /// Queues an entry that posts a completion, submitting first when the
    /// queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        self.ops_total += 1;
        self.push_uncounted(entry);
    }

    /// Queues an entry whose completion is not awaited (a quiet send).
    fn push_uncounted(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every entry's buffers (request bytes, sockaddr, msghdr,
            // eventfd buffer) stay valid until its completion, by the `ops`
            // accounting that keeps connections alive until then; a quiet
            // send's bytes are the run's prepared request, alive as long as
            // `shared`.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    fn arm_wake(&mut self) {
        let read = opcode::Read::new(
            types::Fd(self.wake_fd),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(WAKE_UD);
        self.push(&read);
    }

    // ---- completions ----

    fn complete(&mut self) {
        let real = realtime_ns();
        self.woke_ns = now_ns();
        self.real_offset = real as i64 - self.woke_ns as i64;
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            if ud == WAKE_UD {
                self.ops_total -= 1;
                self.arm_wake();
                continue;
            }
            let (idx, gen, op) = split_user_data(ud);
            // A quiet send posts only when it fails, and holds no count.
            let final_cqe = op != OP_SEND_QUIET && (op != OP_RECV || !cqueue::more(flags));
            if final_cqe {
                self.ops_total -= 1;
            }
            let Some(c) = self.conns.get_mut(idx).and_then(|c| c.as_deref_mut()) else {
                continue;
            };
            if final_cqe {
                c.ops -= 1;
            }
            let current = gen == (c.gen & 0x00ff_ffff) && c.state != State::Exited;
            match op {
                OP_RECV => {
                    let bid = cqueue::buffer_select(flags);
                    if current {
                        if final_cqe {
                            c.recv_armed = false;
                        }
                        if res == -libc::ECANCELED {
                            // Cancelled by a switch to the polled mode (a
                            // closed socket's completions are not current).
                            if !self.polled && c.fd >= 0 && !c.poll_out {
                                self.arm_recv(idx);
                            }
                        } else {
                            self.on_recv(idx, res, bid);
                        }
                    }
                    if let Some(bid) = bid {
                        self.bufs.recycle(bid);
                    }
                }
                OP_RECV_POLL => {
                    c.poll_out = false;
                    let bid = cqueue::buffer_select(flags);
                    if current {
                        self.on_polled_recv(idx, res, bid);
                        // The mode may have changed while this poll was out.
                        self.rearm_if_armed_mode(idx);
                    }
                    if let Some(bid) = bid {
                        self.bufs.recycle(bid);
                    }
                }
                OP_CONNECT if current => self.on_connect(idx, res),
                OP_SEND | OP_SEND_QUIET if current => {
                    c.send_pending = false;
                    if res < 0 {
                        self.on_send_error(idx, -res);
                    }
                }
                _ => {}
            }
            self.maybe_free(idx);
        }
        cqes.clear();
        self.cqes = cqes;
        self.bufs.publish();
    }

    fn on_recv(&mut self, idx: usize, res: i32, bid: Option<u16>) {
        let Some(c) = self.conns[idx].as_deref_mut() else {
            return;
        };
        if res == -libc::ENOBUFS {
            // Buffers ran out before this batch was handled: arm again (the
            // data waits in the socket).
            if !c.recv_armed && c.fd >= 0 && !self.polled {
                self.arm_recv(idx);
            }
            return;
        }
        if res < 0 {
            self.on_read_end(idx, Some(closed_by_peer(-res)));
            return;
        }
        let (Some(bid), true) = (bid, res > 0) else {
            self.on_read_end(idx, None);
            return;
        };
        let buffer = self.bufs.data(bid, res as usize);
        let Ok(out) = types::RecvMsgOut::parse(buffer, &self.msghdr) else {
            self.fail(idx, ExchangeError::Failed(ErrorKind::Io));
            return;
        };
        let payload = out.payload_data();
        if payload.is_empty() {
            // A multishot recvmsg reports the end of the stream as a record
            // with no payload (its header still fills the buffer).
            self.on_read_end(idx, None);
            return;
        }
        let stamp = self.kernel_stamp(out.control_data(), self.woke_ns);
        self.armed_receives += 1;
        self.on_data(idx, payload, stamp);
        self.rearm_if_armed_mode(idx);
    }

    /// Arms a live connection's receive again after one ended (a multishot
    /// receive that stopped, or a poll that came back after the thread left
    /// the polled mode), unless the thread polls.
    fn rearm_if_armed_mode(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_deref() else {
            return;
        };
        // A socket still connecting gets its receive from `on_connect`.
        if !c.recv_armed
            && c.fd >= 0
            && !c.connect_pending
            && c.state != State::Exited
            && !self.polled
        {
            self.arm_recv(idx);
        }
    }

    /// The receive time the kernel stamped (`SO_TIMESTAMPNS`), on the engine
    /// clock; now when there is none (the kernel turns stamping on a moment
    /// after the first socket asks for it).
    fn kernel_stamp(&self, control: &[u8], now: u64) -> u64 {
        let header = std::mem::size_of::<libc::cmsghdr>();
        let spec = std::mem::size_of::<libc::timespec>();
        if control.len() < header + spec {
            return now;
        }
        // SAFETY: `control` holds at least a cmsghdr and a timespec (checked).
        let (cmsg, ts) = unsafe {
            (
                control.as_ptr().cast::<libc::cmsghdr>().read_unaligned(),
                control
                    .as_ptr()
                    .add(header)
                    .cast::<libc::timespec>()
                    .read_unaligned(),
            )
        };
        if cmsg.cmsg_level != libc::SOL_SOCKET || cmsg.cmsg_type != libc::SCM_TIMESTAMPNS {
            return now;
        }
        let real = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
        let stamp = real - self.real_offset;
        // Never in the future (the two clocks are read a moment apart).
        (stamp.max(0) as u64).min(now)
    }

    fn on_data(&mut self, idx: usize, payload: &[u8], stamp: u64) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        if c.state != State::Busy {
            // Bytes with no request out: kept as the tokio path keeps them in
            // its buffer (the next response starts with them), within bounds.
            if c.carry.len() + payload.len() > MAX_HEAD {
                self.close_socket(idx);
            } else {
                c.carry.extend_from_slice(payload);
            }
            return;
        }
        if c.t.first_byte_ns == 0 {
            c.t.first_byte_ns = stamp;
        }
        let fed = if c.carry.is_empty() {
            c.reader.feed(payload, &mut c.t).map(|(used, done)| {
                if used < payload.len() {
                    c.carry.extend_from_slice(&payload[used..]);
                }
                done
            })
        } else {
            c.carry.extend_from_slice(payload);
            // A head must be complete within MAX_HEAD bytes, as in the tokio
            // path's buffer.
            let limit = if c.reader.in_head() {
                c.carry.len().min(MAX_HEAD)
            } else {
                c.carry.len()
            };
            c.reader
                .feed(&c.carry[..limit], &mut c.t)
                .map(|(used, done)| {
                    c.carry.drain(..used);
                    done
                })
        };
        if c.carry.is_empty() && c.carry.capacity() > BUF_SIZE {
            c.carry = Vec::new();
        }
        match fed {
            Ok(Some(response)) => {
                c.t.end_ns = stamp;
                self.finish(idx, Outcome::Response(response));
            }
            Ok(None) if c.reader.in_head() && c.carry.len() >= MAX_HEAD => {
                self.fail(idx, ExchangeError::Failed(ErrorKind::Protocol));
            }
            Ok(None) => {}
            Err(e) => self.fail(idx, e),
        }
    }

    /// The receive ended: end of stream (`closed` None) or an error.
    fn on_read_end(&mut self, idx: usize, error_closed: Option<bool>) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        if c.state != State::Busy {
            // The server closed an idle connection: the next request reconnects.
            self.close_socket(idx);
            return;
        }
        let reused = c.exchanges > 1;
        let outcome = match error_closed {
            None => c.reader.eof(reused),
            Some(closed) => Err(c.reader.read_error(reused, closed)),
        };
        match outcome {
            Ok(response) => {
                c.t.end_ns = now_ns();
                self.close_socket(idx);
                self.finish(idx, Outcome::Response(response));
            }
            Err(e) => self.fail(idx, e),
        }
    }

    fn on_send_error(&mut self, idx: usize, errno: i32) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        if c.state != State::Busy {
            return;
        }
        let error = if c.exchanges > 1 && closed_by_peer(errno) {
            ExchangeError::Stale
        } else {
            ExchangeError::Failed(ErrorKind::Io)
        };
        self.fail(idx, error);
    }

    fn on_connect(&mut self, idx: usize, res: i32) {
        let now = now_ns();
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        c.connect_pending = false;
        if res < 0 {
            // SAFETY: our own descriptor; no operation is armed on it.
            unsafe { libc::close(c.fd) };
            c.fd = -1;
            c.gen = c.gen.wrapping_add(1);
            c.addr_idx += 1;
            if c.addr_idx < self.shared.addrs.len() {
                self.start_connect(idx);
                return;
            }
            c.addr_idx = 0;
            match c.state {
                State::Preconnecting => self.after_preconnect(idx, now),
                _ => self.finish(idx, Outcome::Failed(ErrorKind::Connect)),
            }
            return;
        }
        c.addr_idx = 0;
        let on: libc::c_int = 1;
        for (level, name) in [
            (libc::IPPROTO_TCP, libc::TCP_NODELAY),
            (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS),
        ] {
            // SAFETY: setsockopt on our socket with a valid int.
            unsafe {
                libc::setsockopt(
                    c.fd,
                    level,
                    name,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        let connect_us = micros_between(c.connect_started_ns, now);
        let preconnect = c.state == State::Preconnecting;
        if !self.polled {
            self.arm_recv(idx);
        }
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        if preconnect {
            let t = Timings {
                connect_us: Some(connect_us),
                ..Timings::default()
            };
            let warmup = self.shared.preconnect_is_warmup(now);
            self.mine
                .recorder
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .phase(warmup)
                .record_connection(&t);
            self.after_preconnect(idx, now);
        } else {
            c.t.connect_us = Some(connect_us);
            self.push_send(idx);
        }
    }

    // ---- connection life ----

    fn spawn(&mut self, lane: usize) {
        let conn = Box::new(Conn::new(lane));
        let idx = match self.free.pop() {
            Some((idx, gen)) => {
                let mut conn = conn;
                conn.gen = gen;
                self.conns[idx] = Some(conn);
                idx
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        if self.shared.keepalive && self.shared.schedule.lane_starts_active(lane) {
            let c = self.conns[idx].as_deref_mut().expect("just made");
            c.state = State::Preconnecting;
            // Bounded like the tokio path's preconnect: a server that accepts
            // nothing must not hold the worker, and so the run, forever.
            c.deadline_ns = now_ns() + self.shared.timeout.as_nanos() as u64;
            self.start_connect(idx);
        } else {
            self.after_preconnect(idx, now_ns());
        }
    }

    fn after_preconnect(&mut self, idx: usize, now: u64) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        c.deadline_ns = u64::MAX;
        if self.gate_open || *self.shared.gate.borrow() {
            self.gate_open = true;
            self.claim(idx, now);
        } else {
            c.state = State::Gated;
            self.shared.ready.fetch_add(1, Ordering::AcqRel);
            self.gated.push(idx);
        }
    }

    /// Claims the connection's next slot: sends now, waits for its time, or
    /// exits when the schedule is over.
    fn claim(&mut self, idx: usize, now: u64) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        let slot = if self.stopping {
            None
        } else {
            self.shared.schedule.next_lane(c.lane, now)
        };
        if !c.started {
            c.started = true;
            self.shared.starting.fetch_sub(1, Ordering::AcqRel);
        }
        let Some(slot) = slot else {
            self.exit(idx);
            return;
        };
        c.slot = slot;
        if slot.intended_ns > now {
            c.state = State::Waiting;
            self.waiting.push(Reverse((slot.intended_ns, idx)));
        } else {
            self.start_request(idx, now);
        }
    }

    /// Sends every waiting request whose time has come (spinning to one
    /// that is due within [`EARLY_NS`] after an early wake-up); returns the clock.
    fn fire_timers(&mut self, mut now: u64) -> u64 {
        let Some(&Reverse((first, _))) = self.waiting.peek() else {
            return now;
        };
        if first > now {
            // Spin only to a deadline the loop woke early for (idle timer).
            if first - now > EARLY_NS || first - self.fired_ns < SPIN_MIN_IDLE_NS {
                return now;
            }
            while now < first {
                std::hint::spin_loop();
                now = now_ns();
            }
        }
        self.fired_ns = now;
        while let Some(&Reverse((due, idx))) = self.waiting.peek() {
            if due > now {
                break;
            }
            self.waiting.pop();
            if self.conns[idx]
                .as_deref()
                .is_some_and(|c| c.state == State::Waiting)
            {
                self.start_request(idx, now);
            }
        }
        now
    }

    fn start_request(&mut self, idx: usize, now: u64) {
        let request_idx = self.shared.pick_request(&mut self.rng);
        let trace = self.shared.trace_ids(&mut self.rng);
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        self.window_late_ns = self
            .window_late_ns
            .min(now.saturating_sub(c.slot.intended_ns));
        c.request_idx = request_idx;
        c.trace = trace;
        c.t = Timings {
            intended_ns: c.slot.intended_ns,
            sent_ns: now,
            ..Timings::default()
        };
        c.attempt = 0;
        c.deadline_ns = now + self.shared.timeout.as_nanos() as u64;
        self.busy += 1;
        self.mine.in_flight.fetch_add(1, Ordering::Relaxed);
        self.begin_attempt(idx);
    }

    fn begin_attempt(&mut self, idx: usize) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        if c.fd < 0 {
            c.state = State::Connecting;
            self.start_connect(idx);
        } else {
            self.push_send(idx);
        }
    }

    fn start_connect(&mut self, idx: usize) {
        let addr = self.shared.addrs[self.conns[idx].as_deref().expect("live").addr_idx];
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        let family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain syscall.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        c.connect_started_ns = now_ns();
        if fd < 0 {
            // Out of descriptors, most likely: a connect error like any other.
            c.addr_idx = 0;
            match c.state {
                State::Preconnecting => self.after_preconnect(idx, now_ns()),
                _ => self.finish(idx, Outcome::Failed(ErrorKind::Connect)),
            }
            return;
        }
        c.gen = c.gen.wrapping_add(1);
        c.fd = fd;
        c.exchanges = 0;
        c.carry.clear();
        c.socklen = write_sockaddr(&addr, &mut c.sockaddr);
        c.connect_pending = true;
        c.ops += 1;
        let entry = opcode::Connect::new(
            types::Fd(fd),
            (&c.sockaddr as *const libc::sockaddr_storage).cast(),
            c.socklen,
        )
        .build()
        .user_data(user_data(idx, c.gen, OP_CONNECT));
        self.push(&entry);
    }

    fn arm_recv(&mut self, idx: usize) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        c.recv_armed = true;
        c.ops += 1;
        let entry = on_socket!(c, idx, |s| opcode::RecvMsgMulti::new(
            s,
            &*self.msghdr,
            BUF_GROUP
        )
        .build())
        .user_data(user_data(idx, c.gen, OP_RECV));
        self.push(&entry);
    }

    // ---- the polled receive mode ----

    /// Enters or leaves the polled mode, once per demand window.
    fn choose_receive_mode(&mut self, now: u64, permille: u64) {
        let (hits, empties, late) = (
            std::mem::take(&mut self.window_hits),
            std::mem::take(&mut self.window_empties),
            std::mem::replace(&mut self.window_late_ns, u64::MAX),
        );
        let want = match self.force_receive {
            Some(polled) => polled,
            None if self.open_model => {
                // The open model polls while its pace keeps the thread busy
                // (it then wakes for timers often enough to poll on the
                // way); it gives up where most polls find nothing.
                let rare = self.polled && empties > POLL_GIVE_UP_RATIO * hits.max(1);
                // Every slot of the window sent late: the connections (or the
                // server) are behind, not just stalled for a moment, and a
                // response waiting for its poll holds a connection a late
                // slot needs; armed receives free it at once.
                let behind = late != u64::MAX && late > OPEN_POLL_MAX_LATE_NS;
                if rare || (self.polled && behind) {
                    self.armed_until_ns = now + ARMED_AFTER_POLLED_NS;
                }
                // Entered after two busy windows in a row (not for the
                // start's connecting alone), left below a lower demand.
                self.busy_windows = if permille >= BATCH_DEMAND_PERMILLE {
                    self.busy_windows.saturating_add(1)
                } else {
                    0
                };
                let busy = if self.polled {
                    permille >= OPEN_POLL_LEAVE_PERMILLE
                } else {
                    self.busy_windows >= 2
                };
                !rare && !behind && busy && now >= self.armed_until_ns
            }
            None if self.polled => {
                // Give up where responses are rare even at the longest age.
                let rare = self.poll_age_ns >= POLL_AGE_MAX_NS
                    && empties > POLL_GIVE_UP_RATIO * hits.max(1);
                if rare {
                    self.armed_until_ns = now + ARMED_AFTER_POLLED_NS;
                }
                !rare && self.busy >= POLL_MIN_IN_FLIGHT / 2
            }
            None => self.batching && self.busy >= POLL_MIN_IN_FLIGHT && now >= self.armed_until_ns,
        };
        if want != self.polled {
            self.set_polled(want);
        }
    }

    fn set_polled(&mut self, polled: bool) {
        self.polled = polled;
        self.poll_age_ns = 0;
        self.poll_queue.clear();
        if polled && self.open_model {
            self.poll_queue.extend(
                self.conns
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.as_deref().map(|c| (i, c)))
                    .filter(|(_, c)| c.state == State::Busy)
                    .map(|(i, c)| (i, c.gen, c.t.written_ns)),
            );
            self.poll_queue
                .make_contiguous()
                .sort_unstable_by_key(|&(i, gen, written)| (written, i, gen));
        }
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_deref_mut() else {
                continue;
            };
            if c.fd < 0 || c.connect_pending || c.state == State::Exited {
                continue;
            }
            if polled && c.recv_armed {
                c.ops += 1;
                let cancel = opcode::AsyncCancel::new(user_data(idx, c.gen, OP_RECV))
                    .build()
                    .user_data(user_data(idx, c.gen, OP_CANCEL));
                self.push(&cancel);
            } else if !polled && !c.recv_armed && !c.poll_out {
                self.arm_recv(idx);
            }
        }
    }

    /// One non-blocking receive per connection waiting for a response, all
    /// in one submit: those that find data complete there and then.
    fn poll_receives(&mut self) {
        if self.open_model {
            return self.poll_in_order();
        }
        let now = now_ns();
        let mut next = u64::MAX;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_deref() else {
                continue;
            };
            if c.state != State::Busy || c.fd < 0 || c.connect_pending || c.recv_armed || c.poll_out
            {
                continue;
            }
            let due = (c.t.written_ns + self.poll_age_ns).max(c.poll_at_ns);
            if due <= now {
                self.push_polled_recv(idx);
            } else {
                next = next.min(due);
            }
        }
        self.poll_next_ns = next;
        let _ = self.ring.submit();
    }

    /// Open model: polls the oldest requests first, at most `poll_budget` of
    /// them. A server answers roughly in the order requests reach it, so the
    /// oldest are the ones likely answered; the budget follows how many were
    /// (see `tune_poll_age`). A request found empty is polled again after a
    /// quarter of its age (10 us to 200 us), and passed over meanwhile.
    fn poll_in_order(&mut self) {
        // Slots that came due during the wait go out first, in the same submit.
        let now = self.fire_timers(now_ns());
        self.stamp_sends(now);
        let mut next = u64::MAX;
        let mut kept = std::mem::take(&mut self.poll_scratch);
        let (mut polls, mut skipped) = (0, 0);
        while let Some((idx, gen, written)) = self.poll_queue.pop_front() {
            let Some(c) = self.conns[idx].as_deref() else {
                continue;
            };
            if c.gen != gen || c.state != State::Busy || c.t.written_ns != written || c.fd < 0 {
                // Answered, failed or sent again (a new entry follows).
                continue;
            }
            if written + POLL_PERIOD_MIN_NS > now {
                // Sent a moment ago, and so is every entry after it.
                self.poll_queue.push_front((idx, gen, written));
                next = next.min(written + POLL_PERIOD_MIN_NS);
                break;
            }
            let busy = c.poll_out || c.recv_armed || c.connect_pending;
            if busy || c.poll_at_ns > now {
                // A poll (or the cancel of its armed receive) in flight, or
                // found empty a moment ago (a slow response among faster
                // ones): look past it, but not forever.
                next = next.min(if busy { now } else { c.poll_at_ns });
                kept.push((idx, gen, written));
                skipped += 1;
                if skipped > 4 * self.poll_budget + 64 {
                    next = now;
                    break;
                }
                continue;
            }
            if polls == self.poll_budget {
                self.poll_queue.push_front((idx, gen, written));
                next = now;
                break;
            }
            self.push_polled_recv(idx);
            polls += 1;
            kept.push((idx, gen, written));
        }
        for e in kept.drain(..).rev() {
            self.poll_queue.push_front(e);
        }
        self.poll_scratch = kept;
        self.poll_batch = polls;
        self.poll_next_ns = next;
        let _ = self.ring.submit();
    }

    /// After a poll: connections are polled later when more than a quarter
    /// of the polls were empty (each costs a receive), sooner when nearly
    /// all found a response (it may have waited longer than it had to).
    /// In the open model the walk's budget is tuned instead: to a quarter
    /// more than the answers found when some polls were empty, and doubled,
    /// with another walk at once, when every poll was answered (a stalled
    /// server that resumes answers a backlog at once).
    fn tune_poll_age(&mut self) {
        let hits = std::mem::take(&mut self.poll_hits);
        let empties = std::mem::take(&mut self.poll_empties);
        self.window_hits += hits;
        self.window_empties += empties;
        if self.open_model {
            let hits = hits as usize;
            self.poll_more = false;
            if empties == 0 && self.poll_batch == self.poll_budget {
                self.poll_budget *= 2;
                self.poll_more = true;
            } else if empties > 0 {
                self.poll_budget = (hits + hits / 4 + 2).max(8);
            }
            self.poll_budget = self.poll_budget.min(4096);
            return;
        }
        if empties * 3 > hits {
            self.poll_age_ns = (self.poll_age_ns * 5 / 4)
                .max(self.poll_age_ns + 2_000)
                .min(POLL_AGE_MAX_NS);
        } else if empties * 10 < hits {
            self.poll_age_ns = self.poll_age_ns * 4 / 5;
        }
    }

    fn push_polled_recv(&mut self, idx: usize) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        if c.fd < 0 || c.poll_out {
            return;
        }
        c.poll_msg.msg_control = c.poll_control.0.as_mut_ptr().cast();
        c.poll_msg.msg_controllen = c.poll_control.0.len() as _;
        c.poll_msg.msg_iovlen = 0;
        c.poll_out = true;
        c.ops += 1;
        let msg: *mut libc::msghdr = &mut c.poll_msg;
        let entry = on_socket!(c, idx, |s| opcode::RecvMsg::new(s, msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .buf_group(BUF_GROUP)
            .build())
        .flags(squeue::Flags::BUFFER_SELECT)
        .user_data(user_data(idx, c.gen, OP_RECV_POLL));
        self.push(&entry);
    }

    fn on_polled_recv(&mut self, idx: usize, res: i32, bid: Option<u16>) {
        match res {
            r if r == -libc::EAGAIN => {
                self.poll_empties += 1;
                let c = self.conns[idx].as_deref_mut().expect("live connection");
                let now = now_ns();
                c.poll_at_ns = if self.open_model {
                    now + (now.saturating_sub(c.t.written_ns) / 4)
                        .clamp(POLL_PERIOD_MIN_NS, OPEN_REPOLL_MAX_NS)
                } else {
                    now + (self.poll_age_ns / 4).max(POLL_PERIOD_MIN_NS)
                };
                self.poll_next_ns = self.poll_next_ns.min(c.poll_at_ns);
            }
            // Out of buffers: the data waits for the next poll.
            r if r == -libc::ENOBUFS => {}
            r if r < 0 => self.on_read_end(idx, Some(closed_by_peer(-r))),
            0 => self.on_read_end(idx, None),
            r => {
                let Some(bid) = bid else {
                    self.fail(idx, ExchangeError::Failed(ErrorKind::Io));
                    return;
                };
                self.poll_hits += 1;
                self.polled_receives += 1;
                let c = self.conns[idx].as_deref().expect("live connection");
                let control = &c.poll_control.0;
                // (usize with glibc, u32 with musl.)
                #[allow(clippy::unnecessary_cast)]
                let n = (c.poll_msg.msg_controllen as usize).min(control.len());
                let stamp = self.kernel_stamp(&control[..n], self.woke_ns);
                let payload = self.bufs.data(bid, r as usize);
                self.on_data(idx, payload, stamp);
                if r as usize == BUF_SIZE && self.polled {
                    self.repoll.push(idx);
                }
            }
        }
    }

    fn push_send(&mut self, idx: usize) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        let prepared = &self.shared.prepared[c.request_idx];
        let is_head = prepared.is_head;
        let bodiless = prepared.body.is_empty();
        let bytes = self
            .shared
            .request_bytes(c.request_idx, c.trace, &mut c.scratch);
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        // Quiet: bytes that live as long as the run (the prepared request,
        // not a traced request's copy in the connection's scratch, which a
        // failed send's connection may reuse), small, and with no body a
        // server could answer before reading.
        let lives_for_run = std::ptr::eq(bytes, prepared.h1_bytes.as_slice());
        let quiet = bodiless && lives_for_run && len <= QUIET_SEND_MAX;
        if !c.fixed && c.exchanges == 1 && (idx as u32) < self.fixed_slots {
            // Reused: worth a slot (one system call per connection, none for
            // a connection that makes one exchange).
            c.fixed = self
                .ring
                .submitter()
                .register_files_update(idx as u32, &[c.fd])
                .is_ok();
        }
        c.state = State::Busy;
        c.reader = ResponseReader::new(is_head);
        c.exchanges += 1;
        c.t.bytes_sent += len as u64;
        let leftover = !c.carry.is_empty();
        let send = on_socket!(c, idx, |s| opcode::Send::new(s, ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build());
        if quiet {
            // One completion fewer per request: the wait is for responses.
            let entry = send.flags(squeue::Flags::SKIP_SUCCESS).user_data(user_data(
                idx,
                c.gen,
                OP_SEND_QUIET,
            ));
            self.push_uncounted(&entry);
        } else {
            c.ops += 1;
            c.send_pending = true;
            self.loud_sends += 1;
            let entry = send.user_data(user_data(idx, c.gen, OP_SEND));
            self.push(&entry);
        }
        self.to_stamp.push(idx);
        if leftover {
            // Bytes that came before the request: the response starts with them.
            self.on_data(idx, &[], now_ns());
        }
    }

    /// Closes the connection's socket: its operations are cancelled and end
    /// with completions that the generation bump makes ignored.
    fn close_socket(&mut self, idx: usize) {
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        if c.fd < 0 {
            return;
        }
        let fd = c.fd;
        c.fd = -1;
        if c.fixed {
            // The slot holds the socket open: empty it first. Operations in
            // flight keep their own reference until cancelled.
            c.fixed = false;
            let _ = self
                .ring
                .submitter()
                .register_files_update(idx as u32, &[-1]);
        }
        let gen = c.gen;
        c.gen = c.gen.wrapping_add(1);
        c.recv_armed = false;
        c.poll_out = false;
        c.connect_pending = false;
        c.send_pending = false;
        c.carry.clear();
        c.exchanges = 0;
        c.ops += 2;
        // Cancel everything on the descriptor, then close it: hard-linked so
        // the close runs even when there was nothing to cancel.
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .flags(squeue::Flags::IO_HARDLINK)
            .user_data(user_data(idx, gen, OP_CLOSE));
        let close = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(user_data(idx, gen, OP_CLOSE));
        self.push(&cancel);
        self.push(&close);
    }

    /// A failed attempt: retried once on a new connection when a reused one
    /// turned out closed (the keep-alive race), else the request failed.
    fn fail(&mut self, idx: usize, error: ExchangeError) {
        self.close_socket(idx);
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        match error {
            ExchangeError::Stale if c.attempt == 0 => {
                c.attempt = 1;
                c.t.first_byte_ns = 0;
                c.t.bytes_received = 0;
                self.begin_attempt(idx);
            }
            ExchangeError::Stale => self.finish(idx, Outcome::Failed(ErrorKind::Io)),
            ExchangeError::Failed(kind) => self.finish(idx, Outcome::Failed(kind)),
        }
    }

    /// Records a finished request and claims the next slot.
    fn finish(&mut self, idx: usize, outcome: Outcome) {
        let now = now_ns();
        let keepalive = self.shared.keepalive;
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        self.busy -= 1;
        self.mine.in_flight.fetch_sub(1, Ordering::Relaxed);
        let (result, close) = match outcome {
            Outcome::Response(r) => (
                classify(r.status),
                !r.reusable || !keepalive || c.send_pending,
            ),
            Outcome::Failed(kind) => (Err(kind), true),
        };
        self.mine.finished(
            self.open_model,
            c.slot.warmup,
            c.request_idx,
            &mut c.t,
            result,
            c.trace,
            now,
        );
        c.state = State::Gated;
        c.deadline_ns = u64::MAX;
        if close {
            self.close_socket(idx);
        }
        self.claim(idx, now);
    }

    fn exit(&mut self, idx: usize) {
        self.close_socket(idx);
        let c = self.conns[idx].as_deref_mut().expect("live connection");
        c.state = State::Exited;
        self.shared.worker_exited();
        self.maybe_free(idx);
    }

    fn maybe_free(&mut self, idx: usize) {
        if self.conns[idx]
            .as_deref()
            .is_some_and(|c| c.state == State::Exited && c.ops == 0)
        {
            let gen = self.conns[idx].as_deref().map_or(0, |c| c.gen);
            self.conns[idx] = None;
            self.free.push((idx, gen.wrapping_add(1)));
        }
    }

    /// Times out requests (and preconnects) past their deadline.
    fn scan_deadlines(&mut self, now: u64) {
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_deref() else {
                continue;
            };
            if c.deadline_ns > now {
                continue;
            }
            match c.state {
                State::Preconnecting => {
                    self.close_socket(idx);
                    self.after_preconnect(idx, now);
                }
                State::Connecting | State::Busy => {
                    self.close_socket(idx);
                    self.finish(idx, Outcome::Failed(ErrorKind::Timeout));
                }
                _ => {}
            }
        }
    }

    fn stop(&mut self) {
        self.stopping = true;
        while let Some(Reverse((_, idx))) = self.waiting.pop() {
            if self.conns[idx]
                .as_deref()
                .is_some_and(|c| c.state == State::Waiting)
            {
                self.exit(idx);
            }
        }
    }

    /// Closes every socket and waits (boundedly) for the kernel to finish
    /// with our memory; what it still holds after that is leaked, never freed
    /// under it.
    fn shutdown(mut self) {
        self.mine.receives.store(
            self.armed_receives + self.polled_receives,
            Ordering::Relaxed,
        );
        self.mine
            .polled_receives
            .store(self.polled_receives, Ordering::Relaxed);
        // Empty every registered slot in one call rather than one per socket.
        let used = (self.conns.len() as u32).min(self.fixed_slots);
        if used > 0 && self.conns.iter().flatten().any(|c| c.fixed) {
            let empty = vec![-1; used as usize];
            if self
                .ring
                .submitter()
                .register_files_update(0, &empty)
                .is_ok()
            {
                for c in self.conns.iter_mut().flatten() {
                    c.fixed = false;
                }
            }
        }
        for idx in 0..self.conns.len() {
            if self.conns[idx].is_some() {
                self.close_socket(idx);
            }
        }
        let cancel_wake = opcode::AsyncCancel::new(WAKE_UD).build().user_data(0);
        // SAFETY: a cancel names no memory.
        let _ = unsafe { self.ring.submission().push(&cancel_wake) };
        let deadline = now_ns() + 2_000_000_000;
        while self.ops_total > 0 && now_ns() < deadline {
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            for cqe in self.ring.completion() {
                let ud = cqe.user_data();
                if ud == 0 {
                    continue;
                }
                let (_, _, op) = split_user_data(ud);
                if op == OP_SEND_QUIET {
                    continue;
                }
                if ud == WAKE_UD || op != OP_RECV || !cqueue::more(cqe.flags()) {
                    self.ops_total -= 1;
                }
            }
        }
        if self.ops_total > 0 {
            // The kernel may still write into these: leak them rather than free.
            std::mem::forget(self.bufs);
            std::mem::forget(self.conns);
            std::mem::forget(self.wake_buf);
            std::mem::forget(self.msghdr);
            std::mem::forget(self.shared);
        }
    }
}

/// How many registered-file slots a ring asks for: the kernel refuses a
/// table larger than the open-files limit.
fn fixed_file_slots() -> u32 {
    // SAFETY: getrlimit fills the struct we pass.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur.min(FIXED_FILES_MAX as libc::rlim_t) as u32
}

/// Whether an error says the peer closed or reset the connection.
fn closed_by_peer(errno: i32) -> bool {
    matches!(errno, libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED)
}

/// `CHOKEPOINT_URING_RECEIVE=polled|armed` pins the receive mode (tests and
/// measurements); otherwise the loop chooses.
fn forced_receive_mode() -> Option<bool> {
    match std::env::var("CHOKEPOINT_URING_RECEIVE").ok()?.as_str() {
        "polled" => Some(true),
        "armed" => Some(false),
        _ => None,
    }
}

fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes `addr` as a C socket address; returns its length.
fn write_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for (idx, gen, op) in [
            (0, 0, OP_CONNECT),
            (12_345, 0x00ab_cdef, OP_RECV),
            (7, 1, OP_CLOSE),
            (3, 9, OP_SEND_QUIET),
        ] {
            assert_eq!(split_user_data(user_data(idx, gen, op)), (idx, gen, op));
        }
        // The generation wraps within its 24 bits.
        assert_eq!(split_user_data(user_data(1, 0x0100_0002, OP_SEND)).1, 2);
    }

    /// What quiet sends rely on: with `IOSQE_CQE_SKIP_SUCCESS` a send that
    /// succeeds posts nothing, and one that fails still posts its error.
    #[test]
    fn quiet_sends_post_only_their_failures() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        if let Err(why) = available() {
            eprintln!("io_uring unavailable here ({why}): nothing to check");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut ring = new_ring().unwrap();
        let bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let quiet_send = |ring: &mut IoUring, tag: u64| {
            let entry = opcode::Send::new(
                types::Fd(client.as_raw_fd()),
                bytes.as_ptr(),
                bytes.len() as u32,
            )
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(user_data(1, tag as u32, OP_SEND_QUIET));
            // SAFETY: `bytes` is static; the socket outlives the ring's use.
            unsafe { ring.submission().push(&entry) }.unwrap();
            let ts = types::Timespec::new().nsec(200_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = ring.submitter().submit_with_args(1, &args);
            ring.completion()
                .map(|c| (c.user_data(), c.result()))
                .collect::<Vec<_>>()
        };
        assert_eq!(quiet_send(&mut ring, 1), vec![], "a success posted");
        let mut got = vec![0; bytes.len()];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &bytes[..]);

        // The server resets the connection; the client sees it before sending.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on our socket with a valid linger.
        unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        server.write_all(b"x").unwrap();
        drop(server);
        let mut pfd = libc::pollfd {
            fd: client.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 2_000) };
        assert_ne!(
            pfd.revents & (libc::POLLHUP | libc::POLLERR),
            0,
            "no reset seen"
        );
        let failed = quiet_send(&mut ring, 2);
        assert_eq!(failed.len(), 1, "a failure posted nothing: {failed:?}");
        let (ud, res) = failed[0];
        assert_eq!(split_user_data(ud), (1, 2, OP_SEND_QUIET));
        assert!(
            [-libc::ECONNRESET, -libc::EPIPE].contains(&res),
            "result {res}"
        );
    }

    #[test]
    fn socket_addresses_are_written_in_network_order() {
        let mut out: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = write_sockaddr(&"127.0.0.1:8080".parse().unwrap(), &mut out);
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in>());
        let sin = unsafe { *(&out as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        assert_eq!(u16::from_be(sin.sin_port), 8080);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [127, 0, 0, 1]);
    }
}
