//! The store's identity: a UUID made the first time the store is opened for writing
//! (`segments/store.id`), so that an archive can tell its own store from another one
//! archiving to the same place. A restore writes the archived store's id, so that the
//! restored store goes on archiving where the lost one left off.

use std::path::Path;

use eventfold_core::{Error, Result};
use uuid::Uuid;

use crate::io::{OpenMode, OsStorage, Storage};
use crate::segment::{checked_body, read_bytes, replace_durably, with_check_line};

const FILE_NAME: &str = "store.id";
const PREFIX: &str = "eventfold store ";

/// Reads the store's id; `None` when the store has none yet (made by a release
/// before ids, and not opened for writing since).
pub(crate) fn read_store_id(storage: &dyn Storage, segments_dir: &Path) -> Result<Option<Uuid>> {
    let path = segments_dir.join(FILE_NAME);
    let file = match storage.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let len = file
        .len()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let name = format!("segments/{FILE_NAME}");
    let bytes = read_bytes(file.as_ref(), 0, len.min(256) as usize, &name)?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(decode)
        .map(Some)
        .ok_or_else(|| Error::Corrupted {
            file: name,
            offset: 0,
            reason: "the store's id is damaged (it should read `eventfold store <uuid>`, then \
                     `check` and the CRC-32C of that line)"
                .into(),
        })
}

/// Two lines: the id, then the CRC-32C of the first line, so that a flipped bit is
/// refused rather than read as another id.
fn encode(id: Uuid) -> String {
    with_check_line(&format!("{PREFIX}{id}\n"))
}

fn decode(text: &str) -> Option<Uuid> {
    let line = checked_body(text)?
        .strip_prefix(PREFIX)?
        .strip_suffix('\n')?;
    Uuid::parse_str(line).ok()
}

/// Writes the store's id durably (temporary file, fsync, rename, directory fsync).
pub(crate) fn write_store_id(storage: &dyn Storage, segments_dir: &Path, id: Uuid) -> Result<()> {
    replace_durably(storage, segments_dir, FILE_NAME, encode(id).as_bytes())
}

/// The store's id, made and written now when it has none.
pub(crate) fn ensure_store_id(storage: &dyn Storage, segments_dir: &Path) -> Result<Uuid> {
    if let Some(id) = read_store_id(storage, segments_dir)? {
        return Ok(id);
    }
    let id = Uuid::new_v4();
    write_store_id(storage, segments_dir, id)?;
    Ok(id)
}

/// Gives the data directory `dir`, which is being rebuilt from an archive and is not
/// open, the id of the store it is a copy of.
pub fn restore_store_id(dir: &Path, id: Uuid) -> Result<()> {
    let segments_dir = dir.join("segments");
    OsStorage
        .create_dir_all(&segments_dir)
        .map_err(|e| Error::io(format!("creating {}", segments_dir.display()), e))?;
    write_store_id(&OsStorage, &segments_dir, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_made_once_kept_and_refused_when_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segments = dir.path();
        assert_eq!(read_store_id(&OsStorage, segments).expect("read"), None);
        let id = ensure_store_id(&OsStorage, segments).expect("make");
        assert_eq!(ensure_store_id(&OsStorage, segments).expect("keep"), id);
        assert_eq!(read_store_id(&OsStorage, segments).expect("read"), Some(id));
        let mut text = std::fs::read(segments.join(FILE_NAME)).expect("read");
        text[20] ^= 2;
        std::fs::write(segments.join(FILE_NAME), text).expect("damage");
        let error = read_store_id(&OsStorage, segments).expect_err("damaged");
        assert!(error.to_string().contains("id is damaged"), "{error}");
    }
}
