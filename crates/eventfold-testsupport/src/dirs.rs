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
