//! Where an archive lives: an `s3://BUCKET/PREFIX` or `file:///path` URL turned into
//! an object store and the prefix of the archive's objects in it.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::error::{ArchiveError, Result};

/// How long a request to the object storage is retried (connection errors, 5xx, throttling),
/// with backoff, before an archive or restore gives up: long enough for an object store
/// that restarts; a run that gave up resumes where it stopped.
const RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Most retries of one request within [`RETRY_TIMEOUT`]: with at least a second
/// between two (up to 15 s, growing at random), a request is retried for 15 s at the
/// least.
const RETRIES_MAX: usize = 15;

/// The environment variables that give an S3 client its credentials; without one of
/// them the client would fall back to asking an EC2 instance metadata service, which
/// off EC2 only answers after a long timeout. `AWS_SKIP_SIGNATURE` is for public
/// buckets that take unsigned requests.
const CREDENTIAL_VARIABLES: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SKIP_SIGNATURE",
];

/// An archive's place: the object store and the prefix its objects live under.
#[derive(Clone)]
pub struct ArchiveLocation {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

impl std::fmt::Debug for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveLocation")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ArchiveLocation {
    /// Parses an archive URL:
    /// - `s3://BUCKET/PREFIX`: S3 or an S3-compatible service, configured by the usual
    ///   `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    ///   `AWS_REGION`, `AWS_ENDPOINT_URL` for another service than AWS, and
    ///   `AWS_ALLOW_HTTP=true` for an endpoint without TLS);
    /// - `file:///path/on/the/disk`: a directory (created if missing).
    pub fn parse(url: &str) -> Result<Self> {
        Self::parse_with(url, &[])
    }

    /// [`ArchiveLocation::parse`] with S3 settings given here over those of the
    /// environment: `("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")`, say.
    pub fn parse_with(url: &str, settings: &[(&str, String)]) -> Result<Self> {
        let bad = |reason: String| ArchiveError::Url {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        match parsed.scheme() {
            "s3" | "s3a" => {
                let bucket = parsed.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(bad("no bucket: write s3://BUCKET/PREFIX".into()));
                }
                if !CREDENTIAL_VARIABLES
                    .iter()
                    .any(|v| std::env::var_os(v).is_some() || settings.iter().any(|(k, _)| k == v))
                {
                    return Err(bad(format!(
                        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                         (or one of {})",
                        CREDENTIAL_VARIABLES[1..].join(", ")
                    )));
                }
                // reqwest's rustls needs a crypto provider; the tree's is ring. An
                // error means one is installed already.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let retry = object_store::RetryConfig {
                    max_retries: RETRIES_MAX,
                    retry_timeout: RETRY_TIMEOUT,
                    backoff: object_store::BackoffConfig {
                        init_backoff: std::time::Duration::from_secs(1),
                        max_backoff: std::time::Duration::from_secs(15),
                        base: 2.0,
                    },
                };
                let mut builder = object_store::aws::AmazonS3Builder::from_env();
                for (key, value) in settings {
                    let key = key
                        .to_ascii_lowercase()
                        .parse()
                        .map_err(|e: object_store::Error| bad(e.to_string()))?;
                    builder = builder.with_config(key, value);
                }
                let store = builder
                    .with_url(url)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                Ok(ArchiveLocation {
                    url: url.to_string(),
                    store: Arc::new(store),
                    prefix: prefix_of(parsed.path()),
                })
            }
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|()| bad("not a local path: write file:///path/on/the/disk".into()))?;
                std::fs::create_dir_all(&path)
                    .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
                    .map_err(|e| bad(e.to_string()))?;
                Ok(ArchiveLocation {
                    url: url.to_string(),
                    store: Arc::new(store),
                    prefix: ObjectPath::default(),
                })
            }
            other => Err(bad(format!(
                "unsupported scheme {other}:// (use s3://BUCKET/PREFIX or file:///path)"
            ))),
        }
    }

    /// An archive in any object store (an in-memory one in tests), under `prefix`.
    pub fn with_store(url: &str, store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ArchiveLocation {
            url: url.to_string(),
            store,
            prefix: prefix_of(prefix),
        }
    }

    /// The URL it was parsed from.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    /// The full path of the archive object `key` (a `/`-separated name under the prefix).
    pub(crate) fn path(&self, key: &str) -> ObjectPath {
        key.split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }
}

fn prefix_of(path: &str) -> ObjectPath {
    ObjectPath::from_iter(path.split('/').filter(|p| !p.is_empty()))
}
