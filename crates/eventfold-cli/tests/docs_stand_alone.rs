//! The repository's documentation stands alone and stays true to the code: the code
//! map in `docs/architecture.md` names every crate and every top-level module, and no
//! file points outside the repository (to a sibling checkout or a machine's own paths).

use std::path::{Path, PathBuf};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The code map: the first fenced block of `docs/architecture.md`.
fn code_map() -> String {
    let text = std::fs::read_to_string(repository_root().join("docs/architecture.md"))
        .expect("docs/architecture.md is readable");
    let start = text
        .find("```text\n")
        .expect("architecture.md has a code map block")
        + 8;
    let end = start + text[start..].find("```").expect("the code map block ends");
    text[start..end].to_string()
}

/// The part of the code map about `crate_dir` (a line `  <crate_dir>/` up to the next
/// line that starts another crate or top-level entry at the same indentation or less).
fn section<'a>(map: &'a str, crate_dir: &str) -> Option<&'a str> {
    let header = format!("\n  {crate_dir}/");
    let start = map.find(&header)? + 1;
    let rest = &map[start + header.len() - 1..];
    let end = rest
        .find("\n  eventfold")
        .or_else(|| rest.find("\nexamples/"))
        .unwrap_or(rest.len());
    Some(&map[start..start + header.len() - 1 + end])
}

/// Top-level modules of a crate: `src/*.rs` (but the crate roots) and `src/*/`.
fn top_level_modules(crate_path: &Path) -> Vec<String> {
    let mut modules = Vec::new();
    let Ok(entries) = std::fs::read_dir(crate_path.join("src")) else {
        return modules;
    };
    for entry in entries {
        let path = entry.expect("src/ entries are readable").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file names are UTF-8")
            .to_string();
        if path.is_dir() {
            modules.push(format!("{name}/"));
        } else if name.ends_with(".rs") && !matches!(name.as_str(), "lib.rs" | "main.rs") {
            modules.push(name);
        }
    }
    modules.sort();
    modules
}

#[test]
fn the_code_map_names_every_crate_and_top_level_module() {
    let map = code_map();
    let mut missing = Vec::new();
    let crates = std::fs::read_dir(repository_root().join("crates")).expect("crates/ exists");
    let mut crate_count = 0;
    for entry in crates {
        let path = entry.expect("crates/ entries are readable").path();
        if !path.join("Cargo.toml").exists() {
            continue;
        }
        crate_count += 1;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("crate directory names are UTF-8")
            .to_string();
        let Some(section) = section(&map, &name) else {
            missing.push(format!("crate {name}"));
            continue;
        };
        for module in top_level_modules(&path) {
            if !section.contains(&module) {
                missing.push(format!("{name}: module {module}"));
            }
        }
    }
    assert!(
        crate_count >= 9,
        "found only {crate_count} crates: the test looks in the wrong place"
    );
    assert!(
        missing.is_empty(),
        "docs/architecture.md's code map does not name:\n  {}",
        missing.join("\n  ")
    );
}

/// Text files of the repository, without build outputs and fuzz inputs.
fn repository_text_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("directories are readable") {
        let path = entry.expect("entries are readable").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(
                name,
                "target" | ".git" | "corpus" | "artifacts" | "node_modules"
            ) {
                repository_text_files(&path, files);
            }
        } else if !matches!(name, "Cargo.lock" | ".git") {
            // (`.git` is a file in a git worktree: it names the main repository.)
            files.push(path);
        }
    }
}

#[test]
fn no_file_points_outside_the_repository() {
    // Spelled in pieces so that this file does not find itself.
    let forbidden = [
        ["..", "/shared"].concat(),
        ["/wo", "rk/"].concat(),
        ["/ro", "ot/"].concat(),
        ["/ho", "me/"].concat(),
    ];
    let mut files = Vec::new();
    repository_text_files(&repository_root(), &mut files);
    assert!(files.len() > 100, "found only {} files", files.len());
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        let word = ["SP", "EC"].concat();
        let mut from = 0;
        while let Some(at) = text[from..].find(&word).map(|i| from + i) {
            let is_word_char = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            let before = text[..at].chars().next_back();
            let after = text[at + word.len()..].chars().next();
            if !is_word_char(before) && !is_word_char(after) {
                let line = text[..at].lines().count().max(1);
                found.push(format!("{}:{line}: {word}", file.display()));
            }
            from = at + word.len();
        }
        for needle in &forbidden {
            if let Some(at) = text.find(needle.as_str()) {
                let line = text[..at].lines().count().max(1);
                found.push(format!("{}:{line}: {needle}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "files refer to something outside the repository (use a placeholder such as \
         /path/on/the/disk, and state targets in docs/performance.md):\n  {}",
        found.join("\n  ")
    );
}
