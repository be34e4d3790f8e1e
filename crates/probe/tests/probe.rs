//! The probe on real processes: the test process itself (CPU burned, memory
//! touched, files opened, threads started between two readings) and a child
//! process (a busy loop, then gone), plus bad targets and cgroups.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chokepoint_probe::{Probe, ProbeError, ProbeTarget, Rates, Sampler};

fn burn(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
    x
}

#[cfg(target_os = "linux")]
#[test]
fn the_test_process_itself() {
    let target = ProbeTarget {
        pid: Some(std::process::id()),
        cgroup: None,
    };
    let mut sampler = Sampler::new(&target).unwrap();
    let before = sampler.snapshot();
    let p0 = before.process.expect("own process readable");

    burn(Duration::from_millis(400));
    let mut memory = vec![0u8; 64 << 20];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    let files: Vec<std::fs::File> = (0..20)
        .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
        .collect();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(30));
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));

    let after = sampler.snapshot();
    let p1 = after.process.unwrap();
    let rates = Rates::between(&before, &after);
    let cpu_seconds = (p1.user_s + p1.system_s) - (p0.user_s + p0.system_s);
    // 0.4 s of busy loop; a busy shared machine may give us less of a CPU.
    assert!(cpu_seconds >= 0.1, "{cpu_seconds} CPU s: {p0:?} → {p1:?}");
    assert!(rates.cpu().unwrap() > 0.0);
    assert!(
        p1.rss_bytes >= p0.rss_bytes + (48 << 20),
        "RSS {} → {}",
        p0.rss_bytes,
        p1.rss_bytes
    );
    assert!(p1.fds.unwrap() >= p0.fds.unwrap() + 20, "{p0:?} → {p1:?}");
    // Concurrently running tests may add or end threads: ours are at least there.
    assert!(p1.threads >= 4, "{p1:?}");
    assert!(p1.fd_limit.unwrap() > 20);
    assert!(p1.run_delay_s.is_some(), "schedstat: {p1:?}");
    assert!(p1.voluntary_ctxt.unwrap() > 0, "{p1:?}");
    assert!(after.pressure.cpu_some_s.is_some() || !sampler.notes().is_empty());

    drop(tx);
    for t in threads {
        t.join().unwrap();
    }
    drop(files);
    std::hint::black_box(&memory);
}

#[cfg(target_os = "linux")]
#[test]
fn a_child_process_busy_then_gone() {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .expect("spawn sh");
    // Until the child has exec'd, its name is this test thread's (the fork
    // inherits it): wait for "sh" so the probe reads the program's name.
    let comm = format!("/proc/{}/comm", child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sh"
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let rows: Arc<Mutex<Vec<Rates>>> = Arc::default();
    let sink_rows = rows.clone();
    let probe = Probe::start(
        ProbeTarget {
            pid: Some(child.id()),
            cgroup: None,
        },
        Duration::from_millis(250),
        Some(Box::new(move |r: &Rates| {
            sink_rows.lock().unwrap().push(*r)
        })),
        true,
    )
    .unwrap();
    assert_eq!(probe.process_name(), Some("sh"));
    std::thread::sleep(Duration::from_millis(1300));
    let busy = probe.totals();
    let latest = probe.latest().expect("a sample after a second");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let report = probe.stop();

    // A busy loop uses one CPU while it runs; contention may halve that.
    let cpu = busy.cpu_s().unwrap();
    assert!(
        cpu >= 0.3 * busy.duration_s,
        "{cpu} CPU s over {} s",
        busy.duration_s
    );
    assert!(latest.rss_bytes.unwrap() > 0);
    assert_eq!(latest.threads, Some(1));
    let rows = rows.lock().unwrap();
    assert!(rows.len() >= 4, "{} rows", rows.len());
    assert!(rows
        .iter()
        .all(|r| r.interval_s > 0.1 && r.interval_s < 1.0));
    // Gone: later intervals carry no process figures, and a note says so.
    assert!(rows.last().unwrap().cpu_user.is_none(), "{:?}", rows.last());
    assert!(
        report.notes.iter().any(|n| n.contains("exited")),
        "{:?}",
        report.notes
    );
    // Totals still cover the busy time.
    assert!(report.totals.cpu_s().unwrap() >= cpu);
}

#[test]
fn missing_targets_are_errors_before_sampling() {
    let err = Sampler::new(&ProbeTarget {
        pid: Some(999_999_999),
        cgroup: None,
    })
    .err()
    .expect("no such pid");
    assert!(matches!(
        err,
        ProbeError::NoSuchProcess { pid: 999_999_999 }
    ));
    assert!(err.to_string().contains("999999999"));
    let err = Sampler::new(&ProbeTarget {
        pid: None,
        cgroup: Some("no/such/group".into()),
    })
    .err()
    .expect("no such cgroup");
    assert!(
        err.to_string().contains("not a cgroup v2 directory"),
        "{err}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_cgroup_when_one_is_mounted() {
    // The root of the cgroup v2 hierarchy (or the unified part of a hybrid one).
    let Ok(dir) =
        chokepoint_probe::resolve_cgroup(std::path::Path::new("/sys/fs/cgroup")).or_else(|_| {
            chokepoint_probe::resolve_cgroup(std::path::Path::new("/sys/fs/cgroup/unified"))
        })
    else {
        // No cgroup v2 here: the error path is covered above.
        return;
    };
    let mut sampler = Sampler::new(&ProbeTarget {
        pid: None,
        cgroup: Some(dir.clone()),
    })
    .unwrap();
    let before = sampler.snapshot();
    burn(Duration::from_millis(300));
    let after = sampler.snapshot();
    let rates = Rates::between(&before, &after);
    // The root cgroup contains this process: its usage grew.
    assert!(
        rates.cgroup_cpu.unwrap() > 0.0,
        "{rates:?} in {}",
        dir.display()
    );
    assert!(after.process.is_none());
}
