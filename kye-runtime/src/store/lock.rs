//! The writer lock: one writing process per store.
//!
//! A sidecar file (`kye.db.lock`, `DIR/_kye/lock`) is locked exclusively with
//! [`std::fs::File::try_lock`] (an OS advisory lock released when the process dies, even by
//! SIGKILL) and holds the pid of the owner for the message a second writer gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held for the lifetime of a writing store; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriterLock {
    file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Takes the lock at `lock_path` for the store at `store_path`, or says who holds it.
    pub(crate) fn acquire(lock_path: &Path, store_path: &Path) -> Result<WriterLock, StoreError> {
        let io = |action, source| StoreError::Io {
            action,
            path: lock_path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .map_err(|e| io("cannot open lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = match holder_pid(&mut file) {
                    Some(pid) => format!(" (pid {pid})"),
                    None => String::new(),
                };
                return Err(StoreError::Locked {
                    path: store_path.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("cannot lock", e)),
        }
        file.set_len(0)
            .map_err(|e| io("cannot write lock file", e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io("cannot write lock file", e))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| io("cannot write lock file", e))?;
        Ok(WriterLock {
            file,
            path: lock_path.to_path_buf(),
        })
    }
}

/// The pid the holder wrote into the lock file. A holder that has only just taken the lock may
/// not have written it yet, so an empty file is read again a few times (for at most ~200 ms)
/// before giving up on naming the holder.
fn holder_pid(file: &mut File) -> Option<u32> {
    for attempt in 0..20 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(pid) = text.trim().parse::<u32>() {
                return Some(pid);
            }
        }
        if attempt < 19 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    None
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Only unlock: truncating here could erase the pid a new holder has just written
        // (the pid left behind is overwritten by the next holder before anyone reads it).
        let _ = self.file.unlock();
        let _ = &self.path;
    }
}
