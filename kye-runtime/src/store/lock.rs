//! The writer lock: one writing process per store.
//!
//! A sidecar file (`kye.db.lock`, `DIR/_kye/lock`) is locked exclusively with
//! [`std::fs::File::try_lock`] (an OS advisory lock released when the process dies, even by
//! SIGKILL) and holds the pid of the owner for the message a second writer gets. The pid is
//! removed when the writer ends normally; after a kill it stays behind, which means nothing:
//! only the OS lock says whether a writer is alive ([`writer_alive`]).

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
        // A reader checking whether a writer is alive holds a shared lock for an instant:
        // try again for a moment before calling the store busy.
        let mut attempt = 0;
        let locked = loop {
            match file.try_lock() {
                Err(TryLockError::WouldBlock) if attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other,
            }
        };
        match locked {
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
        // Empty the file while still holding the lock (no new holder can have written its
        // pid yet), then unlock.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
        let _ = &self.path;
    }
}

/// Whether a writer holds the lock at `lock_path` right now, asked of the OS lock itself (a
/// dead writer's lock is released by the OS, whatever pid its file still names). `Some(false)`
/// also when there is no lock file (no writer ever ran); `None` when it cannot be told.
pub(crate) fn writer_alive(lock_path: &Path) -> Option<bool> {
    let file = match File::open(lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(TryLockError::WouldBlock) => Some(true),
        Err(TryLockError::Error(_)) => None,
    }
}
