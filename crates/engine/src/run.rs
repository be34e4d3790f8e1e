//! Running a load test: runtime threads, the worker loop, the connection
//! spawner, and once-a-second collection of interval statistics.
//!
//! Threads: the caller's thread coordinates (start gate, spawner, interval
//! collection, stop); each runtime thread runs a current-thread tokio runtime
//! whose connections, timer and recorder never leave it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc as tmpsc;
use tokio::sync::watch;

use crate::clock::now_ns;
use crate::conn::Connector;
use crate::deadline::Watchdog;
use crate::h2::H2Pool;
use crate::http1::{ExchangeError, H1Conn};
use crate::profile::Ramp;
use crate::recorder::{ErrorKind, Recorder, Stats, Timings};
use crate::schedule::{Limits, LoadModel, Schedule};
use crate::target::{
    write_traceparent, PrepareOptions, Prepared, RequestSpec, Scheme, Target, TRACEPARENT_LEN,
};
use crate::timer::HiResTimer;
use crate::EngineError;

/// Everything a run needs. Build with [`RunConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The origin requests go to.
    pub target: Target,
    /// The requests to send (weighted mix); empty means `GET` of the target URL.
    pub requests: Vec<RequestSpec>,
    /// Open or closed model.
    pub load: LoadModel,
    /// Warmup, measured duration and request-count limits.
    pub limits: Limits,
    /// Per-request timeout, covering connect, TLS and the whole response.
    pub timeout: Duration,
    /// Reuse connections (HTTP/1.1 keep-alive).
    pub keepalive: bool,
    /// Speak HTTP/2 (prior knowledge on http, ALPN on https).
    pub http2: bool,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Send a W3C `traceparent` with every request and keep the slowest trace ids.
    pub trace_propagate: bool,
    /// Runtime threads (0: one per available core).
    pub threads: usize,
    /// Seed for arrival gaps, request mix and trace ids.
    pub seed: u64,
    /// Stages: the load ramps over time (see [`Ramp`]); `None` keeps it constant.
    pub ramp: Option<Ramp>,
    /// Open model: the first arrival's offset in arrivals (0 ≤ phase < 1), so
    /// that shards interleave (see [`crate::Shard::split`]).
    pub arrival_phase: f64,
    /// Wall-clock time at which the schedule starts (shards start together);
    /// connections are opened before it. `None` starts as soon as they are.
    pub start_at: Option<SystemTime>,
    /// How plain HTTP/1.1 connections do their I/O.
    pub io: IoMode,
}

/// How plain-text HTTP/1.1 connections do their I/O. TLS and HTTP/2 always
/// go through tokio (epoll).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring where the kernel offers what the engine needs, else epoll.
    #[default]
    Auto,
    /// tokio's epoll reactor, one task per connection.
    Epoll,
    /// io_uring; a run that cannot have it fails to start.
    Uring,
}

impl IoMode {
    /// The name used in flags and reports (`auto`, `epoll`, `io_uring`).
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Epoll => "epoll",
            IoMode::Uring => "io_uring",
        }
    }
}

impl RunConfig {
    /// Defaults: 10 s, 30 s timeout, keep-alive, HTTP/1.1, verification on.
    pub fn new(target: Target, load: LoadModel) -> Self {
        RunConfig {
            target,
            requests: Vec::new(),
            load,
            limits: Limits {
                warmup_ns: 0,
                duration_ns: Some(10_000_000_000),
                max_requests: None,
            },
            timeout: Duration::from_secs(30),
            keepalive: true,
            http2: false,
            insecure: false,
            trace_propagate: false,
            threads: 0,
            seed: 0x5eed_c0ffee,
            ramp: None,
            arrival_phase: 0.0,
            start_at: None,
            io: IoMode::Auto,
        }
    }
}

/// One second (or the final fraction) of a run, handed to the observer as it happens.
#[derive(Debug)]
pub struct IntervalReport<'a> {
    /// 0 for the first second of the measured window.
    pub index: u64,
    /// Seconds from the start of the measured window.
    pub start_s: f64,
    /// Length in seconds (1.0 except for the last).
    pub length_s: f64,
    /// What was measured in it.
    pub stats: &'a Stats,
    /// Requests in flight at the end of the interval.
    pub in_flight: u64,
    /// Open connections (or HTTP/2 workers) at the end of the interval.
    pub connections: usize,
}

/// Receives interval statistics on the coordinating thread while a run goes on.
pub trait Observer {
    /// Called once per measured second, and once for the final partial second.
    fn interval(&mut self, report: &IntervalReport<'_>);
    /// Called when the measured window starts (after warmup), with its wall-clock time.
    fn measured_start(&mut self, _wall: SystemTime) {}
    /// Called about every 100 ms with the current totals (progress display).
    fn progress(&mut self, _elapsed: Duration, _totals: &Stats) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {
    fn interval(&mut self, _report: &IntervalReport<'_>) {}
}

/// Asks a run to stop early (Ctrl-C, SIGTERM). Cheap to clone; safe to trigger
/// from a signal-handling thread.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }
    /// Stops the run: no new requests; in-flight ones finish or time out.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether `stop` was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What a finished (or interrupted) run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The measured window.
    pub measured: Stats,
    /// The warmup period, reported separately.
    pub warmup: Stats,
    /// Wall-clock time at the start of the measured window.
    pub started_at: SystemTime,
    /// Length of the measured window (to the last completion).
    pub duration: Duration,
    /// Length of the warmup actually run.
    pub warmup_duration: Duration,
    /// The run was stopped by a [`StopSignal`].
    pub interrupted: bool,
    /// Most connections open at once.
    pub peak_connections: usize,
    /// Runtime threads used.
    pub threads: usize,
    /// Open-model arrivals never sent: the window ended while they waited for a
    /// free connection (`max_connections` reached).
    pub dropped: u64,
    /// The I/O the connections used (`Epoll` or `Uring`, never `Auto`).
    pub io: IoMode,
    /// io_uring: the share of receives (reads that brought response bytes,
    /// whole run) made in the polled receive mode; `None` with epoll or
    /// when nothing was received.
    pub polled_receive_share: Option<f64>,
}

/// State shared by every thread of a run.
pub(crate) struct Shared {
    pub(crate) schedule: Schedule,
    pub(crate) prepared: Vec<Prepared>,
    /// Cumulative weights for picking a request.
    cumulative_weights: Vec<u64>,
    target: Target,
    pub(crate) addrs: Vec<std::net::SocketAddr>,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    pub(crate) timeout: Duration,
    pub(crate) keepalive: bool,
    http2: bool,
    trace_propagate: bool,
    pub(crate) seed: u64,
    /// Plain HTTP/1.1 over io_uring (else tokio).
    uring: bool,
    /// Workers alive (connecting, waiting or sending).
    live: AtomicUsize,
    /// Workers spawned that have not yet claimed their first slot.
    pub(crate) starting: AtomicUsize,
    peak_live: AtomicUsize,
    /// Workers that finished pre-connecting before the start.
    pub(crate) ready: AtomicUsize,
    pub(crate) gate: watch::Sender<bool>,
    done_tx: Mutex<mpsc::Sender<()>>,
}

impl Shared {
    /// Picks a request of the mix by weight.
    pub(crate) fn pick_request(&self, rng: &mut fastrand::Rng) -> usize {
        let weights = &self.cumulative_weights;
        if weights.len() == 1 {
            return 0;
        }
        let total = *weights.last().expect("at least one request");
        let r = rng.u64(0..total);
        weights.partition_point(|&w| w <= r)
    }

    /// A fresh trace and span id, when propagating trace context.
    pub(crate) fn trace_ids(&self, rng: &mut fastrand::Rng) -> Option<(u128, u64)> {
        if !self.trace_propagate {
            return None;
        }
        Some((rng.u128(1..), rng.u64(1..)))
    }

    /// A worker (connection) is gone; the last one after the schedule ended
    /// tells the coordinator.
    pub(crate) fn worker_exited(&self) {
        let left = self.live.fetch_sub(1, Ordering::AcqRel) - 1;
        if left == 0 && self.schedule.is_done() {
            if let Ok(tx) = self.done_tx.lock() {
                let _ = tx.send(());
            }
        }
    }

    /// A connection opened ahead of any request at `now` counts as warmup
    /// while the measured window has not started (and there is a warmup).
    pub(crate) fn preconnect_is_warmup(&self, now: u64) -> bool {
        let schedule = &self.schedule;
        let warmup = schedule.start_ns() == 0 || now < schedule.measured_start_ns();
        warmup && schedule.has_warmup()
    }

    /// The request bytes to send: the prepared ones, or a copy in `scratch`
    /// with a fresh traceparent patched in.
    pub(crate) fn request_bytes<'a>(
        &'a self,
        request_idx: usize,
        trace: Option<(u128, u64)>,
        scratch: &'a mut Vec<u8>,
    ) -> &'a [u8] {
        let request = &self.prepared[request_idx];
        match (trace, request.traceparent_at) {
            (Some((trace_id, span_id)), Some(at)) => {
                scratch.clear();
                scratch.extend_from_slice(&request.h1_bytes);
                write_traceparent(&mut scratch[at..at + TRACEPARENT_LEN], trace_id, span_id);
                scratch
            }
            _ => &request.h1_bytes,
        }
    }
}

/// Per-thread state the coordinator can see.
pub(crate) struct ThreadShared {
    pub(crate) recorder: Mutex<Recorder>,
    pub(crate) in_flight: AtomicU64,
    /// Last time the thread's heartbeat task ran (engine clock).
    pub(crate) heartbeat_ns: AtomicU64,
    /// CPU demand of the thread over the last window, in thousandths: time
    /// on a CPU plus time runnable but waiting for one, over wall time
    /// (`/proc/thread-self/schedstat`; 0 where unavailable).
    pub(crate) demand_permille: AtomicU64,
    /// Open model: the shortest service time seen so far (ns; `u64::MAX`
    /// before the first response), the target's unloaded speed.
    fastest_service_ns: AtomicU64,
    /// io_uring: receives that brought bytes, and how many of them were
    /// polled (set when the thread ends).
    pub(crate) receives: AtomicU64,
    pub(crate) polled_receives: AtomicU64,
}

impl ThreadShared {
    /// Records a finished request (both I/O paths): phases it never reached
    /// end where it ended (`now` when it never ended), an open-model success
    /// may lower the fastest service time, and the statistics of its phase
    /// (warmup or measured) take it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finished(
        &self,
        open_model: bool,
        warmup: bool,
        request_idx: usize,
        t: &mut Timings,
        result: Result<(), ErrorKind>,
        trace: Option<(u128, u64)>,
        now: u64,
    ) {
        if t.end_ns == 0 {
            t.end_ns = now;
        }
        if t.written_ns == 0 {
            t.written_ns = t.sent_ns;
        }
        if t.first_byte_ns == 0 {
            t.first_byte_ns = t.end_ns;
        }
        if open_model && result.is_ok() {
            let service_ns = t.end_ns.saturating_sub(t.written_ns);
            let fastest = &self.fastest_service_ns;
            if service_ns < fastest.load(Ordering::Relaxed) {
                fastest.fetch_min(service_ns, Ordering::Relaxed);
            }
        }
        self.recorder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .phase(warmup)
            .record(request_idx, t, result, trace.map(|(id, _)| id));
    }
}

/// A command channel to one runtime thread, and how to wake it.
struct ThreadTx {
    tx: tmpsc::UnboundedSender<Command>,
    /// An io_uring thread sleeps in the kernel, not in tokio: poke it.
    #[cfg(target_os = "linux")]
    wake: Option<Arc<crate::uring::Wake>>,
}

impl ThreadTx {
    fn send(&self, command: Command) {
        let _ = self.tx.send(command);
        self.wake();
    }

    fn wake(&self) {
        #[cfg(target_os = "linux")]
        if let Some(wake) = &self.wake {
            wake.wake();
        }
    }
}

pub(crate) enum Command {
    /// Start a worker for this lane (its spawn order).
    SpawnWorker(usize),
    Stop,
    Shutdown,
}

struct ThreadCtx {
    shared: Arc<Shared>,
    mine: Arc<ThreadShared>,
    timer: Rc<HiResTimer>,
    watchdog: Rc<Watchdog>,
    connector: Rc<Connector>,
    h2: Option<Rc<H2Pool>>,
    rng: RefCell<fastrand::Rng>,
}

const SPAWN_TICK: Duration = Duration::from_millis(1);
/// The next slot must be this late before the spawner adds a connection.
const SPAWN_LAG_NS: u64 = 200_000;
const MAX_SPAWN_PER_TICK: usize = 256;
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_millis(1);
/// A thread whose heartbeat is older than this is starved of CPU.
const HEARTBEAT_STALE_NS: u64 = 3_000_000;
/// Window over which a thread's CPU demand is measured.
const DEMAND_WINDOW_NS: u64 = 10_000_000;
/// A thread that wants a CPU this much of the time (thousandths) is saturated:
/// the generator, not the target's concurrency, makes slots late.
pub(crate) const SATURATED_PERMILLE: u64 = 800;
/// The open model keeps at most this many connections per connection that
/// Little's law asks for at the target's fastest service time...
const CONNECTIONS_PER_NEEDED: f64 = 32.0;
/// ...and never caps below this many.
const CONNECTIONS_FLOOR: usize = 100;
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Raises the open-file limit to its hard maximum: every connection is a descriptor.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls on a valid, local rlimit struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

/// Runs a load test to completion (or until `stop` fires). Blocks the calling
/// thread, which coordinates; `observer` is called on it.
pub fn run(
    config: RunConfig,
    observer: &mut dyn Observer,
    stop: &StopSignal,
) -> Result<RunResult, EngineError> {
    raise_fd_limit();
    let start_at = config.start_at;
    let (shared, threads_n, initial) = prepare(config)?;
    let threads: Vec<_> = (0..threads_n)
        .map(|_| {
            Arc::new(ThreadShared {
                recorder: Mutex::new(Recorder::new(shared.prepared.len())),
                in_flight: AtomicU64::new(0),
                heartbeat_ns: AtomicU64::new(u64::MAX),
                demand_permille: AtomicU64::new(0),
                fastest_service_ns: AtomicU64::new(u64::MAX),
                receives: AtomicU64::new(0),
                polled_receives: AtomicU64::new(0),
            })
        })
        .collect();
    let (done_rx, senders, handles) = {
        let done_rx = {
            let (tx, rx) = mpsc::channel();
            *shared.done_tx.lock().expect("fresh mutex") = tx;
            rx
        };
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for (idx, mine) in threads.iter().enumerate() {
            let (tx, rx) = tmpsc::unbounded_channel();
            let shared = shared.clone();
            let mine = mine.clone();
            let builder = std::thread::Builder::new().name(format!("chokepoint-{idx}"));
            #[cfg(target_os = "linux")]
            if shared.uring {
                let wake = Arc::new(crate::uring::Wake::new()?);
                let thread_wake = wake.clone();
                let handle = builder
                    .spawn(move || crate::uring::thread_main(shared, mine, rx, thread_wake, idx))?;
                senders.push(ThreadTx {
                    tx,
                    wake: Some(wake),
                });
                handles.push(handle);
                continue;
            }
            let handle = builder.spawn(move || thread_main(shared, mine, rx, idx))?;
            senders.push(ThreadTx {
                tx,
                #[cfg(target_os = "linux")]
                wake: None,
            });
            handles.push(handle);
        }
        (done_rx, senders, handles)
    };
    let mut coordinator = Coordinator {
        shared: &shared,
        threads: &threads,
        senders: &senders,
        next_thread: 0,
        measured: Stats::new(shared.prepared.len()),
        warmup: Stats::new(shared.prepared.len()),
        spare: Recorder::new(shared.prepared.len()),
        interval: Stats::new(shared.prepared.len()),
        carried: Stats::new(shared.prepared.len()),
        intervals_emitted: 0,
        spawned: 0,
    };
    for _ in 0..initial {
        coordinator.spawn_worker();
    }
    // Pre-connect the initial workers so the first requests do not pay for it.
    let ready_deadline = now_ns() + shared.timeout.min(Duration::from_secs(5)).as_nanos() as u64;
    while shared.ready.load(Ordering::Acquire) < initial
        && now_ns() < ready_deadline
        && !stop.is_stopped()
    {
        std::thread::sleep(Duration::from_micros(200));
    }
    if let Some(at) = start_at {
        // Shards start together: wait (interruptibly) for the agreed wall-clock time.
        while !stop.is_stopped() {
            match at.duration_since(SystemTime::now()) {
                Ok(left) if !left.is_zero() => std::thread::sleep(left.min(PROGRESS_EVERY)),
                _ => break,
            }
        }
    }
    let start_ns = now_ns();
    let start_wall = SystemTime::now();
    shared.schedule.start(start_ns);
    // `send_replace`, not `send`: `send` leaves the value unchanged when no
    // worker has subscribed yet (all still pre-connecting when the ready wait
    // ran out), and those workers would then wait for the gate forever.
    shared.gate.send_replace(true);
    for tx in &senders {
        tx.wake();
    }
    let result = coordinator.drive(observer, stop, &done_rx, start_wall);
    for tx in &senders {
        tx.send(Command::Shutdown);
    }
    for h in handles {
        let _ = h.join();
    }
    let (receives, polled) = threads.iter().fold((0, 0), |(r, p), t| {
        (
            r + t.receives.load(Ordering::Relaxed),
            p + t.polled_receives.load(Ordering::Relaxed),
        )
    });
    Ok(RunResult {
        polled_receive_share: (shared.uring && receives > 0)
            .then(|| polled as f64 / receives as f64),
        threads: threads_n,
        io: if shared.uring {
            IoMode::Uring
        } else {
            IoMode::Epoll
        },
        dropped: shared.schedule.dropped(),
        peak_connections: shared.peak_live.load(Ordering::Relaxed),
        ..result
    })
}

fn prepare(config: RunConfig) -> Result<(Arc<Shared>, usize, usize), EngineError> {
    let requests = if config.requests.is_empty() {
        vec![RequestSpec {
            name: "default".into(),
            method: "GET".into(),
            path: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            weight: 1,
        }]
    } else {
        config.requests.clone()
    };
    let options = PrepareOptions {
        keepalive: config.keepalive,
        trace_propagate: config.trace_propagate,
    };
    let prepared = requests
        .iter()
        .map(|r| Prepared::new(&config.target, r, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = 0u64;
    let cumulative_weights = requests
        .iter()
        .map(|r| {
            total += u64::from(r.weight);
            total
        })
        .collect();
    if total == 0 {
        return Err(EngineError::BadConfig(
            "request weights add up to zero".into(),
        ));
    }
    let initial = match config.load {
        LoadModel::Open {
            rate,
            max_connections,
            ..
        } => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(EngineError::BadConfig(format!(
                    "rate must be positive, got {rate}"
                )));
            }
            if max_connections == 0 {
                return Err(EngineError::BadConfig(
                    "--max-connections must be at least 1".into(),
                ));
            }
            // Enough connections for 5 ms of arrivals; the spawner adds more when slots run late.
            ((rate * 0.005).ceil() as usize).clamp(1, max_connections.min(1000))
        }
        LoadModel::Closed { concurrency } => {
            if concurrency == 0 {
                return Err(EngineError::BadConfig(
                    "concurrency must be at least 1".into(),
                ));
            }
            concurrency
        }
    };
    let addrs = config.target.resolve()?;
    let tls = match config.target.scheme {
        Scheme::Http => None,
        Scheme::Https => Some((
            crate::tls::client_config(config.insecure, config.http2)?,
            crate::tls::server_name(&config.target.host)?,
        )),
    };
    let threads = if config.threads == 0 {
        let local = addrs.iter().all(|a| a.ip().is_loopback());
        default_threads(config.load, local)
    } else {
        config.threads
    };
    let (gate, _) = watch::channel(false);
    let (done_tx, _) = mpsc::channel();
    if let Some(ramp) = &config.ramp {
        ramp.validate().map_err(EngineError::BadConfig)?;
    }
    if !(0.0..1.0).contains(&config.arrival_phase) {
        return Err(EngineError::BadConfig(format!(
            "arrival phase must be in [0, 1), got {}",
            config.arrival_phase
        )));
    }
    let uring = match config.io {
        IoMode::Epoll => false,
        _ if config.http2 || config.target.scheme == Scheme::Https => {
            if config.io == IoMode::Uring {
                return Err(EngineError::BadConfig(
                    "--io io_uring serves plain-text HTTP/1.1 only (not TLS or HTTP/2)".into(),
                ));
            }
            false
        }
        IoMode::Auto => crate::uring_available().is_ok(),
        IoMode::Uring => match crate::uring_available() {
            Ok(()) => true,
            Err(why) => {
                return Err(EngineError::BadConfig(format!(
                    "--io io_uring is not available here: {why}"
                )))
            }
        },
    };
    let schedule = Schedule::new(config.load, config.limits, config.seed)
        .with_ramp(config.ramp.clone())
        .with_phase(config.arrival_phase);
    let shared = Arc::new(Shared {
        schedule,
        prepared,
        cumulative_weights,
        target: config.target,
        addrs,
        tls,
        timeout: config.timeout,
        keepalive: config.keepalive,
        http2: config.http2,
        trace_propagate: config.trace_propagate,
        seed: config.seed,
        uring,
        live: AtomicUsize::new(0),
        starting: AtomicUsize::new(0),
        peak_live: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        gate,
        done_tx: Mutex::new(done_tx),
    });
    Ok((shared, threads, initial))
}

/// Runtime threads when the user does not say: as many as the load needs, at
/// most one per core. One thread drives about 100 connections or 50,000
/// requests per second comfortably; fewer threads mean fewer context switches
/// and more CPU left for a target on the same machine. A target on loopback
/// shares the cores: the generator takes at most half of them (on 2 cores,
/// one generator thread beside one nginx worker achieved 100,000 req/s with
/// schedule lag P99 3-9 ms where two threads had 20-70 ms; closed model at
/// 500 connections one thread was as efficient as two).
fn default_threads(load: LoadModel, target_on_loopback: bool) -> usize {
    let mut cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if target_on_loopback {
        cores = (cores / 2).max(1);
    }
    let wanted = match load {
        LoadModel::Closed { concurrency } => concurrency.div_ceil(100),
        LoadModel::Open { rate, .. } => (rate / 50_000.0).ceil() as usize,
    };
    wanted.clamp(1, cores)
}

struct Coordinator<'a> {
    shared: &'a Arc<Shared>,
    threads: &'a [Arc<ThreadShared>],
    senders: &'a [ThreadTx],
    next_thread: usize,
    measured: Stats,
    warmup: Stats,
    /// An empty recorder swapped into a thread at each collection.
    spare: Recorder,
    /// Scratch for merging one interval across threads.
    interval: Stats,
    /// Measured samples collected at a boundary that emits no interval (one
    /// completed before the coordinator reached the start of the measured
    /// window): they go into the next interval emitted, so the intervals
    /// always add up to the measured totals.
    carried: Stats,
    intervals_emitted: u64,
    /// Workers spawned so far: the next worker's lane.
    spawned: usize,
}

impl Coordinator<'_> {
    fn spawn_worker(&mut self) {
        let shared = self.shared;
        let live = shared.live.fetch_add(1, Ordering::AcqRel) + 1;
        shared.peak_live.fetch_max(live, Ordering::Relaxed);
        shared.starting.fetch_add(1, Ordering::AcqRel);
        let idx = self.next_thread;
        self.next_thread = (self.next_thread + 1) % self.senders.len();
        let lane = self.spawned;
        self.spawned += 1;
        self.senders[idx].send(Command::SpawnWorker(lane));
    }

    /// The most connections the open model may hold now: `max_connections`,
    /// or fewer when the target's fastest responses say more would only
    /// queue. When every connection is busy and slots run late, either the
    /// target needs more concurrency (each request takes long) or it, or the
    /// generator, is saturated and requests wait in its queues: then each new
    /// connection only lengthens every wait, all stay busy, and adding
    /// connections for late slots spirals (10,000 connections and 65% of
    /// 100,000 req/s against one nginx worker that served 99.9% of it on 300).
    /// Queueing inflates every service time but the shortest, so the cap is
    /// a generous multiple of Little's law at the fastest service time seen.
    fn connection_cap(&self, rate: f64, max_connections: usize) -> usize {
        let fastest = self
            .threads
            .iter()
            .map(|t| t.fastest_service_ns.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        if fastest == u64::MAX {
            return max_connections;
        }
        let needed = rate * fastest as f64 / 1e9;
        // `as` saturates: a cap beyond usize is max_connections.
        let cap = (CONNECTIONS_PER_NEEDED * needed).ceil() as usize;
        cap.max(CONNECTIONS_FLOOR).min(max_connections)
    }

    /// Adds connections when open-model slots are running late for lack of one.
    fn spawn_if_late(&mut self, rate: f64, max_connections: usize, now: u64) {
        let due = self.shared.schedule.next_due_ns();
        if due == u64::MAX || now < due + SPAWN_LAG_NS {
            return;
        }
        let late_slots = ((now - due) as f64 * rate / 1e9).ceil() as usize;
        let starting = self.shared.starting.load(Ordering::Acquire);
        let live = self.shared.live.load(Ordering::Acquire);
        let in_flight: u64 = self
            .threads
            .iter()
            .map(|t| t.in_flight.load(Ordering::Relaxed))
            .sum();
        // A worker that holds a claimed slot without having sent it means the
        // generator itself is late (CPU), not short of connections: more
        // connections would not help.
        if (in_flight as usize) + starting < live {
            return;
        }
        // A thread that wants a CPU nearly all the time is the bottleneck:
        // slots are late because the generator cannot send them sooner, and
        // every new connection would cost it more (a connect, a socket in
        // every poll) and make it later still.
        if self
            .threads
            .iter()
            .any(|t| t.demand_permille.load(Ordering::Relaxed) >= SATURATED_PERMILLE)
        {
            return;
        }
        // A thread that has not run its heartbeat lately is starved of CPU; its
        // in-flight requests may well be answered already. Spawning then would
        // only feed the overload.
        let stale_after = now.saturating_sub(HEARTBEAT_STALE_NS);
        if self
            .threads
            .iter()
            .any(|t| t.heartbeat_ns.load(Ordering::Relaxed) < stale_after)
        {
            return;
        }
        let n = late_slots
            .saturating_sub(starting)
            .min(
                self.connection_cap(rate, max_connections)
                    .saturating_sub(live),
            )
            .min(MAX_SPAWN_PER_TICK);
        for _ in 0..n {
            self.spawn_worker();
        }
    }

    /// Swaps every thread's recorder for an empty one and merges the measured
    /// part into `self.interval` (reset first) and the totals.
    fn collect(&mut self) {
        self.interval.reset();
        for t in self.threads {
            {
                let mut rec = t.recorder.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::swap(&mut *rec, &mut self.spare);
            }
            self.interval.merge(&self.spare.measured);
            self.warmup.merge(&self.spare.warmup);
            self.spare.measured.reset();
            self.spare.warmup.reset();
        }
        self.measured.merge(&self.interval);
    }

    fn emit(&mut self, observer: &mut dyn Observer, start_s: f64, length_s: f64) {
        if self.carried.requests > 0 {
            self.interval.merge(&self.carried);
            self.carried.reset();
        }
        let in_flight = self
            .threads
            .iter()
            .map(|t| t.in_flight.load(Ordering::Relaxed))
            .sum();
        observer.interval(&IntervalReport {
            index: self.intervals_emitted,
            start_s,
            length_s,
            stats: &self.interval,
            in_flight,
            connections: self.shared.live.load(Ordering::Relaxed),
        });
        self.intervals_emitted += 1;
    }

    fn drive(
        &mut self,
        observer: &mut dyn Observer,
        stop: &StopSignal,
        done_rx: &mpsc::Receiver<()>,
        start_wall: SystemTime,
    ) -> RunResult {
        let shared = self.shared;
        let schedule = &shared.schedule;
        let start = schedule.start_ns();
        let measured_start = schedule.measured_start_ns();
        let second = 1_000_000_000u64;
        let mut next_boundary = if measured_start > start {
            (start + second).min(measured_start)
        } else {
            measured_start + second
        };
        let mut announced_measured = false;
        let mut next_progress = now_ns();
        let mut stopping = false;
        let open = match schedule.model() {
            LoadModel::Open {
                rate,
                max_connections,
                ..
            } => Some((rate, max_connections)),
            LoadModel::Closed { .. } => None,
        };
        let end_ns = loop {
            let now = now_ns();
            if !announced_measured && now >= measured_start {
                announced_measured = true;
                let offset = Duration::from_nanos(measured_start - start);
                observer.measured_start(start_wall + offset);
            }
            if stop.is_stopped() && !stopping {
                stopping = true;
                schedule.stop();
                for tx in self.senders {
                    tx.send(Command::Stop);
                }
            }
            if schedule.is_done() && shared.live.load(Ordering::Acquire) == 0 {
                break now;
            }
            if let Some((rate, max)) = open {
                if !schedule.is_done() {
                    self.spawn_if_late(rate, max, now);
                }
            }
            while now >= next_boundary {
                self.collect();
                if next_boundary > measured_start {
                    let start_s = (next_boundary - second - measured_start) as f64 / 1e9;
                    self.emit(observer, start_s, 1.0);
                    next_boundary += second;
                } else {
                    // No interval before the measured window: what was
                    // collected goes into the first one.
                    self.carried.merge(&self.interval);
                    next_boundary = if next_boundary == measured_start {
                        measured_start + second
                    } else {
                        (next_boundary + second).min(measured_start)
                    };
                }
            }
            if now >= next_progress {
                next_progress = now + PROGRESS_EVERY.as_nanos() as u64;
                let elapsed = Duration::from_nanos(now.saturating_sub(measured_start));
                observer.progress(elapsed, &self.measured);
            }
            let wait = if open.is_some() && !schedule.is_done() {
                SPAWN_TICK
            } else {
                Duration::from_nanos(
                    next_boundary
                        .min(next_progress)
                        .saturating_sub(now)
                        .clamp(100_000, 100_000_000),
                )
            };
            let _ = done_rx.recv_timeout(wait);
        };
        // The final partial interval.
        self.collect();
        let last_start = next_boundary - second;
        if end_ns > measured_start
            && (self.interval.requests > 0 || self.carried.requests > 0 || end_ns > last_start)
        {
            let start_s = last_start.saturating_sub(measured_start) as f64 / 1e9;
            let length_s = end_ns.saturating_sub(last_start.max(measured_start)) as f64 / 1e9;
            self.emit(observer, start_s, length_s);
        }
        let duration = Duration::from_nanos(end_ns.saturating_sub(measured_start));
        RunResult {
            measured: std::mem::replace(&mut self.measured, Stats::new(0)),
            warmup: std::mem::replace(&mut self.warmup, Stats::new(0)),
            started_at: start_wall + Duration::from_nanos(measured_start - start),
            duration,
            warmup_duration: Duration::from_nanos(end_ns.min(measured_start) - start),
            interrupted: stop.is_stopped(),
            peak_connections: 0,
            threads: 0,
            dropped: 0,
            io: IoMode::Auto,
            polled_receive_share: None,
        }
    }
}

pub(crate) fn thread_main(
    shared: Arc<Shared>,
    mine: Arc<ThreadShared>,
    mut commands: tmpsc::UnboundedReceiver<Command>,
    idx: usize,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return,
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let timer = match HiResTimer::new() {
            Ok(t) => t,
            Err(_) => return,
        };
        tokio::task::spawn_local(timer.clone().drive());
        let watchdog = Rc::new(Watchdog::default());
        tokio::task::spawn_local(watchdog.clone().drive());
        if matches!(shared.schedule.model(), LoadModel::Open { .. }) {
            // Only the open-model spawner reads heartbeats.
            let beat = mine.clone();
            let timer = timer.clone();
            tokio::task::spawn_local(async move {
                let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut demand = DemandMeter::new();
                loop {
                    ticks.tick().await;
                    let now = now_ns();
                    beat.heartbeat_ns.store(now, Ordering::Relaxed);
                    if let Some(permille) = demand.sample(now) {
                        beat.demand_permille.store(permille, Ordering::Relaxed);
                        timer.set_busy(permille >= SATURATED_PERMILLE);
                    }
                }
            });
        }
        let connector = Rc::new(Connector::new(shared.addrs.clone(), shared.tls.clone()));
        let h2 = shared.http2.then(|| {
            Rc::new(H2Pool::new(
                connector.clone(),
                shared.target.scheme == Scheme::Https,
            ))
        });
        let ctx = Rc::new(ThreadCtx {
            rng: RefCell::new(fastrand::Rng::with_seed(
                shared.seed ^ (idx as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )),
            shared,
            mine,
            timer,
            watchdog,
            connector,
            h2,
        });
        while let Some(command) = commands.recv().await {
            match command {
                Command::SpawnWorker(lane) => {
                    tokio::task::spawn_local(worker(ctx.clone(), lane));
                }
                Command::Stop => ctx.timer.stop(),
                Command::Shutdown => break,
            }
        }
    });
}

/// A thread's CPU demand (Linux): nanoseconds on a CPU (the thread's CPU
/// clock) and runnable but waiting for one (`/proc/thread-self/schedstat`),
/// over wall time, per window.
pub(crate) struct DemandMeter {
    #[cfg(target_os = "linux")]
    file: Option<std::fs::File>,
    window_start_ns: u64,
    window_start_demand_ns: u64,
}

impl DemandMeter {
    pub(crate) fn new() -> Self {
        let mut meter = DemandMeter {
            #[cfg(target_os = "linux")]
            file: std::fs::File::open("/proc/thread-self/schedstat").ok(),
            window_start_ns: now_ns(),
            window_start_demand_ns: 0,
        };
        meter.window_start_demand_ns = meter.read().unwrap_or(0);
        meter
    }

    /// Time on a CPU plus time waiting for one, so far (ns).
    fn read(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt as _;
            let file = self.file.as_ref()?;
            let mut buf = [0u8; 96];
            let n = file.read_at(&mut buf, 0).ok()?;
            let text = std::str::from_utf8(&buf[..n]).ok()?;
            let mut fields = text.split_ascii_whitespace();
            // The first field (time on a CPU) is brought up to date only at
            // scheduler ticks, up to 4 ms late for a thread that is running:
            // the thread's CPU clock is exact. The second (time runnable but
            // waiting) is current whenever the thread itself reads it.
            let _stale_on_cpu = fields.next()?;
            let waiting: u64 = fields.next()?.parse().ok()?;
            Some(crate::clock::thread_cpu_ns()? + waiting)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// The demand (thousandths) of the window that ends at `now`, once a
    /// window is complete.
    pub(crate) fn sample(&mut self, now: u64) -> Option<u64> {
        let wall = now.saturating_sub(self.window_start_ns);
        if wall < DEMAND_WINDOW_NS {
            return None;
        }
        let total = self.read()?;
        let used = total.saturating_sub(self.window_start_demand_ns);
        self.window_start_ns = now;
        self.window_start_demand_ns = total;
        Some(used * 1000 / wall)
    }
}

/// How a worker talks to the target.
enum Client {
    Http1 {
        conn: Option<H1Conn>,
        /// Request bytes with a fresh traceparent patched in.
        scratch: Vec<u8>,
    },
    Http2(Rc<H2Pool>),
}

impl Client {
    /// Opens the connection ahead of the first request; returns its timings.
    async fn preconnect(&mut self, ctx: &ThreadCtx) -> Timings {
        let mut t = Timings::default();
        match self {
            Client::Http1 { conn, .. } => {
                if let Ok(stream) = Box::pin(ctx.connector.connect(&mut t)).await {
                    *conn = Some(H1Conn::new(stream));
                }
            }
            Client::Http2(pool) => Box::pin(pool.preconnect(&mut t)).await,
        }
        t
    }

    /// Forgets a connection left in an unknown state (timeout).
    fn discard(&mut self) {
        if let Client::Http1 { conn, .. } = self {
            *conn = None;
        }
    }

    async fn send(
        &mut self,
        ctx: &ThreadCtx,
        request_idx: usize,
        trace: Option<(u128, u64)>,
        t: &mut Timings,
    ) -> Result<u16, ErrorKind> {
        let request = &ctx.shared.prepared[request_idx];
        match self {
            Client::Http1 { conn, scratch } => {
                let bytes = ctx.shared.request_bytes(request_idx, trace, scratch);
                for attempt in 0..2 {
                    let c = match conn {
                        Some(c) => c,
                        // Boxed: the TLS handshake's state is large and rarely needed,
                        // and would otherwise bloat every idle worker.
                        None => conn.insert(H1Conn::new(Box::pin(ctx.connector.connect(t)).await?)),
                    };
                    match c.exchange(bytes, request.is_head, t).await {
                        Ok(response) => {
                            if !response.reusable || !ctx.shared.keepalive {
                                *conn = None;
                            }
                            return Ok(response.status);
                        }
                        Err(ExchangeError::Stale) if attempt == 0 => {
                            *conn = None;
                            t.first_byte_ns = 0;
                            t.bytes_received = 0;
                        }
                        Err(e) => {
                            *conn = None;
                            return Err(match e {
                                ExchangeError::Failed(kind) => kind,
                                ExchangeError::Stale => ErrorKind::Io,
                            });
                        }
                    }
                }
                unreachable!("the loop returns on its second attempt")
            }
            Client::Http2(pool) => {
                let mut tp = [0u8; TRACEPARENT_LEN];
                let header = trace.map(|(trace_id, span_id)| {
                    write_traceparent(&mut tp, trace_id, span_id);
                    std::str::from_utf8(&tp).expect("hex is ASCII")
                });
                Box::pin(pool.send(request, header, t)).await
            }
        }
    }
}

pub(crate) fn classify(status: u16) -> Result<(), ErrorKind> {
    match status {
        200..=399 => Ok(()),
        400..=499 => Err(ErrorKind::Status4xx),
        500..=599 => Err(ErrorKind::Status5xx),
        _ => Err(ErrorKind::Protocol),
    }
}

impl ThreadCtx {
    fn pick_request(&self) -> usize {
        self.shared.pick_request(&mut self.rng.borrow_mut())
    }

    fn trace_ids(&self) -> Option<(u128, u64)> {
        self.shared.trace_ids(&mut self.rng.borrow_mut())
    }
}

/// The one worker loop: claim a slot, wait for its intended time, send, record.
/// `lane` is the worker's spawn order (a closed-model ramp starts lanes in turn).
async fn worker(ctx: Rc<ThreadCtx>, lane: usize) {
    let shared = &ctx.shared;
    let mut client = match &ctx.h2 {
        Some(pool) => Client::Http2(pool.clone()),
        None => Client::Http1 {
            conn: None,
            scratch: Vec::new(),
        },
    };
    if shared.keepalive && shared.schedule.lane_starts_active(lane) {
        // Bounded by the request timeout: a server that accepts connections but
        // never completes the TLS handshake would otherwise hold this worker,
        // and so the whole run, forever (no request deadline covers it yet).
        let t = tokio::time::timeout(shared.timeout, client.preconnect(&ctx))
            .await
            .unwrap_or_default();
        if t.connect_us.is_some() {
            let warmup = shared.preconnect_is_warmup(now_ns());
            ctx.mine
                .recorder
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .phase(warmup)
                .record_connection(&t);
        }
    }
    let mut gate = shared.gate.subscribe();
    if !*gate.borrow() {
        shared.ready.fetch_add(1, Ordering::AcqRel);
        let _ = gate.wait_for(|open| *open).await;
    }
    let deadline_slot = ctx.watchdog.slot();
    let open = matches!(shared.schedule.model(), LoadModel::Open { .. });
    let mut first = true;
    loop {
        let now = now_ns();
        let slot = shared.schedule.next_lane(lane, now);
        if first {
            first = false;
            shared.starting.fetch_sub(1, Ordering::AcqRel);
        }
        let Some(slot) = slot else { break };
        let mut sent_ns = now;
        if slot.intended_ns > now {
            if !ctx.timer.sleep_until(slot.intended_ns).await {
                break;
            }
            sent_ns = now_ns();
        }
        let request_idx = ctx.pick_request();
        let trace = ctx.trace_ids();
        let mut t = Timings {
            intended_ns: slot.intended_ns,
            sent_ns,
            ..Timings::default()
        };
        ctx.mine.in_flight.fetch_add(1, Ordering::Relaxed);
        let deadline = t.sent_ns + shared.timeout.as_nanos() as u64;
        let outcome = deadline_slot
            .run(deadline, client.send(&ctx, request_idx, trace, &mut t))
            .await;
        ctx.mine.in_flight.fetch_sub(1, Ordering::Relaxed);
        let result = match outcome {
            Some(Ok(status)) => classify(status),
            Some(Err(kind)) => Err(kind),
            None => {
                client.discard();
                Err(ErrorKind::Timeout)
            }
        };
        ctx.mine.finished(
            open,
            slot.warmup,
            request_idx,
            &mut t,
            result,
            trace,
            now_ns(),
        );
    }
    drop(client);
    ctx.shared.worker_exited();
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Steal time of CPU `cpu` so far, in USER_HZ ticks (`/proc/stat`).
    fn steal_ticks(cpu: usize) -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&format!("cpu{cpu}")))?;
        line.split_whitespace().nth(8)?.parse().ok()
    }

    /// A thread that computes without pause wants a CPU all the time; one that
    /// sleeps wants none. (Waiting for a CPU counts as wanting one, so a busy
    /// thread on a crowded machine reads as saturated too, as it should.)
    /// On a virtual machine the host may also take the CPU away ("steal"),
    /// which neither the thread's CPU clock nor its run-queue wait shows: the
    /// thread is pinned to one CPU and the bound allows for that CPU's steal
    /// over the measurement (read from `/proc/stat`, hence 300 ms windows).
    #[test]
    fn demand_tells_a_busy_thread_from_an_idle_one() {
        std::thread::spawn(|| {
            // SAFETY: a zeroed cpu_set_t with one CPU set, for this thread only.
            let cpu = unsafe {
                let cpu = libc::sched_getcpu().max(0) as usize;
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                cpu
            };
            let window_ns = 30 * DEMAND_WINDOW_NS;
            let steal_before = steal_ticks(cpu);
            let mut meter = DemandMeter::new();
            let start = now_ns();
            let mut x = 0u64;
            while now_ns() - start < window_ns {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let busy = meter.sample(now_ns()).expect("a window is complete");
            let stolen = match (steal_before, steal_ticks(cpu)) {
                // Ticks are 10 ms (USER_HZ 100); one more for rounding.
                (Some(a), Some(b)) => ((b - a + 1) * 10_000_000 * 1000 / window_ns).min(1000),
                _ => 0,
            };
            let bound = (SATURATED_PERMILLE * (1000 - stolen) / 1000).min(SATURATED_PERMILLE);
            assert!(
                busy >= bound,
                "busy thread: {busy}‰ (CPU {cpu} stolen {stolen}‰ of the time)"
            );
            std::thread::sleep(Duration::from_nanos(window_ns));
            let idle = meter.sample(now_ns()).expect("a window is complete");
            assert!(idle < 300, "sleeping thread: {idle}‰");
        })
        .join()
        .unwrap();
    }
}
