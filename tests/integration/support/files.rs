//! The repository's own files, and the outside checkers that judge them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Every document of a YAML stream as JSON, read by PyYAML (which cfn-lint brings along) so that
/// the tests need no YAML parser of their own.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write YAML");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "not YAML (or PyYAML missing: scripts/ensure-tools installs it):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The fenced blocks of `lang` in the README section under `heading` (a whole heading line such
/// as "### systemd"), in order.
pub fn readme_blocks(heading: &str, lang: &str) -> Vec<String> {
    let readme = read("README.md");
    let level = heading.split(' ').next().unwrap_or("").len();
    let mut blocks = Vec::new();
    let mut in_section = false;
    let mut block: Option<String> = None;
    for line in readme.lines() {
        if let Some(b) = block.as_mut() {
            if line == "```" {
                blocks.push(block.take().unwrap_or_default());
            } else {
                b.push_str(line);
                b.push('\n');
            }
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && line[hashes..].starts_with(' ') && hashes <= level {
            in_section = line == heading;
        } else if in_section && line == format!("```{lang}") {
            block = Some(String::new());
        }
    }
    assert!(
        !blocks.is_empty(),
        "README has no {lang} block under {heading}"
    );
    blocks
}
