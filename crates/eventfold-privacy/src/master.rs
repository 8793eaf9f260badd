//! Where the master key comes from: a file or an environment variable given from
//! outside (production), or a file the store creates once in the data directory's key
//! directory, beside the log (a default start).

use std::io::Write;
use std::path::{Path, PathBuf};

use eventfold_core::{Error, Result};

use crate::crypto::MasterKey;

/// The environment variable holding the master key as 64 hexadecimal digits.
pub const MASTER_KEY_ENV: &str = "EVENTFOLD_MASTER_KEY";
/// The environment variable naming a file holding the master key (the CLI's
/// `--master-key-file`).
pub const MASTER_KEY_FILE_ENV: &str = "EVENTFOLD_MASTER_KEY_FILE";
/// The directory of a data directory that holds the key store and, on a default start,
/// the master key: `DATA/keys`.
pub const KEYS_DIR: &str = "keys";
/// The file of a master key created on a default start, in [`KEYS_DIR`].
pub const DEFAULT_MASTER_KEY_FILE: &str = "master.key";

/// Where a master key is taken from. Its `Debug` and `Display` never show a key.
#[derive(Clone)]
pub enum MasterKeySource {
    /// A file of 64 hexadecimal digits (`--master-key-file`).
    File(PathBuf),
    /// The hexadecimal key itself (from [`MASTER_KEY_ENV`]).
    Hex(String),
    /// The default: this file, created with a new random key when it does not exist.
    Default(PathBuf),
}

impl std::fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::File(path) | MasterKeySource::Default(path) => {
                write!(f, "the master key file {}", path.display())
            }
            MasterKeySource::Hex(_) => write!(f, "the master key in {MASTER_KEY_ENV}"),
        }
    }
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKeySource({self})")
    }
}

impl MasterKeySource {
    /// The source a process uses: the given file, else the key in [`MASTER_KEY_ENV`],
    /// else the default file `keys/master.key` of `data_dir`.
    pub fn resolve(file: Option<&Path>, data_dir: &Path) -> MasterKeySource {
        if let Some(file) = file {
            return MasterKeySource::File(file.to_path_buf());
        }
        match std::env::var(MASTER_KEY_ENV) {
            Ok(hex) if !hex.trim().is_empty() => MasterKeySource::Hex(hex),
            _ => MasterKeySource::Default(data_dir.join(KEYS_DIR).join(DEFAULT_MASTER_KEY_FILE)),
        }
    }

    /// The master key. A default file is created when missing and `create` is set (and
    /// the creation is logged once, with what to do about it); without `create` a
    /// missing default file gives `None` (a store that never sealed anything).
    pub fn load(&self, create: bool) -> Result<Option<MasterKey>> {
        match self {
            MasterKeySource::Hex(hex) => MasterKey::from_hex(hex)
                .map(Some)
                .map_err(|e| in_setting(e, MASTER_KEY_ENV)),
            MasterKeySource::File(path) => read_key_file(path).map(Some),
            MasterKeySource::Default(path) => {
                if path.exists() {
                    return read_key_file(path).map(Some);
                }
                if !create {
                    return Ok(None);
                }
                create_key_file(path).map(Some)
            }
        }
    }
}

fn in_setting(error: Error, setting: &str) -> Error {
    match error {
        Error::InvalidSetting { reason, .. } => Error::InvalidSetting {
            setting: setting.to_string(),
            reason,
        },
        other => other,
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading the master key file {}", path.display()), e))?;
    let text = zeroize::Zeroizing::new(text);
    MasterKey::from_hex(&text).map_err(|e| in_setting(e, &path.display().to_string()))
}

/// Creates the default master key file (readable by its owner only) and says so.
fn create_key_file(path: &Path) -> Result<MasterKey> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let (key, hex) = MasterKey::generate()?;
    let temporary = path.with_extension("key.new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = std::fs::remove_file(&temporary);
    let mut file = options
        .open(&temporary)
        .map_err(|e| Error::io(format!("creating {}", temporary.display()), e))?;
    file.write_all(format!("{}\n", hex.as_str()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", temporary.display()), e))?;
    std::fs::rename(&temporary, path)
        .map_err(|e| Error::io(format!("renaming {}", temporary.display()), e))?;
    crate::file_keys::sync_dir(dir)?;
    tracing::warn!(
        path = %path.display(),
        "created a master key for personal data at {}; back it up apart from the data \
         directory, or give your own with --master-key-file or {MASTER_KEY_ENV}",
        path.display()
    );
    Ok(key)
}
