//! Freshness: `[freshness]` in kye.toml says how old a model's stored records may get; the
//! server refreshes older ones in the background (oldest first, a batch at a time, through the
//! runtime, so within the source's rate limits), and `GET /v1/freshness` reports per model the
//! keys fresh and stale, the oldest, the next refresh and whether the model is past its error
//! threshold.
//!
//! ```toml
//! [freshness]
//! Pokemon = "1d"                                          # refresh after a day
//! PokemonType = { max_age = "7d", warn = "8d", error = "14d" }
//! ```
//!
//! A scan asks the store, not the records: the SQL stores count the records fetched since
//! the cut-off and before it and find the oldest fetch time in one aggregate query over the
//! model table's fetch-time column ([`StoreRead::fetched_ages`]), and the refresher reads the
//! keys of the stale rows only, oldest first, at most a batch ([`StoreRead::fetched_before`]).
//! No record is built and no child table read; the queries still pass over the model table's
//! rows (the fetch time has no index). The directory store (which cannot serve) answers both
//! by reading records.
//!
//! [`StoreRead::fetched_ages`]: crate::store::StoreRead::fetched_ages
//! [`StoreRead::fetched_before`]: crate::store::StoreRead::fetched_before

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::AppState;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{Key, KeyValue};
use crate::request::{KeySpec, Request};
use crate::runtime::FetchRequest;
use crate::store::{IndexKey, Timestamp};

/// Keys refreshed by one background run, at most.
const BATCH: usize = 100;

/// One model's freshness policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub model: String,
    pub max_age: Duration,
    pub warn: Option<Duration>,
    pub error: Option<Duration>,
}

/// `[freshness]` of the configuration.
pub(crate) fn policies(config: &Config) -> Result<Vec<Policy>> {
    let Some(table) = config.table("freshness") else {
        return Ok(Vec::new());
    };
    let dur = |model: &str, key: &str, v: &toml::Value| -> Result<Duration> {
        let text = v.as_str().ok_or_else(|| {
            Error::permanent(format!(
                "kye.toml: [freshness] {model}{key}: expected a duration such as \"1d\""
            ))
        })?;
        crate::duration::parse(text)
            .map_err(|e| Error::permanent(format!("kye.toml: [freshness] {model}{key}: {e}")))
    };
    let mut out = Vec::new();
    for (model, v) in table {
        let policy = match v {
            toml::Value::Table(t) => {
                for k in t.keys() {
                    if !["max_age", "warn", "error"].contains(&k.as_str()) {
                        return Err(Error::permanent(format!(
                            "kye.toml: [freshness] {model}.{k}: unknown (known: max_age, warn, error)"
                        )));
                    }
                }
                let get = |k: &str| {
                    t.get(k)
                        .map(|v| dur(model, &format!(".{k}"), v))
                        .transpose()
                };
                Policy {
                    model: model.clone(),
                    max_age: get("max_age")?.ok_or_else(|| {
                        Error::permanent(format!(
                            "kye.toml: [freshness] {model}: max_age is missing"
                        ))
                    })?,
                    warn: get("warn")?,
                    error: get("error")?,
                }
            }
            other => Policy {
                model: model.clone(),
                max_age: dur(model, "", other)?,
                warn: None,
                error: None,
            },
        };
        out.push(policy);
    }
    Ok(out)
}

/// What one scan of a model found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub fresh: u64,
    pub stale: u64,
    pub oldest: Option<Timestamp>,
    /// Stale keys, oldest first, at most [`BATCH`].
    pub stale_keys: Vec<Key>,
}

/// Asks the store how old the model's records are, and for the keys of the stale ones
/// (oldest first, at most [`BATCH`]) when `with_keys` (the refresher needs them, a report
/// does not).
pub(crate) async fn scan(state: &Arc<AppState>, policy: &Policy, with_keys: bool) -> Result<Scan> {
    let Some(fetcher) = state.runtime.registry().fetchers_for(&policy.model).next() else {
        return Ok(Scan::default());
    };
    let edges: Vec<&'static str> = fetcher.identifier.to_vec();
    let model = policy.model.clone();
    let max_age = policy.max_age;
    let found = state
        .with_reader(move |r| {
            let now = Timestamp::now();
            let cutoff = Timestamp::from_unix_millis(
                now.unix_millis()
                    .saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX)),
            );
            let ages = r.fetched_ages(&model, cutoff)?;
            let stale = if with_keys && ages.before > 0 {
                r.fetched_before(&model, &edges, cutoff, BATCH)?
            } else {
                Vec::new()
            };
            Ok(Scan {
                fresh: ages.since,
                stale: ages.before,
                oldest: ages.oldest,
                stale_keys: stale.iter().filter_map(|(_, k)| key_of(k)).collect(),
            })
        })
        .await
        .map_err(Error::other)?;
    Ok(found)
}

/// A stored key as the runtime's [`Key`] (integers and strings; `None` for other values,
/// which no fetcher is keyed by).
fn key_of(key: &IndexKey) -> Option<Key> {
    let values: Option<Vec<KeyValue>> = key
        .values
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_i64().map(KeyValue::Int),
            Value::String(s) => Some(KeyValue::String(s.clone())),
            _ => None,
        })
        .collect();
    values.map(Key::new)
}

/// The report of `GET /v1/freshness` for one model.
pub(crate) fn report(policy: &Policy, scan: &Scan, next_refresh: Option<Timestamp>) -> Value {
    let now = Timestamp::now();
    let oldest_age = scan.oldest.map(|o| o.age(now));
    let past = |t: Option<Duration>| t.zip(oldest_age).is_some_and(|(t, a)| a > t);
    json!({
        "model": policy.model,
        "max_age_seconds": policy.max_age.as_secs(),
        "fresh": scan.fresh,
        "stale": scan.stale,
        "oldest": scan.oldest,
        "oldest_age_seconds": oldest_age.map(|a| a.as_secs()),
        "next_refresh": next_refresh,
        "warn": past(policy.warn),
        "error": past(policy.error),
    })
}

/// The background refresher: every `every`, each model's stale keys (oldest first, a batch)
/// are fetched again, until the server stops.
pub(crate) async fn refresher(state: Arc<AppState>, every: Duration) {
    let policies = state.freshness.clone();
    if policies.is_empty() {
        return;
    }
    loop {
        for policy in &policies {
            if state.stopping.load(Ordering::SeqCst) {
                return;
            }
            let scan = match scan(&state, policy, true).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(model = %policy.model, error = %e, "freshness scan failed");
                    continue;
                }
            };
            if scan.stale_keys.is_empty() {
                continue;
            }
            let Some(fetcher) = state.runtime.registry().fetchers_for(&policy.model).next() else {
                continue;
            };
            let identifier = fetcher.identifier.iter().map(|s| s.to_string()).collect();
            let request = Request::new(
                policy.model.clone(),
                Some(identifier),
                KeySpec::List(scan.stale_keys),
            )
            .to_string();
            tracing::info!(model = %policy.model, stale = scan.stale, "refreshing stale keys");
            let fetch = FetchRequest::new(request)
                .max_age(policy.max_age)
                .resume(false);
            if let Err(e) = state.runtime.fetch(fetch).await {
                tracing::warn!(model = %policy.model, error = %e, "refresh failed");
            }
        }
        let next = Timestamp::from_unix_millis(
            Timestamp::now()
                .unix_millis()
                .saturating_add(i64::try_from(every.as_millis()).unwrap_or(i64::MAX)),
        );
        *state.next_refresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = state.stop_notify.notified() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_reads_a_duration_or_a_table_and_names_bad_keys() {
        let config = Config::from_toml_str(
            "[freshness]\nPokemon = \"1d\"\nPokemonType = { max_age = \"7d\", error = \"14d\" }\n",
            None,
        )
        .unwrap();
        let p = policies(&config).unwrap();
        assert_eq!(p[0].model, "Pokemon");
        assert_eq!(p[0].max_age, Duration::from_secs(86400));
        assert_eq!(p[1].error, Some(Duration::from_secs(14 * 86400)));
        let bad = Config::from_toml_str("[freshness]\nX = { maxage = \"1d\" }\n", None).unwrap();
        let e = policies(&bad).unwrap_err().to_string();
        assert!(e.contains("[freshness] X.maxage"), "{e}");
    }
}
