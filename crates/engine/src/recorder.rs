//! What the engine measures: mergeable per-interval statistics.
//!
//! Each runtime thread records into its own [`Stats`] behind an uncontended
//! mutex; once a second the coordinator swaps it for an empty one and merges
//! the threads' intervals. Everything is histograms and counters: memory does
//! not grow with run length.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chokepoint_stats::{new_histogram, Histogram};

/// Why a request failed. Counted, never fatal to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection could not be established.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The TLS handshake failed (including certificate verification).
    Tls,
    /// The connection broke while sending or receiving.
    Io,
    /// The response was not valid HTTP.
    Protocol,
    /// A 4xx status.
    Status4xx,
    /// A 5xx status.
    Status5xx,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Tls,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Status4xx,
        ErrorKind::Status5xx,
    ];

    /// The stable name used in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::Status5xx => "status_5xx",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// A response arrived (the error is its status code), so its latency is a real sample.
    pub fn has_response(self) -> bool {
        matches!(self, ErrorKind::Status4xx | ErrorKind::Status5xx)
    }
}

/// Error counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts(pub [u64; 7]);

impl ErrorCounts {
    /// Counts one error.
    pub fn add(&mut self, kind: ErrorKind) {
        self.0[kind.index()] += 1;
    }
    /// Count of one kind.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind.index()]
    }
    /// All errors.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    /// Non-zero kinds with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .map(|&k| (k, self.get(k)))
            .filter(|&(_, n)| n > 0)
    }
    fn merge(&mut self, other: &ErrorCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// Counts and latency of one named request.
#[derive(Debug, Clone)]
pub struct RequestStats {
    /// Completed requests (ok + errors).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Latency from intended send (µs).
    pub latency: Histogram,
}

impl RequestStats {
    fn new() -> Self {
        RequestStats {
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            latency: new_histogram(),
        }
    }
    fn merge(&mut self, other: &RequestStats) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms merge");
    }
    fn reset(&mut self) {
        self.requests = 0;
        self.ok = 0;
        self.errors = ErrorCounts::default();
        self.latency.reset();
    }
}

/// The slowest requests' trace ids, bounded.
#[derive(Debug, Clone, Default)]
pub struct SlowTraces {
    heap: BinaryHeap<Reverse<(u64, u128)>>,
}

/// How many slow trace ids are kept.
pub const SLOW_TRACES_KEPT: usize = 100;

impl SlowTraces {
    /// Offers one request's latency (µs) and trace id.
    pub fn offer(&mut self, latency_us: u64, trace_id: u128) {
        if self.heap.len() < SLOW_TRACES_KEPT {
            self.heap.push(Reverse((latency_us, trace_id)));
        } else if self
            .heap
            .peek()
            .is_some_and(|Reverse((min, _))| latency_us > *min)
        {
            self.heap.pop();
            self.heap.push(Reverse((latency_us, trace_id)));
        }
    }
    fn merge(&mut self, other: &SlowTraces) {
        for Reverse((lat, id)) in other.heap.iter() {
            self.offer(*lat, *id);
        }
    }
    /// The kept traces, slowest first: (latency µs, trace id).
    pub fn slowest_first(&self) -> Vec<(u64, u128)> {
        let mut v: Vec<_> = self.heap.iter().map(|Reverse(x)| *x).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}

/// Latency bands of the trace sample: half-octaves of microseconds.
pub const TRACE_SAMPLE_BANDS: usize = 64;
/// Trace ids kept per band.
pub const TRACE_SAMPLE_PER_BAND: usize = 64;

/// A bounded, mergeable sample of (latency, trace id) across the whole
/// latency range: per half-octave latency band, the [`TRACE_SAMPLE_PER_BAND`]
/// requests whose trace id hashes lowest (bottom-k sampling). The union of two
/// samples cut back to the lowest hashes is exactly the sample of the union,
/// so per-thread and per-interval samples merge without bias. About 100 KiB
/// when full, whatever the run length; empty without trace propagation.
#[derive(Debug, Clone, Default)]
pub struct TraceSample {
    /// Per band, a max-heap on the hash: the top is the first to go.
    bands: Vec<BinaryHeap<(u64, u64, u128)>>,
}

impl TraceSample {
    fn band(latency_us: u64) -> usize {
        if latency_us < 2 {
            return 0;
        }
        let octave = 63 - latency_us.leading_zeros() as usize;
        let upper_half = (latency_us >> (octave - 1)) & 1;
        (2 * octave + upper_half as usize).min(TRACE_SAMPLE_BANDS - 1)
    }

    fn hash(trace_id: u128) -> u64 {
        // SplitMix64 finalizer over both halves: trace ids need not be random.
        let mut z = (trace_id as u64) ^ ((trace_id >> 64) as u64).rotate_left(32);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Offers one request's latency (µs) and trace id.
    pub fn offer(&mut self, latency_us: u64, trace_id: u128) {
        self.insert((Self::hash(trace_id), latency_us, trace_id));
    }

    fn insert(&mut self, entry: (u64, u64, u128)) {
        if self.bands.is_empty() {
            self.bands = vec![BinaryHeap::new(); TRACE_SAMPLE_BANDS];
        }
        let heap = &mut self.bands[Self::band(entry.1)];
        if heap.len() < TRACE_SAMPLE_PER_BAND {
            heap.push(entry);
        } else if heap.peek().is_some_and(|top| entry.0 < top.0) {
            heap.pop();
            heap.push(entry);
        }
    }

    fn merge(&mut self, other: &TraceSample) {
        for heap in &other.bands {
            for &entry in heap.iter() {
                self.insert(entry);
            }
        }
    }

    /// Every sampled request: (latency µs, trace id).
    pub fn entries(&self) -> impl Iterator<Item = (u64, u128)> + '_ {
        self.bands
            .iter()
            .flatten()
            .map(|&(_, latency, id)| (latency, id))
    }
}

/// Everything measured over some period (an interval, a warmup, a whole run).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Completed requests (ok + errors).
    pub requests: u64,
    /// Successful requests (2xx and 3xx).
    pub ok: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Response bytes received (headers and body).
    pub bytes_received: u64,
    /// Request bytes sent.
    pub bytes_sent: u64,
    /// Latency from the intended send time (µs): what users experience.
    pub latency: Histogram,
    /// Service time from the actual send (µs), including connection set-up when one was needed.
    pub service: Histogram,
    /// TCP connect (µs), one sample per new connection.
    pub connect: Histogram,
    /// TLS handshake (µs), one sample per new TLS connection.
    pub tls: Histogram,
    /// Request written to first response byte (µs).
    pub ttfb: Histogram,
    /// First response byte to end of body (µs).
    pub receive: Histogram,
    /// Actual send minus intended send (µs): generator lag plus waiting for a free connection.
    pub schedule_lag: Histogram,
    /// Per named request, indexed like the run's request list. With a single
    /// request its `latency` stays empty: use [`Stats::request_latency`].
    pub by_request: Vec<RequestStats>,
    /// Slowest requests' trace ids (with trace propagation).
    pub slow_traces: SlowTraces,
    /// A sample of trace ids across all latencies (with trace propagation).
    pub trace_sample: TraceSample,
    /// New connections opened.
    pub connections_opened: u64,
}

impl Stats {
    /// Empty statistics for a run with `n_requests` named requests.
    pub fn new(n_requests: usize) -> Self {
        Stats {
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            bytes_received: 0,
            bytes_sent: 0,
            latency: new_histogram(),
            service: new_histogram(),
            connect: new_histogram(),
            tls: new_histogram(),
            ttfb: new_histogram(),
            receive: new_histogram(),
            schedule_lag: new_histogram(),
            by_request: (0..n_requests).map(|_| RequestStats::new()).collect(),
            slow_traces: SlowTraces::default(),
            trace_sample: TraceSample::default(),
            connections_opened: 0,
        }
    }

    /// Latency of the named request `idx` (the run's latency when there is only one).
    pub fn request_latency(&self, idx: usize) -> &Histogram {
        if self.by_request.len() == 1 {
            &self.latency
        } else {
            &self.by_request[idx].latency
        }
    }

    /// Adds `other` into `self` (histograms add; percentiles stay exact).
    pub fn merge(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        for (a, b) in [
            (&mut self.latency, &other.latency),
            (&mut self.service, &other.service),
            (&mut self.connect, &other.connect),
            (&mut self.tls, &other.tls),
            (&mut self.ttfb, &other.ttfb),
            (&mut self.receive, &other.receive),
            (&mut self.schedule_lag, &other.schedule_lag),
        ] {
            a.add(b).expect("auto-resizing histograms merge");
        }
        for (a, b) in self.by_request.iter_mut().zip(&other.by_request) {
            a.merge(b);
        }
        self.slow_traces.merge(&other.slow_traces);
        self.trace_sample.merge(&other.trace_sample);
        self.connections_opened += other.connections_opened;
    }

    /// Empties every counter and histogram, keeping allocations.
    pub fn reset(&mut self) {
        self.requests = 0;
        self.ok = 0;
        self.errors = ErrorCounts::default();
        self.bytes_received = 0;
        self.bytes_sent = 0;
        for h in [
            &mut self.latency,
            &mut self.service,
            &mut self.connect,
            &mut self.tls,
            &mut self.ttfb,
            &mut self.receive,
            &mut self.schedule_lag,
        ] {
            h.reset();
        }
        for r in &mut self.by_request {
            r.reset();
        }
        self.slow_traces = SlowTraces::default();
        self.trace_sample = TraceSample::default();
        self.connections_opened = 0;
    }
}

/// The timings of one finished request, engine clock (ns), and its byte counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// When the schedule intended the request to be sent.
    pub intended_ns: u64,
    /// When the attempt started (connection set-up included).
    pub sent_ns: u64,
    /// First response byte.
    pub first_byte_ns: u64,
    /// End of the response body.
    pub end_ns: u64,
    /// When the request's first byte was written (after any connect and handshake).
    pub written_ns: u64,
    /// TCP connect time, when this request opened a connection.
    pub connect_us: Option<u64>,
    /// TLS handshake time, when this request opened a TLS connection.
    pub tls_us: Option<u64>,
    /// Response bytes (head and body).
    pub bytes_received: u64,
    /// Request bytes.
    pub bytes_sent: u64,
}

impl Stats {
    /// Records a connection opened ahead of any request (pre-connect).
    pub fn record_connection(&mut self, t: &Timings) {
        if let Some(c) = t.connect_us {
            self.connect.saturating_record(c);
            self.connections_opened += 1;
        }
        if let Some(c) = t.tls_us {
            self.tls.saturating_record(c);
        }
    }

    /// Records one finished request: `result` is `Ok(())` or its error kind;
    /// `trace_id` competes for a place among the slowest traces.
    #[inline]
    pub fn record(
        &mut self,
        request_idx: usize,
        t: &Timings,
        result: Result<(), ErrorKind>,
        trace_id: Option<u128>,
    ) {
        use crate::clock::micros_between as us;
        self.requests += 1;
        self.bytes_received += t.bytes_received;
        self.bytes_sent += t.bytes_sent;
        self.schedule_lag
            .saturating_record(us(t.intended_ns, t.sent_ns));
        self.record_connection(t);
        // With a single kind of request its latency is the run's: not recorded twice.
        let multiple_requests = self.by_request.len() > 1;
        let per_request = &mut self.by_request[request_idx];
        per_request.requests += 1;
        let responded = match result {
            Ok(()) => {
                self.ok += 1;
                per_request.ok += 1;
                true
            }
            Err(kind) => {
                self.errors.add(kind);
                per_request.errors.add(kind);
                kind.has_response()
            }
        };
        if responded {
            let latency = us(t.intended_ns, t.end_ns);
            self.latency.saturating_record(latency);
            if multiple_requests {
                per_request.latency.saturating_record(latency);
            }
            self.service.saturating_record(us(t.sent_ns, t.end_ns));
            self.ttfb
                .saturating_record(us(t.written_ns, t.first_byte_ns));
            self.receive
                .saturating_record(us(t.first_byte_ns, t.end_ns));
            if let Some(id) = trace_id {
                self.slow_traces.offer(latency, id);
                self.trace_sample.offer(latency, id);
            }
        }
    }
}

/// The thread-local sink of measurements: measured and warmup statistics.
pub(crate) struct Recorder {
    pub measured: Stats,
    pub warmup: Stats,
}

impl Recorder {
    pub(crate) fn new(n_requests: usize) -> Self {
        Recorder {
            measured: Stats::new(n_requests),
            warmup: Stats::new(n_requests),
        }
    }

    /// The statistics a request (or connection) of this phase goes to.
    pub(crate) fn phase(&mut self, warmup: bool) -> &mut Stats {
        if warmup {
            &mut self.warmup
        } else {
            &mut self.measured
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_samples_are_bounded_and_merge_like_the_union() {
        let mut whole = TraceSample::default();
        let mut parts = [TraceSample::default(), TraceSample::default()];
        for i in 0..100_000u64 {
            let latency_us = 100 + (i * 7919) % 20_000;
            let id = u128::from(i) * 0x9e37_79b9_7f4a_7c15 + 1;
            whole.offer(latency_us, id);
            parts[(i % 2) as usize].offer(latency_us, id);
        }
        let mut merged = TraceSample::default();
        merged.merge(&parts[0]);
        merged.merge(&parts[1]);
        let mut a: Vec<_> = whole.entries().collect();
        let mut b: Vec<_> = merged.entries().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "bottom-k samples merge exactly");
        assert!(a.len() <= TRACE_SAMPLE_BANDS * TRACE_SAMPLE_PER_BAND);
        // Every latency band that saw requests is represented.
        let bands: std::collections::BTreeSet<usize> =
            a.iter().map(|&(l, _)| TraceSample::band(l)).collect();
        assert_eq!(
            bands.len(),
            (TraceSample::band(100)..=TraceSample::band(20_099)).count()
        );
        assert_eq!(TraceSample::band(1), 0);
        assert_eq!(TraceSample::band(1024), 20);
        assert_eq!(TraceSample::band(1536), 21);
    }

    #[test]
    fn slow_traces_keep_the_slowest_hundred() {
        let mut s = SlowTraces::default();
        for i in 0..1_000u64 {
            s.offer(i, i as u128);
        }
        let kept = s.slowest_first();
        assert_eq!(kept.len(), SLOW_TRACES_KEPT);
        assert_eq!(kept[0], (999, 999));
        assert_eq!(kept[99], (900, 900));
    }

    #[test]
    fn recording_splits_latency_from_service_time_and_merges_exactly() {
        let mut r = Recorder::new(1);
        let t = Timings {
            intended_ns: 0,
            sent_ns: 5_000_000,
            written_ns: 5_000_000,
            first_byte_ns: 6_000_000,
            end_ns: 7_000_000,
            ..Timings::default()
        };
        r.phase(false).record(0, &t, Ok(()), None);
        r.phase(false).record(0, &t, Err(ErrorKind::Timeout), None);
        r.phase(true).record(0, &t, Ok(()), None);
        let m = &r.measured;
        assert_eq!(
            (m.requests, m.ok, m.errors.get(ErrorKind::Timeout)),
            (2, 1, 1)
        );
        assert_eq!(
            m.latency.len(),
            1,
            "transport errors have no latency sample"
        );
        assert!((6_990..=7_010).contains(&m.latency.max()));
        assert!((1_990..=2_010).contains(&m.service.max()));
        let mut total = Stats::new(1);
        total.merge(m);
        total.merge(m);
        assert_eq!((total.requests, total.latency.len()), (4, 2));
        assert_eq!(r.warmup.requests, 1);
    }
}
