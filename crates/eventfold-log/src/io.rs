//! Storage I/O behind a small trait, so that tests can replace the disk with a
//! simulated one that fails, writes short, crashes and loses power on command.
//!
//! The engine only needs positional reads and writes, `fdatasync`, truncation, and a
//! handful of directory operations; nothing here knows about records or segments.

use std::any::Any;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// New file (it must not exist yet), read and write.
    CreateNew,
}

/// An open file.
#[expect(
    clippy::len_without_is_empty,
    reason = "files are never asked whether they are empty"
)]
pub trait StorageFile: Send + Sync {
    /// Reads into `buf` from `offset`; returns the bytes read (0 at the end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes some prefix of `buf` at `offset`; returns how many bytes were written.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes the file's data (and its size) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Reserves the blocks for the file to grow to `len` bytes and sets its size there
    /// (the new bytes read as zeros), so that later writes below `len` change neither
    /// the file's size nor its block map: an `fdatasync` after them has no size to
    /// journal. Never shrinks the file. Files that are only read do not support it.
    fn allocate(&self, len: u64) -> io::Result<()> {
        let _ = len;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Reads exactly `buf.len()` bytes from `offset`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`, continuing after short writes.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// A held exclusive lock; released when dropped.
pub type LockGuard = Box<dyn Any + Send + Sync>;

/// How this process describes itself in a lock file: its PID and command (the
/// program and subcommand only: later arguments may hold tokens), and what it does
/// with the store when it said (`serving http://...`).
pub(crate) fn lock_holder(doing: Option<&str>) -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let command = match args.next().filter(|a| !a.starts_with('-')) {
        Some(subcommand) => format!("{program} {subcommand}"),
        None => program,
    };
    match doing {
        Some(doing) => format!("process {} ({command}), {doing}", std::process::id()),
        None => format!("process {} ({command})", std::process::id()),
    }
}

/// Replaces the text of a held lock file.
fn write_lock_holder(file: &File, text: &str) -> io::Result<()> {
    file.set_len(0)?;
    file.write_all_at(text.as_bytes(), 0)?;
    file.write_all_at(b"\n", text.len() as u64)
}

/// Says, in the lock file a [`Storage::lock`] of [`OsStorage`] took, what its holder
/// does with the store (a simulated disk's lock has no file: nothing to say).
pub(crate) fn describe_lock_holder(guard: &LockGuard, doing: &str) {
    if let Some(file) = guard.downcast_ref::<File>() {
        let _ = write_lock_holder(file, &lock_holder(Some(doing)));
    }
}

/// The file system as the engine sees it.
pub trait Storage: Send + Sync + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Names of the entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if needed); `WouldBlock` when another
    /// holder has it.
    fn lock(&self, path: &Path) -> io::Result<LockGuard>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsStorage;

struct OsFile(File);

impl StorageFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    #[cfg(target_os = "linux")]
    fn allocate(&self, len: u64) -> io::Result<()> {
        // No flags: allocate and extend the size (`FALLOC_FL_KEEP_SIZE` would leave
        // the size to every later fdatasync to journal, which is what this avoids).
        rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len)
            .map_err(io::Error::from)
    }
}

impl Storage for OsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true);
            }
        }
        Ok(Arc::new(OsFile(options.open(path)?)))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds the store, for the error another process gets; the lock
                // works without it, so a failure to write it is ignored.
                let _ = write_lock_holder(&file, &lock_holder(None));
                Ok(Box::new(file))
            }
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
