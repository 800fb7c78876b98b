//! The directory store's file operations: atomic document writes, directory fsyncs, JSON
//! lines appended and read back, torn last lines cut.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::super::key::cut;
use super::super::StoreError;

pub(super) static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
/// The directory itself is fsynced by the caller ([`sync_dir`]) once per batch.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        cut(&name, 100),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        f.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes renames in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot fsync directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Cuts a torn last line (a write killed mid-append) so the next append starts clean.
pub(super) fn repair_tail(path: &Path) -> Result<(), StoreError> {
    let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else {
        return Ok(());
    };
    let len = f.metadata().map_err(io_err("cannot stat", path))?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))
        .map_err(io_err("cannot read", path))?;
    f.read_exact(&mut last)
        .map_err(io_err("cannot read", path))?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline, reading backwards in chunks.
    let mut end = len;
    let mut keep = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))
            .map_err(io_err("cannot read", path))?;
        f.read_exact(&mut buf[..n])
            .map_err(io_err("cannot read", path))?;
        if let Some(p) = buf[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + p as u64 + 1;
            break;
        }
        end = start;
    }
    f.set_len(keep).map_err(io_err("cannot truncate", path))?;
    f.sync_all().map_err(io_err("cannot fsync", path))
}

/// JSON lines of a file; unreadable lines (a torn tail) are skipped.
pub(super) fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, StoreError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot open", path)(e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(io_err("cannot read", path))?;
        if let Ok(v) = serde_json::from_slice::<T>(&line) {
            out.push(v);
        }
    }
    Ok(out)
}

pub(super) fn append_lines(path: &Path, lines: &[String]) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("cannot open", path))?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())
        .map_err(io_err("cannot append to", path))?;
    f.sync_data().map_err(io_err("cannot fsync", path))
}

pub(super) fn count_lines(path: &Path) -> Result<usize, StoreError> {
    match File::open(path) {
        Ok(f) => Ok(BufReader::new(f).split(b'\n').count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err("cannot open", path)(e)),
    }
}
