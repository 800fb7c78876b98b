//! [`FetcherBuilder`]: a [`FetcherRegistration`] for a hand-written fetch function, without
//! `#[kye::get]`.
//!
//! `#[kye::get]` registers a fetcher for the whole binary. A test that wants its own stand-in
//! fetcher, in a registry of its own ([`Registry::from_parts`]), writes the type-erased
//! function (`fn(&Key, Context) -> FetchFuture`) and describes it with this builder, instead
//! of spelling out every field of the registration.
//!
//! [`Registry::from_parts`]: crate::registry::Registry::from_parts

use std::panic::Location;

use crate::context::Context;
use crate::model::{BatchFuture, FetchFuture, Key, KeyError, OutputKind};
use crate::registry::{BatchRegistration, FetcherRegistration};

/// Builds a [`FetcherRegistration`] in a `static`: every method is `const`.
///
/// Defaults: `async`, output [`OutputKind::Json`] (validated at run time only), every key
/// accepted by the parameter check, no doc comment, module path `tests`, and the file and line
/// of the [`FetcherBuilder::new`] call.
///
/// ```
/// use kye_runtime::{FetchFuture, Key, KeyValue};
/// use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};
/// use kye_runtime::testing::FetcherBuilder;
/// use kye_runtime::{Context, Error};
///
/// /// A stand-in for the real fetcher: every item exists and is named after its id.
/// fn item_by_id(key: &Key, _ctx: Context) -> FetchFuture {
///     let key = key.clone();
///     Box::pin(async move {
///         let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
///             return Err(Error::permanent("an Item key is one integer"));
///         };
///         Ok(Some(serde_json::json!({ "id": id, "name": format!("item-{id}") })))
///     })
/// }
///
/// static ITEM_BY_ID: FetcherRegistration =
///     FetcherBuilder::new("Item", &["id"], "item_by_id", item_by_id)
///         .doc("Item by id.")
///         .build();
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let schema = kye_lang::compile_str("items.kye", "Item(id) { id: Number, name: String }")?;
/// let schema: &'static _ = Box::leak(Box::new(schema));
/// let model = RegisteredModel::new(schema, "Item").ok_or("no model Item")?;
/// let registry = Registry::from_parts([model], [&ITEM_BY_ID])?;
/// let resolved = registry.resolve_str("Item.id in 1..=3")?;
/// assert_eq!(resolved.fetcher().function, "item_by_id");
/// assert_eq!(resolved.keys().len(), 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "call .build() to get the registration"]
pub struct FetcherBuilder {
    registration: FetcherRegistration,
}

/// The default parameter check: every key fits.
fn any_key(_: &Key) -> Result<(), KeyError> {
    Ok(())
}

impl FetcherBuilder {
    /// A fetcher of `model` keyed by the index edges `identifier` (e.g. `&["id"]`), named
    /// `function`, that `call` implements. The registration's location is this call's.
    #[track_caller]
    pub const fn new(
        model: &'static str,
        identifier: &'static [&'static str],
        function: &'static str,
        call: fn(&Key, Context) -> FetchFuture,
    ) -> FetcherBuilder {
        let at = Location::caller();
        FetcherBuilder {
            registration: FetcherRegistration {
                model,
                identifier,
                function,
                module_path: "tests",
                file: at.file(),
                line: at.line(),
                is_async: true,
                doc: "",
                output: OutputKind::Json,
                call,
                check: any_key,
                batch: None,
            },
        }
    }

    /// The first paragraph of the function's doc comment, as `kye list` shows it.
    pub const fn doc(mut self, doc: &'static str) -> FetcherBuilder {
        self.registration.doc = doc;
        self
    }

    /// A synchronous function (listings say so; `call` is the same).
    pub const fn sync(mut self) -> FetcherBuilder {
        self.registration.is_async = false;
        self
    }

    /// What the function returns, for listings.
    pub const fn output(mut self, output: OutputKind) -> FetcherBuilder {
        self.registration.output = output;
        self
    }

    /// The check that a key fits the function's parameter types, run before any call.
    pub const fn check(mut self, check: fn(&Key) -> Result<(), KeyError>) -> FetcherBuilder {
        self.registration.check = check;
        self
    }

    /// A batch fetcher: `call` takes up to `size` keys at once and the runtime groups keys
    /// for it (the function given to [`FetcherBuilder::new`] serves [`FetcherRegistration::call`]
    /// only, e.g. through [`batch_of_one`](crate::__private::batch_of_one)).
    pub const fn batch(
        mut self,
        size: usize,
        call: fn(&[Key], Context) -> BatchFuture,
    ) -> FetcherBuilder {
        self.registration.batch = Some(BatchRegistration { size, call });
        self
    }

    /// `module_path!()` of the function: its first segment is the crate `kye list` names, and
    /// `module_path::function` is the provenance of stored records.
    pub const fn module_path(mut self, module_path: &'static str) -> FetcherBuilder {
        self.registration.module_path = module_path;
        self
    }

    /// The finished registration.
    pub const fn build(self) -> FetcherRegistration {
        self.registration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &Key, _: Context) -> FetchFuture {
        Box::pin(async { Ok(None) })
    }

    fn odd_only(key: &Key) -> Result<(), KeyError> {
        match key.values().first() {
            Some(crate::model::KeyValue::Int(n)) if n % 2 == 1 => Ok(()),
            _ => Err(KeyError::new("an odd number")),
        }
    }

    static DEFAULTS: FetcherRegistration = FetcherBuilder::new("A", &["id"], "a", nothing).build();
    const DEFAULTS_LINE: u32 = line!() - 1;

    static ALL_SET: FetcherRegistration = FetcherBuilder::new("B", &["x", "y"], "b", nothing)
        .doc("B by x and y.")
        .sync()
        .output(OutputKind::OptionalJson)
        .check(odd_only)
        .module_path("my_sources::b")
        .build();

    #[test]
    fn defaults_describe_an_async_json_fetcher_at_the_call() {
        let r = &DEFAULTS;
        assert_eq!((r.model, r.identifier, r.function), ("A", &["id"][..], "a"));
        assert_eq!(r.location(), format!("{}:{DEFAULTS_LINE}", file!()));
        assert!(r.is_async);
        assert_eq!(r.output, OutputKind::Json);
        assert_eq!(
            (r.doc, r.module_path, r.crate_name()),
            ("", "tests", "tests")
        );
        assert!(r
            .check_key(&Key::single(crate::model::KeyValue::Int(2)))
            .is_ok());
    }

    #[test]
    fn every_setter_lands_in_the_registration() {
        let r = &ALL_SET;
        assert_eq!(r.identifier_text(), "B(x, y)");
        assert_eq!(r.doc, "B by x and y.");
        assert!(!r.is_async);
        assert_eq!(r.output, OutputKind::OptionalJson);
        assert_eq!(r.crate_name(), "my_sources");
        let odd = Key::single(crate::model::KeyValue::Int(3));
        let even = Key::single(crate::model::KeyValue::Int(4));
        assert!(r.check_key(&odd).is_ok());
        assert!(r.check_key(&even).is_err());
    }
}
