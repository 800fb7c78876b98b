//! Checkpoints of the write-ahead log, off the writer's path.
//!
//! SQLite's own auto-checkpoint runs in the connection that commits: the commit that takes the
//! log past 1,000 pages then copies every page of the log into the database file and syncs
//! both, before the writer may go on. A short run (a transformer's second pass writing a
//! thousand scattered outputs) spent about half of its write time there. The writer instead
//! tells a thread of its own that a checkpoint is due, and that thread runs it (passive, as
//! SQLite's: it never blocks a reader or the writer) on a connection of its own while the
//! writer goes on. Past four times the mark the writer checkpoints itself, as SQLite would,
//! so the log stays bounded and is started over (see [`INLINE_PAGES`]).

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

/// Pages in the log from which a checkpoint is due (SQLite's default auto-checkpoint).
pub(super) const DUE_PAGES: c_int = 1000;

/// Pages in the log from which the writer checkpoints itself (16 MiB of 4 KiB pages).
///
/// SQLite starts the log over only when a write begins with every page of it copied into the
/// database file. The thread's checkpoint copies while the writer goes on appending, so under
/// a writer that never pauses the log is never wholly copied at that moment and only grows,
/// however well the thread keeps up. The writer here waits for the thread's checkpoint to
/// end, if one runs (at most [`IDLE_WAIT`]), then copies what is left itself (little, when the
/// thread keeps up), after which the next write starts the log over. It also bounds the log
/// when the thread cannot keep up.
pub(super) const INLINE_PAGES: c_int = 4 * DUE_PAGES;

/// How long the writer waits, past [`INLINE_PAGES`], for the thread's checkpoint to end.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The thread that checkpoints a store's log. Dropping it stops the thread (after the
/// checkpoint it may be running) and waits for it.
#[derive(Debug)]
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// The thread waits on it for a due checkpoint (or the stop).
    wake: Condvar,
    /// The writer waits on it, past [`INLINE_PAGES`], for the thread's checkpoint to end.
    idle: Condvar,
}

#[derive(Debug, Default)]
struct State {
    due: bool,
    stop: bool,
    /// The thread is running a checkpoint.
    running: bool,
    /// Checkpoints the thread has run (for tests).
    done: u64,
    /// Tests hold the thread back, to look at the log before it runs.
    held: bool,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Checkpointer {
    /// Starts the thread for the database at `path` and has `conn` (the writer's connection)
    /// hand checkpoints to it. When the thread or its connection cannot be started, `conn`
    /// keeps SQLite's own auto-checkpoint and `None` is returned.
    pub(super) fn start(conn: &mut Connection, path: &Path) -> Option<Checkpointer> {
        // Opened now, by the absolute name SQLite has for the writer's file, not by `path` when
        // the first checkpoint is due: by then a relative `path` may name another file (the
        // process changed directory) or none (a directory renamed), and the hook below has
        // taken over from SQLite's own auto-checkpoint.
        let file = conn
            .path()
            .filter(|p| !p.is_empty())
            .map_or_else(|| path.to_path_buf(), PathBuf::from);
        let own = match open(&file) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "the checkpointer cannot open the store; SQLite keeps its own checkpoints");
                return None;
            }
        };
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kye-sqlite-checkpoint".into())
                .spawn(move || run(&shared, &own))
                .ok()?
        };
        let hook = shared.clone();
        let installed = conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
            if pages >= INLINE_PAGES {
                // The thread's checkpoint, if one runs, ends first (a passive checkpoint
                // beside it would return at once and the log would grow on); no new one
                // starts, since nothing is due until this one is done.
                {
                    let mut s = hook.state();
                    s.due = false;
                    let deadline = std::time::Instant::now() + IDLE_WAIT;
                    while s.running {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        s = hook
                            .idle
                            .wait_timeout(s, left)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
                // As SQLite's own hook: a checkpoint that cannot finish now is tried later.
                let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
            } else if pages >= DUE_PAGES {
                let mut s = hook.state();
                if !s.due {
                    s.due = true;
                    hook.wake.notify_one();
                }
            }
            Ok(())
        }));
        let checkpointer = Checkpointer {
            shared,
            thread: Some(thread),
        };
        match installed {
            Ok(()) => Some(checkpointer),
            Err(e) => {
                tracing::debug!(error = %e, "SQLite keeps its own checkpoints");
                None
            }
        }
    }

    /// Checkpoints the thread has run.
    #[cfg(test)]
    pub(super) fn done(&self) -> u64 {
        self.shared.state().done
    }

    /// Holds the thread back from checkpoints (`true`) or lets it go on.
    #[cfg(test)]
    fn hold(&self, held: bool) {
        self.shared.state().held = held;
        self.shared.wake.notify_one();
    }

    /// Waits up to 10 s for the thread's first checkpoint; whether it ran.
    #[cfg(test)]
    fn wait_for_one(&self) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.done() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.done() >= 1
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        {
            let mut s = self.shared.state();
            s.stop = true;
            self.shared.wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The checkpointer's connection to the database at `path`.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A connection learns that the file is in WAL mode when it first reads it; until then a
    // checkpoint does nothing.
    c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(c)
}

/// The thread: waits until a checkpoint is due, runs it on `conn`, until told to stop.
fn run(shared: &Shared, conn: &Connection) {
    loop {
        {
            let mut s = shared.state();
            while (!s.due || s.held) && !s.stop {
                s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.due = false;
            s.running = true;
        }
        let ran = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
        let mut s = shared.state();
        s.running = false;
        shared.idle.notify_all();
        match ran {
            Ok((log, _)) if log >= 0 => s.done += 1,
            Ok(_) => tracing::debug!("checkpoint not run: the store is not in WAL mode"),
            // Busy (another checkpoint runs), or an I/O error the writer will meet too: the
            // next commit past the mark asks again.
            Err(e) => tracing::debug!(error = %e, "checkpoint not run"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wal_db(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        c.execute_batch("PRAGMA synchronous = NORMAL; CREATE TABLE t (v BLOB);")
            .unwrap();
        c
    }

    /// Writes `pages` pages' worth of rows (4 KiB each) in one transaction.
    fn write_pages(c: &Connection, pages: usize) {
        c.execute_batch("BEGIN").unwrap();
        for _ in 0..pages {
            c.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
    }

    fn db_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// A database `c.db` in WAL mode in `dir`, its writer's connection and checkpointer.
    fn started(dir: &Path) -> (PathBuf, Connection, Checkpointer) {
        let path = dir.join("c.db");
        let mut c = wal_db(&path);
        let cp = Checkpointer::start(&mut c, &path).expect("the thread starts");
        (path, c, cp)
    }

    #[test]
    fn a_commit_past_the_mark_is_checkpointed_by_the_thread_not_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, c, cp) = started(dir.path());
        // Below the mark: nothing is due, the pages stay in the log.
        write_pages(&c, 100);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(cp.done(), 0);
        let before = db_bytes(&path);
        // Past it, with the thread held back: the commit returns with the pages still only in
        // the log (the writer did not checkpoint).
        cp.hold(true);
        write_pages(&c, DUE_PAGES as usize + 100);
        assert!(
            db_bytes(&path) < before + 1_000_000,
            "the writer checkpointed"
        );
        assert_eq!(cp.done(), 0);
        // Let go, the thread copies them into the database file.
        cp.hold(false);
        assert!(cp.wait_for_one(), "no checkpoint within 10 s");
        assert!(
            db_bytes(&path) > before + 4_000_000,
            "the pages reached the database file"
        );
        let rows: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, DUE_PAGES as i64 + 200);
    }

    /// A writer that commits without pause: the thread checkpoints while the writer goes on
    /// appending, so the log is never wholly copied when the next write begins and SQLite never
    /// starts it over by itself. It must stay near INLINE_PAGES, not grow with every write.
    #[test]
    fn the_log_stays_bounded_under_a_writer_that_never_pauses() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, c, _cp) = started(dir.path());
        let wal = dir.path().join("c.db-wal");
        let mut largest = 0;
        for _ in 0..1_000 {
            write_pages(&c, 20);
            largest = largest.max(db_bytes(&wal));
        }
        let rows: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 20_000);
        assert!(
            // INLINE_PAGES (16 MiB) and what the thread's checkpoint can hold up.
            largest < 32 << 20,
            "the log reached {largest} bytes for 20,000 pages written"
        );
    }

    /// The thread's connection reaches the file the writer has open, whatever happens later to
    /// the name it was opened by (a relative path after the process changed directory, a
    /// renamed directory): it is not opened by name when the first checkpoint is due.
    #[test]
    fn the_thread_checkpoints_after_the_store_s_directory_is_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let before = dir.path().join("a");
        std::fs::create_dir(&before).unwrap();
        let (_path, c, cp) = started(&before);
        std::fs::rename(&before, dir.path().join("b")).unwrap();
        write_pages(&c, DUE_PAGES as usize + 100);
        assert!(cp.wait_for_one(), "no checkpoint within 10 s");
    }

    #[test]
    fn dropping_it_stops_the_thread_and_the_writer_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let (path, c, cp) = started(dir.path());
        let dropping = Instant::now();
        drop(cp);
        assert!(dropping.elapsed() < Duration::from_secs(5));
        // The hook outlives the thread: a due checkpoint then only marks it, nothing hangs.
        write_pages(&c, DUE_PAGES as usize + 10);
        drop(c);
        assert!(
            !path.with_extension("db-wal").exists(),
            "the last connection checkpoints and removes the log"
        );
    }
}
