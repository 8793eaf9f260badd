//! The crash harness: a test runs its own binary again as a child process that writes
//! (selected by an environment variable, so no extra program is needed), reads what
//! the child reports as done, and kills it with SIGKILL mid-write. What the child
//! reported before the kill is what must survive it.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// One test that plays both parts: the parent that starts and kills, and the child
/// that writes.
///
/// ```no_run
/// use eventfold_testsupport::crash::SelfChild;
///
/// const WRITER: SelfChild = SelfChild::new("appends_survive_sigkill", "MY_TEST_CHILD_DIR");
///
/// #[test]
/// fn appends_survive_sigkill() {
///     if let Some(dir) = WRITER.role() {
///         // The child: write to `dir` for ever, printing what was acknowledged.
///         return;
///     }
///     let mut child = WRITER.spawn("/path/on/the/disk");
///     let first = child.next_line();
///     let rest = child.kill();
///     // Check that what `first` and `rest` report is in the store.
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SelfChild {
    test: &'static str,
    variable: &'static str,
}

impl SelfChild {
    /// The test named `test` (its full name as the test harness knows it), whose child
    /// is told by `variable` that it is the child (and what to write to).
    pub const fn new(test: &'static str, variable: &'static str) -> Self {
        SelfChild { test, variable }
    }

    /// In the child, the value the parent gave it; `None` in the parent.
    pub fn role(&self) -> Option<String> {
        std::env::var(self.variable).ok()
    }

    /// Starts the child: this test binary again, running only this test, with the
    /// variable set to `value`. Its stdout is read through [`Writer::next_line`]; its
    /// stderr goes to the test's.
    ///
    /// # Panics
    ///
    /// When the child cannot be started.
    pub fn spawn(&self, value: impl AsRef<OsStr>) -> Writer {
        let program = std::env::current_exe()
            .unwrap_or_else(|e| panic!("the path of the running test binary: {e}"));
        let mut child = Command::new(program)
            .args([self.test, "--exact", "--nocapture", "--test-threads=1"])
            .env(self.variable, value)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the child of {}: {e}", self.test));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout pipe to the child of {}", self.test));
        Writer {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }
}

/// The writing child; killed when dropped.
#[derive(Debug)]
pub struct Writer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Writer {
    /// The next line the child printed (waiting for it); `None` once its stdout is
    /// closed (it ended). A line that cannot be read is passed over.
    pub fn next_line(&mut self) -> Option<String> {
        loop {
            match self.lines.next()? {
                Ok(line) => return Some(line),
                Err(_) => continue,
            }
        }
    }

    /// SIGKILL: no code of the child runs after it. Returns the lines it printed
    /// before the kill that were not read yet (they are still in the pipe), and waits
    /// for it to end.
    ///
    /// # Panics
    ///
    /// When the child cannot be killed.
    pub fn kill(mut self) -> Vec<String> {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL to the child: {e}"));
        let rest = self.lines.by_ref().map_while(Result::ok).collect();
        let _ = self.child.wait();
        rest
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
