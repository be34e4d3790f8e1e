//! `chokepoint k8s --shards N --image IMAGE -- <run arguments>`: prints the
//! Kubernetes manifests of a distributed run as a multi-document YAML stream:
//! a results volume, an Indexed Job whose pods run `chokepoint run --shard
//! INDEX/N --start-at T --out /results/RUN/shard-INDEX`, and a merge Job that
//! waits for every shard's summary on the volume and runs `chokepoint merge`.
//! Manifests are built as JSON values and printed as YAML (block style,
//! double-quoted strings), or with `--json` as one `v1/List`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser};
use serde_json::{json, Value};

use crate::Failure;

/// Flags of `chokepoint k8s`.
#[derive(Args, Debug)]
pub struct K8sArgs {
    /// Number of load-generator pods (shards).
    #[arg(long, value_name = "N")]
    shards: u32,
    /// Container image with the `chokepoint` binary (see the Dockerfile).
    #[arg(long, value_name = "IMAGE")]
    image: String,
    /// Namespace of every object (default: the namespace kubectl applies to).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// An existing ReadWriteMany PersistentVolumeClaim for the results;
    /// without it a claim NAME-results is created.
    #[arg(long = "results-pvc", value_name = "NAME")]
    results_pvc: Option<String>,
    /// Storage class of the created results claim (must support ReadWriteMany).
    #[arg(
        long = "storage-class",
        value_name = "CLASS",
        conflicts_with = "results_pvc"
    )]
    storage_class: Option<String>,
    /// Prefix of object names and the run's results directory.
    #[arg(long, value_name = "NAME", default_value = "chokepoint")]
    name: String,
    /// Start the shards this long after the manifests are printed (apply them
    /// at once); shards that start later than 10 s after it fail instead of
    /// running out of step.
    #[arg(long = "start-delay", value_name = "DUR", default_value = "2m", value_parser = crate::units::parse_duration)]
    start_delay: Duration,
    /// An explicit start time (RFC 3339) instead of --start-delay.
    #[arg(long = "start-at", value_name = "TIME", conflicts_with = "start_delay")]
    start_at: Option<String>,
    /// CPU request and limit of each shard pod (e.g. 2 or 1500m).
    #[arg(long, value_name = "CPU")]
    cpu: Option<String>,
    /// Memory request and limit of each shard pod (e.g. 512Mi).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Print one JSON v1/List instead of YAML documents.
    #[arg(long)]
    json: bool,
    /// Arguments of `chokepoint run` (after `--`): target and options.
    #[arg(last = true, required = true, value_name = "RUN ARGS")]
    run_args: Vec<String>,
}

/// Parses run arguments exactly as `chokepoint run` would.
#[derive(Parser, Debug)]
#[command(name = "chokepoint run", no_binary_name = true)]
struct RunOnly {
    #[command(flatten)]
    args: crate::run_cmd::RunArgs,
}

/// Validates a DNS-1123 label (object names).
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}`: use lowercase letters, digits and '-' (at most 40 characters, no '-' at either end)"
        ))
    }
}

/// Run flags the manifests set themselves.
const RESERVED: [&str; 6] = [
    "--shard",
    "--start-at",
    "--out",
    "--json",
    "--metrics-listen",
    "--watch-pid",
];

/// Runs the command; returns the exit code.
pub fn run(args: K8sArgs) -> Result<i32, Failure> {
    let docs = manifests(&args, SystemTime::now()).map_err(Failure::Usage)?;
    let text = if args.json {
        serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": docs}))
            .expect("manifests serialize")
            + "\n"
    } else {
        docs.iter()
            .map(|d| format!("---\n{}", to_yaml(d)))
            .collect::<String>()
    };
    crate::print_stdout(&text);
    Ok(0)
}

fn manifests(args: &K8sArgs, now: SystemTime) -> Result<Vec<Value>, String> {
    if args.shards == 0 || args.shards > 1000 {
        return Err(format!("--shards {}: give 1 to 1000", args.shards));
    }
    check_name(&args.name, "--name")?;
    if let Some(ns) = &args.namespace {
        check_name(ns, "--namespace")?;
    }
    if let Some(pvc) = &args.results_pvc {
        check_name(pvc, "--results-pvc")?;
    }
    if args.image.trim().is_empty() || args.image.contains(char::is_whitespace) {
        return Err(format!("--image `{}`: not an image reference", args.image));
    }
    for a in &args.run_args {
        let flag = a.split('=').next().unwrap_or("");
        if RESERVED.contains(&flag) {
            return Err(format!(
                "run argument `{flag}`: the manifests set it (each pod gets its shard, the start time and its results directory)"
            ));
        }
    }
    let parsed = RunOnly::try_parse_from(&args.run_args).map_err(|e| {
        let rendered = e.render().to_string();
        let first = rendered
            .lines()
            .next()
            .unwrap_or("bad run arguments")
            .to_string();
        format!("run arguments: {}", first.trim_start_matches("error: "))
    })?;
    let run = parsed.args;
    // Plan locally: bad run arguments fail here, not in the cluster, and the
    // merge job learns how long the run lasts.
    let (plan, _) = crate::args::plan_scaled(
        run.request_args(),
        run.connection_args(),
        run.load_args(),
        Some(&crate::args::ScaleArgs {
            shard: Some((0, args.shards)),
            ..run.scale_args().clone()
        }),
    )?;
    for i in 1..args.shards {
        crate::args::plan_scaled(
            run.request_args(),
            run.connection_args(),
            run.load_args(),
            Some(&crate::args::ScaleArgs {
                shard: Some((i, args.shards)),
                ..run.scale_args().clone()
            }),
        )?;
    }
    let start_at = match &args.start_at {
        Some(text) => {
            let at = crate::shard::parse_rfc3339(text)?;
            crate::shard::check_start_at(at, now, text)?;
            at
        }
        None => now + args.start_delay,
    };
    let start_text = humantime::format_rfc3339_seconds(start_at).to_string();
    let run_id = format!(
        "{}-{}",
        args.name,
        start_text
            .trim_end_matches('Z')
            .replace(['-', ':'], "")
            .replace('T', "-")
            .to_ascii_lowercase()
    );
    let results = format!("/results/{run_id}");

    // A scenario or HAR file goes into a ConfigMap mounted at /etc/chokepoint.
    let mut run_args = args.run_args.clone();
    let mut config_map = None;
    let target = run.request_args().target.clone();
    if !target.contains("://") {
        let path = Path::new(&target);
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("run target {target}: cannot read: {e}"))?;
        if text.len() > 900 * 1024 {
            return Err(format!(
                "run target {target}: {} KiB is too large for a ConfigMap (1 MiB); bake it into the image",
                text.len() / 1024
            ));
        }
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| format!("run target {target}: no file name"))?
            .to_string();
        if let Some(pos) = run_args.iter().position(|a| *a == target) {
            run_args[pos] = format!("/etc/chokepoint/{file}");
        }
        config_map = Some(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(args, &format!("{}-scenario", args.name), "scenario"),
            "data": {file: text},
        }));
    }

    let pvc_name = args
        .results_pvc
        .clone()
        .unwrap_or_else(|| format!("{}-results", args.name));
    let n = args.shards;
    let mut shard_args: Vec<String> = vec!["run".into()];
    shard_args.extend(run_args);
    shard_args.extend([
        "--shard".into(),
        format!("$(SHARD_INDEX)/{n}"),
        "--start-at".into(),
        start_text.clone(),
        "--out".into(),
        format!("{results}/shard-$(SHARD_INDEX)"),
        "--quiet".into(),
    ]);
    let mut volumes =
        vec![json!({"name": "results", "persistentVolumeClaim": {"claimName": pvc_name}})];
    let mut mounts = vec![json!({"name": "results", "mountPath": "/results"})];
    if config_map.is_some() {
        volumes.push(
            json!({"name": "scenario", "configMap": {"name": format!("{}-scenario", args.name)}}),
        );
        mounts.push(json!({"name": "scenario", "mountPath": "/etc/chokepoint", "readOnly": true}));
    }
    let mut resources = json!({});
    if let Some(cpu) = &args.cpu {
        resources["requests"]["cpu"] = json!(cpu);
        resources["limits"]["cpu"] = json!(cpu);
    }
    if let Some(mem) = &args.memory {
        resources["requests"]["memory"] = json!(mem);
        resources["limits"]["memory"] = json!(mem);
    }
    let security = json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    });
    let shard_labels = labels(args, "shard", &run_id);
    let mut shard_container = json!({
        "name": "chokepoint",
        "image": args.image,
        "args": shard_args,
        "env": [{
            "name": "SHARD_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
        }],
        "volumeMounts": mounts,
        "securityContext": security,
    });
    if resources.as_object().is_some_and(|r| !r.is_empty()) {
        shard_container["resources"] = resources;
    }
    let shards_job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(args, &format!("{}-shards", args.name), "shard"),
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            // A retried shard would start late and out of step: fail instead.
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": shard_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"fsGroup": 65532, "runAsUser": 65532, "runAsGroup": 65532},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": shard_labels},
                        },
                    }]}},
                    "containers": [shard_container],
                    "volumes": volumes,
                },
            },
        },
    });
    // How long the merge job waits for the shards: start delay, the run,
    // in-flight requests, and slack for pods scheduled late.
    let run_length = plan.config.limits.warmup_ns as f64 / 1e9
        + plan
            .config
            .limits
            .duration_ns
            .map_or(3600.0, |d| d as f64 / 1e9)
        + plan.config.timeout.as_secs_f64();
    let until_start = start_at
        .duration_since(now)
        .map_or(0.0, |d| d.as_secs_f64());
    let wait_s = (until_start + run_length + 300.0).ceil() as u64;
    let merge_job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(args, &format!("{}-merge", args.name), "merge"),
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": {"labels": labels(args, "merge", &run_id)},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"fsGroup": 65532, "runAsUser": 65532, "runAsGroup": 65532},
                    "containers": [{
                        "name": "merge",
                        "image": args.image,
                        "args": [
                            "merge",
                            results,
                            "--out",
                            format!("{results}/merged"),
                            "--wait",
                            format!("{wait_s}s"),
                        ],
                        "volumeMounts": [{"name": "results", "mountPath": "/results"}],
                        "securityContext": security,
                    }],
                    "volumes": [{"name": "results", "persistentVolumeClaim": {"claimName": pvc_name}}],
                },
            },
        },
    });
    let mut docs = Vec::new();
    if args.results_pvc.is_none() {
        let mut spec = json!({
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "1Gi"}},
        });
        if let Some(class) = &args.storage_class {
            spec["storageClassName"] = json!(class);
        }
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(args, &pvc_name, "results"),
            "spec": spec,
        }));
    }
    docs.extend(config_map);
    docs.push(shards_job);
    docs.push(merge_job);
    Ok(docs)
}

fn labels(args: &K8sArgs, component: &str, run_id: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "chokepoint",
        "app.kubernetes.io/instance": args.name,
        "app.kubernetes.io/component": component,
        "chokepoint/run": run_id,
    })
}

fn metadata(args: &K8sArgs, name: &str, component: &str) -> Value {
    let mut m = json!({
        "name": name,
        "labels": {
            "app.kubernetes.io/name": "chokepoint",
            "app.kubernetes.io/instance": args.name,
            "app.kubernetes.io/component": component,
        },
    });
    if let Some(ns) = &args.namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// YAML for a JSON value: block mappings and sequences, every string
/// double-quoted (JSON escapes are valid YAML), multi-line strings included.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    write_yaml(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).expect("strings serialize"),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

/// A mapping key: plain when that cannot be misread (`app.kubernetes.io/name`),
/// double-quoted otherwise.
fn yaml_key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        k.to_string()
    } else {
        serde_json::to_string(k).expect("strings serialize")
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

fn write_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, val) in map {
                let key = yaml_key(k);
                if is_block(val) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    let child = if val.is_array() { indent } else { indent + 2 };
                    write_yaml(val, child, out);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", scalar(val)));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                if is_block(item) {
                    let mut inner = String::new();
                    write_yaml(item, indent + 2, &mut inner);
                    // The first line of the item goes after "- ".
                    let trimmed = inner.trim_start_matches(' ');
                    out.push_str(&format!("{pad}- {trimmed}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_block_style_with_quoted_strings() {
        let v = json!({"a": {"b": [1, "x: y", {"c": true, "on": []}]}, "e f": "line1\nline2"});
        assert_eq!(
            to_yaml(&v),
            "a:\n  b:\n  - 1\n  - \"x: y\"\n  - c: true\n    \"on\": []\n\"e f\": \"line1\\nline2\"\n"
        );
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(check_name("load-test-1", "--name").is_ok());
        for bad in ["Load", "-x", "x-", "a_b", ""] {
            assert!(
                check_name(bad, "--name").unwrap_err().starts_with("--name"),
                "{bad}"
            );
        }
    }
}
