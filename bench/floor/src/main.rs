//! `floor ADDR CONNECTIONS SECONDS epoll|uring [BATCH]`: keeps CONNECTIONS
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
        eprintln!("usage: floor ADDR CONNECTIONS SECONDS epoll|uring [BATCH]");
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
        "uring" => uring_loop(&streams, &req, secs, batch),
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
fn uring_loop(streams: &[TcpStream], req: &[u8], secs: u64, batch: usize) -> u64 {
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(1024)
        .expect("io_uring");
    let mut bufs: Vec<Vec<u8>> = (0..streams.len()).map(|_| vec![0u8; 4096]).collect();
    let push = |ring: &mut IoUring, i: usize, buf: &mut Vec<u8>| {
        let fd = types::Fd(streams[i].as_raw_fd());
        let send = opcode::Send::new(fd, req.as_ptr(), req.len() as u32)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data((i * 2) as u64);
        let recv = opcode::Recv::new(fd, buf.as_mut_ptr(), buf.len() as u32)
            .build()
            .user_data((i * 2 + 1) as u64);
        // SAFETY: the request and the buffers outlive the ring's use of them.
        unsafe {
            let mut sq = ring.submission();
            sq.push(&send).expect("room in the queue");
            sq.push(&recv).expect("room in the queue");
        }
    };
    for (i, buf) in bufs.iter_mut().enumerate() {
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
                push(&mut ring, i, &mut bufs[i]);
            }
        }
    }
    count
}
