//! The fuzz corpora as regression inputs on stable Rust: every file under
//! `fuzz/corpus/<target>/` goes through the same check its `cargo fuzz`
//! target runs (`fuzz/src/lib.rs`): no panic, and the properties hold. The
//! corpora are minimized and include every input that once crashed a parser
//! (docs/reliability.md). Fuzzing itself needs nightly: `cargo +nightly fuzz
//! run <target>` in `fuzz/`.

#[path = "../../../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target_check() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, check) in checks::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for fuzz target `{name}`");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            total += 1;
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {}: {why}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total >= checks::TARGETS.len(), "{total} inputs");
    eprintln!("{total} corpus inputs checked");
}
