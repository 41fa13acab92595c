//! Small metadata files (hard state, store meta) written atomically:
//! write `<name>.tmp`, fsync it, rename over `<name>`, fsync the directory. A reader after a
//! crash sees either the old or the new content, never a mix. Each file carries a CRC32C so
//! a damaged file is reported instead of trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use super::StorageError;

/// Largest metadata file we accept (they are a few dozen bytes).
const MAX_META_FILE_BYTES: u64 = 4096;

/// Atomically replace `dir/name` with `payload` + CRC32C trailer.
pub fn write_atomic(dir: &Path, name: &str, payload: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut buf = Vec::with_capacity(payload.len() + 4);
    buf.extend_from_slice(payload);
    buf.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(&buf).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::fsync(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(|e| StorageError::io(&dst, e))?;
    sync_dir(dir)
}

/// Read `dir/name`; `Ok(None)` if absent, error naming the file if its CRC does not match.
pub fn read_atomic(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let path = dir.join(name);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    if meta.len() > MAX_META_FILE_BYTES || meta.len() < 4 {
        return Err(StorageError::Corrupt {
            file: path,
            offset: 0,
            reason: format!("metadata file has invalid length {}", meta.len()),
        });
    }
    let data = fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
    let (payload, crc) = data.split_at(data.len() - 4);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if u32::from_be_bytes(c) != crc32c::crc32c(payload) {
        return Err(StorageError::Corrupt {
            file: path,
            offset: 0,
            reason: "metadata crc mismatch".to_string(),
        });
    }
    Ok(Some(payload.to_vec()))
}

/// fsync a directory so creates/renames/unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(|e| StorageError::io(dir, e))?;
    d.sync_all().map_err(|e| StorageError::fsync(dir, e))
}
