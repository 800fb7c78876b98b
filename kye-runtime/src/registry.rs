//! The registry: every model and fetcher linked into the binary, collected by `inventory`.
//!
//! `kye::models!` submits a [`ModelRegistration`] per model and `#[kye::get]` a
//! [`FetcherRegistration`] per fetch function, from whichever crate they are written in. The
//! registry is built once, lazily, on first use of [`registry`]; building it checks that no two
//! fetchers serve the same model identifier and warns about models nobody can fetch.
//!
//! # The linker pitfall
//!
//! Registrations live in statics of the crate that declares them. If your binary never names a
//! crate of fetchers (no `use`, no call), the linker drops that crate, and its fetchers with
//! it: the registry is then empty or misses models, and [`Registry::warnings`] says so. Name the
//! crate once, anywhere in the binary:
//!
//! ```ignore
//! use my_sources as _;
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use kye_lang::Schema;

use crate::context::Context;
use crate::list::ListerRegistration;
pub(crate) use crate::model::identifier_text;
use crate::model::{BatchFuture, FetchFuture, Key, KeyError, OutputKind};
use crate::source::{MemberKind, SourceError, Sources};
use crate::transform::TransformerRegistration;

/// A model registered by `kye::models!` (generated code builds these; do not write them by hand).
#[derive(Debug)]
pub struct ModelRegistration {
    /// The model's name.
    pub name: &'static str,
    /// The compiled schema the model belongs to.
    pub schema: fn() -> &'static Schema,
    /// Rust source file of the `kye::models!` invocation.
    pub file: &'static str,
    /// Line of the `kye::models!` invocation.
    pub line: u32,
    /// `module_path!()` of the invocation.
    pub module_path: &'static str,
}

/// A fetch function registered by `#[kye::get]` (generated code builds these).
pub struct FetcherRegistration {
    /// The model it fetches, e.g. `"Pokemon"`.
    pub model: &'static str,
    /// The index edges it is keyed by, e.g. `["id"]`.
    pub identifier: &'static [&'static str],
    /// The function's name.
    pub function: &'static str,
    /// `module_path!()` of the function (its first segment is the crate).
    pub module_path: &'static str,
    /// Rust source file of the function (as `file!()` reports it).
    pub file: &'static str,
    /// Line of the function.
    pub line: u32,
    /// Whether the function is `async`.
    pub is_async: bool,
    /// The first paragraph of the function's doc comment (may be empty).
    pub doc: &'static str,
    /// What the function returns.
    pub output: OutputKind,
    /// Type-erased entry point; use [`FetcherRegistration::call`].
    pub call: fn(&Key, Context) -> FetchFuture,
    /// Checks that a key fits the function's parameter types without calling it.
    pub check: fn(&Key) -> Result<(), KeyError>,
    /// `Some` for a batch fetcher (`#[kye::get(Cat.id, batch = 50)]`): it takes many keys
    /// in one call, and the runtime groups keys for it.
    pub batch: Option<BatchRegistration>,
}

/// How a batch fetcher is called: up to `size` keys at once (generated code builds these).
#[derive(Clone, Copy)]
pub struct BatchRegistration {
    /// The most keys one call takes (`batch = 50`), at least 1.
    pub size: usize,
    /// Type-erased entry point; use [`FetcherRegistration::call_batch`].
    pub call: fn(&[Key], Context) -> BatchFuture,
}

impl fmt::Debug for BatchRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchRegistration")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

inventory::collect!(ModelRegistration);
inventory::collect!(FetcherRegistration);

impl FetcherRegistration {
    /// Calls the fetcher for `key`. Sync functions run on tokio's blocking pool (inline when
    /// there is no runtime). The future resolves to `Ok(Some(json))` for a record, `Ok(None)`
    /// when the source has no such key, or the fetcher's error. A key whose values do not fit
    /// the parameters resolves to a permanent error without calling the function.
    pub fn call(&self, key: &Key, ctx: Context) -> FetchFuture {
        (self.call)(key, ctx)
    }

    /// The most keys one call of a batch fetcher takes; `None` for a fetcher of one key.
    pub fn batch_size(&self) -> Option<usize> {
        self.batch.map(|b| b.size.max(1))
    }

    /// Calls a batch fetcher for `keys` (`None` for a fetcher of one key). The future resolves
    /// to the records the source answered, in any order, or the error of the whole call. A key
    /// whose values do not fit the parameters fails the call without calling the function:
    /// check keys with [`FetcherRegistration::check_key`] first.
    pub fn call_batch(&self, keys: &[Key], ctx: Context) -> Option<BatchFuture> {
        self.batch.map(|b| (b.call)(keys, ctx))
    }

    /// Checks that `key` fits the parameter types (e.g. `300` for a `u8` parameter does not).
    pub fn check_key(&self, key: &Key) -> Result<(), KeyError> {
        (self.check)(key)
    }

    /// `file:line` of the function.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The crate the function is defined in.
    pub fn crate_name(&self) -> &'static str {
        self.module_path
            .split("::")
            .next()
            .unwrap_or(self.module_path)
    }

    /// `Model.edge` or `Model(a, b)` for composite identifiers.
    pub fn identifier_text(&self) -> String {
        identifier_text(self.model, self.identifier)
    }
}

impl fmt::Debug for FetcherRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetcherRegistration")
            .field("model", &self.model)
            .field("identifier", &self.identifier)
            .field("function", &self.function)
            .field("location", &self.location())
            .field("is_async", &self.is_async)
            .field("output", &self.output)
            .field("batch", &self.batch_size())
            .finish_non_exhaustive()
    }
}

/// A model known to the registry.
#[derive(Debug, Clone)]
pub struct RegisteredModel {
    schema: &'static Schema,
    definition: &'static kye_lang::Model,
    declared_at: Option<String>,
}

impl RegisteredModel {
    /// The model named `name` of `schema`, or `None` if the schema has no such model.
    pub fn new(schema: &'static Schema, name: &str) -> Option<Self> {
        Some(RegisteredModel {
            schema,
            definition: schema.model(name)?,
            declared_at: None,
        })
    }

    /// The model's name.
    pub fn name(&self) -> &'static str {
        &self.definition.name
    }

    /// The schema the model belongs to (for validation).
    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// The compiled model.
    pub fn definition(&self) -> &'static kye_lang::Model {
        self.definition
    }

    /// `file:line:col` of the model in its `.kye` file.
    pub fn location(&self) -> String {
        self.schema.location(self.definition.span)
    }

    /// `file:line` of the `kye::models!` invocation, when registered through it.
    pub fn declared_at(&self) -> Option<&str> {
        self.declared_at.as_deref()
    }
}

/// Why the registry could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The declared sources do not fit together (a name declared twice, a function naming an
    /// undeclared source).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Two functions are registered for the same model identifier.
    #[error(
        "two fetchers are registered for `{identifier}`: `{first_function}` at {first} and `{second_function}` at {second}; remove one, or key one by another index"
    )]
    DuplicateFetcher {
        /// `Model.edge`.
        identifier: String,
        /// Name of the first function.
        first_function: String,
        /// `file:line` of the first function.
        first: String,
        /// Name of the second function.
        second_function: String,
        /// `file:line` of the second function.
        second: String,
    },
    /// Two list functions are registered for one model.
    #[error(
        "two list functions are registered for `{model}`: {first} and {second}; a model has one lister"
    )]
    DuplicateLister {
        /// The model.
        model: String,
        /// The first function and where it is: `` `name` at file:line ``.
        first: String,
        /// The second function and where it is.
        second: String,
    },
    /// A list function yields keys no fetcher takes.
    #[error(
        "list function `{function}` at {location} lists `{identifier}`, but no fetcher is keyed by `{identifier}`: add a `#[kye::get({identifier})]` to fetch what it lists"
    )]
    ListerWithoutFetcher {
        /// `Model.edge`.
        identifier: String,
        /// Name of the list function.
        function: String,
        /// `file:line` of the list function.
        location: String,
    },
    /// Two different models with the same name are linked into the binary.
    #[error(
        "two different models are named `{name}`: one at {first} and one at {second}; model names must be unique in a binary"
    )]
    DuplicateModel {
        /// The model name.
        name: String,
        /// Location of the first definition.
        first: String,
        /// Location of the second definition.
        second: String,
    },
    /// A fetcher names a model no schema in the binary declares.
    #[error("fetcher `{function}` at {location} fetches `{model}`, but no model of that name is registered")]
    UnknownModel {
        /// The model name.
        model: String,
        /// The function.
        function: String,
        /// `file:line` of the function.
        location: String,
    },
    /// Two transformers share a function name (lineage and provenance are keyed by it).
    #[error(
        "two transformers are named `{function}`: at {first} and at {second}; lineage and provenance name a transformer by its function, so rename one"
    )]
    DuplicateTransformer {
        /// The function name.
        function: String,
        /// `file:line` of the first.
        first: String,
        /// `file:line` of the second.
        second: String,
    },
    /// A transformer reads or produces a model no schema in the binary declares.
    #[error("transformer `{function}` at {location} {role} `{model}`, but no model of that name is registered")]
    TransformerUnknownModel {
        /// The model name.
        model: String,
        /// `produces` or `reads`.
        role: &'static str,
        /// The function.
        function: String,
        /// `file:line` of the function.
        location: String,
    },
}

/// A problem that does not stop the registry from working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryWarning {
    /// No fetcher at all is registered.
    NoFetchers,
    /// A model has no fetcher.
    ModelWithoutFetcher {
        /// The model.
        model: String,
        /// `file:line:col` of the model in its `.kye` file.
        location: String,
    },
}

const LINKER_HINT: &str = "if its fetchers live in a crate this binary never names, the linker dropped that crate: add `use my_sources as _;` (with that crate's name) to the binary";

impl fmt::Display for RegistryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryWarning::NoFetchers => write!(
                f,
                "no fetchers are registered in this binary. If your fetchers live in another crate, the linker drops that crate when the binary never names it; add `use my_sources as _;` (with that crate's name) to main.rs"
            ),
            RegistryWarning::ModelWithoutFetcher { model, location } => write!(
                f,
                "model `{model}` ({location}) has no fetcher, so requests for it cannot be served; {LINKER_HINT}"
            ),
        }
    }
}

/// Every model and fetcher of the binary, checked.
#[derive(Debug)]
pub struct Registry {
    models: BTreeMap<&'static str, RegisteredModel>,
    /// Sorted by model, then identifier.
    fetchers: Vec<&'static FetcherRegistration>,
    /// Sorted by model.
    listers: Vec<&'static ListerRegistration>,
    /// Sorted by output model, then function.
    transformers: Vec<&'static TransformerRegistration>,
    /// The declared sources (`kye::source!`) and their members.
    sources: Sources,
    warnings: Vec<RegistryWarning>,
}

static GLOBAL: OnceLock<Result<Registry, RegistryError>> = OnceLock::new();

/// The registry of this binary, built on first use from everything `inventory` collected.
/// Building it logs each [`RegistryWarning`] once (`tracing` at warn level).
pub fn registry() -> Result<&'static Registry, &'static RegistryError> {
    GLOBAL
        .get_or_init(|| {
            let built = Registry::from_inventory();
            if let Ok(r) = &built {
                for w in r.warnings() {
                    tracing::warn!(target: "kye::registry", "{w}");
                }
            }
            built
        })
        .as_ref()
}

impl Registry {
    /// Builds a registry from everything `inventory` collected (see [`registry`] for the cached one).
    pub fn from_inventory() -> Result<Registry, RegistryError> {
        let mut models = Vec::new();
        for reg in inventory::iter::<ModelRegistration> {
            let schema = (reg.schema)();
            if let Some(mut m) = RegisteredModel::new(schema, reg.name) {
                m.declared_at = Some(format!("{}:{}", reg.file, reg.line));
                models.push(m);
            }
        }
        let fetchers = inventory::iter::<FetcherRegistration>
            .into_iter()
            .collect::<Vec<_>>();
        Registry::from_parts(models, fetchers)?
            .with_listers(inventory::iter::<ListerRegistration>)?
            .with_transformers(inventory::iter::<TransformerRegistration>)?
            .with_sources(Sources::from_inventory()?)
    }

    /// This registry with the declared `sources` (`kye::source!`). A member must be a fetcher,
    /// list function or transformer of this registry.
    pub fn with_sources(mut self, sources: Sources) -> Result<Registry, RegistryError> {
        for s in sources.iter() {
            for (kind, scope) in sources.members_of(s.name) {
                let known = match kind {
                    MemberKind::Fetcher => {
                        self.fetchers.iter().any(|f| f.identifier_text() == scope)
                    }
                    MemberKind::Lister => self.listers.iter().any(|l| l.function == scope),
                    MemberKind::Transformer => {
                        self.transformers.iter().any(|t| t.function == scope)
                    }
                };
                if !known {
                    return Err(RegistryError::Source(SourceError::Undeclared {
                        function: scope.to_string(),
                        source_name: s.name.to_string(),
                    }));
                }
            }
        }
        self.sources = sources;
        Ok(self)
    }

    /// The declared sources.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// This registry with `transformers` (`#[kye::transform]`). Each must produce and read
    /// registered models, and no two may share a function name (lineage and provenance name
    /// a transformer by its function).
    pub fn with_transformers(
        mut self,
        transformers: impl IntoIterator<Item = &'static TransformerRegistration>,
    ) -> Result<Registry, RegistryError> {
        self.transformers.extend(transformers);
        self.transformers.sort_by(|a, b| {
            (a.output, a.function, a.file, a.line).cmp(&(b.output, b.function, b.file, b.line))
        });
        let mut by_name: BTreeMap<&str, &TransformerRegistration> = BTreeMap::new();
        for t in &self.transformers {
            let location = format!("{}:{}", t.file, t.line);
            if let Some(first) = by_name.insert(t.function, t) {
                return Err(RegistryError::DuplicateTransformer {
                    function: t.function.to_string(),
                    first: format!("{}:{}", first.file, first.line),
                    second: location,
                });
            }
            let roles = std::iter::once(("produces", t.output))
                .chain(t.inputs.iter().map(|m| ("reads", *m)));
            for (role, model) in roles {
                if !self.models.contains_key(model) {
                    return Err(RegistryError::TransformerUnknownModel {
                        model: model.to_string(),
                        role,
                        function: t.function.to_string(),
                        location,
                    });
                }
            }
        }
        // A model a transformer produces needs no fetcher.
        let produced: Vec<&str> = self.transformers.iter().map(|t| t.output).collect();
        self.warnings.retain(|w| {
            !matches!(w, RegistryWarning::ModelWithoutFetcher { model, .. } if produced.contains(&model.as_str()))
        });
        Ok(self)
    }

    /// All transformers, sorted by output model.
    pub fn transformers(&self) -> &[&'static TransformerRegistration] {
        &self.transformers
    }

    /// This registry with `listers` (list functions, `#[kye::list]`). Each must list keys of a
    /// registered model by an identifier some fetcher is keyed by (the keys it finds are
    /// fetched by that fetcher), and a model has at most one lister.
    pub fn with_listers(
        mut self,
        listers: impl IntoIterator<Item = &'static ListerRegistration>,
    ) -> Result<Registry, RegistryError> {
        self.listers.extend(listers);
        self.listers
            .sort_by(|a, b| (a.model, a.file, a.line).cmp(&(b.model, b.file, b.line)));
        for pair in self.listers.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.model == b.model {
                return Err(RegistryError::DuplicateLister {
                    model: a.model.to_string(),
                    first: format!("`{}` at {}:{}", a.function, a.file, a.line),
                    second: format!("`{}` at {}:{}", b.function, b.file, b.line),
                });
            }
        }
        for l in &self.listers {
            let location = format!("{}:{}", l.file, l.line);
            if !self.models.contains_key(l.model) {
                return Err(RegistryError::UnknownModel {
                    model: l.model.to_string(),
                    function: l.function.to_string(),
                    location,
                });
            }
            if self.fetcher(l.model, l.identifier).is_none() {
                return Err(RegistryError::ListerWithoutFetcher {
                    identifier: l.identifier_text(),
                    function: l.function.to_string(),
                    location,
                });
            }
        }
        Ok(self)
    }

    /// All list functions, sorted by model.
    pub fn listers(&self) -> &[&'static ListerRegistration] {
        &self.listers
    }

    /// The list function of `model`, if it has one.
    pub fn lister(&self, model: &str) -> Option<&'static ListerRegistration> {
        self.listers.iter().copied().find(|l| l.model == model)
    }

    /// Builds a registry from explicit parts (tests, or a binary without `inventory`).
    pub fn from_parts(
        models: impl IntoIterator<Item = RegisteredModel>,
        fetchers: impl IntoIterator<Item = &'static FetcherRegistration>,
    ) -> Result<Registry, RegistryError> {
        let mut by_name: BTreeMap<&'static str, RegisteredModel> = BTreeMap::new();
        for m in models {
            match by_name.get(m.name()) {
                Some(existing) if same_model(existing.definition, m.definition) => {}
                Some(existing) => {
                    return Err(RegistryError::DuplicateModel {
                        name: m.name().to_string(),
                        first: existing.location(),
                        second: m.location(),
                    })
                }
                None => {
                    by_name.insert(m.name(), m);
                }
            }
        }
        let mut fetchers: Vec<&'static FetcherRegistration> = fetchers.into_iter().collect();
        fetchers.sort_by(|a, b| {
            (a.model, a.identifier, a.file, a.line).cmp(&(b.model, b.identifier, b.file, b.line))
        });
        for pair in fetchers.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.model == b.model && a.identifier == b.identifier {
                return Err(RegistryError::DuplicateFetcher {
                    identifier: a.identifier_text(),
                    first_function: a.function.to_string(),
                    first: a.location(),
                    second_function: b.function.to_string(),
                    second: b.location(),
                });
            }
        }
        for f in &fetchers {
            if !by_name.contains_key(f.model) {
                return Err(RegistryError::UnknownModel {
                    model: f.model.to_string(),
                    function: f.function.to_string(),
                    location: f.location(),
                });
            }
        }
        let mut warnings = Vec::new();
        if fetchers.is_empty() {
            warnings.push(RegistryWarning::NoFetchers);
        } else {
            // A model that another model holds as an edge arrives nested in that model's
            // records: it needs no fetcher of its own, and warning about the linker would
            // mislead.
            let nested: std::collections::BTreeSet<&str> = by_name
                .values()
                .flat_map(|m| {
                    m.definition()
                        .edges
                        .iter()
                        .filter_map(move |e| match &e.ty {
                            kye_lang::schema::Type::Model(t) if t.as_str() != m.name() => {
                                Some(t.as_str())
                            }
                            _ => None,
                        })
                })
                .collect();
            // A value object (no index) is fetched inside its parents, never by a fetcher.
            for m in by_name
                .values()
                .filter(|m| !m.definition().is_value_object())
            {
                if !nested.contains(m.name()) && !fetchers.iter().any(|f| f.model == m.name()) {
                    warnings.push(RegistryWarning::ModelWithoutFetcher {
                        model: m.name().to_string(),
                        location: m.location(),
                    });
                }
            }
        }
        Ok(Registry {
            models: by_name,
            fetchers,
            listers: Vec::new(),
            transformers: Vec::new(),
            sources: Sources::default(),
            warnings,
        })
    }

    /// All models, sorted by name.
    pub fn models(&self) -> impl Iterator<Item = &RegisteredModel> {
        self.models.values()
    }

    /// The model named `name`.
    pub fn model(&self, name: &str) -> Option<&RegisteredModel> {
        self.models.get(name)
    }

    /// All fetchers, sorted by model then identifier.
    pub fn fetchers(&self) -> &[&'static FetcherRegistration] {
        &self.fetchers
    }

    /// The fetchers of one model.
    pub fn fetchers_for<'a>(
        &'a self,
        model: &'a str,
    ) -> impl Iterator<Item = &'static FetcherRegistration> + 'a {
        self.fetchers
            .iter()
            .copied()
            .filter(move |f| f.model == model)
    }

    /// The fetcher keyed by exactly these index edges of `model`.
    pub fn fetcher<S: AsRef<str>>(
        &self,
        model: &str,
        identifier: &[S],
    ) -> Option<&'static FetcherRegistration> {
        self.fetchers_for(model).find(|f| {
            f.identifier.len() == identifier.len()
                && f.identifier
                    .iter()
                    .zip(identifier)
                    .all(|(a, b)| *a == b.as_ref())
        })
    }

    /// Problems worth telling the user about (no fetchers, models without fetchers).
    pub fn warnings(&self) -> &[RegistryWarning] {
        &self.warnings
    }
}

fn same_model(a: &kye_lang::Model, b: &kye_lang::Model) -> bool {
    a.name == b.name && a.indexes.len() == b.indexes.len() && a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OutputKind;

    fn call(_: &Key, _: Context) -> FetchFuture {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn check(_: &Key) -> Result<(), KeyError> {
        Ok(())
    }

    const fn fetcher(function: &'static str, file: &'static str, line: u32) -> FetcherRegistration {
        FetcherRegistration {
            model: "Pokemon",
            identifier: &["id"],
            function,
            module_path: "sources",
            file,
            line,
            is_async: false,
            doc: "",
            output: OutputKind::Record,
            call,
            check,
            batch: None,
        }
    }

    static A: FetcherRegistration = fetcher("get_pokemon", "src/a.rs", 3);
    static B: FetcherRegistration = fetcher("fetch_pokemon", "src/b.rs", 7);

    fn schema(text: &str) -> &'static Schema {
        Box::leak(Box::new(kye_lang::compile_str("p.kye", text).unwrap()))
    }

    const POKEMON: &str = "Pokemon(id) {\n  id: Number\n}\nType(name) {\n  name: String\n}\n";

    #[test]
    fn duplicate_fetchers_name_both_locations() {
        let s = schema(POKEMON);
        let models = [RegisteredModel::new(s, "Pokemon").unwrap()];
        let err = Registry::from_parts(models, [&A, &B]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "two fetchers are registered for `Pokemon.id`: `get_pokemon` at src/a.rs:3 and `fetch_pokemon` at src/b.rs:7; remove one, or key one by another index"
        );
    }

    #[test]
    fn empty_registry_and_models_without_fetchers_warn_about_the_linker() {
        let s = schema(POKEMON);
        let all = || ["Pokemon", "Type"].map(|n| RegisteredModel::new(s, n).unwrap());
        let empty = Registry::from_parts(all(), []).unwrap();
        assert_eq!(empty.warnings(), [RegistryWarning::NoFetchers]);
        assert!(empty.warnings()[0]
            .to_string()
            .contains("use my_sources as _;"));
        let some = Registry::from_parts(all(), [&A]).unwrap();
        assert_eq!(
            some.warnings(),
            [RegistryWarning::ModelWithoutFetcher {
                model: "Type".into(),
                location: "p.kye:4:1".into()
            }]
        );
        assert_eq!(
            some.warnings()[0].to_string(),
            "model `Type` (p.kye:4:1) has no fetcher, so requests for it cannot be served; if its fetchers live in a crate this binary never names, the linker dropped that crate: add `use my_sources as _;` (with that crate's name) to the binary"
        );
    }

    #[test]
    fn a_model_only_ever_nested_is_not_warned_about() {
        let s = schema(
            "Pokemon(id) {\n  id: Number\n  stats*: Stats\n}\nStats(hp) {\n  hp: Number\n}\nType(name) {\n  name: String\n}\n",
        );
        let all = ["Pokemon", "Stats", "Type"].map(|n| RegisteredModel::new(s, n).unwrap());
        let r = Registry::from_parts(all, [&A]).unwrap();
        assert_eq!(
            r.warnings(),
            [RegistryWarning::ModelWithoutFetcher {
                model: "Type".into(),
                location: "p.kye:8:1".into()
            }]
        );
    }

    #[test]
    fn same_model_twice_is_fine_but_different_models_of_one_name_are_not() {
        let a = schema(POKEMON);
        let b = schema(POKEMON);
        let ok = Registry::from_parts(
            [
                RegisteredModel::new(a, "Pokemon").unwrap(),
                RegisteredModel::new(b, "Pokemon").unwrap(),
            ],
            [&A],
        )
        .unwrap();
        assert_eq!(ok.models().count(), 1);
        let c = schema("Pokemon(name) {\n  name: String\n}\n");
        let err = Registry::from_parts(
            [
                RegisteredModel::new(a, "Pokemon").unwrap(),
                RegisteredModel::new(c, "Pokemon").unwrap(),
            ],
            [],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "two different models are named `Pokemon`: one at p.kye:1:1 and one at p.kye:1:1; model names must be unique in a binary"
        );
    }

    #[test]
    fn fetcher_for_unregistered_model_is_an_error() {
        let err = Registry::from_parts([], [&A]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fetcher `get_pokemon` at src/a.rs:3 fetches `Pokemon`, but no model of that name is registered"
        );
    }

    #[test]
    fn listing_renders_text_json_and_markdown() {
        let s = schema(POKEMON);
        let models = ["Pokemon", "Type"].map(|n| RegisteredModel::new(s, n).unwrap());
        let reg = Registry::from_parts(models, [&A]).unwrap();
        let listing = crate::listing::Listing::new(&reg);
        let json: serde_json::Value = serde_json::from_str(&listing.to_json()).unwrap();
        assert_eq!(
            json["fetchers"][0],
            serde_json::json!({
                "model": "Pokemon", "identifier": ["id"], "function": "get_pokemon",
                "crate": "sources", "module": "sources", "location": "src/a.rs:3",
                "async": false, "output": "record", "doc": ""
            })
        );
        assert_eq!(json["models"][0]["name"], "Pokemon");
        assert_eq!(json["models"][0]["indexes"], serde_json::json!([["id"]]));
        assert_eq!(json["warnings"].as_array().unwrap().len(), 1);
        let text = listing.to_text();
        assert!(
            text.contains("  Pokemon.id  get_pokemon  sync  record  src/a.rs:3"),
            "{text}"
        );
        let md = listing.to_markdown();
        assert!(
            md.contains("| `Pokemon.id` | `get_pokemon` | sync | record | `src/a.rs:3` |  |"),
            "{md}"
        );
    }

    fn transform_call(_: serde_json::Value, _: crate::TransformContext) -> FetchFuture {
        Box::pin(std::future::ready(Ok(None)))
    }

    const fn transformer(
        output: &'static str,
        inputs: &'static [&'static str],
        function: &'static str,
        line: u32,
    ) -> TransformerRegistration {
        TransformerRegistration {
            output,
            identifier: &["name"],
            inputs,
            function,
            module_path: "sources",
            file: "src/t.rs",
            line,
            doc: "",
            call: transform_call,
        }
    }

    static TYPE_CARD: TransformerRegistration = transformer("Type", &["Pokemon"], "type_card", 1);
    static TYPE_CARD_AGAIN: TransformerRegistration =
        transformer("Type", &["Pokemon"], "type_card", 9);
    static READS_NOTHING_KNOWN: TransformerRegistration =
        transformer("Type", &["Pokemon", "Ghost"], "ghostly", 5);

    #[test]
    fn transformers_are_checked_and_their_outputs_need_no_fetcher() {
        let s = schema(POKEMON);
        let all = || ["Pokemon", "Type"].map(|n| RegisteredModel::new(s, n).unwrap());
        let r = Registry::from_parts(all(), [&A])
            .unwrap()
            .with_transformers([&TYPE_CARD])
            .unwrap();
        assert_eq!(r.transformers().len(), 1);
        assert_eq!(r.transformers()[0].signature(), "Type.name <- Pokemon");
        // `Type` is produced by a transformer: no "model without fetcher" warning.
        assert_eq!(r.warnings(), []);

        let err = Registry::from_parts(all(), [&A])
            .unwrap()
            .with_transformers([&TYPE_CARD, &TYPE_CARD_AGAIN])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "two transformers are named `type_card`: at src/t.rs:1 and at src/t.rs:9; lineage and provenance name a transformer by its function, so rename one"
        );
        let err = Registry::from_parts(all(), [&A])
            .unwrap()
            .with_transformers([&READS_NOTHING_KNOWN])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "transformer `ghostly` at src/t.rs:5 reads `Ghost`, but no model of that name is registered"
        );
    }
}
