//! Temporary directories for a test's data, removed when dropped (also when the test
//! fails), with their path as a command-line argument.

use std::path::{Path, PathBuf};

/// A fresh temporary directory.
///
/// # Panics
///
/// When the system's temporary directory is not writable: no test can go on.
pub fn temp_dir() -> TempDir {
    TempDir(tempfile::tempdir().unwrap_or_else(|e| panic!("creating a temporary directory: {e}")))
}

/// A temporary directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// `name` inside it (not created).
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(name)
    }

    /// Its path as a command-line argument.
    ///
    /// # Panics
    ///
    /// When the path is not UTF-8 (the system's temporary directory would have to
    /// be named so).
    pub fn arg(&self) -> &str {
        path_arg(self.0.path())
    }
}

/// `path` as a command-line argument.
///
/// # Panics
///
/// When `path` is not UTF-8.
pub fn path_arg(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

/// Whether any file under `dir` (searched through) holds the bytes `needle`: how tests
/// prove that a value never reached, or has left, the disk.
///
/// A file or directory removed while the search runs (by the code under test) holds
/// nothing any more and is passed over.
///
/// # Panics
///
/// When `dir` or a file under it cannot be read for another reason: the search would
/// prove nothing.
pub fn holds_bytes(dir: &Path, needle: &[u8]) -> bool {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => panic!("reading {}: {e}", dir.display()),
        };
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) if gone(&e) => continue,
                Err(e) => panic!("reading {}: {e}", dir.display()),
            };
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if gone(&e) => continue,
                Err(e) => panic!("reading {}: {e}", path.display()),
            };
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }
    false
}
