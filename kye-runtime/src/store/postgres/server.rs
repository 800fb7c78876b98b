//! The server's tables in a PostgreSQL store: `_kye_tokens`, `_kye_secrets`, `_kye_audit`
//! in the store's schema ([`ServerStore`]), shared by every server of one warehouse: a token
//! revoked through one server is refused by all of them on its next request.

use postgres::Row;

use super::{ddl, Conn, PgSpec};
use crate::store::server::{
    check_token_name, mixed_keys, token_exists, unchanged_since, AuditEntry, SealedSecret,
    ServerStore, SessionRecord, TokenRecord, SESSIONS_PER_TOKEN,
};
use crate::store::{StoreError, Timestamp};

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS _kye_tokens (
    name TEXT COLLATE \"C\" PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    expires TEXT,
    revoked TEXT
);
CREATE TABLE IF NOT EXISTS _kye_secrets (
    name TEXT COLLATE \"C\" PRIMARY KEY,
    nonce BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    key_id TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _kye_audit (
    id BIGSERIAL PRIMARY KEY,
    time TEXT NOT NULL,
    token TEXT,
    action TEXT NOT NULL,
    model TEXT,
    key TEXT,
    source TEXT,
    status INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _kye_sessions (
    id_hash TEXT COLLATE \"C\" PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS _kye_sessions_token ON _kye_sessions (token_hash, expires);
";

/// The server's tables of a PostgreSQL store. See [`ServerStore`].
pub struct PgServerStore {
    conn: Conn,
}

impl std::fmt::Debug for PgServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServerStore")
            .field("store", &self.conn.spec.to_string())
            .finish()
    }
}

impl PgServerStore {
    /// Connects and creates the schema and the server's tables if needed.
    pub fn open(spec: &PgSpec) -> Result<PgServerStore, StoreError> {
        let mut conn = Conn::open(spec)?;
        let schema = format!("CREATE SCHEMA IF NOT EXISTS {}", ddl::q(&spec.schema));
        conn.run(move |s| {
            let mut tx = s.client.transaction()?;
            // Two servers starting at once must not both create a table.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('kye_server_tables'))",
                &[],
            )?;
            tx.batch_execute(&schema)?;
            tx.batch_execute(TABLES)?;
            tx.commit()
        })?;
        Ok(PgServerStore { conn })
    }
}

fn ts(text: String) -> Timestamp {
    text.parse().unwrap_or(Timestamp::from_unix_millis(0))
}

fn token_row(r: &Row) -> TokenRecord {
    TokenRecord {
        name: r.get(0),
        role: r.get(1),
        hash: r.get(2),
        created: ts(r.get(3)),
        expires: r.get::<_, Option<String>>(4).map(ts),
        revoked: r.get::<_, Option<String>>(5).map(ts),
    }
}

const TOKEN_COLUMNS: &str = "name, role, hash, created, expires, revoked";

impl ServerStore for PgServerStore {
    fn create_token(&mut self, t: &TokenRecord) -> Result<(), StoreError> {
        check_token_name(&t.name)?;
        let (name, role, hash) = (t.name.clone(), t.role.clone(), t.hash.clone());
        let created = t.created.to_string();
        let expires = t.expires.map(|e| e.to_string());
        let inserted = self.conn.run(move |s| {
            s.client.execute(
                "INSERT INTO _kye_tokens (name, role, hash, created, expires) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                &[&name, &role, &hash, &created, &expires],
            )
        })?;
        if inserted == 0 {
            return Err(token_exists(&t.name));
        }
        Ok(())
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_string();
        let row = self.conn.run(move |s| {
            let st = s.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM _kye_tokens WHERE hash = $1"
            ))?;
            s.client.query_opt(&st, &[&hash])
        })?;
        Ok(row.as_ref().map(token_row))
    }

    fn tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self.conn.run(|s| {
            s.client.query(
                &format!("SELECT {TOKEN_COLUMNS} FROM _kye_tokens ORDER BY created, name"),
                &[],
            )
        })?;
        Ok(rows.iter().map(token_row).collect())
    }

    fn revoke_token(&mut self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        let name = name.to_string();
        let at = at.to_string();
        self.conn.run(move |s| {
            let found = s
                .client
                .query_opt("SELECT 1 FROM _kye_tokens WHERE name = $1", &[&name])?;
            if found.is_none() {
                return Ok(false);
            }
            s.client.execute(
                "UPDATE _kye_tokens SET revoked = $2 WHERE name = $1 AND revoked IS NULL",
                &[&name, &at],
            )?;
            Ok(true)
        })
    }

    fn put_secret(&mut self, secret: &SealedSecret) -> Result<(), StoreError> {
        let sec = secret.clone();
        let other = self.conn.run(move |s| {
            let mut tx = s.client.transaction()?;
            // Writers of secrets take turns (readers do not wait): the check below and the
            // write are one, so a rotation committing in between cannot leave two keys.
            tx.execute("LOCK TABLE _kye_secrets IN SHARE ROW EXCLUSIVE MODE", &[])?;
            let other = tx.query_opt(
                "SELECT name, key_id FROM _kye_secrets WHERE key_id <> $1 AND name <> $2 LIMIT 1",
                &[&sec.key_id, &sec.name],
            )?;
            if let Some(row) = other {
                return Ok(Some((row.get::<_, String>(0), row.get::<_, String>(1))));
            }
            tx.execute(
                "INSERT INTO _kye_secrets (name, nonce, ciphertext, key_id, updated) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET \
                 nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                 key_id = excluded.key_id, updated = excluded.updated",
                &[
                    &sec.name,
                    &sec.nonce,
                    &sec.ciphertext,
                    &sec.key_id,
                    &sec.updated.to_string(),
                ],
            )?;
            tx.commit()?;
            Ok(None)
        })?;
        match other {
            Some((other, other_key)) => Err(mixed_keys(secret, &other, &other_key)),
            None => Ok(()),
        }
    }

    fn secrets(&mut self) -> Result<Vec<SealedSecret>, StoreError> {
        let rows = self.conn.run(|s| {
            s.client.query(
                "SELECT name, nonce, ciphertext, key_id, updated FROM _kye_secrets ORDER BY name",
                &[],
            )
        })?;
        Ok(rows.iter().map(sealed_row).collect())
    }

    fn replace_secrets(
        &mut self,
        from: &[SealedSecret],
        secrets: &[SealedSecret],
    ) -> Result<(), StoreError> {
        let (from, secrets) = (from.to_vec(), secrets.to_vec());
        let changed = self.conn.run(move |s| {
            let mut tx = s.client.transaction()?;
            tx.execute("LOCK TABLE _kye_secrets IN SHARE ROW EXCLUSIVE MODE", &[])?;
            let stored: Vec<SealedSecret> = tx
                .query(
                    "SELECT name, nonce, ciphertext, key_id, updated FROM _kye_secrets",
                    &[],
                )?
                .iter()
                .map(sealed_row)
                .collect();
            if let Err(e) = unchanged_since(&stored, &from) {
                return Ok(Some(e));
            }
            tx.execute("DELETE FROM _kye_secrets", &[])?;
            for sec in &secrets {
                tx.execute(
                    "INSERT INTO _kye_secrets (name, nonce, ciphertext, key_id, updated) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &sec.name,
                        &sec.nonce,
                        &sec.ciphertext,
                        &sec.key_id,
                        &sec.updated.to_string(),
                    ],
                )?;
            }
            tx.commit()?;
            Ok(None)
        })?;
        match changed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn append_audit(&mut self, rows: &[AuditEntry]) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.conn.run(move |s| {
            let mut tx = s.client.transaction()?;
            for a in &rows {
                tx.execute(
                    "INSERT INTO _kye_audit (time, token, action, model, key, source, status) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &a.time.to_string(),
                        &a.token,
                        &a.action,
                        &a.model,
                        &a.key,
                        &a.source,
                        &i32::from(a.status),
                    ],
                )?;
            }
            tx.commit()
        })
    }

    fn another(&self) -> Result<Box<dyn ServerStore>, StoreError> {
        Ok(Box::new(PgServerStore::open(&self.conn.spec)?))
    }

    fn open_session(&mut self, session: &SessionRecord, now: Timestamp) -> Result<(), StoreError> {
        let session = session.clone();
        let now = now.to_string();
        self.conn.run(move |s| {
            let mut tx = s.client.transaction()?;
            tx.execute("DELETE FROM _kye_sessions WHERE expires <= $1", &[&now])?;
            tx.execute(
                "DELETE FROM _kye_sessions WHERE token_hash = $1 AND id_hash NOT IN \
                 (SELECT id_hash FROM _kye_sessions WHERE token_hash = $1 \
                  ORDER BY expires DESC LIMIT $2)",
                &[&session.token_hash, &(SESSIONS_PER_TOKEN - 1)],
            )?;
            tx.execute(
                "INSERT INTO _kye_sessions (id_hash, token_hash, csrf, expires) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &session.id_hash,
                    &session.token_hash,
                    &session.csrf,
                    &session.expires.to_string(),
                ],
            )?;
            tx.commit()
        })
    }

    fn session(
        &mut self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let (id_hash, now) = (id_hash.to_string(), now.to_string());
        let row = self.conn.run(move |s| {
            s.client.query_opt(
                "SELECT id_hash, token_hash, csrf, expires FROM _kye_sessions \
                 WHERE id_hash = $1 AND expires > $2",
                &[&id_hash, &now],
            )
        })?;
        Ok(row.map(|r| SessionRecord {
            id_hash: r.get(0),
            token_hash: r.get(1),
            csrf: r.get(2),
            expires: ts(r.get(3)),
        }))
    }

    fn close_session(&mut self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_string();
        self.conn
            .run(move |s| {
                s.client
                    .execute("DELETE FROM _kye_sessions WHERE id_hash = $1", &[&id_hash])
            })
            .map(drop)
    }

    fn prune_audit(&mut self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let before = before.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn.run(move |s| {
            s.client.execute(
                "DELETE FROM _kye_audit WHERE id IN (SELECT id FROM _kye_audit \
                 WHERE time < $1 ORDER BY id LIMIT $2)",
                &[&before, &limit],
            )
        })
    }

    fn audit(&mut self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self.conn.run(move |s| {
            s.client.query(
                "SELECT time, token, action, model, key, source, status FROM _kye_audit \
                 ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                time: ts(r.get(0)),
                token: r.get(1),
                action: r.get(2),
                model: r.get(3),
                key: r.get(4),
                source: r.get(5),
                status: u16::try_from(r.get::<_, i32>(6)).unwrap_or(0),
            })
            .collect())
    }
}

/// A row of `name, nonce, ciphertext, key_id, updated` of `_kye_secrets`.
fn sealed_row(r: &Row) -> SealedSecret {
    SealedSecret {
        name: r.get(0),
        nonce: r.get(1),
        ciphertext: r.get(2),
        key_id: r.get(3),
        updated: ts(r.get(4)),
    }
}
