//! HAR recordings and curl commands through the real binary: `scenario
//! from-har`, `run recording.har`, `scenario from-curl`; the generated
//! scenarios replay with their credentials, reports never print them, and
//! malformed input is one line with exit 2.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);
const SECRET: &str = "Bearer s3cr3t-t0ken";

/// Records (method, path, authorization, body) of every request.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn recording_server() -> (Server, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let server = http_server(handler(move |req| {
        let s = s.clone();
        async move {
            let method = req.method().to_string();
            let path = req
                .uri()
                .path_and_query()
                .map_or("/".into(), |p| p.to_string());
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            s.lock().unwrap().push((
                method,
                path,
                auth,
                String::from_utf8_lossy(&body).into_owned(),
            ));
            text(200, "ok")
        }
    }));
    (server, seen)
}

fn entry(method: &str, url: &str, mime: &str, body: Option<&str>) -> String {
    let post = body.map_or(String::new(), |b| {
        format!(
            r#", "postData": {{"mimeType": "application/json", "text": {}}}"#,
            serde_json::to_string(b).unwrap()
        )
    });
    format!(
        r#"{{"startedDateTime": "2025-01-01T00:00:00Z", "time": 1, "request": {{"method": "{method}", "url": "{url}", "httpVersion": "HTTP/1.1", "headers": [{{"name": "Authorization", "value": "{SECRET}"}}, {{"name": "Accept", "value": "application/json"}}, {{"name": "Host", "value": "ignored"}}]{post}}}, "response": {{"status": 200, "content": {{"mimeType": "{mime}"}}}}}}"#
    )
}

fn output(args: &[&str]) -> (i32, String, String) {
    let out = chokepoint(args, LIMIT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn har_recordings_become_weighted_scenarios_that_replay() {
    let (server, seen) = recording_server();
    let dir = tempdir();
    let base = server.url("");
    let har = dir.path().join("recording.har");
    let entries = [
        entry(
            "GET",
            &format!("{base}/items?page=1"),
            "application/json",
            None,
        ),
        entry(
            "GET",
            &format!("{base}/items?page=1"),
            "application/json",
            None,
        ),
        entry(
            "GET",
            &format!("{base}/items?page=1"),
            "application/json",
            None,
        ),
        entry(
            "POST",
            &format!("{base}/cart"),
            "application/json",
            Some("{\"sku\": 7}"),
        ),
        entry(
            "GET",
            &format!("{base}/static/app.js"),
            "text/javascript",
            None,
        ),
        entry("GET", &format!("{base}/logo.png"), "image/png", None),
        entry("GET", "http://127.0.0.1:1/elsewhere", "text/html", None),
    ];
    std::fs::write(
        &har,
        format!(
            r#"{{"log": {{"version": "1.2", "creator": {{"name": "test"}}, "entries": [{}]}}}}"#,
            entries.join(",")
        ),
    )
    .unwrap();

    let scenario = dir.path().join("scenario.toml");
    let (code, stdout, stderr) = output(&[
        "scenario",
        "from-har",
        har.to_str().unwrap(),
        "--exclude-static",
        "--out",
        scenario.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("2 static assets"), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:1 (1)"),
        "the other origin is named: {stderr}"
    );
    assert!(
        stderr.contains("Authorization") && !stderr.contains("s3cr3t"),
        "{stderr}"
    );
    let text = read(&scenario);
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    let requests = parsed["request"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{text}");
    assert_eq!(requests[0]["path"].as_str(), Some("/items?page=1"));
    assert_eq!(requests[0]["weight"].as_integer(), Some(3));
    assert_eq!(requests[1]["method"].as_str(), Some("POST"));
    assert_eq!(requests[1]["weight"].as_integer(), Some(1));
    assert_eq!(
        parsed["headers"]["Authorization"].as_str(),
        Some(SECRET),
        "credentials are kept (a replay needs them), shared headers hoisted: {text}"
    );
    assert!(!text.contains("ignored"), "Host is not copied: {text}");

    // The scenario replays: weights 3:1, the body and the credential arrive.
    let s = run_json(
        &[scenario.to_str().unwrap(), "-n", "400", "-c", "4"],
        0,
        LIMIT,
    );
    assert_eq!(s["requests"], 400);
    let items = u(&s["by_request"]["GET /items"]["requests"]);
    let cart = u(&s["by_request"]["POST /cart"]["requests"]);
    assert_eq!(items + cart, 400);
    assert!(
        (250..=350).contains(&items),
        "weights 3:1 gave {items}:{cart}"
    );
    assert!(
        !s.to_string().contains("s3cr3t"),
        "summary leaks the token: {s}"
    );
    {
        let seen = seen.lock().unwrap();
        assert!(seen.iter().all(|(_, _, auth, _)| auth == SECRET));
        let carts: Vec<_> = seen.iter().filter(|(m, ..)| m == "POST").collect();
        assert!(carts
            .iter()
            .all(|(_, p, _, b)| p == "/cart" && b == "{\"sku\": 7}"));
        assert!(seen
            .iter()
            .all(|(_, p, ..)| !p.ends_with(".js") && !p.ends_with(".png")));
        seen.iter().for_each(drop);
    }

    // `run recording.har` uses the recording directly (static assets included).
    seen.lock().unwrap().clear();
    let out = chokepoint(
        &[
            "run",
            "--json",
            "--quiet",
            har.to_str().unwrap(),
            "-n",
            "60",
            "-c",
            "2",
        ],
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("a scenario has one origin"), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["requests"], 60);
    assert_eq!(s["by_request"].as_object().unwrap().len(), 4, "{s}");
    let paths: HashMap<String, usize> =
        seen.lock()
            .unwrap()
            .iter()
            .fold(HashMap::new(), |mut m, r| {
                *m.entry(r.1.clone()).or_default() += 1;
                m
            });
    assert!(paths.contains_key("/static/app.js"), "{paths:?}");

    // Text output of the scenario on stdout, and JSON.
    let (code, stdout, _) = output(&["scenario", "from-har", har.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["request"].as_array().unwrap().len(), 4);
}

#[test]
fn curl_commands_become_scenarios_that_replay() {
    let (server, seen) = recording_server();
    let dir = tempdir();
    let body = dir.path().join("item.json");
    std::fs::write(&body, "{\"name\": \"lamp\",\n \"qty\": 2}").unwrap();
    let scenario = dir.path().join("put.toml");
    let command = format!(
        "curl -sS -X PUT '{}' \\\n  -H 'Content-Type: application/json' --data-binary @{} -u alice:s3cr3t -k",
        server.url("/items/7?v=2"),
        body.display()
    );
    let (code, _, stderr) = output(&[
        "scenario",
        "from-curl",
        &command,
        "--out",
        scenario.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains("s3cr3t") && !stderr.contains("YWxpY2U6czNjcjN0"),
        "{stderr}"
    );
    let text = read(&scenario);
    assert!(text.contains("insecure = true"), "{text}");
    assert!(text.contains("PUT /items/7"), "{text}");

    let s = run_json(
        &[scenario.to_str().unwrap(), "-n", "10", "-c", "1"],
        0,
        LIMIT,
    );
    assert_eq!(s["ok"], 10, "{s}");
    assert_eq!(
        s["tls_verification_disabled"], true,
        "-k is said in the report"
    );
    assert!(!s.to_string().contains("YWxpY2U6czNjcjN0"), "{s}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10);
    for (method, path, auth, got) in seen.iter() {
        assert_eq!(method, "PUT");
        assert_eq!(path, "/items/7?v=2");
        assert_eq!(auth, "Basic YWxpY2U6czNjcjN0", "-u alice:s3cr3t");
        assert_eq!(
            got, "{\"name\": \"lamp\",\n \"qty\": 2}",
            "--data-binary keeps newlines"
        );
    }

    // The words after `--` work as well as one quoted argument.
    let (code, stdout, stderr) = output(&[
        "scenario",
        "from-curl",
        "--",
        "curl",
        "-d",
        "a=1",
        "-d",
        "b=2",
        "http://127.0.0.1:9/form",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("body = \"a=1&b=2\"") && stdout.contains("method = \"POST\""),
        "{stdout}"
    );
}

#[test]
fn malformed_recordings_and_commands_exit_2() {
    let dir = tempdir();
    let bad = dir.path().join("bad.har");
    std::fs::write(
        &bad,
        r#"{"log": {"entries": [{"request": {"url": "http://x/"}}]}}"#,
    )
    .unwrap();
    let broken = dir.path().join("broken.har");
    std::fs::write(&broken, "{\"log\": [").unwrap();
    for (args, expected) in [
        (
            vec!["scenario", "from-har", bad.to_str().unwrap()],
            "bad.har: log.entries[0].request: missing field `method`",
        ),
        (
            vec!["scenario", "from-har", broken.to_str().unwrap()],
            "broken.har:1:",
        ),
        (vec!["run", bad.to_str().unwrap()], "missing field `method`"),
        (
            vec!["scenario", "from-har", "/nonexistent.har"],
            "cannot read HAR file",
        ),
        (
            vec!["scenario", "from-curl", "curl -Z http://x/"],
            "unsupported curl option `-Z`",
        ),
        (
            vec!["scenario", "from-curl", "curl 'http://x/"],
            "unterminated single quote",
        ),
        (vec!["scenario", "from-curl", "curl -X POST"], "no URL"),
        (
            vec!["scenario", "from-curl", "curl -F f=@x http://x/"],
            "multipart",
        ),
        (
            vec![
                "scenario",
                "from-curl",
                "curl --data-binary @/nonexistent http://x/",
            ],
            "cannot read /nonexistent",
        ),
    ] {
        let (code, _, stderr) = output(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}
