//! kye's tests, one binary (issue 12: each test binary is a separate link of the whole
//! dependency tree): the facade's public API, what the macros generate and accept, and the
//! `kye` command line run as a process. Compile errors of the macros are `tests/ui.rs`
//! (trybuild, compile_fail cases only).
//!
//! `cargo test -p kye --test facade` runs it; `cargo test -p kye --test facade cli_` a part.

mod accepted;
mod cli_check;
mod cli_show;
mod cli_validate;
mod generated;
mod public_api;

/// The registry kye would build for a binary holding only the models and fetchers declared in
/// `module` (and its submodules).
///
/// The accepted signatures each declare their own fetchers, several for `Pokemon.id`, so the
/// registry of this whole binary refuses to build (as it must: two fetchers for one
/// identifier); each test looks at its own module's registrations, through the same
/// `inventory` collections and the same `Registry::from_parts` that `kye::registry()` uses.
pub fn registry_of(module: &str) -> Result<kye::Registry, kye::RegistryError> {
    use kye::__private::inventory;
    let inside = |path: &str| {
        path == module
            || path
                .strip_prefix(module)
                .is_some_and(|rest| rest.starts_with("::"))
    };
    let models = inventory::iter::<kye::ModelRegistration>
        .into_iter()
        .filter(|m| inside(m.module_path))
        .filter_map(|m| kye::RegisteredModel::new((m.schema)(), m.name));
    let fetchers = inventory::iter::<kye::FetcherRegistration>
        .into_iter()
        .filter(|f| inside(f.module_path));
    kye::Registry::from_parts(models, fetchers)
}
