//! `chokepoint k8s`, `completions`, `man` and `--help` through the real
//! binary. The manifests are validated offline with `kubernetes-validate`
//! (PyPI, pinned Kubernetes version; installed by `.ci/run`).

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime};

use support::*;

const LIMIT: Duration = Duration::from_secs(30);
/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.30.0";

fn output(args: &[&str]) -> (i32, String, String) {
    let out = chokepoint(args, LIMIT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn validator() -> Option<&'static str> {
    let found = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("kubernetes-validate");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have kubernetes-validate (.ci/run installs it)"
    );
    eprintln!(
        "\n\n!!!!! SKIPPED offline validation of the k8s manifests: kubernetes-validate not found.\n\
         !!!!! Run `pip install kubernetes-validate` (see .ci/run).\n\n"
    );
    None
}

#[test]
fn manifests_are_valid_and_wire_shards_to_merge() {
    let dir = tempdir();
    let scenario = dir.path().join("checkout.toml");
    std::fs::write(
        &scenario,
        "base_url = \"http://checkout.shop.svc:8080/\"\n[load]\nrate = \"2000/s\"\nduration = \"5m\"\n[[request]]\nname = \"checkout\"\nmethod = \"POST\"\npath = \"/checkout\"\n",
    )
    .unwrap();
    let (code, yaml, stderr) = output(&[
        "k8s",
        "--shards",
        "4",
        "--image",
        "registry.example.com/chokepoint:0.1.0",
        "--namespace",
        "load",
        "--cpu",
        "2",
        "--memory",
        "512Mi",
        "--",
        scenario.to_str().unwrap(),
        "--warmup",
        "10s",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let docs: Vec<&str> = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    assert_eq!(docs.len(), 4, "claim, scenario, shards, merge:\n{yaml}");
    let (code, json, _) = output(&[
        "k8s",
        "--shards",
        "4",
        "--image",
        "img:1",
        "--json",
        "--",
        scenario.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "ConfigMap", "Job", "Job"]);
    let shards = &items[2]["spec"];
    assert_eq!(shards["completionMode"], "Indexed");
    assert_eq!(shards["completions"], 4);
    assert_eq!(shards["parallelism"], 4);
    let container = &shards["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args[..2],
        ["run", "/etc/chokepoint/checkout.toml"],
        "{args:?}"
    );
    let at = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(at("--shard"), "$(SHARD_INDEX)/4");
    assert!(at("--out").ends_with("/shard-$(SHARD_INDEX)"));
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    // The start time is --start-delay (2m) ahead, the same for every shard.
    let start = at("--start-at");
    let out = Command::new("date")
        .args(["-u", "-d", start, "+%s"])
        .output()
        .unwrap();
    let start_epoch: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 100..=now + 121).contains(&start_epoch),
        "{start} vs now {now}"
    );
    assert_eq!(
        items[1]["data"]["checkout.toml"].as_str().unwrap(),
        read(&scenario),
        "the scenario travels in a ConfigMap"
    );
    let merge = &items[3]["spec"]["template"]["spec"]["containers"][0]["args"];
    let results = at("--out").trim_end_matches("/shard-$(SHARD_INDEX)");
    assert_eq!(merge[0], "merge");
    assert_eq!(merge[1], results);
    assert_eq!(merge[3], format!("{results}/merged"));
    assert_eq!(merge[4], "--wait");

    let Some(validate) = validator() else { return };
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = Command::new(validate)
        .args(["--strict", "-k", KUBERNETES, file.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubernetes-validate:\n{report}\n{}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.matches("passed").count(), 4, "{report}");
}

#[test]
fn bad_k8s_input_is_one_line_and_exit_2() {
    for (args, expected) in [
        (
            vec![
                "k8s",
                "--shards",
                "2",
                "--image",
                "i",
                "--",
                "http://x/",
                "--shard",
                "0/2",
            ],
            "the manifests set it",
        ),
        (
            vec![
                "k8s",
                "--shards",
                "2",
                "--image",
                "i",
                "--",
                "http://x/",
                "--rate",
                "fast",
            ],
            "run arguments:",
        ),
        (
            vec!["k8s", "--shards", "2", "--image", "i", "--", "missing.toml"],
            "missing.toml",
        ),
        (
            vec![
                "k8s",
                "--shards",
                "4",
                "--image",
                "i",
                "--",
                "http://x/",
                "-c",
                "3",
            ],
            "shard 3 would have none",
        ),
        (
            vec!["k8s", "--shards", "0", "--image", "i", "--", "http://x/"],
            "--shards 0",
        ),
        (
            vec![
                "k8s",
                "--shards",
                "2",
                "--image",
                "i",
                "--name",
                "Load_Test",
                "--",
                "http://x/",
            ],
            "--name `Load_Test`",
        ),
    ] {
        let (code, _, stderr) = output(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn completions_man_pages_and_examples_for_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, stderr) = output(&["completions", shell]);
        assert_eq!(code, 0, "{stderr}");
        for word in ["merge", "k8s", "shard", "stages", "from-har"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, _, stderr) = output(&["completions", "powershell-7"]);
    assert_eq!(code, 2, "{stderr}");

    let (code, page, _) = output(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH chokepoint 1"), "{page}");
    let dir = tempdir();
    let (code, _, stderr) = output(&["man", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let run_page = read(&dir.path().join("chokepoint-run.1"));
    assert!(
        run_page.contains("rate") && run_page.contains("shard"),
        "{run_page}"
    );

    let (_, help, _) = output(&["--help"]);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 14, "{commands:?}");
    for command in commands {
        let (code, text, _) = output(&[command, "--help"]);
        assert_eq!(code, 0, "{command}");
        assert!(
            text.contains("Examples:"),
            "`chokepoint {command} --help` has no examples"
        );
    }
}

/// Parses the Dockerfile with the official parser (the `dockerfile` PyPI
/// package wraps BuildKit's) and checks what the manifests rely on.
const PY_DOCKERFILE: &str = r#"
import json, sys, dockerfile
print(json.dumps([[c.cmd, list(c.value), list(c.flags)] for c in dockerfile.parse_file(sys.argv[1])]))
"#;

#[test]
fn dockerfile_builds_the_binary_the_manifests_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ignore = read(&root.join(".dockerignore"));
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
    let python = ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import dockerfile"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the dockerfile package (.ci/run installs it)"
        );
        eprintln!(
            "\n\n!!!!! SKIPPED the Dockerfile check: `pip install dockerfile` (see .ci/run).\n\n"
        );
        return;
    };
    let out = Command::new(python)
        .args([
            "-c",
            PY_DOCKERFILE,
            root.join("Dockerfile").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commands: Vec<(String, Vec<String>, Vec<String>)> =
        serde_json::from_slice(&out.stdout).unwrap();
    let stages: Vec<&Vec<String>> = commands
        .iter()
        .filter(|c| c.0 == "FROM")
        .map(|c| &c.1)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert_eq!(stages[0][2], "build");
    for (cmd, value, flags) in &commands {
        if cmd == "COPY" && flags.is_empty() {
            for source in &value[..value.len() - 1] {
                assert!(
                    root.join(source).exists(),
                    "COPY {source}: not in the repository"
                );
            }
        }
        if cmd == "RUN" {
            assert!(
                value[0].contains("cargo build --release --locked --bin chokepoint"),
                "{value:?}"
            );
        }
    }
    let runtime: Vec<_> = commands
        .iter()
        .skip_while(|c| !(c.0 == "FROM" && c.1[0] == stages[1][0]))
        .collect();
    assert!(runtime
        .iter()
        .any(|c| c.0 == "COPY" && c.2.contains(&"--from=build".to_string())));
    assert!(
        runtime
            .iter()
            .any(|c| c.0 == "USER" && c.1[0] == "65532:65532"),
        "the pods run as 65532 (runAsUser, fsGroup of the manifests)"
    );
    let entry = runtime.iter().find(|c| c.0 == "ENTRYPOINT").unwrap();
    assert_eq!(
        entry.1,
        ["/usr/local/bin/chokepoint"],
        "manifests pass `run ...`/`merge ...` as args"
    );
}
