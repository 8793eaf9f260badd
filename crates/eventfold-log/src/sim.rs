//! A simulated disk for crash and fault tests.
//!
//! It keeps, for every file, what a write made visible (the page cache) apart from what
//! an fsync made durable, and for every directory which entries an fsync of the
//! directory made durable. [`SimStorage::power_loss`] builds the disk a crash would
//! leave: only durable names and durable bytes, plus, if asked, a torn prefix of what
//! was written but not synced. Faults are injected by counting mutating operations
//! (writes, syncs, truncations, creations, renames, removals), so a test can fail or
//! crash at exactly the N-th step of a commit.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::{LockGuard, OpenMode, Storage, StorageFile};

/// Faults to inject, each at a given mutating-operation number (counting from 1).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// From this operation on, every operation fails: the process has crashed.
    pub crash_at_op: Option<u64>,
    /// This write fails with an I/O error.
    pub fail_write_at_op: Option<u64>,
    /// This write writes only half of its bytes.
    pub short_write_at_op: Option<u64>,
    /// This fsync fails, and, as on Linux, the unsynced data of the file is dropped.
    pub fail_sync_at_op: Option<u64>,
    /// The disk holds at most this many bytes (all files' current sizes added up);
    /// writes beyond fail with "storage full".
    pub disk_bytes_max: Option<u64>,
}

/// How a power loss treats data written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynced {
    /// Lost entirely.
    Lost,
    /// A prefix survives: for each file, the given fraction (0..=100 percent) of its
    /// unsynced tail, with the last surviving byte flipped if `flip_last` is set.
    TornPrefix {
        /// Percentage of the unsynced tail that survives.
        percent: u8,
        /// Whether the last surviving byte is damaged.
        flip_last: bool,
    },
}

#[derive(Debug, Default, Clone)]
struct Inode {
    visible: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    /// Directory entries as processes see them.
    names: HashMap<PathBuf, usize>,
    /// Directory entries that survive a power loss.
    durable_names: HashMap<PathBuf, usize>,
    dirs: HashSet<PathBuf>,
    locks: HashSet<PathBuf>,
    faults: Faults,
    ops: u64,
}

impl State {
    /// Counts a mutating operation and returns the fault to apply to it, if any.
    fn step(&mut self) -> io::Result<u64> {
        self.ops += 1;
        if self.faults.crash_at_op.is_some_and(|at| self.ops >= at) {
            return Err(io::Error::other("simulated crash: the process is dead"));
        }
        Ok(self.ops)
    }

    fn used_bytes(&self) -> u64 {
        let live: HashSet<usize> = self.names.values().copied().collect();
        live.iter()
            .map(|&i| self.inodes[i].visible.len() as u64)
            .sum()
    }
}

/// A simulated disk shared by every handle cloned from it.
#[derive(Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStorage")
            .field("ops", &self.ops())
            .finish()
    }
}

impl SimStorage {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating operations performed so far.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// The disk as a power loss now would leave it: a new, independent disk with only
    /// durable directory entries and file contents (plus torn unsynced data, as asked),
    /// no locks held and no faults.
    pub fn power_loss(&self, unsynced: Unsynced) -> SimStorage {
        let state = self.state();
        let mut inodes = state.inodes.clone();
        for inode in &mut inodes {
            let mut after = inode.durable.clone();
            // Unsynced writes forward: past the durable end, or into durable zeros
            // (room allocated ahead of the writes). Rewrites of durable data are lost
            // whole.
            let durable = &inode.durable;
            let from = inode
                .visible
                .iter()
                .zip(durable)
                .position(|(v, d)| v != d)
                .unwrap_or(durable.len().min(inode.visible.len()));
            if let Unsynced::TornPrefix { percent, flip_last } = unsynced
                && inode.visible.len() > from
                && crate::segment::all_zero(&durable[from..])
            {
                // Up to the last byte written (zeros of unsynced allocated room are
                // not a write).
                let to = (from..inode.visible.len())
                    .rev()
                    .find(|&i| inode.visible[i] != durable.get(i).copied().unwrap_or(0))
                    .map_or(from, |i| i + 1);
                let tail = &inode.visible[from..to];
                let keep = tail.len() * usize::from(percent.min(100)) / 100;
                if after.len() < from + keep {
                    after.resize(from + keep, 0);
                }
                after[from..from + keep].copy_from_slice(&tail[..keep]);
                if flip_last && keep > 0 {
                    after[from + keep - 1] ^= 0x5a;
                }
            }
            inode.visible = after.clone();
            inode.durable = after;
        }
        let fresh = State {
            inodes,
            names: state.durable_names.clone(),
            durable_names: state.durable_names.clone(),
            dirs: state.dirs.clone(),
            ..State::default()
        };
        SimStorage {
            state: Arc::new(Mutex::new(fresh)),
        }
    }

    /// The current (visible) contents of a file, for tests that damage files.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        state
            .names
            .get(path)
            .map(|&i| state.inodes[i].visible.clone())
    }

    /// Overwrites a file's contents, visible and durable at once (damage injection).
    pub fn write_file(&self, path: &Path, contents: Vec<u8>) {
        let mut state = self.state();
        if let Some(&i) = state.names.get(path) {
            state.inodes[i] = Inode {
                visible: contents.clone(),
                durable: contents,
            };
        }
    }
}

struct SimFile {
    storage: SimStorage,
    inode: usize,
    writable: bool,
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.storage.state();
        let data = &state.inodes[self.inode].visible;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only file",
            ));
        }
        let mut state = self.storage.state();
        let op = state.step()?;
        if state.faults.fail_write_at_op == Some(op) {
            return Err(io::Error::other("simulated write failure (EIO)"));
        }
        let mut len = buf.len();
        if state.faults.short_write_at_op == Some(op) {
            len = len.div_ceil(2);
        }
        let start = offset as usize;
        let current = state.inodes[self.inode].visible.len();
        if let Some(max) = state.faults.disk_bytes_max {
            let free = max.saturating_sub(state.used_bytes()) as usize;
            let end_max = current.max(start) + free;
            if start + len > end_max {
                len = end_max.saturating_sub(start);
                if len == 0 {
                    return Err(io::Error::from(io::ErrorKind::StorageFull));
                }
            }
        }
        let data = &mut state.inodes[self.inode].visible;
        if data.len() < start + len {
            data.resize(start + len, 0);
        }
        data[start..start + len].copy_from_slice(&buf[..len]);
        Ok(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.storage.state();
        let op = state.step()?;
        let fail = state.faults.fail_sync_at_op == Some(op);
        let inode = &mut state.inodes[self.inode];
        if fail {
            // Linux may drop dirty pages whose writeback failed: what was not durable
            // is gone, and a later fsync would report success.
            inode.visible = inode.durable.clone();
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        inode.durable = inode.visible.clone();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.storage.state();
        state.step()?;
        state.inodes[self.inode].visible.resize(len as usize, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.storage.state().inodes[self.inode].visible.len() as u64)
    }

    /// Extends the file with zeros, as `fallocate` does; the new size is durable only
    /// after a sync, like a write's.
    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.storage.state();
        let op = state.step()?;
        if state.faults.fail_write_at_op == Some(op) {
            return Err(io::Error::other("simulated fallocate failure (EIO)"));
        }
        let current = state.inodes[self.inode].visible.len() as u64;
        if len <= current {
            return Ok(());
        }
        if let Some(max) = state.faults.disk_bytes_max
            && state.used_bytes() + (len - current) > max
        {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        state.inodes[self.inode].visible.resize(len as usize, 0);
        Ok(())
    }
}

struct SimLock {
    storage: SimStorage,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.storage.state().locks.remove(&self.path);
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        for dir in path.ancestors() {
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.state();
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains(parent) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        let inode = match (mode, state.names.get(path)) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            (OpenMode::CreateNew, None) => {
                state.step()?;
                state.inodes.push(Inode::default());
                let inode = state.inodes.len() - 1;
                state.names.insert(path.to_path_buf(), inode);
                inode
            }
            (_, Some(&inode)) => inode,
            (_, None) => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Arc::new(SimFile {
            storage: self.clone(),
            inode,
            writable: mode != OpenMode::Read,
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        if !state.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.step()?;
        let inode = state.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        state.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.step()?;
        state.names.remove(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.step()?;
        let state = &mut *state;
        state.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (path, &inode) in &state.names {
            if path.parent() == Some(dir) {
                state.durable_names.insert(path.clone(), inode);
            }
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        let mut state = self.state();
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(SimLock {
            storage: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}
