//! Credentials never reach an output. Secrets go in through `-H` (every
//! secret header), the URL (credential-looking query parameters, userinfo),
//! scenario files and HAR recordings; then every output of every command
//! (stdout, stderr, and every file written: JSON, CSV, interval logs, HTML,
//! JUnit, Markdown, the history database) is searched for them. The redacted
//! places must say `REDACTED`.

mod faults_support;
mod support;

use std::path::Path;
use std::time::Duration;

use faults_support::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Every secret, each unique so a leak names its way in.
const SECRETS: &[&str] = &[
    "SEKRET-authz-01",
    "SEKRET-proxy-02",
    "SEKRET-cookie-03",
    "SEKRET-setcookie-04",
    "SEKRET-apikey-05",
    "SEKRET-token-06",
    "SEKRET-key-07",
    "SEKRET-secret-08",
    "SEKRET-password-09",
    "SEKRET-signature-10",
    "SEKRET-userinfo-11",
    "SEKRET-scenario-12",
    "SEKRET-har-13",
    "SEKRET-harquery-14",
];

fn header_args() -> Vec<String> {
    [
        "Authorization: Bearer SEKRET-authz-01",
        "Proxy-Authorization: Basic SEKRET-proxy-02",
        "Cookie: session=SEKRET-cookie-03",
        "Set-Cookie: id=SEKRET-setcookie-04",
        "X-Api-Key: SEKRET-apikey-05",
    ]
    .iter()
    .flat_map(|h| ["-H".to_string(), h.to_string()])
    .collect()
}

/// The query string carrying one secret per credential-looking name.
const QUERY: &str = "access_token=SEKRET-token-06&api_key=SEKRET-key-07&client_secret=SEKRET-secret-08&password=SEKRET-password-09&X-Amz-Signature=SEKRET-signature-10&page=2";

/// Everything a command printed or wrote.
#[derive(Default)]
struct Outputs {
    seen: Vec<(String, Vec<u8>)>,
}

impl Outputs {
    fn command(&mut self, args: &[&str], code: i32) -> Measured {
        let m = run_measured(args, LIMIT);
        assert_eq!(m.code, Some(code), "{}", m.show());
        let name = args[..2.min(args.len())].join(" ");
        self.seen
            .push((format!("{name}: stdout"), m.stdout.clone().into_bytes()));
        self.seen
            .push((format!("{name}: stderr"), m.stderr.clone().into_bytes()));
        m
    }

    /// Every file under `dir`, recursively.
    fn files(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.files(&path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                self.seen.push((path.display().to_string(), bytes));
            }
        }
    }

    fn assert_no_secret(&self) {
        let mut leaks = Vec::new();
        for (name, bytes) in &self.seen {
            let text = String::from_utf8_lossy(bytes);
            for secret in SECRETS {
                // Also URL-encoded or in upper case, as HTML or JSON might carry it.
                if text.contains(secret)
                    || text
                        .to_ascii_uppercase()
                        .contains(&secret.to_ascii_uppercase())
                {
                    leaks.push(format!("{secret} in {name}"));
                }
            }
        }
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
        assert!(
            self.seen.len() > 10,
            "searched only {} outputs",
            self.seen.len()
        );
    }

    fn contains(&self, name_part: &str, needle: &str) -> bool {
        self.seen.iter().any(|(name, bytes)| {
            name.contains(name_part) && String::from_utf8_lossy(bytes).contains(needle)
        })
    }
}

fn server() -> support::Server {
    http_server(handler(|req| async move {
        // Errors and successes both: error paths print too.
        if req.uri().path().ends_with("/fail") {
            text(500, "boom")
        } else {
            text(200, "ok")
        }
    }))
}

#[test]
fn secrets_from_flags_and_urls_reach_no_output() {
    let server = server();
    let dir = tempdir();
    let root = dir.path();
    let url = format!("http://{}/api?{QUERY}", server.addr);
    let mut outputs = Outputs::default();
    let headers = header_args();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();

    // run: text report, then JSON with every file.
    let run_a = root.join("a");
    let mut args = vec!["run", &url, "--rate", "50", "-z", "2s", "--quiet"];
    args.extend(&headers);
    args.extend(["--out", run_a.to_str().unwrap(), "--trace-propagate"]);
    outputs.command(&args, 0);
    let run_b = root.join("b");
    let mut args = vec!["run", &url, "-c", "2", "-n", "100", "--json"];
    args.extend(&headers);
    args.extend(["--out", run_b.to_str().unwrap()]);
    let m = outputs.command(&args, 0);
    let s = m.json();
    assert!(s["target"].as_str().unwrap().contains("REDACTED"), "{s}");

    // check: text, JSON, JUnit and Markdown.
    let budgets = root.join("budgets.toml");
    std::fs::write(
        &budgets,
        "[overall]\np50 = \"1us\"\nerror_rate = \"0%\"\n[regression]\nmax_increase = \"1%\"\n",
    )
    .unwrap();
    let (junit, markdown) = (root.join("junit.xml"), root.join("summary.md"));
    outputs.command(
        &[
            "check",
            run_b.to_str().unwrap(),
            "--budget",
            budgets.to_str().unwrap(),
            "--baseline",
            run_a.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
        ],
        1,
    );
    outputs.command(
        &[
            "check",
            run_b.to_str().unwrap(),
            "--budget",
            budgets.to_str().unwrap(),
            "--json",
        ],
        1,
    );

    // compare: text, JSON, Markdown, HTML.
    let compared = root.join("compared");
    let compare_md = root.join("compare.md");
    outputs.command(
        &[
            "compare",
            run_a.to_str().unwrap(),
            run_b.to_str().unwrap(),
            "--markdown",
            compare_md.to_str().unwrap(),
            "--out",
            compared.to_str().unwrap(),
        ],
        0,
    );
    outputs.command(
        &[
            "compare",
            run_a.to_str().unwrap(),
            run_b.to_str().unwrap(),
            "--json",
        ],
        0,
    );

    // history: the database file itself, and what it prints.
    let db = root.join("history.sqlite");
    for run in [&run_a, &run_b] {
        outputs.command(
            &[
                "history",
                "add",
                run.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ],
            0,
        );
    }
    outputs.command(&["history", "list", "--db", db.to_str().unwrap()], 0);

    // merge and diagnose.
    let merged = root.join("merged");
    outputs.command(
        &[
            "merge",
            run_a.to_str().unwrap(),
            "--force",
            "--out",
            merged.to_str().unwrap(),
        ],
        0,
    );
    let diagnosed = root.join("diagnosed");
    outputs.command(
        &[
            "diagnose",
            "--run",
            run_b.to_str().unwrap(),
            "--out",
            diagnosed.to_str().unwrap(),
        ],
        0,
    );

    // soak and stress (short): their own JSON and directories.
    let soak = root.join("soak");
    let mut args = vec![
        "soak", &url, "--rate", "50", "-z", "3s", "--window", "1s", "--quiet", "--json",
    ];
    args.extend(&headers);
    args.extend(["--out", soak.to_str().unwrap()]);
    outputs.command(&args, 0);
    let stress = root.join("stress");
    let mut args = vec![
        "stress",
        &url,
        "--start-rate",
        "20",
        "--max-rate",
        "40",
        "--step-duration",
        "1s",
        "--quiet",
    ];
    args.extend(&headers);
    args.extend(["--out", stress.to_str().unwrap()]);
    outputs.command(&args, 0);

    outputs.files(root);
    outputs.assert_no_secret();
    assert!(outputs.contains("summary.json", "REDACTED"));
    assert!(outputs.contains("report.html", "REDACTED"));
}

/// Error messages print the URL or header the user gave: redacted too.
#[test]
fn error_messages_redact_what_they_quote() {
    let mut outputs = Outputs::default();
    // Credentials in the URL are refused, quoting the URL.
    outputs.command(
        &[
            "run",
            &format!("http://user:SEKRET-userinfo-11@127.0.0.1:1/?{QUERY}"),
            "-n",
            "1",
        ],
        2,
    );
    // A header name that is not a token: the header is quoted in the error.
    outputs.command(
        &[
            "run",
            "http://127.0.0.1:1/",
            "-H",
            "Authorization Bearer: SEKRET-authz-01",
            "-n",
            "1",
        ],
        2,
    );
    // A header with a line break: the header is named in the error.
    outputs.command(
        &[
            "run",
            "http://127.0.0.1:1/",
            "-H",
            "Authorization: Bearer SEKRET-authz-01\r\nX-Evil: 1",
            "-n",
            "1",
        ],
        2,
    );
    // An unsupported scheme with credentials.
    outputs.command(
        &[
            "run",
            &format!("ftp://user:SEKRET-userinfo-11@127.0.0.1/?{QUERY}"),
            "-n",
            "1",
        ],
        2,
    );
    // Connection refused with secrets everywhere: the run report.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let headers = header_args();
    let mut args = vec![
        "run".to_string(),
        format!("http://127.0.0.1:{port}/?{QUERY}"),
        "-n".into(),
        "3".into(),
        "-c".into(),
        "1".into(),
    ];
    args.extend(headers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    outputs.command(&args, 0);
    outputs.assert_no_secret_allowing_few();
}

impl Outputs {
    /// Like `assert_no_secret`, for tests with only a few commands.
    fn assert_no_secret_allowing_few(&self) {
        let mut leaks = Vec::new();
        for (name, bytes) in &self.seen {
            let text = String::from_utf8_lossy(bytes);
            for secret in SECRETS {
                if text.contains(secret) {
                    leaks.push(format!("{secret} in {name}:\n{text}"));
                }
            }
        }
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    }
}

/// Scenario files and HAR recordings carry secrets in headers, base URLs
/// and request paths (whose default names are `METHOD path`).
#[test]
fn secrets_in_scenarios_and_har_reach_no_output() {
    let server = server();
    let dir = tempdir();
    let root = dir.path();
    let base = format!("http://{}", server.addr);
    let scenario = root.join("scenario.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"base_url = "{base}/?session_token=SEKRET-scenario-12"
headers = {{ Authorization = "Bearer SEKRET-authz-01", Cookie = "sid=SEKRET-cookie-03" }}

[load]
rate = "40/s"
duration = "2s"

[[request]]
path = "/orders?{QUERY}"
headers = {{ X-Api-Key = "SEKRET-apikey-05" }}

[[request]]
path = "/fail?password=SEKRET-password-09"
"#
        ),
    )
    .unwrap();
    let mut outputs = Outputs::default();
    let out = root.join("scenario-run");
    outputs.command(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        0,
    );
    outputs.command(
        &["run", scenario.to_str().unwrap(), "--json", "-z", "1s"],
        0,
    );

    let entry = |method: &str, path: &str| {
        format!(
            r#"{{"startedDateTime": "2025-01-01T00:00:00Z", "time": 1, "request": {{"method": "{method}", "url": "{base}{path}", "httpVersion": "HTTP/1.1", "headers": [{{"name": "Authorization", "value": "Bearer SEKRET-har-13"}}, {{"name": "Cookie", "value": "a=SEKRET-har-13"}}], "queryString": []}}, "response": {{"status": 200, "content": {{"mimeType": "application/json"}}}}}}"#
        )
    };
    let har = root.join("recording.har");
    std::fs::write(
        &har,
        format!(
            r#"{{"log": {{"version": "1.2", "creator": {{"name": "t"}}, "entries": [{}, {}]}}}}"#,
            entry("GET", "/items?api_token=SEKRET-harquery-14"),
            entry("GET", "/items?page=1")
        ),
    )
    .unwrap();
    let har_out = root.join("har-run");
    outputs.command(
        &[
            "run",
            har.to_str().unwrap(),
            "--rate",
            "40",
            "-z",
            "1s",
            "--quiet",
            "--out",
            har_out.to_str().unwrap(),
        ],
        0,
    );
    outputs.files(&out);
    outputs.files(&har_out);
    outputs.assert_no_secret_allowing_few();
}

/// The live metrics exposition (`run --metrics-listen`) labels the target.
#[test]
fn live_metrics_carry_no_secret() {
    use std::io::{BufRead, BufReader, Read, Write};
    let server = server();
    let url = format!("http://{}/api?{QUERY}", server.addr);
    let headers = header_args();
    let mut args = vec![
        "run",
        &url,
        "--rate",
        "50",
        "-z",
        "3s",
        "--quiet",
        "--json",
        "--metrics-listen",
        "0",
    ];
    args.extend(headers.iter().map(String::as_str));
    let mut child = spawn_with(&args, true);
    let mut stderr = BufReader::new(child.take_stderr());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no metrics address"
        );
        if let Some(rest) = line.trim().strip_prefix("metrics: listening on http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    // Poll until the first measured second is in the exposition (bounded).
    let started = std::time::Instant::now();
    let body = loop {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        if body.contains("chokepoint_requests_total{outcome=\"ok\"}")
            && !body.contains("chokepoint_requests_total{outcome=\"ok\"} 0\n")
        {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no measured second: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stderr.read_to_string(&mut sink);
    });
    let m = child.wait(LIMIT);
    assert_eq!(m.code, Some(0), "{}", m.show());
    let mut outputs = Outputs::default();
    outputs
        .seen
        .push(("/metrics".into(), body.clone().into_bytes()));
    outputs
        .seen
        .push(("run --metrics-listen: stdout".into(), m.stdout.into_bytes()));
    outputs.assert_no_secret_allowing_few();
    assert!(
        body.contains("REDACTED"),
        "the target label is there, redacted: {body}"
    );
}
