//! A 2xx body that echoes the credential (issue 11, item 3): what kye itself writes about it —
//! key outcome reasons, rejects' reasons and errors, the fetch summary, drift examples and
//! `get` warnings — is redacted; the payload kept in rejects stays as the source sent it.

use crate::common;

use std::sync::OnceLock;

use common::echo::echo_server;
use kye_lang::Schema;
use kye_runtime::store::{IndexKey, KeyStatus};
use kye_runtime::testing::FetcherBuilder;
use kye_runtime::Config;
use kye_runtime::Secrets;
use kye_runtime::{Context, Error};
use kye_runtime::{FetchFuture, Key, KeyValue};
use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};
use kye_runtime::{GetResult, Runtime};
use serde_json::{json, Value};

const TOKEN: &str = "tok-BODY-SECRET-77aa55cc";

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        kye_lang::compile_str(
            "b.kye",
            "Item(id: Number) {\n  name: String\n  size: Number\n}",
        )
        .expect("compiles")
    })
}

/// The `authorization` header the echo server saw, as a source echoing it in a field would.
fn echoed_auth(v: &Value) -> String {
    v["head"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default()
}

/// Key 1: the credential in a field of the wrong type (rejected); key 2: in an unknown field
/// (stored, drift).
fn item_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let base = ctx.config_or("echo.base_url", "");
        let v = ctx.get_json_value(&format!("{base}/items/{id}")).await?;
        let auth = echoed_auth(&v);
        Ok(Some(if id == 1 {
            json!({"id": id, "name": "one", "size": auth})
        } else {
            json!({"id": id, "name": "two", "size": 2, "echo": {"seen": auth, auth.clone(): 1}})
        }))
    })
}

static ITEM_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Item", &["id"], "item_by_id", item_by_id).build();

#[tokio::test]
async fn a_credential_echoed_in_a_2xx_body_is_redacted_in_what_kye_writes() {
    let echo = echo_server().await;
    let port = echo.rsplit(':').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(
        &format!(
            r#"
            [run]
            max_attempts = 1
            [hosts."127.0.0.1:{port}".auth]
            type = "bearer"
            secret = "BODY_TOKEN"
            [echo]
            base_url = "{echo}"
            "#
        ),
        None,
    )
    .unwrap();
    let secrets = Secrets::load([("BODY_TOKEN".to_string(), TOKEN.to_string())], None).unwrap();
    let rt = Runtime::builder()
        .registry(
            Registry::from_parts(
                [RegisteredModel::new(schema(), "Item").unwrap()],
                [&ITEM_BY_ID],
            )
            .unwrap(),
        )
        .config(config)
        .secrets(secrets)
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();

    let summary = rt.fetch("Item.id in 1..=2").await.unwrap();
    assert_eq!(summary.counts.rejected, 1, "{summary}");
    assert_eq!(summary.counts.stored, 1, "{summary}");
    let got = rt.get("Item.id = 2").await.unwrap();
    let GetResult::Stored { warnings, .. } = &got else {
        panic!("key 2 is stored: {got:?}");
    };

    let mut shown = Vec::new();
    shown.push(format!("{summary}"));
    shown.push(format!("{summary:?}"));
    shown.push(serde_json::to_string(&summary).unwrap());
    shown.push(serde_json::to_string(warnings).unwrap());
    let outcome = rt.with_store(|s| {
        s.latest_outcome("Item", &IndexKey::single("id", 1))
            .unwrap()
            .unwrap()
    });
    assert_eq!(outcome.status, KeyStatus::Rejected);
    shown.push(format!("{:?}", outcome.reason));
    let rejects = rt.with_store(|s| s.rejects(None, None).unwrap());
    assert_eq!(rejects.len(), 1);
    shown.push(rejects[0].reason.clone());
    shown.push(rejects[0].errors.to_string());
    let drift = rt.with_store(|s| s.drift().unwrap());
    shown.push(serde_json::to_string(&drift).unwrap());

    // What was written does quote the body (so the check below means something)...
    let all = shown.join("\n");
    assert!(all.contains("size"), "{all}");
    assert!(all.contains("echo"), "{all}");
    assert!(all.contains("[redacted]"), "{all}");
    // ...and never the credential.
    assert!(!all.contains(TOKEN), "secret leaked:\n{all}");
    // The quarantined payload is the source's document, kept as it came.
    assert!(
        rejects[0].payload.to_string().contains(TOKEN),
        "{}",
        rejects[0].payload
    );
}
