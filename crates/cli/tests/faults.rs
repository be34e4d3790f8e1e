//! The fault matrix: `chokepoint run`, through the real binary, against
//! servers on 127.0.0.1:0 that fail in every way a target can. For each case
//! the run ends on time (duration + timeout + 1 s at most), every failure is
//! counted under the right error kind, the process's peak RSS stays under
//! 100 MiB, nothing panics, and the report and interval log are complete.
//! The table of cases and outcomes is in `docs/reliability.md`.

mod faults_support;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use faults_support::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest peak RSS allowed for chokepoint in any fault case.
const RSS_LIMIT_KIB: u64 = 100 * 1024;
/// Hard limit for one run of the binary (the on-time check is much tighter).
const HARD_LIMIT: Duration = Duration::from_secs(60);

/// What a case expects of the summary.
struct Expect {
    /// Error kinds that must be counted (more than zero).
    required: &'static [&'static str],
    /// Error kinds that may be counted besides the required ones.
    allowed: &'static [&'static str],
    /// Successful responses must be counted (`Some(true)`), must not (`Some(false)`), or either.
    ok: Option<bool>,
}

/// Runs one fault case and checks every guarantee; returns the summary.
fn fault_case(name: &str, url: &str, extra: &[&str], expect: Expect) -> serde_json::Value {
    fault_case_timed(name, url, "2s", "1s", extra, expect)
}

fn fault_case_timed(
    name: &str,
    url: &str,
    duration: &str,
    timeout: &str,
    extra: &[&str],
    expect: Expect,
) -> serde_json::Value {
    fault_case_with(name, url, duration, timeout, Duration::ZERO, extra, expect)
}

/// `allowance` is added to the on-time bound: only for a target that accepts
/// connections and then stalls the handshake, where the engine's wait for
/// its connections to be ready before the window opens (at most
/// min(timeout, 5 s)) runs out in full.
fn fault_case_with(
    name: &str,
    url: &str,
    duration: &str,
    timeout: &str,
    allowance: Duration,
    extra: &[&str],
    expect: Expect,
) -> serde_json::Value {
    let dir = tempdir();
    let out = dir.path().join("run");
    let mut args = vec![
        "run",
        url,
        "--json",
        "--quiet",
        "-z",
        duration,
        "--timeout",
        timeout,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let m = run_measured(&args, HARD_LIMIT);
    let context = format!("case `{name}`\n{}", m.show());
    assert_eq!(m.code, Some(0), "{context}");
    assert!(!m.stderr.contains("panicked"), "{context}");
    let on_time = chokepoint::units::parse_duration(duration).unwrap()
        + chokepoint::units::parse_duration(timeout).unwrap()
        + Duration::from_secs(1)
        + allowance;
    assert!(
        m.elapsed <= on_time,
        "took {:?}, more than duration + timeout + 1 s\n{context}",
        m.elapsed
    );
    assert!(
        m.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB\n{context}",
        m.peak_rss_kib
    );
    let s = m.json();
    let errors: BTreeMap<String, u64> = serde_json::from_value(s["errors"].clone()).unwrap();
    let total_errors: u64 = errors.values().sum();
    assert_eq!(
        u(&s["requests"]),
        u(&s["ok"]) + total_errors,
        "requests = ok + errors\n{context}"
    );
    for kind in expect.required {
        assert!(
            errors.get(*kind).copied().unwrap_or(0) > 0,
            "expected `{kind}` errors\n{context}"
        );
    }
    for kind in errors.keys() {
        assert!(
            expect.required.contains(&kind.as_str()) || expect.allowed.contains(&kind.as_str()),
            "unexpected `{kind}` errors\n{context}"
        );
    }
    match expect.ok {
        Some(true) => assert!(u(&s["ok"]) > 0, "expected successes\n{context}"),
        Some(false) => assert_eq!(u(&s["ok"]), 0, "expected no successes\n{context}"),
        None => {}
    }
    assert_run_dir_complete(&out, &s, &context);
    eprintln!(
        "fault case {name}: {:.2} s, peak RSS {} KiB, requests {}, ok {}, errors {:?}",
        m.elapsed.as_secs_f64(),
        m.peak_rss_kib,
        u(&s["requests"]),
        u(&s["ok"]),
        errors
    );
    s
}

/// The open model at a modest rate: a failing target must not make it spin.
const OPEN: &[&str] = &["--rate", "100", "--max-connections", "200"];

/// Reads the request head (until the blank line), so a response answers a request.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
        if buf.len() > 64 * 1024 {
            return false;
        }
    }
}

/// Answers every request on a connection with `response` (keep-alive).
fn canned(response: &'static [u8]) -> support::Server {
    raw_server(move |mut stream| async move {
        while read_request(&mut stream).await {
            if stream.write_all(response).await.is_err() {
                return;
            }
        }
    })
}

#[test]
fn connection_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let s = fault_case(
        "connection refused",
        &url,
        OPEN,
        Expect {
            required: &["connect"],
            allowed: &[],
            ok: Some(false),
        },
    );
    assert_eq!(u(&s["errors"]["connect"]), 200, "100/s for 2 s: {s}");
}

#[test]
fn reset_right_after_accept() {
    let server = raw_server(|stream| async move {
        let _ = stream.set_zero_linger();
        drop(stream);
    });
    // When the reset arrives before the client has seen its handshake
    // complete, the connect itself fails: a few connect errors are right too.
    fault_case(
        "reset after accept",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["io"],
            allowed: &["connect"],
            ok: Some(false),
        },
    );
}

#[test]
fn reset_mid_response() {
    let server = raw_server(|mut stream| async move {
        if read_request(&mut stream).await {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                .await;
            let _ = stream.write_all(&[b'x'; 5000]).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = stream.set_zero_linger();
        }
    });
    fault_case(
        "reset mid-response",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["io"],
            allowed: &[],
            ok: Some(false),
        },
    );
}

#[test]
fn close_without_a_response() {
    let server = raw_server(|mut stream| async move {
        if read_request(&mut stream).await {
            let _ = stream.shutdown().await;
        }
    });
    fault_case(
        "close without a response",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["io"],
            allowed: &[],
            ok: Some(false),
        },
    );
}

#[test]
fn headers_trickled_one_byte_per_second() {
    let server = raw_server(|mut stream| async move {
        if read_request(&mut stream).await {
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".iter() {
                if stream.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let s = fault_case(
        "headers trickled 1 B/s",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["timeout"],
            allowed: &[],
            ok: Some(false),
        },
    );
    assert_eq!(u(&s["errors"]["timeout"]), 200, "{s}");
}

#[test]
fn never_responds() {
    let server = raw_server(|mut stream| async move {
        let _ = read_request(&mut stream).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let s = fault_case(
        "never responds",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["timeout"],
            allowed: &[],
            ok: Some(false),
        },
    );
    assert_eq!(u(&s["errors"]["timeout"]), 200, "{s}");
}

#[test]
fn malformed_status_line() {
    let server = canned(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok");
    fault_case(
        "malformed status line",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["protocol"],
            allowed: &[],
            ok: Some(false),
        },
    );
    let server = canned(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
    fault_case(
        "not HTTP at all",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["protocol"],
            allowed: &[],
            ok: Some(false),
        },
    );
}

#[test]
fn invalid_chunked_encoding() {
    let server =
        canned(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n");
    fault_case(
        "invalid chunked encoding",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["protocol"],
            allowed: &[],
            ok: Some(false),
        },
    );
    let server =
        canned(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
    fault_case(
        "chunk size not hex",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["protocol"],
            allowed: &[],
            ok: Some(false),
        },
    );
}

#[test]
fn content_length_larger_than_the_body() {
    let server = raw_server(|mut stream| async move {
        if read_request(&mut stream).await {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    fault_case(
        "Content-Length larger than the body",
        &server.url("/"),
        OPEN,
        Expect {
            required: &["io"],
            allowed: &[],
            ok: Some(false),
        },
    );
}

/// Content-Length: 5 with a 10-byte body on a keep-alive connection: the first
/// response is complete and fine; the 5 extra bytes then sit in front of the
/// next response on the same connection, which is therefore malformed.
#[test]
fn content_length_smaller_than_the_body() {
    let server = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA");
    let s = fault_case(
        "Content-Length smaller than the body",
        &server.url("/"),
        &["-c", "2"],
        Expect {
            required: &["protocol"],
            allowed: &[],
            ok: Some(true),
        },
    );
    let (ok, protocol) = (u(&s["ok"]), u(&s["errors"]["protocol"]));
    assert!(
        ok.abs_diff(protocol) <= 2,
        "every connection alternates a good response and a poisoned one: {s}"
    );
}

/// A 1 GiB body, generated as it is sent: counted as it streams, never buffered.
#[test]
fn one_gibibyte_body() {
    const GIB: u64 = 1 << 30;
    let server = raw_server(|mut stream| async move {
        let block = vec![b'x'; 256 * 1024];
        while read_request(&mut stream).await {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut left = GIB;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                if stream.write_all(&block[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
        }
    });
    let s = fault_case_timed(
        "1 GiB body",
        &server.url("/"),
        "5s",
        "20s",
        &["-c", "1", "-n", "2"],
        Expect {
            required: &[],
            allowed: &[],
            ok: Some(true),
        },
    );
    assert_eq!(u(&s["ok"]), 2, "{s}");
    assert!(u(&s["bytes_received"]) >= 2 * GIB, "{s}");
}

/// An HTTP/2 server built on the `h2` crate; `on_stream` answers each stream
/// (its index on the connection) and may end the connection.
fn h2_server<F>(on_stream: F) -> support::Server
where
    F: Fn(u64, &mut h2::server::SendResponse<Bytes>) -> H2Action + Send + Sync + Copy + 'static,
{
    raw_server(move |stream| async move {
        let Ok(mut conn) = h2::server::handshake(stream).await else {
            return;
        };
        let mut index = 0;
        while let Some(Ok((_request, mut respond))) = conn.accept().await {
            match on_stream(index, &mut respond) {
                H2Action::Respond => {
                    let response = http::Response::builder().status(200).body(()).unwrap();
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                }
                H2Action::Reset => respond.send_reset(h2::Reason::INTERNAL_ERROR),
                H2Action::RespondThenGoaway => {
                    let response = http::Response::builder().status(200).body(()).unwrap();
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                    conn.graceful_shutdown();
                }
                H2Action::AbruptGoaway => {
                    conn.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                }
            }
            index += 1;
        }
    })
}

#[derive(Clone, Copy)]
enum H2Action {
    Respond,
    Reset,
    RespondThenGoaway,
    AbruptGoaway,
}

/// GOAWAY after every 20th stream: the connection drains and is replaced.
/// Streams the client had already opened past the server's last stream id are
/// refused (never processed) and counted as io errors.
#[test]
fn http2_goaway() {
    let server = h2_server(|i, _| {
        if i % 20 == 19 {
            H2Action::RespondThenGoaway
        } else {
            H2Action::Respond
        }
    });
    let s = fault_case(
        "HTTP/2 GOAWAY (graceful)",
        &server.url("/"),
        &["--http2", "--rate", "200"],
        Expect {
            required: &[],
            allowed: &["io"],
            ok: Some(true),
        },
    );
    assert!(u(&s["connections_opened"]) >= 5, "reconnected: {s}");
    let server = h2_server(|i, _| {
        if i == 10 {
            H2Action::AbruptGoaway
        } else {
            H2Action::Respond
        }
    });
    fault_case(
        "HTTP/2 GOAWAY (abrupt, INTERNAL_ERROR)",
        &server.url("/"),
        &["--http2", "--rate", "200"],
        Expect {
            required: &["io"],
            allowed: &[],
            ok: Some(true),
        },
    );
}

/// Every other stream reset with RST_STREAM(INTERNAL_ERROR): those count as
/// io errors, the others succeed on the same connection.
#[test]
fn http2_rst_stream() {
    let server = h2_server(|i, _| {
        if i % 2 == 1 {
            H2Action::Reset
        } else {
            H2Action::Respond
        }
    });
    let s = fault_case(
        "HTTP/2 RST_STREAM",
        &server.url("/"),
        &["--http2", "--rate", "200"],
        Expect {
            required: &["io"],
            allowed: &[],
            ok: Some(true),
        },
    );
    let (ok, io) = (u(&s["ok"]), u(&s["errors"]["io"]));
    assert!(ok.abs_diff(io) <= 2, "half the streams are reset: {s}");
    assert!(
        u(&s["connections_opened"]) <= 2,
        "a stream reset keeps the connection: {s}"
    );
}

/// A server that answers the ClientHello with plaintext HTTP: the handshake fails.
#[test]
fn tls_handshake_failure() {
    let server = raw_server(|mut stream| async move {
        let mut buf = [0u8; 2048];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        let _ = stream.shutdown().await;
    });
    fault_case(
        "TLS handshake failure",
        &server.https_url("/"),
        OPEN,
        Expect {
            required: &["tls"],
            allowed: &[],
            ok: Some(false),
        },
    );
}

/// A server that accepts the connection and never answers the ClientHello:
/// each handshake ends at the request timeout, and so does the run.
#[test]
fn tls_handshake_stalls() {
    let server = raw_server(|mut stream| async move {
        let mut buf = [0u8; 2048];
        let _ = stream.read(&mut buf).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let ready_wait = Duration::from_secs(1);
    fault_case_with(
        "TLS handshake never answered",
        &server.https_url("/"),
        "2s",
        "1s",
        ready_wait,
        OPEN,
        Expect {
            required: &["timeout"],
            allowed: &[],
            ok: Some(false),
        },
    );
    fault_case_with(
        "TLS handshake never answered, closed model",
        &server.https_url("/"),
        "2s",
        "1s",
        ready_wait,
        &["-c", "4"],
        Expect {
            required: &["timeout"],
            allowed: &[],
            ok: Some(false),
        },
    );
}

/// A self-signed certificate is refused (tls errors) unless `--insecure`, and
/// then the report says verification was off.
#[test]
fn untrusted_certificate() {
    let server = https_server(handler(|_req| async { text(200, "ok") }));
    let url = server.https_url("/");
    let s = fault_case(
        "untrusted certificate",
        &url,
        OPEN,
        Expect {
            required: &["tls"],
            allowed: &[],
            ok: Some(false),
        },
    );
    assert_eq!(s["tls_verification_disabled"], false);
    let mut args = OPEN.to_vec();
    args.push("--insecure");
    let s = fault_case(
        "untrusted certificate with --insecure",
        &url,
        &args,
        Expect {
            required: &[],
            allowed: &[],
            ok: Some(true),
        },
    );
    assert_eq!(s["tls_verification_disabled"], true);
    let dir = tempdir();
    let out = dir.path().join("r");
    let text = run_measured(
        &[
            "run",
            &url,
            "-n",
            "5",
            "-c",
            "1",
            "--quiet",
            "--insecure",
            "--out",
            out.to_str().unwrap(),
        ],
        HARD_LIMIT,
    );
    assert_eq!(text.code, Some(0), "{}", text.show());
    assert!(
        text.stdout
            .contains("TLS certificate verification was OFF (--insecure)"),
        "{}",
        text.show()
    );
    let html = read(&out.join("report.html"));
    assert!(
        html.contains("id=\"tls-warning\"")
            && html.contains("TLS certificate verification was OFF (--insecure)"),
        "report.html does not say verification was off"
    );
}
