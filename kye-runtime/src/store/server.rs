//! What `kye serve` keeps in the store beside the records (feature `server`): API tokens (only
//! their SHA-256 hashes), sealed secrets (ciphertext under a master key), the catalog's
//! sessions (hashes of their cookies) and the audit log.
//!
//! [`ServerStore`] is the small trait the server and the `token`, `secret` and `audit`
//! subcommands use; the SQLite store (`_kye_tokens`, `_kye_secrets`, `_kye_audit` in the same
//! file) and the PostgreSQL store (the same tables in its schema, shared by every server
//! behind a load balancer) implement it. The directory store cannot serve:
//! [`open_server_store`] refuses it with a clear error. A server store is a connection of its
//! own, beside the runtime's writer, so the subcommands work while a server runs.
//!
//! Nothing here knows a secret's value or a token: only the hash and the ciphertext are
//! written.

use super::{StoreError, StoreSpec, Timestamp};

/// One API token as stored: its name, role and the SHA-256 (hex) of the token text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    /// The token's name (who or what holds it), unique in the store.
    pub name: String,
    /// The role it acts with (`[roles.NAME]` in kye.toml).
    pub role: String,
    /// Lowercase hex SHA-256 of the token text; the token itself is never stored.
    #[serde(skip)]
    pub hash: String,
    /// When it was created.
    pub created: Timestamp,
    /// When it stops working, if ever.
    pub expires: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether the token may be used at `now`: not revoked and not expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| e > now)
    }
}

/// One secret as stored: sealed with XChaCha20-Poly1305 under a master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The secret's name, as fetchers ask for it (`Secrets::get`).
    pub name: String,
    /// The 24-byte nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext with its 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// Which master key sealed it (the start of the key's SHA-256, never the key).
    pub key_id: String,
    /// When it was set or last re-sealed.
    pub updated: Timestamp,
}

/// A signed-in session of the catalog as stored: what its cookie stands for. The cookie's
/// value itself is never stored, only its SHA-256, so a copy of the warehouse opens no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Lowercase hex SHA-256 of the session cookie's value.
    pub id_hash: String,
    /// The SHA-256 of the token it was opened with (looked up again on every page).
    pub token_hash: String,
    /// The token forms that change something must carry (not a credential without the cookie).
    pub csrf: String,
    /// When it ends, whatever happens to its token before.
    pub expires: Timestamp,
}

/// Sessions one token may have open at once; its oldest end past that.
pub const SESSIONS_PER_TOKEN: i64 = 100;

/// One request as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// When the request was answered.
    pub time: Timestamp,
    /// The token's name (`None`: no valid token was presented).
    pub token: Option<String>,
    /// What was asked, e.g. `read`, `runs.start`, `audit`.
    pub action: String,
    /// The model, when the request names one.
    pub model: Option<String>,
    /// The key (`{"id":25}`), when the request names one.
    pub key: Option<String>,
    /// `store`, `fetched` or `none` for a read; `None` for other actions.
    pub source: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// The server's tables in a store. See the module docs.
pub trait ServerStore: Send {
    /// Records a new token. A token of the same name (even revoked) is refused.
    fn create_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;

    /// The token whose hash is `hash`, whatever its state.
    fn token_by_hash(&mut self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every token, oldest first.
    fn tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes the token called `name` at `at`; `false` when there is no such token.
    fn revoke_token(&mut self, name: &str, at: Timestamp) -> Result<bool, StoreError>;

    /// Stores a sealed secret, replacing one of the same name. Refused with
    /// [`StoreError::Secrets`] when another secret is sealed under a different master key
    /// (checked in the write's transaction, so a rotation running at the same time cannot
    /// leave secrets under two keys).
    fn put_secret(&mut self, secret: &SealedSecret) -> Result<(), StoreError>;

    /// Every sealed secret, by name.
    fn secrets(&mut self) -> Result<Vec<SealedSecret>, StoreError>;

    /// Replaces every sealed secret in one transaction (a master-key rotation): all or none.
    /// `from` is what the rotation read and re-sealed: when the stored secrets differ from it
    /// (a `secret set` meanwhile), nothing is written and the answer is
    /// [`StoreError::Secrets`], so no secret set during a rotation is lost.
    fn replace_secrets(
        &mut self,
        from: &[SealedSecret],
        secrets: &[SealedSecret],
    ) -> Result<(), StoreError>;

    /// Appends audit rows.
    fn append_audit(&mut self, rows: &[AuditEntry]) -> Result<(), StoreError>;

    /// The newest `limit` audit rows, newest first.
    fn audit(&mut self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Deletes at most `limit` of the audit rows older than `before`, oldest first; returns
    /// how many went (fewer than `limit`: none older is left). Callers prune a large log in
    /// such chunks, so no transaction or lock is held long.
    fn prune_audit(&mut self, before: Timestamp, limit: usize) -> Result<u64, StoreError>;

    /// Records a catalog session; ends the sessions past their time and, past
    /// [`SESSIONS_PER_TOKEN`], the oldest of the same token.
    fn open_session(&mut self, session: &SessionRecord, now: Timestamp) -> Result<(), StoreError>;

    /// The session whose cookie hashes to `id_hash`, if it is still open at `now`.
    fn session(
        &mut self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Ends the session whose cookie hashes to `id_hash` (nothing when there is none).
    fn close_session(&mut self, id_hash: &str) -> Result<(), StoreError>;

    /// Another connection to the same tables (a server looks tokens up on one while it
    /// writes the audit log on another).
    fn another(&self) -> Result<Box<dyn ServerStore>, StoreError>;
}

/// Opens the server's tables in the store of `spec`, creating them if needed. The directory
/// store cannot serve (no transactions, no shared access): it is refused.
pub fn open_server_store(spec: &StoreSpec) -> Result<Box<dyn ServerStore>, StoreError> {
    match spec {
        StoreSpec::Sqlite(p) => Ok(Box::new(super::sqlite::SqliteServerStore::open(p)?)),
        StoreSpec::Dir(_) => Err(StoreError::InvalidSpec {
            spec: spec.to_string(),
            message: "the directory store cannot hold tokens, sealed secrets and the audit log \
                      that `serve`, `token` and `secret` need: use a SQLite file (--db kye.db) \
                      or PostgreSQL (--db postgres://...)"
                .to_string(),
        }),
        #[cfg(feature = "postgres")]
        StoreSpec::Postgres(s) => Ok(Box::new(super::postgres::PgServerStore::open(s)?)),
    }
}

/// A token name as a store name check sees it: 1 to 64 letters, digits, `-`, `_`, `.`, `@`.
pub(crate) fn check_token_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what: "token",
            name: name.to_string(),
            reason: "use 1 to 64 letters, digits, `-`, `_`, `.` or `@`".to_string(),
        })
    }
}

/// The error for a second token of a name already taken.
pub(crate) fn token_exists(name: &str) -> StoreError {
    StoreError::InvalidName {
        what: "token",
        name: name.to_string(),
        reason: "a token of that name exists (revoked tokens keep their name, so the audit \
                 log stays unambiguous): choose another name"
            .to_string(),
    }
}

/// Why `put_secret` of `secret` is refused: `other` is sealed under another master key.
pub(crate) fn mixed_keys(secret: &SealedSecret, other: &str, other_key: &str) -> StoreError {
    StoreError::Secrets {
        message: format!(
            "secret {other} is sealed under master key {other_key}, and {} would be under {}: \
             give that key, or re-seal every secret under the new one with `secret rotate`",
            secret.name, secret.key_id
        ),
    }
}

/// Whether the stored secrets are still those a rotation read (`from`), else the refusal.
pub(crate) fn unchanged_since(
    stored: &[SealedSecret],
    from: &[SealedSecret],
) -> Result<(), StoreError> {
    let key = |s: &SealedSecret| {
        (
            s.name.clone(),
            s.key_id.clone(),
            s.nonce.clone(),
            s.ciphertext.clone(),
        )
    };
    let mut a: Vec<_> = stored.iter().map(key).collect();
    let mut b: Vec<_> = from.iter().map(key).collect();
    a.sort();
    b.sort();
    if a == b {
        Ok(())
    } else {
        Err(StoreError::Secrets {
            message: "the sealed secrets changed while they were re-sealed (a `secret set` at \
                      the same time?): nothing was changed; run `secret rotate` again"
                .into(),
        })
    }
}
