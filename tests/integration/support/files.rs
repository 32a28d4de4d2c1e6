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
