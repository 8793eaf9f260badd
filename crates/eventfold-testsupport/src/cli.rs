//! A binary run as a user would: [`Cli::run`] with arguments (and stdin), its status,
//! stdout and stderr captured; and `eventfold serve` as a process ([`Served`]) with
//! the address it announced, stopped with SIGTERM or killed.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::WAIT_MAX;

/// The variables through which `eventfold` takes a store, a server's users,
/// credentials, master key or settings file from the environment. A test run must not pick them up from the
/// machine it runs on, so they are removed; a test that wants one sets it.
pub const ENVIRONMENT_REMOVED: &[&str] = &[
    "EVENTFOLD_DATA",
    "EVENTFOLD_AUTH",
    "EVENTFOLD_POSTGRES",
    "EVENTFOLD_TOKEN",
    "EVENTFOLD_CA_CERT",
    "EVENTFOLD_CONFIG",
    "EVENTFOLD_MASTER_KEY",
    "EVENTFOLD_MASTER_KEY_FILE",
    "EVENTFOLD_ARCHIVE",
    // An archive test must never reach the machine's own object storage.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SKIP_SIGNATURE",
    "AWS_ENDPOINT_URL",
];

/// A program to run, with the environment every run gets.
///
/// ```
/// let cli = eventfold_testsupport::cli::Cli::new("echo");
/// let output = cli.run(&["hello"]);
/// assert!(output.status.success());
/// assert_eq!(eventfold_testsupport::cli::text(&output.stdout), "hello\n");
/// ```
#[derive(Debug, Clone)]
pub struct Cli {
    program: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Cli {
    /// Runs `program`: in the CLI crate's tests, `env!("CARGO_BIN_EXE_eventfold")`
    /// (cargo names a binary's path only to the tests of its own crate).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Cli {
            program: program.into(),
            env: Vec::new(),
        }
    }

    /// Sets `key` to `value` in the environment of every run.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The command for `args`, to spawn with more settings (pipes, variables).
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.program);
        command.args(args);
        for key in ENVIRONMENT_REMOVED {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs the program with `args` and no input; waits for it to exit.
    ///
    /// # Panics
    ///
    /// When the program cannot be started: the test cannot go on.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.program.display()))
    }

    /// Runs the program with `args`, `stdin` as its standard input; waits for it to
    /// exit.
    ///
    /// # Panics
    ///
    /// When the program cannot be started or its input not written.
    pub fn run_with_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        let mut input = child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("no stdin pipe to {}", self.program.display()));
        // Written from a thread of its own: a program that answers before it has read
        // all of its input would otherwise block on a full stdout pipe.
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || input.write_all(&stdin));
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.program.display()));
        match writer.join() {
            // A program may exit without reading all of its input.
            Ok(Ok(())) | Ok(Err(_)) => {}
            Err(_) => panic!("writing the input of {} panicked", self.program.display()),
        }
        output
    }

    /// Starts `eventfold serve` with `args` (after `serve`; `--listen 127.0.0.1:0`
    /// lets the system choose the port) and waits for its announcement.
    pub fn serve<S: AsRef<OsStr>>(&self, args: &[S]) -> Served {
        let mut command = self.command(&["serve"]);
        command.args(args);
        Served::spawn(command)
    }
}

/// Bytes a program wrote, as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server process that announced where it listens: `eventfold serve` prints
/// `eventfold listening on http://ADDRESS ...` as its first line of stdout. Killed
/// when dropped unless it was stopped.
#[derive(Debug)]
pub struct Served {
    child: Child,
    address: String,
    announcement: String,
    /// What the process prints after its announcement, complete once it exits.
    stdout: Option<JoinHandle<String>>,
}

impl Served {
    /// Starts `command` with its stdout piped and waits (at most [`WAIT_MAX`]) for the
    /// address it announces.
    ///
    /// # Panics
    ///
    /// When the process cannot start or announces no address in time.
    pub fn spawn(mut command: Command) -> Served {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout pipe to {command:?}"));
        // The pipe is read to its end on a thread of its own, so the server never
        // blocks (or fails) writing to it, and the announcement is awaited with a bound.
        let (announced, announcement) = mpsc::channel();
        let mut lines = BufReader::new(stdout);
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let _ = lines.read_line(&mut line);
            let _ = announced.send(line);
            let mut rest = String::new();
            let _ = lines.read_to_string(&mut rest);
            rest
        });
        let mut served = Served {
            child,
            address: String::new(),
            announcement: String::new(),
            stdout: Some(reader),
        };
        let line = announcement
            .recv_timeout(WAIT_MAX)
            .unwrap_or_else(|_| panic!("{command:?} announced nothing within {WAIT_MAX:?}"));
        served.address = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in '{line}'"))
            .to_string();
        served.announcement = line;
        served
    }

    /// Where it listens: `HOST:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The first line it printed.
    pub fn announcement(&self) -> &str {
        &self.announcement
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then checks that it exits with status 0 within [`WAIT_MAX`]; returns
    /// what it printed after its announcement.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent, or the process exits otherwise or too late.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap_or_else(|e| panic!("running kill: {e}"));
        assert!(signalled.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + WAIT_MAX;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.address),
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs {WAIT_MAX:?} after SIGTERM",
                self.address
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "{} must exit 0 on SIGTERM, got {status}",
            self.address
        );
        match self.stdout.take().map(JoinHandle::join) {
            Some(Ok(rest)) => rest,
            Some(Err(_)) => panic!("reading the stdout of {} panicked", self.address),
            None => String::new(),
        }
    }

    /// SIGKILL: no code of the process runs after it (a crash); waits for it to end.
    ///
    /// # Panics
    ///
    /// When the process cannot be killed or waited for.
    pub fn kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("killing {}: {e}", self.address));
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.address));
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
