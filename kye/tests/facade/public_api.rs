//! The public API: every type a public signature of kye names is reachable through a `kye::`
//! path (issue 12). The general rule is enforced by kye-runtime denying `unnameable_types` (a
//! type reachable from its public items but not nameable at its root fails the build) and by
//! kye re-exporting kye-runtime's root whole; this file is the floor under it: it spells out the
//! signatures users meet (the runtime, its builder, summaries, the context, the registry,
//! requests, stores) with explicit `kye::` types, so it stops compiling if one of them moves out
//! of reach or a signature stops naming the type it names today.
//!
//! Types of other crates in signatures: `serde_json::Value` (records), `toml::Value` and
//! `toml::Table` (`Config::get`, `Config::table`), `tokio::task::JoinHandle`
//! (`Shutdown::on_ctrl_c`) and `kye::lang::*` (schemas, validation errors); reqwest's request
//! types are re-exported in `kye::http`.

use std::time::Duration;

/// Names each part of a finished fetch through `kye::` types: a field whose type changed or is
/// no longer reachable is a compile error here.
fn summary_parts(s: kye::FetchSummary) -> (kye::RunId, kye::RunStatus, kye::RunCounts) {
    let resumed: Option<kye::RunId> = s.resumed_from;
    let failures: Vec<kye::KeyProblem> = s.failures;
    let rejects: Vec<kye::KeyProblem> = s.rejects;
    let _: Duration = s.duration;
    let _: Duration = s.store_time;
    let _: Option<String> = s.unreachable;
    for p in failures.iter().chain(&rejects) {
        let _: kye::KeyStatus = p.status;
    }
    let _ = resumed;
    (s.run, s.status, s.counts)
}

fn progress_parts(p: &kye::Progress) -> (kye::RunId, kye::RunCounts, u64, u64, Duration) {
    (p.run, p.counts, p.interrupted, p.total, p.elapsed)
}

fn get_result_parts(r: &kye::GetResult) -> (kye::KeyStatus, Option<&serde_json::Value>) {
    match r {
        kye::GetResult::Stored { run, warnings, .. } => {
            let _: &kye::RunId = run;
            let _: &Vec<kye::lang::ValidationError> = warnings;
        }
        kye::GetResult::Rejected { run, errors, .. } => {
            let _: &kye::RunId = run;
            let _: &Vec<kye::lang::ValidationError> = errors;
        }
        kye::GetResult::Missing { run, .. } => {
            let _: &kye::RunId = run;
        }
    }
    (r.status(), r.record())
}

/// The runtime's and the builder's signatures.
fn runtime_surface(rt: &kye::Runtime) {
    let _: &kye::Context = rt.context();
    let _: &kye::Registry = rt.registry();
    let _: &kye::Shutdown = rt.shutdown();
    rt.with_store(|store: &mut dyn kye::store::StoreWrite| {
        let _: Result<Box<dyn kye::store::StoreRead>, kye::store::StoreError> = store.reader();
    });
    let _: kye::FetchRequest = kye::FetchRequest::new("Pokemon.id = 1");
}

fn builder_surface(
    store: Box<dyn kye::store::StoreWrite>,
) -> kye::Result<kye::Runtime, kye::Error> {
    let builder: kye::RuntimeBuilder = kye::Runtime::builder();
    // This binary's registry holds the accepted signatures' duplicate fetchers: this module's
    // own (empty) registry instead.
    let registry: kye::Registry =
        crate::registry_of(module_path!()).expect("this module's (empty) registry");
    builder
        .registry(registry)
        .config(kye::Config::empty())
        .secrets(kye::Secrets::empty())
        .shutdown(kye::Shutdown::new())
        .on_progress(|p: &kye::Progress| {
            let _ = progress_parts(p);
        })
        .store_instance(store)
        .build()
}

/// What a fetcher gets and returns.
fn context_surface(ctx: &kye::Context) {
    let _: kye::ContextBuilder = kye::Context::builder();
    let _: &kye::Config = ctx.settings();
    let _: kye::Result<kye::Secret> = ctx.secret("token");
    let _: &kye::http::Http = ctx.http();
    let _: kye::Result<kye::http::RequestBuilder> = ctx.request(kye::http::Method::GET, "/");
    let _: kye::ErrorClass = kye::Error::permanent("x").class();
    let paging: kye::http::Paginator = kye::http::Paginator::next_url("next");
    let pages: kye::Result<kye::Pages<'_>> = ctx.pages("http://127.0.0.1:9/list", &paging);
    if let Ok(pages) = pages {
        let _: u64 = pages.pages_read();
    }
}

/// A page as `Pages::next` yields it.
fn page_parts(page: &kye::http::Page) -> &[serde_json::Value] {
    &page.items
}

fn auth_surface(table: &mut kye::AuthTable, auth: kye::Auth) {
    table.insert_host("example.org", auth);
}

/// The registry, requests and keys.
fn registry_surface(registry: &kye::Registry) {
    let warnings: &[kye::RegistryWarning] = registry.warnings();
    let _ = warnings;
    for model in registry.models() {
        let model: &kye::RegisteredModel = model;
        let _: &kye::lang::Model = model.definition();
    }
    let fetchers: &[&'static kye::FetcherRegistration] = registry.fetchers();
    if let Some(f) = fetchers.first() {
        let call: kye::FetchFuture = f.call(&kye::Key::single(1), kye::Context::new());
        drop(call);
        let _: Result<(), kye::KeyError> = f.check_key(&kye::Key::single(1));
        let _: kye::OutputKind = f.output;
        // Batch fetchers: the size and the call of many keys.
        let _: Option<usize> = f.batch_size();
        let batch: Option<kye::BatchRegistration> = f.batch;
        let _ = batch.map(|b| b.size);
        let many: Option<kye::BatchFuture> =
            f.call_batch(&[kye::Key::single(1)], kye::Context::new());
        drop(many);
        let _: Option<kye::CallFuture<Vec<serde_json::Value>>> = None;
    }
    let request: Result<kye::Request, kye::RequestError> = kye::Request::parse("Pokemon.id = 1");
    if let Ok(request) = request {
        let _: &kye::KeySpec = request.keys();
        let resolved: Result<kye::ResolvedRequest, kye::RequestError> = registry.resolve(&request);
        if let Ok(resolved) = resolved {
            let keys: &kye::KeySet = resolved.keys();
            let _: kye::KeyIter = keys.iter();
        }
    }
    if let Err(e) = kye::Request::parse("Pokemon.") {
        let _: kye::RequestErrorKind = e.kind();
    }
    let listing: kye::Listing = kye::Listing::new(registry);
    let _: Vec<kye::ModelListing> = listing.models.clone();
    let _: Vec<kye::FetcherListing> = listing.fetchers.clone();
    let _: Vec<kye::TransformerListing> = listing.transformers.clone();
    let _: String = listing.render(kye::Format::Json);
    let transformers: &[&'static kye::TransformerRegistration] = registry.transformers();
    let _ = transformers;
    let _: Result<&'static kye::Registry, &'static kye::RegistryError> = kye::registry();
}

/// Running transformers and what they report.
async fn transform_surface(rt: &kye::Runtime) -> kye::Result<()> {
    let summary: kye::TransformSummary = rt.transform(None).await?;
    let _: kye::TransformSummary = rt.transform_after(&["Pokemon"]).await?;
    for t in &summary.transformers {
        let t: &kye::TransformCounts = t;
        let _: (kye::RunId, u64, u64, Duration) = (t.run, t.transformed, t.unchanged, t.elapsed);
        let _: &Vec<kye::KeyProblem> = &t.problems;
    }
    Ok(())
}

/// What a transformer gets: typed and JSON lookups of its inputs.
fn transform_context_surface(ctx: &kye::TransformContext) -> kye::Result<()> {
    let _: Option<crate::generated::Maker> = ctx.get::<crate::generated::Maker>("acme")?;
    let _: Option<serde_json::Value> =
        ctx.get_json("Pokemon", &kye::store::IndexKey::single("id", 1))?;
    Ok(())
}

/// What the lineage of a transformer's output is made of.
fn lineage_surface(reader: &dyn kye::store::StoreRead) -> Result<(), kye::store::StoreError> {
    let rows: Vec<kye::store::LineageRow> = reader.lineage("card")?;
    for r in rows {
        let input = kye::store::LineageInput {
            model: r.input_model,
            key: kye::store::IndexKey::from_canonical(&r.input_key).expect("a key"),
            hash: r.input_hash,
        };
        let _: kye::store::Lineage = kye::store::Lineage {
            transformer: "card".into(),
            output_key: kye::store::IndexKey::single("id", 1),
            inputs: vec![input],
        };
    }
    let mut stale: Vec<(kye::store::IndexKey, String)> = Vec::new();
    let counts: kye::store::StaleCounts =
        reader.stale_inputs("card", &[("Pokemon", &["id"])], &mut |k, h| {
            stale.push((k, h));
            Ok(())
        })?;
    let _ = (counts.unchanged, counts.orphaned);
    let at = kye::store::Timestamp::now();
    let ages: kye::store::FetchedAges = reader.fetched_ages("Pokemon", at)?;
    let _ = (ages.since, ages.before, ages.oldest);
    let _: Vec<(kye::store::Timestamp, kye::store::IndexKey)> =
        reader.fetched_before("Pokemon", &["id"], at, 10)?;
    Ok(())
}

/// Opening and reading a store.
fn store_surface(spec: &kye::store::StoreSpec) -> Result<(), kye::store::StoreError> {
    let reader: Box<dyn kye::store::StoreRead> = kye::store::open_store_read_only(spec)?;
    let runs: Vec<kye::store::RunInfo> = reader.runs(Some(10))?;
    let _: Option<kye::store::Timestamp> = runs.first().map(|r| r.started_at);
    let _: kye::store::RecordQuery = kye::store::RecordQuery::new("Pokemon");
    let key: kye::store::IndexKey = kye::store::IndexKey::single("id", 1);
    // Nothing prepared the store for `Pokemon`: the reader says so by name.
    let unknown = reader.last_stored("Pokemon", &key);
    assert!(
        matches!(&unknown, Err(kye::store::StoreError::UnknownModel { model }) if model == "Pokemon"),
        "{unknown:?}"
    );
    Ok(())
}

/// `kye serve` (feature `server`, on by default): the server, its options, the master key,
/// and the server's tables in a store.
fn server_surface(
    rt: kye::Runtime,
    spec: &kye::store::StoreSpec,
) -> Result<(), kye::store::StoreError> {
    let mut store: Box<dyn kye::store::ServerStore> = kye::store::open_server_store(spec)?;
    let key: Result<kye::MasterKey, kye::SealError> = kye::MasterKey::generate();
    let sealed: Result<kye::store::SealedSecret, kye::SealError> = key
        .as_ref()
        .map_err(|_| kye::SealError::NoKey)
        .and_then(|k| k.seal("N", b"v"));
    let _ = sealed;
    let _: Result<String, kye::Error> =
        kye::Server::issue_token(store.as_mut(), "n", "r", Some(kye::store::Timestamp::now()));
    let mut secrets = kye::Secrets::empty();
    let _: Result<usize, kye::Error> =
        kye::Server::open_sealed_secrets(store.as_mut(), key.as_ref().ok(), &mut secrets);
    let _: Result<Vec<kye::store::TokenRecord>, _> = store.tokens();
    let _: Result<Vec<kye::store::AuditEntry>, _> = store.audit(1);
    let options = kye::ServeOptions::new("127.0.0.1:0".parse().expect("addr"))
        .rate_limit(10)
        .request_timeout(Duration::from_secs(1))
        .max_body(1024)
        .grace_period(Duration::from_secs(1))
        .failed_auth_limit(30)
        .max_connections(64)
        .header_timeout(Duration::from_secs(5))
        .audit_retention(Some(Duration::from_secs(86_400)));
    let session: Result<Option<kye::store::SessionRecord>, _> =
        store.session("hash", kye::store::Timestamp::now());
    let _ = session;
    let _: i64 = kye::store::SESSIONS_PER_TOKEN;
    let _bind = kye::Server::bind(rt, store, options);
    let _: &str = kye::MASTER_KEY_ENV;
    Ok(())
}

/// Declared sources (issue 18): the registry's sources, one declaration's parts, the listing,
/// a run's and a record's source.
#[allow(dead_code)]
fn sources_surface(registry: &kye::Registry, run: &kye::store::RunInfo) {
    let sources: &kye::Sources = registry.sources();
    for s in sources.iter() {
        let _: &'static kye::SourceRegistration = s;
        let _: &[kye::ConfigKey] = s.config;
        let _: &[kye::SecretKey] = s.secrets;
        let _: Option<kye::Probe> = s.probe;
        for secret in s.secrets {
            let _: kye::SendAs = secret.send;
        }
    }
    let _: Option<&'static kye::SourceRegistration> = sources.get("pokeapi");
    let _: Option<String> = run.source.clone();
    let _: Option<String> = kye::store::NewRun::new("x").source;
    let _: &[&str] = kye::RESERVED_SOURCE_NAMES;
    let _ = |e: kye::SourceError| e.to_string();
}

/// Queued runs through PostgreSQL (feature `postgres`): the queue, a worker, what they report
/// and the write item that completes a batch. Compiled, not run (it needs a server).
#[cfg(feature = "postgres")]
#[allow(dead_code)]
async fn queue_surface(rt: &kye::Runtime, spec: &kye::store::PgSpec) -> kye::Result<()> {
    let q: kye::Queue = kye::Queue::open(spec)?.batch_attempts(5);
    let run: kye::RunId = q
        .enqueue(rt, &kye::FetchRequest::new("Pokemon.id = 1"))
        .await?;
    let progress: Option<kye::QueueProgress> = q.progress(run)?;
    if let Some(p) = progress {
        let _: kye::RunCounts = p.counts;
        let workers: Vec<kye::WorkerLease> = p.workers;
        for w in &workers {
            let _: (u64, u64, Option<f64>) = (w.done, w.keys, w.keys_per_second);
        }
    }
    let opts = kye::WorkerOptions::default();
    if let Some(batch) = q.claim("w", Duration::from_secs(60))? {
        let _: kye::ClaimedBatch = batch.clone();
        let _: kye::BatchEnd = rt.work_batch(&q, &batch, &opts).await?;
    }
    let _: kye::WorkerReport = rt.work(&q, &opts).await?;
    let _: (usize, i32) = (kye::BATCH_KEYS, kye::BATCH_ATTEMPTS);
    let item = |w: kye::store::QueueBatchWrite| kye::store::WriteItem::QueueBatch(w);
    let _ = item;
    let _ = |o: kye::store::QueuedOutcome| -> kye::store::KeyOutcomeWrite { o.outcome };
    Ok(())
}

#[test]
fn public_types_are_reachable_through_kye_paths() {
    // The functions above are the check (they must compile); calling what can run without a
    // source shows the paths lead to the real items.
    let registry = crate::registry_of(module_path!()).expect("this module's (empty) registry");
    assert_eq!(registry.fetchers().len(), 0);
    registry_surface(&registry);
    context_surface(&kye::Context::new());
    let mut table = kye::AuthTable::default();
    auth_surface(&mut table, kye::Auth::Bearer(kye::Secret::new("t")));
    assert!(!table.is_empty());

    let dir = tempfile_dir();
    let spec: kye::store::StoreSpec = format!("dir:{}", dir.display()).parse().expect("a spec");
    let store = kye::store::open_store(&spec).expect("a new folder store");
    let rt = builder_surface(store).expect("a runtime");
    runtime_surface(&rt);
    store_surface(&spec).expect("the folder store reads");
    let _ = (summary_parts as fn(_) -> _, get_result_parts as fn(_) -> _);
    let _ = page_parts as fn(_) -> _;
    let _ = lineage_surface as fn(_) -> _;
    let _ = transform_context_surface as fn(_) -> _;
    let _ = transform_surface;
    let _ = server_surface as fn(_, _) -> _;
    std::fs::remove_dir_all(&dir).expect("the scratch folder is removed");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kye-public-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}
