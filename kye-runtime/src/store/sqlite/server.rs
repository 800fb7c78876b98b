//! The server's tables in a SQLite store: `_kye_tokens`, `_kye_secrets`, `_kye_audit`
//! ([`ServerStore`]), on a connection of their own beside the writer's.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::store::server::{
    check_token_name, mixed_keys, token_exists, unchanged_since, AuditEntry, SealedSecret,
    ServerStore, SessionRecord, TokenRecord, SESSIONS_PER_TOKEN,
};
use crate::store::{StoreError, Timestamp};

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS _kye_tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    expires TEXT,
    revoked TEXT
);
CREATE TABLE IF NOT EXISTS _kye_secrets (
    name TEXT PRIMARY KEY,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    key_id TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _kye_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    token TEXT,
    action TEXT NOT NULL,
    model TEXT,
    key TEXT,
    source TEXT,
    status INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _kye_sessions (
    id_hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS _kye_sessions_token ON _kye_sessions (token_hash, expires);
";

/// The server's tables of a SQLite file. See [`ServerStore`].
#[derive(Debug)]
pub struct SqliteServerStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteServerStore {
    /// Opens (creating if needed) the file and the server's tables in it.
    pub fn open(path: &Path) -> Result<SqliteServerStore, StoreError> {
        let path = path.to_path_buf();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(&err)?;
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&err)?;
        // As the writer: WAL with `synchronous = NORMAL` (a commit is not synced to disk one by
        // one; a power cut may lose the last moments of the audit log, never corrupt it).
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(&err)?;
        conn.execute_batch(TABLES).map_err(&err)?;
        Ok(SqliteServerStore { conn, path })
    }

    /// SQLite's errors as the store's, naming the file (owning its path, so it can be taken
    /// before a transaction borrows the connection).
    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + 'static {
        let path = self.path.clone();
        move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        }
    }
}

fn ts(text: String) -> Timestamp {
    text.parse().unwrap_or(Timestamp::from_unix_millis(0))
}

fn ts_opt(text: Option<String>) -> Option<Timestamp> {
    text.map(ts)
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: r.get(0)?,
        role: r.get(1)?,
        hash: r.get(2)?,
        created: ts(r.get(3)?),
        expires: ts_opt(r.get(4)?),
        revoked: ts_opt(r.get(5)?),
    })
}

const TOKEN_COLUMNS: &str = "name, role, hash, created, expires, revoked";

impl ServerStore for SqliteServerStore {
    fn create_token(&mut self, t: &TokenRecord) -> Result<(), StoreError> {
        check_token_name(&t.name)?;
        let inserted = self
            .conn
            .execute(
                "INSERT INTO _kye_tokens (name, role, hash, created, expires, revoked) \
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL) ON CONFLICT (name) DO NOTHING",
                params![
                    t.name,
                    t.role,
                    t.hash,
                    t.created.to_string(),
                    t.expires.map(|e| e.to_string())
                ],
            )
            .map_err(self.err())?;
        if inserted == 0 {
            return Err(token_exists(&t.name));
        }
        Ok(())
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        // Every request asks this: the statement is parsed once per connection.
        let err = self.err();
        self.conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM _kye_tokens WHERE hash = ?1"
            ))
            .and_then(|mut st| st.query_row([hash], token_row).optional())
            .map_err(&err)
    }

    fn tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError> {
        let err = self.err();
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM _kye_tokens ORDER BY created, name"
            ))
            .map_err(&err)?;
        let rows = st.query_map([], token_row).map_err(&err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&err)
    }

    fn revoke_token(&mut self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT 1 FROM _kye_tokens WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        if found.is_none() {
            return Ok(false);
        }
        self.conn
            .execute(
                "UPDATE _kye_tokens SET revoked = ?2 WHERE name = ?1 AND revoked IS NULL",
                params![name, at.to_string()],
            )
            .map_err(self.err())?;
        Ok(true)
    }

    fn put_secret(&mut self, s: &SealedSecret) -> Result<(), StoreError> {
        let err = self.err();
        // Immediate: the check and the write are one writer's, so a rotation committing in
        // between cannot leave two master keys.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let other: Option<(String, String)> = tx
            .query_row(
                "SELECT name, key_id FROM _kye_secrets WHERE key_id <> ?1 AND name <> ?2 LIMIT 1",
                params![s.key_id, s.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        if let Some((name, key)) = other {
            return Err(mixed_keys(s, &name, &key));
        }
        tx.execute(
            "INSERT INTO _kye_secrets (name, nonce, ciphertext, key_id, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET \
             nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             key_id = excluded.key_id, updated = excluded.updated",
            params![
                s.name,
                s.nonce,
                s.ciphertext,
                s.key_id,
                s.updated.to_string()
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    fn secrets(&mut self) -> Result<Vec<SealedSecret>, StoreError> {
        let err = self.err();
        let mut st = self
            .conn
            .prepare(
                "SELECT name, nonce, ciphertext, key_id, updated FROM _kye_secrets ORDER BY name",
            )
            .map_err(&err)?;
        let rows = st.query_map([], sealed_row).map_err(&err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&err)
    }

    fn replace_secrets(
        &mut self,
        from: &[SealedSecret],
        secrets: &[SealedSecret],
    ) -> Result<(), StoreError> {
        let err = self.err();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let stored = {
            let mut st = tx
                .prepare("SELECT name, nonce, ciphertext, key_id, updated FROM _kye_secrets")
                .map_err(&err)?;
            let rows = st.query_map([], sealed_row).map_err(&err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)?
        };
        unchanged_since(&stored, from)?;
        tx.execute("DELETE FROM _kye_secrets", []).map_err(&err)?;
        for s in secrets {
            tx.execute(
                "INSERT INTO _kye_secrets (name, nonce, ciphertext, key_id, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    s.name,
                    s.nonce,
                    s.ciphertext,
                    s.key_id,
                    s.updated.to_string()
                ],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    fn append_audit(&mut self, rows: &[AuditEntry]) -> Result<(), StoreError> {
        let err = self.err();
        let tx = self.conn.transaction().map_err(&err)?;
        for a in rows {
            // Parsed once per connection, not once per row.
            tx.prepare_cached(
                "INSERT INTO _kye_audit (time, token, action, model, key, source, status) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    a.time.to_string(),
                    a.token,
                    a.action,
                    a.model,
                    a.key,
                    a.source,
                    a.status
                ])
            })
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    fn another(&self) -> Result<Box<dyn ServerStore>, StoreError> {
        Ok(Box::new(SqliteServerStore::open(&self.path)?))
    }

    fn open_session(&mut self, session: &SessionRecord, now: Timestamp) -> Result<(), StoreError> {
        let err = self.err();
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        tx.execute(
            "DELETE FROM _kye_sessions WHERE expires <= ?1",
            params![now.to_string()],
        )
        .map_err(&err)?;
        tx.execute(
            "DELETE FROM _kye_sessions WHERE token_hash = ?1 AND id_hash NOT IN \
             (SELECT id_hash FROM _kye_sessions WHERE token_hash = ?1 \
              ORDER BY expires DESC LIMIT ?2)",
            params![session.token_hash, SESSIONS_PER_TOKEN - 1],
        )
        .map_err(&err)?;
        tx.execute(
            "INSERT INTO _kye_sessions (id_hash, token_hash, csrf, expires) VALUES (?1, ?2, ?3, ?4)",
            params![
                session.id_hash,
                session.token_hash,
                session.csrf,
                session.expires.to_string()
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    fn session(
        &mut self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let err = self.err();
        self.conn
            .query_row(
                "SELECT id_hash, token_hash, csrf, expires FROM _kye_sessions \
                 WHERE id_hash = ?1 AND expires > ?2",
                params![id_hash, now.to_string()],
                |r| {
                    Ok(SessionRecord {
                        id_hash: r.get(0)?,
                        token_hash: r.get(1)?,
                        csrf: r.get(2)?,
                        expires: ts(r.get(3)?),
                    })
                },
            )
            .optional()
            .map_err(&err)
    }

    fn close_session(&mut self, id_hash: &str) -> Result<(), StoreError> {
        let err = self.err();
        self.conn
            .execute(
                "DELETE FROM _kye_sessions WHERE id_hash = ?1",
                params![id_hash],
            )
            .map_err(&err)
            .map(drop)
    }

    fn prune_audit(&mut self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let err = self.err();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let n = self
            .conn
            .execute(
                "DELETE FROM _kye_audit WHERE id IN (SELECT id FROM _kye_audit \
                 WHERE time < ?1 ORDER BY id LIMIT ?2)",
                params![before.to_string(), limit],
            )
            .map_err(&err)?;
        Ok(n as u64)
    }

    fn audit(&mut self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let err = self.err();
        let mut st = self
            .conn
            .prepare(
                "SELECT time, token, action, model, key, source, status FROM _kye_audit \
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(&err)?;
        let rows = st
            .query_map([limit.min(i64::MAX as usize) as i64], |r| {
                Ok(AuditEntry {
                    time: ts(r.get(0)?),
                    token: r.get(1)?,
                    action: r.get(2)?,
                    model: r.get(3)?,
                    key: r.get(4)?,
                    source: r.get(5)?,
                    status: r.get(6)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&err)
    }
}

/// A row of `name, nonce, ciphertext, key_id, updated` of `_kye_secrets`.
fn sealed_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SealedSecret> {
    Ok(SealedSecret {
        name: r.get(0)?,
        nonce: r.get(1)?,
        ciphertext: r.get(2)?,
        key_id: r.get(3)?,
        updated: ts(r.get(4)?),
    })
}
