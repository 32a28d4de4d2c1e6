//! The repository's own files, and the outside checkers that judge them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A file of the repository, whole.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs a checker and fails with its output unless it exits 0 and prints nothing but `allowed`.
pub fn check(cmd: &mut Command, what: &str, allowed: impl Fn(&str) -> bool) {
    let (ok, text) = output(cmd, what);
    let unexpected: Vec<&str> = text.lines().filter(|l| !allowed(l)).collect();
    assert!(ok && unexpected.is_empty(), "{what} failed:\n{text}");
}

/// Runs a tool to completion: whether it exited 0, and its stdout then stderr.
pub fn output(cmd: &mut Command, what: &str) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); scripts/ensure-tools installs it"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
