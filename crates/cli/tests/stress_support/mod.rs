//! The checkout lab as a child process (`chokepoint lab`), for the stress,
//! soak and probe tests: its pid can be watched like any target's.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running lab; killed when dropped.
pub struct Lab {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// The lab's process id.
    pub pid: u32,
}

impl Lab {
    /// Starts `chokepoint lab --orders 2000 KNOBS...` and waits for its address.
    pub fn start(knobs: &[&str]) -> Lab {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
            .args(["lab", "--orders", "2000"])
            .args(knobs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chokepoint lab");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("lab {knobs:?} printed no address within 60 s");
            }
        };
        let base_url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the lab: {line:?}"))
            .to_string();
        Lab {
            pid: child.id(),
            child,
            base_url,
        }
    }

    /// The checkout endpoint.
    pub fn checkout(&self) -> String {
        format!("{}/checkout", self.base_url)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs chokepoint with `--json` expected on stdout and exit code `code`.
pub fn json_of(args: &[&str], code: i32, limit: Duration) -> serde_json::Value {
    let out = crate::support::chokepoint(args, limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "chokepoint {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}) from {args:?}:\n{stdout}\nstderr:\n{stderr}"))
}
