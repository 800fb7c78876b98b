//! `kye-bench transform N`: a transformer over N stored records (`Ready`, seeded straight into
//! SQLite, not timed): the first run (every card computed, validated and stored with its
//! lineage), a second run after 1% of the inputs changed (only their cards computed again),
//! and the floor: the same cards computed and written by hand through the store API (one pass
//! over the records, no lineage, no hashes).

use std::time::Instant;

use kye::store::{open_store, Provenance, RecordQuery, RecordWrite, StoreSpec, WriteItem};
use serde_json::{json, Value};

use crate::{runtime, tokio_rt, AnyResult, Ready, ReadyCard};

/// The card of one `Ready` record.
fn card_of(r: &Ready) -> ReadyCard {
    ReadyCard {
        id: r.id,
        name: r.name.clone(),
        bulk: (r.weight / r.height * 100.0).round() / 100.0,
        types: r.types.clone(),
    }
}

/// A card per stored `Ready` (the benchmark's transformer).
#[kye::transform(ReadyCard.id, from(Ready))]
async fn ready_card(r: Ready, _ctx: &kye::TransformContext) -> kye::Result<ReadyCard> {
    Ok(card_of(&r))
}

fn ready(id: u64, weight: f64) -> Value {
    json!({
        "id": id, "name": format!("ready-{id}"), "weight": weight, "height": 7,
        "base_experience": 64, "types": ["grass", "poison"],
        "abilities": ["overgrow", "chlorophyll"], "hidden_abilities": ["chlorophyll"],
        "order": id, "is_default": true, "species": format!("ready-{id}"),
        "hp": 45, "attack": 49, "defense": 49, "special_attack": 65, "special_defense": 65, "speed": 45,
    })
}

/// Writes `Ready` records `ids` (weight `weight(id)`) in batches of 1,000.
fn seed(
    spec: &StoreSpec,
    ids: impl Iterator<Item = u64>,
    weight: impl Fn(u64) -> f64,
) -> AnyResult<()> {
    let mut store = open_store(spec)?;
    store.prepare(
        kye::registry()
            .map_err(|e| e.to_string())?
            .model("Ready")
            .ok_or("no Ready")?
            .schema(),
    )?;
    let run = store.begin_run(&kye::store::NewRun::new("seed"))?;
    let ids: Vec<u64> = ids.collect();
    for chunk in ids.chunks(1000) {
        let items: Vec<WriteItem> = chunk
            .iter()
            .map(|&id| {
                WriteItem::Record(RecordWrite::new(
                    "Ready",
                    ready(id, weight(id)),
                    Provenance::new(run, "seed"),
                ))
            })
            .collect();
        let results = store.write_batch(&items)?;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(e.into());
        }
    }
    Ok(())
}

/// The floor: every card computed by hand and written through the store API.
fn floor(spec: &StoreSpec) -> AnyResult<u64> {
    let mut store = open_store(spec)?;
    store.prepare(
        kye::registry()
            .map_err(|e| e.to_string())?
            .model("ReadyCard")
            .ok_or("no ReadyCard")?
            .schema(),
    )?;
    let reader = store.reader()?;
    let run = store.begin_run(&kye::store::NewRun::new("floor"))?;
    let mut q = RecordQuery::new("Ready");
    q.depth = 0;
    let mut items = Vec::with_capacity(256);
    let mut n = 0u64;
    let mut failed: Option<String> = None;
    reader.for_each_record(&q, &mut |v| {
        let r: Ready = match serde_json::from_value(v) {
            Ok(r) => r,
            Err(e) => {
                failed = Some(e.to_string());
                return Ok(());
            }
        };
        let card = serde_json::to_value(card_of(&r)).unwrap_or(Value::Null);
        items.push(WriteItem::Record(RecordWrite::new(
            "ReadyCard",
            card,
            Provenance::new(run, "floor"),
        )));
        n += 1;
        if items.len() >= 256 {
            store.write_batch(&items)?;
            items.clear();
        }
        Ok(())
    })?;
    store.write_batch(&items)?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(n),
    }
}

pub fn transform(count: u64) -> AnyResult<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("kye.db");
    let spec: StoreSpec = format!("sqlite:{}", db.display()).parse()?;
    seed(&spec, 1..=count, |_| 69.0)?;

    let floor_db = dir.path().join("floor.db");
    let floor_spec: StoreSpec = format!("sqlite:{}", floor_db.display()).parse()?;
    seed(&floor_spec, 1..=count, |_| 69.0)?;
    let start = Instant::now();
    let floored = floor(&floor_spec)?;
    let floor_secs = start.elapsed().as_secs_f64();

    let tokio = tokio_rt()?;
    let rt = runtime(&db, kye::Config::empty())?;
    let start = Instant::now();
    let first = tokio.block_on(rt.transform(Some("ReadyCard")))?;
    let first_secs = start.elapsed().as_secs_f64();
    let t = &first.transformers[0];
    if t.transformed != count || floored != count {
        return Err(format!("not every card was stored: {first} (floor: {floored})").into());
    }
    drop(rt);

    // 1% of the inputs change (every 100th id gains weight).
    let changed = count / 100;
    seed(&spec, (1..=changed).map(|i| i * 100), |_| 70.0)?;
    let rt = runtime(&db, kye::Config::empty())?;
    let start = Instant::now();
    let second = tokio.block_on(rt.transform(Some("ReadyCard")))?;
    let second_secs = start.elapsed().as_secs_f64();
    let t = &second.transformers[0];
    if t.transformed != changed || t.unchanged != count - changed {
        return Err(format!("the second run computed the wrong cards: {second}").into());
    }
    println!(
        "RESULT records={count} first_secs={first_secs:.4} records_per_sec={:.0} floor_secs={floor_secs:.4} floor_records_per_sec={:.0} changed={changed} second_secs={second_secs:.4} second_pct_of_first={:.2} peak_rss_kib={}",
        count as f64 / first_secs,
        count as f64 / floor_secs,
        second_secs * 100.0 / first_secs,
        crate::peak_rss_kib()
    );
    Ok(())
}
