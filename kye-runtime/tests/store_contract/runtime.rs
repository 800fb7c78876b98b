//! The contract seen through the runtime: cats fetched from a loopback API into each store
//! (value objects stored per parent, contradicting nested records failing their key, drift
//! examples keeping their JSON type, unknown fields capped), plus the value-object rules of
//! the registry, requests and validation, which need no store of their own (issue 11,
//! item 13).
//!
//! A cat API on a loopback server returns 387 cats, each with its own `vitals` object.

use std::sync::OnceLock;

use kye_lang::Schema;
use kye_runtime::store::{IndexKey, KeyStatus, RecordQuery, RunStatus};
use kye_runtime::testing::{FetcherBuilder, Route, Routes, TestServer};
use kye_runtime::Config;
use kye_runtime::{Context, Error};
use kye_runtime::{FetchFuture, Key, KeyValue};
use kye_runtime::{FetchRequest, Runtime};
use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};
use kye_runtime::{TransformContext, TransformerRegistration};
use serde_json::{json, Value};

const CATS: i64 = 387;

/// `Vitals` and `Reading` have no index: value objects.
pub const VALUE_SCHEMA: &str = r#"
Cat(id: Number) {
  name: String
  vitals: Vitals
  readings: Reading*
}
Vitals {
  heart_rate_bpm: Number
  temperature_c: Number
  notes: String*
}
Reading { at: String, value: Number? }
"#;

/// What following the old hint gave: `Vitals` identified by its heart rate.
pub const KEYED_SCHEMA: &str = r#"
Cat(id: Number) {
  name: String
  vitals: Vitals
}
Vitals(heart_rate_bpm) {
  heart_rate_bpm: Number
  temperature_c: Number
}
"#;

fn value_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("cats.kye", VALUE_SCHEMA).expect("schema compiles"))
}

fn keyed_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("cats.kye", KEYED_SCHEMA).expect("schema compiles"))
}

/// The API's vitals of cat `id`: 60 distinct heart rates (shared by several cats), a
/// temperature of each cat's own.
pub fn vitals(id: i64) -> Value {
    json!({
        "heart_rate_bpm": 100 + id % 60,
        "temperature_c": 37.0 + (id as f64) / 1000.0,
        "notes": [format!("cat {id}"), "checked"],
    })
}

pub fn readings(id: i64) -> Value {
    json!((0..id % 3)
        .map(|i| json!({"at": format!("2026-12-0{}", i + 1), "value": id * 10 + i}))
        .collect::<Vec<_>>())
}

pub fn cat_doc(id: i64) -> Value {
    json!({"id": id, "name": format!("cat-{id}"), "vitals": vitals(id), "readings": readings(id)})
}

/// Unknown fields in the record of cat 1001.
const MANY_FIELDS: usize = 200_000;

fn routes() -> Routes {
    Routes::new().generate("/cats/", |rest| {
        let id: i64 = rest.trim_end_matches('/').parse().ok()?;
        match id {
            // Unknown fields whose JSON types must survive into the drift examples.
            1000 => {
                let mut doc = cat_doc(id);
                doc["microchip_id"] = json!("985112003456789");
                doc["neutered"] = json!("true");
                doc["owner"] = json!("null");
                doc["weight_kg"] = json!(4.5);
                Some(Route::json(doc.to_string()))
            }
            1001 => {
                let mut doc = cat_doc(id);
                for i in 0..MANY_FIELDS {
                    doc[format!("x{i}")] = json!(i);
                }
                Some(Route::json(doc.to_string()))
            }
            // Keys repeated in one object: serde_json keeps the last silently.
            1002 => Some(Route::json(
                r#"{"id": 1002, "name": "first", "vitals": {"heart_rate_bpm": 120, "temperature_c": 38.1, "temperature_c": 38.4}, "name": "cat-1002"}"#,
            )),
            _ => (1..=CATS)
                .contains(&id)
                .then(|| Route::json(cat_doc(id).to_string())),
        }
    })
}

fn base(ctx: &Context) -> Result<String, Error> {
    ctx.config_str("test.base_url")
        .ok_or_else(|| Error::permanent("test.base_url is not configured"))
}

fn cat_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let doc = ctx
            .get_json_value(&format!("{}/cats/{id}/", base(&ctx)?))
            .await?;
        Ok(Some(doc))
    })
}

/// The keyed schema's cats: only the two vitals edges it declares.
fn keyed_cat_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let doc = ctx
            .get_json_value(&format!("{}/cats/{id}/", base(&ctx)?))
            .await?;
        Ok(Some(json!({
            "id": doc["id"],
            "name": doc["name"],
            "vitals": {
                "heart_rate_bpm": doc["vitals"]["heart_rate_bpm"],
                "temperature_c": doc["vitals"]["temperature_c"],
            },
        })))
    })
}

static CAT_BY_ID: FetcherRegistration = FetcherBuilder::new("Cat", &["id"], "cat_by_id", cat_by_id)
    .doc("Cat by id.")
    .build();

static KEYED_CAT_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Cat", &["id"], "keyed_cat_by_id", keyed_cat_by_id)
        .doc("Cat by id, vitals keyed by heart rate.")
        .build();

fn runtime(
    schema: &'static Schema,
    fetcher: &'static FetcherRegistration,
    base: &str,
    store: String,
) -> Runtime {
    let models: Vec<&str> = schema.models().iter().map(|m| m.name.as_str()).collect();
    let registry = Registry::from_parts(
        models
            .into_iter()
            .map(|m| RegisteredModel::new(schema, m).expect("model registers")),
        [fetcher],
    )
    .expect("registry");
    let config = Config::from_toml_str(
        &format!(
            "[test]\nbase_url = \"{base}\"\n[run]\nconcurrency = 16\ntimeout = \"20s\"\nmax_attempts = 2\nbackoff_base = \"10ms\"\nmax_body_size = \"16MiB\"\n"
        ),
        None,
    )
    .expect("config");
    Runtime::builder()
        .registry(registry)
        .config(config)
        .env(Vec::new())
        .store(store)
        .handle_ctrl_c(false)
        .build()
        .expect("runtime builds")
}

use crate::fixtures::Store;
use crate::harness::Harness;

/// A runtime fetching with `fetcher` into the store under test.
fn runtime_for(
    st: &Store,
    schema: &'static Schema,
    fetcher: &'static FetcherRegistration,
    base: &str,
) -> Runtime {
    runtime(schema, fetcher, base, st.spec.to_string())
}

/// Every cat keeps its own vitals and readings, though heart rates repeat across cats; a
/// value object has no records of its own to list.
pub async fn every_cat_keeps_its_own_vitals(h: &Harness) {
    let server = TestServer::start(routes()).await.expect("server");
    let st = Store::new(h);
    let rt = runtime_for(&st, value_schema(), &CAT_BY_ID, server.base_url());
    let summary = rt
        .fetch(FetchRequest::new(format!("Cat.id in 1..={CATS}")))
        .await
        .expect("fetch runs");
    assert_eq!(summary.status, RunStatus::Completed, "{summary}");
    assert_eq!(summary.counts.stored, CATS as u64, "{summary:?}");
    let cats = rt.with_store(|s| s.records(&RecordQuery::new("Cat")).expect("records"));
    assert_eq!(cats.len(), CATS as usize);
    for cat in &cats {
        let id = cat["id"].as_i64().expect("id");
        assert_eq!(cat["vitals"], vitals(id), "vitals of cat {id}");
        assert_eq!(cat["readings"], readings(id), "readings of cat {id}");
    }
    // Cat 1 reads as its API says, not as cat 61 (same heart rate) does.
    let one = cats.iter().find(|c| c["id"] == 1).expect("cat 1");
    assert_eq!(one["vitals"]["temperature_c"], json!(37.001));
    // A value object has no records of its own to list or request.
    let err = rt
        .with_store(|s| s.records(&RecordQuery::new("Vitals")))
        .expect_err("Vitals has no table of its own");
    assert!(err.to_string().contains("Vitals"), "{err}");
}

/// Two cats of one run nesting different `Vitals` under one heart rate: the second fails its
/// key with a reason saying what to do, the first is stored as its API said.
pub async fn contradicting_nested_records_fail_their_key(h: &Harness) {
    let server = TestServer::start(routes()).await.expect("server");
    let st = Store::new(h);
    let rt = runtime_for(&st, keyed_schema(), &KEYED_CAT_BY_ID, server.base_url());
    // Cats 1 and 61 both have a heart rate of 101, with other temperatures.
    let summary = rt
        .fetch(FetchRequest::new("Cat.id in [1, 61]"))
        .await
        .expect("fetch runs");
    assert_eq!(
        summary.counts.stored + summary.counts.failed,
        2,
        "{summary:?}"
    );
    assert_eq!(summary.counts.failed, 1, "{summary:?}");
    let reason = &summary.failures[0].reason;
    assert!(
        reason.contains("nested Vitals heart_rate_bpm = 101 differs"),
        "{reason}"
    );
    assert!(reason.contains("edge temperature_c"), "{reason}");
    assert!(
        reason.contains("declare it without an index (a value object"),
        "{reason}"
    );
    // What the stored cat says is what its own API said.
    let cats = rt.with_store(|s| s.records(&RecordQuery::new("Cat")).expect("records"));
    assert_eq!(cats.len(), 1);
    let id = cats[0]["id"].as_i64().expect("id");
    assert_eq!(
        cats[0]["vitals"]["temperature_c"],
        vitals(id)["temperature_c"]
    );
    let failed_id = if id == 1 { 61 } else { 1 };
    let status = rt.with_store(|s| {
        s.latest_outcome("Cat", &IndexKey::single("id", json!(failed_id)))
            .expect("outcome")
            .map(|o| o.status)
    });
    assert_eq!(status, Some(KeyStatus::Failed));
}

/// Issue 11, item 14: the drift example is the value as it came (`drift_of` used to re-parse
/// the display text, so `"985112003456789"` became a number and `"true"` a boolean).
pub async fn drift_examples_keep_their_json_type(h: &Harness) {
    let server = TestServer::start(routes()).await.expect("server");
    let st = Store::new(h);
    let rt = runtime_for(&st, value_schema(), &CAT_BY_ID, server.base_url());
    let summary = rt
        .fetch(FetchRequest::new("Cat.id = 1000"))
        .await
        .expect("fetch");
    assert_eq!(summary.counts.stored, 1, "{summary:?}");
    let drift = rt.with_store(|s| s.drift().expect("drift"));
    let example = |path: &str| {
        drift
            .iter()
            .find(|d| d.model == "Cat" && d.path == path)
            .map(|d| d.example.clone())
    };
    assert_eq!(example("microchip_id"), Some(json!("985112003456789")));
    assert_eq!(example("neutered"), Some(json!("true")));
    assert_eq!(example("owner"), Some(json!("null")));
    assert_eq!(example("weight_kg"), Some(json!(4.5)));
}

/// Issue 11, item 10 (third part): 200,000 unknown fields in one record wrote 200,000 drift
/// rows. At most `MAX_UNKNOWN_FIELDS` are recorded; one warning says how many more.
pub async fn unknown_fields_of_one_record_are_capped(h: &Harness) {
    let cap = kye_lang::validate::MAX_UNKNOWN_FIELDS;
    let server = TestServer::start(routes()).await.expect("server");
    let st = Store::new(h);
    let rt = runtime_for(&st, value_schema(), &CAT_BY_ID, server.base_url());
    let got = rt.get("Cat.id = 1001").await.expect("get");
    let kye_runtime::GetResult::Stored { warnings, .. } = got else {
        panic!("cat 1001 is valid: {got:?}");
    };
    assert_eq!(warnings.len(), cap + 1);
    let more = MANY_FIELDS - cap;
    assert!(
        warnings[cap]
            .message
            .contains(&format!("{more} more fields are not edges of Cat")),
        "{}",
        warnings[cap].message
    );
    let drift = rt.with_store(|s| s.drift().expect("drift"));
    let rows = drift
        .iter()
        .filter(|d| d.model == "Cat" && d.path.starts_with('x'))
        .count();
    assert_eq!(rows, cap);
}

// What needs no store of its own: the registry, requests and validation of value objects,
// and the repeated JSON keys of a body (run once, with the SQLite store).

#[test]
fn a_value_object_needs_no_fetcher() {
    let registry = Registry::from_parts(
        ["Cat", "Vitals", "Reading"]
            .into_iter()
            .map(|m| RegisteredModel::new(value_schema(), m).expect("model registers")),
        [&CAT_BY_ID],
    )
    .expect("registry");
    let warnings: Vec<String> = registry.warnings().iter().map(|w| w.to_string()).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test]
async fn a_value_object_cannot_be_requested_on_its_own() {
    let server = TestServer::start(routes()).await.expect("server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(
        value_schema(),
        &CAT_BY_ID,
        server.base_url(),
        format!("sqlite:{}", tmp.path().join("cats.db").display()),
    );
    let err = rt
        .fetch(FetchRequest::new("Vitals.heart_rate_bpm = 120"))
        .await
        .expect_err("no request can name a value object");
    let text = err.to_string();
    assert!(
        text.contains("`Vitals` has no index: it is a value object"),
        "{text}"
    );
    assert!(
        text.contains("request the model that holds it (Cat)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_bare_value_for_a_value_object_is_rejected_naming_the_edge() {
    let report = kye_lang::validate::validate_record(
        value_schema(),
        "Cat",
        &json!({"id": 1, "name": "a", "vitals": 120}),
    );
    assert!(!report.is_valid());
    let e = &report.errors[0];
    assert_eq!(e.edges, ["vitals"]);
    assert!(
        e.message
            .contains("'120' is not a Vitals record (an object)"),
        "{}",
        e.message
    );
}

/// Issue 11, item 12 (fourth part): a key repeated in a JSON object silently kept the last
/// value. It is now a warning naming the model, key and field.
#[tokio::test]
async fn duplicate_keys_in_a_body_are_warned_about_naming_model_key_and_field() {
    let server = TestServer::start(routes()).await.expect("server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(
        value_schema(),
        &CAT_BY_ID,
        server.base_url(),
        format!("sqlite:{}", tmp.path().join("cats.db").display()),
    );
    let got = rt.get("Cat.id = 1002").await.expect("get");
    let kye_runtime::GetResult::Stored {
        record, warnings, ..
    } = got
    else {
        panic!("cat 1002 is valid: {got:?}");
    };
    // The value is serde_json's (the last one wins) ...
    assert_eq!(record["vitals"]["temperature_c"], json!(38.4));
    assert_eq!(record["name"], json!("cat-1002"));
    // ... and each repetition is said.
    let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].starts_with("Cat 1002: the response from "),
        "{messages:?}"
    );
    assert!(
        messages[0].contains("repeats the key 'temperature_c' at vitals.temperature_c; the last value (38.4) was used, the earlier one (38.1) dropped"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("repeats the key 'name' at name"),
        "{messages:?}"
    );
    assert_eq!(warnings[0].edges, ["temperature_c"]);
}

/// Cats and a card per cat, computed by a transformer.
pub const CARD_SCHEMA: &str = r#"
Cat(id: Number) {
  name: String
  vitals: Vitals
}
Vitals {
  heart_rate_bpm: Number
  temperature_c: Number
}
CatCard(id: Number) {
  name: String
  fever: Boolean
}
"#;

fn card_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("cards.kye", CARD_SCHEMA).expect("schema compiles"))
}

/// A card per cat; cat 13's card has no name (invalid: rejected). A card also reads the cat
/// before it (the same model as its primary input, under another key, and spelled `"7"` for
/// the number 7): that cat changing computes the card again too.
fn cat_card(cat: Value, ctx: TransformContext) -> FetchFuture {
    Box::pin(async move {
        // The cat read again through the context is lineage too (the same input).
        let id = cat["id"]
            .as_i64()
            .ok_or_else(|| Error::permanent("no id"))?;
        let again = ctx.get_json("Cat", &IndexKey::single("id", id))?;
        assert_eq!(again.as_ref(), Some(&cat));
        if id > 1 {
            let before = IndexKey::single("id", json!((id - 1).to_string()));
            let before = ctx.get_json("Cat", &before)?;
            assert!(before.is_some(), "cat {} is stored", id - 1);
        }
        let name = if id == 13 {
            Value::Null
        } else {
            cat["name"].clone()
        };
        let fever = cat["vitals"]["temperature_c"].as_f64().unwrap_or_default() > 39.0;
        Ok(Some(json!({"id": id, "name": name, "fever": fever})))
    })
}

static CAT_CARD: TransformerRegistration = TransformerRegistration {
    output: "CatCard",
    identifier: &["id"],
    inputs: &["Cat"],
    function: "cat_card",
    module_path: "store_contract::runtime",
    file: file!(),
    line: line!(),
    doc: "A card per cat.",
    call: cat_card,
};

/// A transformer over stored cats: every card computed once, validated (an invalid one
/// quarantined), and computed again only for the cat that changed. A store without lineage
/// refuses to run it.
pub async fn transformers_recompute_only_what_changed(h: &Harness) {
    let server = TestServer::start(routes()).await.expect("server");
    let st = Store::new(h);
    let schema = card_schema();
    let registry = Registry::from_parts(
        ["Cat", "CatCard"].map(|m| RegisteredModel::new(schema, m).expect("model registers")),
        [&CAT_BY_ID],
    )
    .and_then(|r| r.with_transformers([&CAT_CARD]))
    .expect("registry");
    let config = Config::from_toml_str(
        &format!("[test]\nbase_url = \"{}\"\n", server.base_url()),
        None,
    )
    .expect("config");
    let rt = Runtime::builder()
        .registry(registry)
        .config(config)
        .env(Vec::new())
        .store(st.spec.to_string())
        .handle_ctrl_c(false)
        .build()
        .expect("runtime builds");
    // The API's cats carry readings the card schema does not declare: drift, still stored.
    let fetched = rt.fetch("Cat.id in 1..=40").await.expect("fetch runs");
    assert_eq!(fetched.counts.stored, 40, "{fetched}");
    if st.differs.lineage == crate::harness::Lineage::Refused {
        let err = rt.transform(None).await.expect_err("refused");
        assert!(err.to_string().contains("keeps no lineage"), "{err}");
        return;
    }
    let first = rt.transform(Some("CatCard")).await.expect("transform runs");
    let t = &first.transformers[0];
    assert_eq!(
        (t.transformed, t.unchanged, t.rejected, t.failed),
        (39, 0, 1, 0),
        "{first}"
    );
    let rejects = rt
        .with_store(|s| s.rejects(Some(t.run), None))
        .expect("rejects");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].fetcher, "transform cat_card");
    assert_eq!(rejects[0].model, "CatCard");
    assert!(
        rejects[0].reason.contains("Cat id = 13"),
        "{}",
        rejects[0].reason
    );
    let mut q = RecordQuery::new("CatCard");
    q.provenance = true;
    let cards = rt.with_store(|s| s.records(&q)).expect("cards");
    assert_eq!(cards.len(), 39);
    assert_eq!(cards[0]["_kye"]["fetcher"], "transform cat_card");
    let run = rt
        .with_store(|s| s.run(t.run))
        .expect("run")
        .expect("recorded");
    assert_eq!(run.request, "transform cat_card");
    assert_eq!((run.counts.stored, run.counts.rejected), (39, 1));

    // Nothing changed: only the rejected card (which has no lineage) is computed again.
    let second = rt.transform(None).await.expect("transform runs");
    let t = &second.transformers[0];
    assert_eq!(
        (t.transformed, t.unchanged, t.rejected),
        (0, 39, 1),
        "{second}"
    );

    // Cat 7 runs a fever: its card, and the card of cat 8 that read it, are computed again.
    let mut cat = rt
        .with_store(|s| s.record("Cat", &IndexKey::single("id", 7)))
        .expect("read")
        .expect("cat 7");
    cat["vitals"]["temperature_c"] = json!(40.5);
    let written = rt.with_store(|s| {
        s.write_batch(&[kye_runtime::store::WriteItem::Record(
            kye_runtime::store::RecordWrite::new(
                "Cat",
                cat,
                kye_runtime::store::Provenance::new(t.run, "test"),
            ),
        )])
    });
    assert!(written.expect("batch")[0].is_ok());
    let third = rt.transform(None).await.expect("transform runs");
    let t = &third.transformers[0];
    assert_eq!(
        (t.transformed, t.unchanged, t.rejected),
        (2, 37, 1),
        "{third}"
    );

    // `retransform` (kye transform --refresh) computes every card again, lineage or not.
    let all = rt.retransform(None).await.expect("transform runs");
    let t = &all.transformers[0];
    assert_eq!(
        (t.transformed, t.unchanged, t.rejected),
        (39, 0, 1),
        "{all}"
    );
    let seven = rt
        .with_store(|s| s.record("CatCard", &IndexKey::single("id", 7)))
        .expect("read")
        .expect("card 7");
    assert_eq!(seven["fever"], json!(true));
}
