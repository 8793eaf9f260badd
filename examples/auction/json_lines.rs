//! A file of JSON lines, appended to and read whole: what the audit log and the mail
//! server's log are made of. Callers hold their own lock around each call.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Appends `value` as one line to `path` (created if missing); with `sync`, the line
/// is on disk before this returns.
pub(crate) fn append(path: &Path, value: &impl Serialize, sync: bool) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    file.write_all(&line)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Every line of `path`, oldest first; none when the file does not exist yet.
pub(crate) fn read_all<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut values = Vec::new();
    for line in BufReader::new(file).lines() {
        values.push(serde_json::from_str(&line?)?);
    }
    Ok(values)
}
