//! `floor ADDR CONNECTIONS SECONDS MODE [BATCH [MIN_WAIT_US|PERIOD_US]]`
//! (MODE: epoll, uring, uts, ms, msts, poll, pollts): keeps CONNECTIONS
//! keep-alive connections busy with `GET /` for SECONDS and prints
//! "N requests, R req/s". Assumes each response arrives in one read (true of
//! nginx's 12-byte test page on loopback): it is a measuring stick for the
//! syscall and kernel cost per request, not a load generator.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: floor ADDR CONNECTIONS SECONDS epoll|uring|uts|ms|msts|poll|pollts [BATCH [MIN_WAIT_US|PERIOD_US]]");
        std::process::exit(2);
    }
    let addr = &args[1];
    let conns: usize = args[2].parse().expect("CONNECTIONS");
    let secs: u64 = args[3].parse().expect("SECONDS");
    let batch: usize = args.get(5).map_or(1, |b| b.parse().expect("BATCH"));
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s
        })
        .collect();
    let count = match args[4].as_str() {
        "epoll" => epoll_loop(&streams, &req, secs),
        "uring" => uring_loop(&streams, &req, secs, batch, false),
        "uts" => uring_loop(&streams, &req, secs, batch, true),
        "ms" | "msts" => multishot_loop(
            &streams,
            &req,
            secs,
            batch,
            args.get(6).map_or(0, |m| m.parse().expect("MIN_WAIT_US")),
            args[4] == "msts",
        ),
        "poll" | "pollts" => polled_loop(
            &streams,
            &req,
            secs,
            args.get(6).map_or(100, |m| m.parse().expect("PERIOD_US")),
            args[4] == "pollts",
        ),
        other => panic!("unknown mode {other}"),
    };
    println!("{count} requests, {:.0} req/s", count as f64 / secs as f64);
}

/// Level-triggered epoll: one `recv` and one `send` per request, one
/// `epoll_wait` per batch of ready connections (as chokepoint's engine does).
fn epoll_loop(streams: &[TcpStream], req: &[u8], secs: u64) -> u64 {
    // SAFETY: plain syscalls on descriptors owned by `streams`, buffers owned here.
    unsafe {
        let ep = libc::epoll_create1(0);
        for (i, s) in streams.iter().enumerate() {
            s.set_nonblocking(true).expect("nonblocking");
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev);
            libc::send(s.as_raw_fd(), req.as_ptr().cast(), req.len(), 0);
        }
        let end = Instant::now() + Duration::from_secs(secs);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buf = [0u8; 4096];
        let mut count = 0u64;
        loop {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), 256, 100);
            let stop = Instant::now() >= end;
            for ev in &events[..n.max(0) as usize] {
                let fd = streams[ev.u64 as usize].as_raw_fd();
                let r = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                assert!(r > 0, "recv {r}");
                count += 1;
                if !stop {
                    libc::send(fd, req.as_ptr().cast(), req.len(), 0);
                }
            }
            if stop {
                return count;
            }
        }
    }
}

/// io_uring with deferred task work: each request is a send linked to a
/// recv; one `io_uring_enter` submits every new pair and waits for `batch`
/// completions (or 200 us).
fn uring_loop(streams: &[TcpStream], req: &[u8], secs: u64, batch: usize, stamps: bool) -> u64 {
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(1024)
        .expect("io_uring");
    // Bound whole: the msghdrs point into the other fields.
    let mut mb = msg_bufs(streams.len(), 4096);
    if stamps {
        stamp_receives(streams);
    }
    let hdr_ptrs: Vec<*mut libc::msghdr> = mb.hdrs.iter_mut().map(|h| h as *mut libc::msghdr).collect();
    let push = |ring: &mut IoUring, i: usize, buf: &mut Vec<u8>| {
        let fd = types::Fd(streams[i].as_raw_fd());
        let send = opcode::Send::new(fd, req.as_ptr(), req.len() as u32)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data((i * 2) as u64);
        let recv = if stamps {
            // SAFETY: the msghdr lives as long as the ring's use of it.
            unsafe { (*{ hdr_ptrs[i] }).msg_controllen = 64 };
            opcode::RecvMsg::new(fd, hdr_ptrs[i]).build()
        } else {
            opcode::Recv::new(fd, buf.as_mut_ptr(), buf.len() as u32).build()
        }
        .user_data((i * 2 + 1) as u64);
        // SAFETY: the request and the buffers outlive the ring's use of them.
        unsafe {
            let mut sq = ring.submission();
            sq.push(&send).expect("room in the queue");
            sq.push(&recv).expect("room in the queue");
        }
    };
    for (i, buf) in mb.bufs.iter_mut().enumerate() {
        push(&mut ring, i, buf);
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut count, mut inflight, mut done) = (0u64, streams.len(), false);
    let ts = types::Timespec::new().nsec(200_000);
    while inflight > 0 {
        let want = if done { 1 } else { batch.min(inflight) };
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        let mut ready = Vec::new();
        for cqe in ring.completion() {
            let ud = cqe.user_data() as usize;
            assert!(cqe.result() > 0 || ud % 2 == 0 && cqe.result() == 0, "cqe {}", cqe.result());
            if ud % 2 == 1 {
                count += 1;
                ready.push(ud / 2);
            }
        }
        done = done || Instant::now() >= end;
        for i in ready {
            if done {
                inflight -= 1;
            } else {
                push(&mut ring, i, &mut mb.bufs[i]);
            }
        }
    }
    count
}

/// Multishot receives from a provided-buffer ring (one armed receive per
/// connection for the whole run) and one send per request; with `stamps`,
/// multishot `recvmsg` with `SO_TIMESTAMPNS` (the kernel's receive time of each
/// response). One `io_uring_enter` submits the sends and waits for `batch`
/// completions, or with `min_wait_us` > 0 for `batch` within that many
/// microseconds and then for any.
fn multishot_loop(
    streams: &[TcpStream],
    req: &[u8],
    secs: u64,
    batch: usize,
    min_wait_us: u32,
    stamps: bool,
) -> u64 {
    const ENTRIES: u16 = 1024;
    const BUF: usize = 2048;
    let mut ring = big_cq_ring();
    let layout = std::alloc::Layout::from_size_align(ENTRIES as usize * 16, 4096).unwrap();
    // SAFETY: a non-zero layout; the memory lives until the process exits.
    let ring_mem = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
    let mut bufs = vec![0u8; ENTRIES as usize * BUF];
    // SAFETY: page-aligned ring of ENTRIES entries, registered once.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(ring_mem as u64, ENTRIES, 0, 0)
            .expect("buf ring");
    }
    let mut tail: u16 = 0;
    let give = |tail: &mut u16, bid: u16, bufs: &mut Vec<u8>| {
        // SAFETY: the entry index is masked into the ring; buffers outlive the ring.
        unsafe {
            let e = &mut *ring_mem.add((*tail & (ENTRIES - 1)) as usize);
            e.set_addr(bufs.as_mut_ptr().add(bid as usize * BUF) as u64);
            e.set_len(BUF as u32);
            e.set_bid(bid);
        }
        *tail = tail.wrapping_add(1);
    };
    for bid in 0..ENTRIES {
        give(&mut tail, bid, &mut bufs);
    }
    let publish = |tail: u16| {
        // SAFETY: the tail field of the registered ring.
        unsafe {
            let t = types::BufRingEntry::tail(ring_mem) as *const std::sync::atomic::AtomicU16;
            (*t).store(tail, std::sync::atomic::Ordering::Release);
        }
    };
    publish(tail);
    let mut msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
    msghdr.msg_controllen = 32;
    if stamps {
        stamp_receives(streams);
    }
    for (i, s) in streams.iter().enumerate() {
        let fd = types::Fd(s.as_raw_fd());
        let recv = if stamps {
            opcode::RecvMsgMulti::new(fd, &msghdr, 0).build()
        } else {
            opcode::RecvMulti::new(fd, 0).build()
        };
        let send = opcode::Send::new(fd, req.as_ptr(), req.len() as u32)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(u64::MAX);
        // SAFETY: msghdr, the request and the buffers outlive the ring's use of them.
        unsafe {
            let mut sq = ring.submission();
            sq.push(&recv.user_data(i as u64)).expect("room");
            sq.push(&send).expect("room");
        }
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut count, mut done) = (0u64, false);
    let mut lag_sum = 0u64;
    let mut stamped = 0u64;
    let ts = types::Timespec::new().nsec(200_000);
    let mut ready = Vec::new();
    let mut inflight = streams.len();
    while inflight > 0 {
        let want = if done { 1 } else { batch.min(inflight) };
        let mut args = types::SubmitArgs::new().timespec(&ts);
        if min_wait_us > 0 {
            args = args.min_wait_usec(min_wait_us);
        }
        match ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        let now = realtime_ns();
        for cqe in ring.completion() {
            let i = cqe.user_data() as usize;
            assert!(cqe.result() > 0, "cqe {} for {i}", cqe.result());
            assert!(io_uring::cqueue::more(cqe.flags()), "multishot ended");
            let bid = io_uring::cqueue::buffer_select(cqe.flags()).expect("a buffer");
            if stamps {
                let data = &bufs[bid as usize * BUF..][..cqe.result() as usize];
                let out = types::RecvMsgOut::parse(data, &msghdr).expect("recvmsg out");
                let c = out.control_data();
                // The kernel turns stamping on a moment after the first socket asks.
                if c.len() >= 32 {
                // struct cmsghdr { len: usize, level: i32, type: i32 } then the timespec.
                let (sec, nsec) = (
                    i64::from_ne_bytes(c[16..24].try_into().unwrap()),
                    i64::from_ne_bytes(c[24..32].try_into().unwrap()),
                );
                let stamp = sec as u64 * 1_000_000_000 + nsec as u64;
                lag_sum += now.saturating_sub(stamp);
                stamped += 1;
                }
            }
            give(&mut tail, bid, &mut bufs);
            count += 1;
            ready.push(i);
        }
        publish(tail);
        done = done || Instant::now() >= end;
        for i in ready.drain(..) {
            if done {
                inflight -= 1;
            } else {
                quiet_send(&mut ring, &streams[i], req);
            }
        }
    }
    if stamps {
        eprintln!("mean delay from kernel receive to processing: {:.1} us", lag_sum as f64 / stamped.max(1) as f64 / 1e3);
        eprintln!("{stamped} of {count} responses stamped");
    }
    count
}

/// No receive armed between polls (so the server's send wakes no one): every
/// PERIOD_US the loop sends the requests for the responses it has, sleeps,
/// then tries a non-blocking `recvmsg` (`MSG_DONTWAIT`: no poll armed when
/// empty) on every connection with a request out, all in one submit.
fn polled_loop(streams: &[TcpStream], req: &[u8], secs: u64, period_us: u32, stamps: bool) -> u64 {
    let mut ring = big_cq_ring();
    let n = streams.len();
    // Bound whole: the msghdrs point into the other fields.
    let mut mb = msg_bufs(n, 2048);
    if stamps {
        stamp_receives(streams);
    }
    let mut ready: Vec<usize> = (0..n).collect();
    let mut out = vec![false; n];
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut count, mut done, mut empty) = (0u64, false, 0u64);
    let ts = types::Timespec::new().nsec(period_us * 1000);
    loop {
        for i in ready.drain(..) {
            if !done {
                quiet_send(&mut ring, &streams[i], req);
                out[i] = true;
            }
        }
        if !out.iter().any(|&o| o) {
            break;
        }
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1 << 20, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        for (i, o) in out.iter().enumerate() {
            if *o {
                mb.hdrs[i].msg_controllen = 64;
                let e = opcode::RecvMsg::new(types::Fd(streams[i].as_raw_fd()), &mut mb.hdrs[i])
                    .flags(libc::MSG_DONTWAIT as u32)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the msghdr and buffers outlive the ring's use of them.
                unsafe { ring.submission().push(&e).expect("room") };
            }
        }
        ring.submit().expect("submit");
        for cqe in ring.completion() {
            let i = cqe.user_data() as usize;
            if i == u64::MAX as usize {
                panic!("send failed {}", cqe.result());
            }
            if cqe.result() == -libc::EAGAIN {
                empty += 1;
                continue;
            }
            assert!(cqe.result() > 0, "recv {} for {i}", cqe.result());
            count += 1;
            out[i] = false;
            ready.push(i);
        }
        done = done || Instant::now() >= end;
    }
    eprintln!("{empty} empty receives ({:.2} per response)", empty as f64 / count.max(1) as f64);
    count
}

/// Per connection: a buffer, an iovec over it, a control buffer (room for
/// the receive stamp) and a msghdr naming both, for `recvmsg`. The msghdrs
/// point into the other vectors' heap memory, which moving them keeps.
struct MsgBufs {
    bufs: Vec<Vec<u8>>,
    hdrs: Vec<libc::msghdr>,
    _iovs: Vec<libc::iovec>,
    _ctrl: Vec<[u64; 8]>,
}

fn msg_bufs(n: usize, size: usize) -> MsgBufs {
    let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; size]).collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
        .collect();
    let mut ctrl = vec![[0u64; 8]; n];
    let hdrs = (0..n)
        .map(|i| {
            // SAFETY: an all-zero msghdr is valid.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = 64;
            h
        })
        .collect();
    MsgBufs { bufs, hdrs, _iovs: iovs, _ctrl: ctrl }
}

/// A ring with deferred task work and room for 4096 completions.
fn big_cq_ring() -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(4096)
        .build(1024)
        .expect("io_uring")
}

/// Queues a send that posts a completion only if it fails.
fn quiet_send(ring: &mut IoUring, stream: &TcpStream, req: &[u8]) {
    let send = opcode::Send::new(types::Fd(stream.as_raw_fd()), req.as_ptr(), req.len() as u32)
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(u64::MAX);
    // SAFETY: the request outlives the ring's use of it.
    unsafe { ring.submission().push(&send).expect("room") };
}

/// `SO_TIMESTAMPNS` on every socket: the kernel stamps each response.
fn stamp_receives(streams: &[TcpStream]) {
    let on: libc::c_int = 1;
    for s in streams {
        // SAFETY: setsockopt on an owned socket.
        unsafe {
            libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, (&on as *const libc::c_int).cast(), 4);
        }
    }
}

fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
