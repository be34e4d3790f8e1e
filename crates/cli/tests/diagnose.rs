//! `chokepoint diagnose` through the binary: real runs as evidence, the JSON
//! shape, and bad input (one line naming the file and field, exit 2).

mod support;

use std::time::Duration;

use support::*;

fn diagnose(args: &[&str]) -> std::process::Output {
    let mut all = vec!["diagnose"];
    all.extend_from_slice(args);
    chokepoint(&all, Duration::from_secs(60))
}

fn one_line_error(o: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` not in: {stderr}");
    }
}

#[test]
fn a_fast_server_is_healthy_and_the_next_steps_are_said() {
    let server = http_server(handler(|_req| async move { text(200, "ok") }));
    let dir = tempdir();
    let run = dir.path().join("run");
    let o = chokepoint(
        &[
            "run",
            &server.url("/"),
            "--rate",
            "100",
            "-z",
            "2s",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0));
    let o = diagnose(&["--run", run.to_str().unwrap(), "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["schema"], "chokepoint.diagnosis.v1");
    assert_eq!(d["healthy"], true, "{d}");
    assert_eq!(d["constraints"].as_array().unwrap().len(), 0);
    // Without traces or stress, the decision tree asks for them.
    let next: Vec<String> = d["measure_next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["command"].as_str().unwrap().to_string())
        .collect();
    assert!(next.iter().any(|c| c.contains("--otlp-listen")), "{next:?}");
    assert!(
        next.iter().any(|c| c.starts_with("chokepoint stress")),
        "{next:?}"
    );
    // Text mode says the same in words.
    let o = diagnose(&["--run", run.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("no constraint found") && text.contains("Measure next"),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_line_naming_file_and_field() {
    let dir = tempdir();
    one_line_error(&diagnose(&[]), &["needs evidence"]);
    let missing = dir.path().join("nope");
    one_line_error(
        &diagnose(&["--run", missing.to_str().unwrap()]),
        &["summary.json", "not found"],
    );
    let wrong = dir.path().join("stress.json");
    std::fs::write(&wrong, r#"{"schema": "chokepoint.run.v1"}"#).unwrap();
    one_line_error(
        &diagnose(&["--stress", wrong.to_str().unwrap()]),
        &["stress.json", "`schema`", "chokepoint.stress.v1"],
    );
    let broken = dir.path().join("soak.json");
    std::fs::write(&broken, "{\n  \"schema\": ,\n}").unwrap();
    one_line_error(
        &diagnose(&["--soak", broken.to_str().unwrap()]),
        &["soak.json:2:"],
    );
    let partial = dir.path().join("traces.json");
    std::fs::write(
        &partial,
        r#"{"schema": "chokepoint.traces.v1", "traces": 3}"#,
    )
    .unwrap();
    one_line_error(
        &diagnose(&["--traces", partial.to_str().unwrap()]),
        &["traces.json", "`tail`"],
    );
    let empty = dir.path().join("spans.jsonl");
    std::fs::write(&empty, "").unwrap();
    one_line_error(
        &diagnose(&["--traces", empty.to_str().unwrap()]),
        &["spans.jsonl", "empty"],
    );
}
