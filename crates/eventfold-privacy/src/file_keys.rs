//! The key store of the embedded engine: one file, `keys/subjects.keys` in the data
//! directory, beside (never inside) the log's segments.
//!
//! Layout (every integer little-endian; the file is read whole when opened):
//!
//! ```text
//! header   8  magic "EFKEYS01"
//!         64  master-key check: "eventfold key store" sealed by the master key
//!             (nonce 24, ciphertext 19, tag 16, zero padding 5)
//! record  32  subject digest: SHA-256 of "eventfold subject v1\0" and the subject id
//!  (112)   1  state: 1 active, 2 forgotten
//!          3  zero
//!         72  active: the data key wrapped by the master key (nonce 24, key 32, tag 16),
//!             with the digest as associated data; forgotten: zeros
//!          4  CRC-32C of the 108 bytes before it
//! ```
//!
//! A new subject appends a record and syncs it before its key is used, so a key is
//! durable before any event sealed with it. Forgetting overwrites the subject's record
//! in place with a forgotten one (the wrapped key's bytes become zeros) and syncs the
//! file: no copy of the key is left in the key store, and none was ever in the log. A
//! record cut short at the end (a crash while a new key was written, before any event
//! used it) is dropped; a record whose CRC fails is damage, reported with its offset.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use eventfold_core::{Error, Result};
use zeroize::Zeroizing;

use crate::crypto::{DataKey, KEY_BYTES, MasterKey, subject_digest};
use crate::keys::{FastHash, KeyStore, SubjectKey, SubjectKeys, forgotten_subject_error};
use crate::master::{MASTER_KEY_ENV, MasterKeySource};

/// The key file's name in the key directory.
pub const SUBJECT_KEYS_FILE: &str = "subjects.keys";

const MAGIC: &[u8; 8] = b"EFKEYS01";
const CHECK_PLAINTEXT: &[u8] = b"eventfold key store";
const CHECK_BYTES: usize = 64;
const HEADER_BYTES: usize = MAGIC.len() + CHECK_BYTES;
const RECORD_BYTES: usize = 112;
const WRAPPED_BYTES: usize = 72;
const STATE_ACTIVE: u8 = 1;
const STATE_FORGOTTEN: u8 = 2;

/// One subject's record, as kept in memory.
enum Entry {
    Active { offset: u64, key: DataKey },
    Forgotten,
}

struct Keys {
    /// `None` until the file exists and is open for writing (read-only, or not yet
    /// created).
    file: Option<File>,
    /// `None` until the file exists.
    master: Option<MasterKey>,
    /// Where the next record goes.
    end: u64,
    /// By subject digest.
    entries: HashMap<[u8; 32], Entry, FastHash>,
}

/// Subjects' data keys in a file of their own (see the module docs for the layout).
///
/// ```
/// use eventfold_privacy::{FileKeyStore, KeyStore, MasterKey, SubjectKey};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let (master, _) = MasterKey::generate().unwrap();
/// let keys = FileKeyStore::open(dir.path(), master.clone()).unwrap();
/// keys.key_for_writing("subject-1").await.unwrap();
/// keys.forget("subject-1").await.unwrap();
/// drop(keys);
/// let keys = FileKeyStore::open(dir.path(), master).unwrap();
/// let found = keys.lookup(&["subject-1"]).await.unwrap();
/// assert!(matches!(found["subject-1"], SubjectKey::Forgotten));
/// # });
/// ```
pub struct FileKeyStore {
    dir: PathBuf,
    path: PathBuf,
    /// Where the master key comes from when the file is created on first use; `None`:
    /// read-only.
    create_with: Option<MasterKeySource>,
    keys: Mutex<Keys>,
}

impl std::fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileKeyStore {
    /// Opens the key store in `dir` (a data directory's `keys/`), creating the
    /// directory and the file when there are none. The master key must be the one the
    /// file was created with.
    pub fn open(dir: &Path, master: MasterKey) -> Result<FileKeyStore> {
        let path = dir.join(SUBJECT_KEYS_FILE);
        if !path.exists() {
            create_file(dir, &path, &master)?;
        }
        let file = open_writable(&path)?;
        Self::load(dir, master, file, true)
    }

    /// Opens the key store of a data directory whose master key comes from `source`
    /// (see [`MasterKeySource::resolve`]). When the key file does not exist yet,
    /// nothing is created until the first key is: a store that never seals a value
    /// gets neither a key file nor a master key. `writable: false` never creates or
    /// changes anything.
    pub fn open_with_source(
        dir: &Path,
        source: MasterKeySource,
        writable: bool,
    ) -> Result<FileKeyStore> {
        let path = dir.join(SUBJECT_KEYS_FILE);
        if path.exists() {
            let Some(master) = source.load(false)? else {
                return Err(Error::InvalidSetting {
                    setting: "master_key".into(),
                    reason: format!(
                        "the key store {} exists but its master key does not: {source} is \
                         missing (restore it from its backup, or give the master key with \
                         --master-key-file or {MASTER_KEY_ENV})",
                        path.display()
                    ),
                });
            };
            let file = if writable {
                open_writable(&path)?
            } else {
                File::open(&path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?
            };
            return Self::load(dir, master, file, writable);
        }
        Ok(FileKeyStore {
            dir: dir.to_path_buf(),
            path,
            create_with: writable.then_some(source),
            keys: Mutex::new(Keys {
                file: None,
                master: None,
                end: HEADER_BYTES as u64,
                entries: HashMap::default(),
            }),
        })
    }

    /// Opens the key store in `dir` for reading only: nothing is created or changed,
    /// and no key can be created or forgotten. No file means no keys.
    pub fn open_read_only(dir: &Path, master: MasterKey) -> Result<FileKeyStore> {
        let path = dir.join(SUBJECT_KEYS_FILE);
        match File::open(&path) {
            Ok(file) => Self::load(dir, master, file, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileKeyStore {
                dir: dir.to_path_buf(),
                path,
                create_with: None,
                keys: Mutex::new(Keys {
                    file: None,
                    master: None,
                    end: HEADER_BYTES as u64,
                    entries: HashMap::default(),
                }),
            }),
            Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
        }
    }

    fn load(dir: &Path, master: MasterKey, mut file: File, writable: bool) -> Result<Self> {
        let path = dir.join(SUBJECT_KEYS_FILE);
        let shown = path.display().to_string();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {shown}"), e))?;
        let corrupted = |offset: usize, reason: String| Error::Corrupted {
            file: shown.clone(),
            offset: offset as u64,
            reason,
        };
        if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupted(
                0,
                "not an eventfold key store (its header is missing or damaged)".into(),
            ));
        }
        let check = &bytes[MAGIC.len()..HEADER_BYTES];
        let opened = master.unwrap_bytes(&check[..CHECK_BYTES - 5], MAGIC);
        if opened.as_deref().map(Vec::as_slice) != Some(CHECK_PLAINTEXT) {
            return Err(Error::InvalidSetting {
                setting: "master_key".into(),
                reason: format!(
                    "the master key given does not open the key store {shown}: it was created \
                     with another master key (give that one: --master-key-file or \
                     EVENTFOLD_MASTER_KEY), or its header is damaged"
                ),
            });
        }
        let mut entries = HashMap::default();
        let mut offset = HEADER_BYTES;
        while offset + RECORD_BYTES <= bytes.len() {
            let record = &bytes[offset..offset + RECORD_BYTES];
            let stored_crc =
                u32::from_le_bytes([record[108], record[109], record[110], record[111]]);
            if crc32c::crc32c(&record[..108]) != stored_crc {
                return Err(corrupted(
                    offset,
                    "a subject key record fails its checksum: the key file is damaged; \
                     restore it from its backup"
                        .into(),
                ));
            }
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&record[..32]);
            let entry = match record[32] {
                STATE_ACTIVE => {
                    let wrapped = &record[36..36 + WRAPPED_BYTES];
                    let key_bytes = master.unwrap_bytes(wrapped, &digest).ok_or_else(|| {
                        corrupted(
                            offset,
                            "a subject's data key does not open with the master key although \
                             its record is intact"
                                .into(),
                        )
                    })?;
                    let key: Zeroizing<[u8; KEY_BYTES]> =
                        Zeroizing::new(key_bytes.as_slice().try_into().map_err(|_| {
                            corrupted(offset, "a data key of the wrong length".into())
                        })?);
                    Entry::Active {
                        offset: offset as u64,
                        key: DataKey::from_bytes(&key),
                    }
                }
                STATE_FORGOTTEN => Entry::Forgotten,
                other => {
                    return Err(corrupted(offset, format!("unknown record state {other}")));
                }
            };
            entries.insert(digest, entry);
            offset += RECORD_BYTES;
        }
        // A record cut short at the end was never synced whole, so no event uses its
        // key: the next record is written over it.
        Ok(FileKeyStore {
            dir: dir.to_path_buf(),
            path,
            create_with: None,
            keys: Mutex::new(Keys {
                file: writable.then_some(file),
                master: Some(master),
                end: offset as u64,
                entries,
            }),
        })
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        // Every change of `Keys` is made after its write succeeded, in one step, so a
        // panic elsewhere cannot leave it half-changed.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `records` (one or more) at `offset` and syncs them.
    fn write_record(&self, file: &File, offset: u64, records: &[u8]) -> Result<()> {
        let shown = self.path.display();
        file.write_all_at(records, offset)
            .map_err(|e| Error::io(format!("writing key records to {shown}"), e))?;
        file.sync_data()
            .map_err(|e| Error::io(format!("syncing {shown}"), e))
    }

    /// The file and master key to write with, the file created first when it does
    /// not exist yet.
    fn writable<'k>(&self, keys: &'k mut Keys) -> Result<(&'k File, MasterKey)> {
        if keys.file.is_none() {
            let Some(source) = &self.create_with else {
                return Err(self.read_only_error());
            };
            let master = source.load(true)?.ok_or_else(|| {
                Error::Backend(format!(
                    "no master key for the key store {}",
                    self.path.display()
                ))
            })?;
            create_file(&self.dir, &self.path, &master)?;
            keys.file = Some(open_writable(&self.path)?);
            keys.master = Some(master);
            keys.end = HEADER_BYTES as u64;
        }
        match (&keys.file, &keys.master) {
            (Some(file), Some(master)) => Ok((file, master.clone())),
            _ => Err(self.read_only_error()),
        }
    }

    fn read_only_error(&self) -> Error {
        Error::ReadOnly {
            reason: format!(
                "the key store {} was opened for reading only",
                self.path.display()
            ),
        }
    }
}

fn record(digest: &[u8; 32], state: u8, wrapped: Option<&[u8]>) -> Vec<u8> {
    let mut record = vec![0u8; RECORD_BYTES];
    record[..32].copy_from_slice(digest);
    record[32] = state;
    if let Some(wrapped) = wrapped {
        record[36..36 + WRAPPED_BYTES].copy_from_slice(wrapped);
    }
    let crc = crc32c::crc32c(&record[..108]);
    record[108..].copy_from_slice(&crc.to_le_bytes());
    record
}

fn open_writable(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// Writes a new key file: header into a temporary file, synced, renamed into place,
/// and the directory synced.
fn create_file(dir: &Path, path: &Path, master: &MasterKey) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&master.wrap(CHECK_PLAINTEXT, MAGIC)?);
    header.resize(HEADER_BYTES, 0);
    let temporary = dir.join(format!("{SUBJECT_KEYS_FILE}.new"));
    let mut file = File::create(&temporary)
        .map_err(|e| Error::io(format!("creating {}", temporary.display()), e))?;
    file.write_all(&header)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", temporary.display()), e))?;
    std::fs::rename(&temporary, path)
        .map_err(|e| Error::io(format!("renaming {}", temporary.display()), e))?;
    sync_dir(dir)
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing the directory {}", dir.display()), e))
}

#[async_trait]
impl KeyStore for FileKeyStore {
    async fn lookup(&self, subjects: &[&str]) -> Result<SubjectKeys> {
        let keys = self.keys();
        Ok(subjects
            .iter()
            .map(|subject| {
                let found = match keys.entries.get(&subject_digest(subject)) {
                    Some(Entry::Active { key, .. }) => SubjectKey::Active(key.clone()),
                    Some(Entry::Forgotten) => SubjectKey::Forgotten,
                    None => SubjectKey::Unknown,
                };
                (subject.to_string(), found)
            })
            .collect())
    }

    async fn key_for_writing(&self, subject: &str) -> Result<DataKey> {
        let mut keys = self.keys_for_writing(&[subject]).await?;
        keys.pop()
            .ok_or_else(|| Error::Backend("no key was made for one subject".into()))
    }

    async fn keys_for_writing(&self, subjects: &[&str]) -> Result<Vec<DataKey>> {
        let digests: Vec<[u8; 32]> = subjects.iter().map(|s| subject_digest(s)).collect();
        let mut keys = self.keys();
        // The subjects without a key, once each, in their order: their records are
        // written one after the other at the end of the file, then synced once.
        let mut missing: Vec<[u8; 32]> = Vec::new();
        let mut seen = HashSet::new();
        for (subject, digest) in subjects.iter().zip(&digests) {
            match keys.entries.get(digest) {
                Some(Entry::Active { .. }) => {}
                Some(Entry::Forgotten) => return Err(forgotten_subject_error(subject)),
                None if seen.insert(*digest) => missing.push(*digest),
                None => {}
            }
        }
        if !missing.is_empty() {
            let first = keys.end;
            let (file, master) = self.writable(&mut keys)?;
            let mut records = Vec::with_capacity(missing.len() * RECORD_BYTES);
            let mut made = Vec::with_capacity(missing.len());
            for digest in &missing {
                let (key, bytes) = DataKey::generate()?;
                let wrapped = master.wrap(bytes.as_slice(), digest)?;
                records.extend_from_slice(&record(digest, STATE_ACTIVE, Some(&wrapped)));
                made.push(key);
            }
            self.write_record(file, first, &records)?;
            keys.end += records.len() as u64;
            for (n, (digest, key)) in missing.iter().zip(made).enumerate() {
                let offset = first + (n * RECORD_BYTES) as u64;
                keys.entries.insert(*digest, Entry::Active { offset, key });
            }
        }
        digests
            .iter()
            .map(|digest| match keys.entries.get(digest) {
                Some(Entry::Active { key, .. }) => Ok(key.clone()),
                _ => Err(Error::Backend(
                    "a subject's key is missing right after it was written".into(),
                )),
            })
            .collect()
    }

    async fn forget(&self, subject: &str) -> Result<()> {
        let digest = subject_digest(subject);
        let mut keys = self.keys();
        let offset = match keys.entries.get(&digest) {
            Some(Entry::Forgotten) => return Ok(()),
            Some(Entry::Active { offset, .. }) => *offset,
            // A subject never seen gets a tombstone too, so that no key is made for it
            // later.
            None => keys.end,
        };
        let (file, _) = self.writable(&mut keys)?;
        self.write_record(file, offset, &record(&digest, STATE_FORGOTTEN, None))?;
        if offset == keys.end {
            keys.end += RECORD_BYTES as u64;
        }
        // The data key's memory is wiped when its last clone is dropped.
        keys.entries.insert(digest, Entry::Forgotten);
        Ok(())
    }
}
