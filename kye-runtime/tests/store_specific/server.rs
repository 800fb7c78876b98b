//! The server's tables (`kye serve`: tokens, sealed secrets, audit) on every store that can
//! serve: the same cases on SQLite here and on PostgreSQL in `pg.rs` ([`exercise`]), and the
//! directory store's refusal.

use kye_runtime::store::*;
use kye_runtime::{MasterKey, Server};

pub const VALUE: &str = "sealed-value-0b5e9d";

/// Every [`ServerStore`] method, through two handles on one store (two servers sharing a
/// warehouse). Returns the token issued, for the caller's byte search.
pub fn exercise(spec: &StoreSpec) -> String {
    let mut a = open_server_store(spec).unwrap();
    let mut b = open_server_store(spec).unwrap();
    // Tokens: issued through one server, seen and revoked through the other.
    let token = Server::issue_token(a.as_mut(), "analyst-1", "analyst", None).unwrap();
    let later = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 86_400_000);
    Server::issue_token(a.as_mut(), "bot", "ops", Some(later)).unwrap();
    let e = Server::issue_token(b.as_mut(), "analyst-1", "ops", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a token of that name exists"), "{e}");
    let listed = b.tokens().unwrap();
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["analyst-1", "bot"]);
    assert_eq!(listed[1].expires, Some(later));
    let hash = listed[0].hash.clone();
    assert_eq!(hash.len(), 64);
    assert!(!hash.contains(&token[4..]), "the hash is the token");
    let found = b.token_by_hash(&hash).unwrap().unwrap();
    assert!(found.is_active(Timestamp::now()));
    assert!(a.revoke_token("analyst-1", Timestamp::now()).unwrap());
    assert!(!a.revoke_token("nobody", Timestamp::now()).unwrap());
    let found = b.token_by_hash(&hash).unwrap().unwrap();
    assert!(found.revoked.is_some() && !found.is_active(Timestamp::now()));
    assert!(b.token_by_hash(&"0".repeat(64)).unwrap().is_none());

    // Secrets: sealed, replaced by name, rotated all at once.
    let key = MasterKey::generate().unwrap();
    a.put_secret(&key.seal("API_KEY", VALUE.as_bytes()).unwrap())
        .unwrap();
    a.put_secret(&key.seal("API_KEY", b"replaced-value").unwrap())
        .unwrap();
    a.put_secret(&key.seal("OTHER", VALUE.as_bytes()).unwrap())
        .unwrap();
    let sealed = b.secrets().unwrap();
    assert_eq!(
        sealed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["API_KEY", "OTHER"]
    );
    assert_eq!(key.open(&sealed[0]).unwrap(), "replaced-value");
    let new = MasterKey::generate().unwrap();
    let resealed: Vec<SealedSecret> = sealed
        .iter()
        .map(|s| new.seal(&s.name, key.open(s).unwrap().as_bytes()).unwrap())
        .collect();
    // A secret set while the rotation re-sealed: the rotation writes nothing.
    a.put_secret(&key.seal("API_KEY", b"set-meanwhile").unwrap())
        .unwrap();
    let e = b
        .replace_secrets(&sealed, &resealed)
        .unwrap_err()
        .to_string();
    assert!(e.contains("changed while they were re-sealed"), "{e}");
    let kept = a.secrets().unwrap();
    assert!(
        kept.iter().all(|s| s.key_id == key.id()),
        "nothing re-sealed"
    );
    assert_eq!(key.open(&kept[0]).unwrap(), "set-meanwhile");
    a.put_secret(&key.seal("API_KEY", b"replaced-value").unwrap())
        .unwrap();
    let sealed = b.secrets().unwrap();
    let resealed: Vec<SealedSecret> = sealed
        .iter()
        .map(|s| new.seal(&s.name, key.open(s).unwrap().as_bytes()).unwrap())
        .collect();
    b.replace_secrets(&sealed, &resealed).unwrap();
    let after = a.secrets().unwrap();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|s| s.key_id == new.id()));
    assert_eq!(new.open(&after[1]).unwrap(), VALUE);
    let e = key.open(&after[1]).unwrap_err().to_string();
    assert!(e.contains("sealed under master key"), "{e}");
    // A `secret set` that checked the keys before the rotation committed, sealing under the
    // old key: refused by the store, so no secret is left under another key.
    let e = a
        .put_secret(&key.seal("LATE", VALUE.as_bytes()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sealed under master key") && e.contains("LATE"),
        "{e}"
    );
    assert_eq!(a.secrets().unwrap().len(), 2);

    // Audit: appended by both, newest first, hostile text kept as text.
    let row = |action: &str, status: u16| AuditEntry {
        time: Timestamp::now(),
        token: Some("bot".into()),
        action: action.into(),
        model: Some("Pokemon'; DROP TABLE _kye_audit;--".into()),
        key: Some("{\"id\":25}".into()),
        source: Some("store".into()),
        status,
    };
    a.append_audit(&[row("read", 200), row("read", 404)])
        .unwrap();
    b.append_audit(&[row("audit", 403)]).unwrap();
    let rows = a.audit(10).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.status).collect::<Vec<_>>(),
        [403, 404, 200]
    );
    assert_eq!(
        rows[2].model.as_deref(),
        Some("Pokemon'; DROP TABLE _kye_audit;--")
    );
    assert_eq!(a.audit(1).unwrap().len(), 1);
    token
}

#[test]
fn sqlite_keeps_tokens_secrets_and_audit_beside_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");
    let spec: StoreSpec = format!("sqlite:{}", db.display()).parse().unwrap();
    // Beside a writer holding the store's lock, as `kye serve` runs: the subcommands work.
    let mut writer = open_store(&spec).unwrap();
    writer
        .prepare(&crate::schema("P(id) {\n id: Number\n}\n"))
        .unwrap();
    let token = exercise(&spec);
    drop(writer);
    for suffix in ["", "-wal"] {
        let bytes = std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default();
        for needle in [VALUE.as_bytes(), b"replaced-value", token.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "kye.db{suffix} holds {}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    // The records' store opens again as usual.
    let reader = open_store_read_only(&spec).unwrap();
    assert_eq!(reader.kind(), "sqlite");
}

#[test]
fn the_directory_store_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let spec: StoreSpec = format!("dir:{}", dir.path().display()).parse().unwrap();
    let e = open_server_store(&spec).err().expect("refused").to_string();
    assert!(
        e.contains("directory store cannot") && e.contains("SQLite"),
        "{e}"
    );
}
