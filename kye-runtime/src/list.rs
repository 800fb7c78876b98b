//! Step 1 of the flow, request: keys a lister finds. A list function (`#[kye::list]`)
//! enumerates the keys of a model, page by page, and hands each to the run through [`Keys`]
//! as it finds it; the run fetches them as they arrive (`fetch 'Pokemon'`, a bare model).
//! The registration ([`ListerRegistration`]) is what the registry collects.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::model::{identifier_text, Key, KeyError, KeyValue};

/// What a list function's call returns, type-erased.
pub type ListFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A list function registered by `#[kye::list]` (generated code builds these).
pub struct ListerRegistration {
    /// The model whose keys it lists, e.g. `"Pokemon"`.
    pub model: &'static str,
    /// The index edges of the keys it yields, e.g. `["id"]`.
    pub identifier: &'static [&'static str],
    /// The function's name.
    pub function: &'static str,
    /// `module_path!()` of the function.
    pub module_path: &'static str,
    /// Rust source file of the function.
    pub file: &'static str,
    /// Line of the function.
    pub line: u32,
    /// The first paragraph of the function's doc comment (may be empty).
    pub doc: &'static str,
    /// Type-erased entry point: runs the function, which sends its keys into the sender.
    pub call: fn(Context, KeySender) -> ListFuture,
}

inventory::collect!(ListerRegistration);

impl fmt::Debug for ListerRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListerRegistration")
            .field("model", &self.model)
            .field("identifier", &self.identifier)
            .field("function", &self.function)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ListerRegistration {
    /// The same registration (each function has one).
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl ListerRegistration {
    /// `Model.edge` (or `Model(a, b)`) of the keys it yields.
    pub fn identifier_text(&self) -> String {
        let edges: Vec<String> = self.identifier.iter().map(|e| e.to_string()).collect();
        identifier_text(self.model, &edges)
    }
}

/// Where a running list function's keys go: to the run, which fetches them as they arrive.
/// The channel behind it is bounded, so [`KeySender::send`] waits while the run is busy: a
/// lister never runs ahead of the fetching by more than a few hundred keys.
#[derive(Clone)]
pub struct KeySender {
    tx: mpsc::Sender<Key>,
    lister: &'static ListerRegistration,
    check: fn(&Key) -> std::result::Result<(), KeyError>,
    sent: Arc<AtomicU64>,
}

impl fmt::Debug for KeySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySender")
            .field("lister", &self.lister.function)
            .field("sent", &self.sent())
            .finish_non_exhaustive()
    }
}

impl KeySender {
    /// A sender of `lister`'s keys into `tx`, each checked by `check` (the fetcher's parameter
    /// check) before it is sent. Used by the runtime (and by tests of a lister).
    pub fn new(
        tx: mpsc::Sender<Key>,
        lister: &'static ListerRegistration,
        check: fn(&Key) -> std::result::Result<(), KeyError>,
    ) -> KeySender {
        KeySender {
            tx,
            lister,
            check,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends one key to the run. A key the fetcher cannot take (a value of the wrong kind, an
    /// unusable path segment) is an error naming the model and the key; so is a run that has
    /// stopped (nothing more is fetched, the list function should return).
    pub async fn send(&self, key: Key) -> Result<()> {
        let model = || self.lister.identifier_text();
        if key.values().len() != self.lister.identifier.len() {
            return Err(Error::permanent(format!(
                "{} listed the key {key} for {}, which takes {} value(s)",
                self.lister.function,
                model(),
                self.lister.identifier.len()
            )));
        }
        (self.check)(&key).map_err(|e| {
            Error::permanent(format!(
                "{} listed {} = {key}, which its fetcher cannot take: {e}",
                self.lister.function,
                model()
            ))
        })?;
        self.tx.send(key).await.map_err(|_| {
            Error::permanent(format!(
                "the run stopped: {} takes no more keys from {}",
                model(),
                self.lister.function
            ))
        })?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Keys sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// The keys a list function finds, typed by the model's index (`Keys<u32>` for `Pokemon.id`,
/// `Keys<String>` for `PokemonType.name`): each [`send`](Keys::send) hands one key to the run.
///
/// ```ignore
/// /// Every Pokémon PokeAPI lists.
/// #[kye::list(Pokemon.id)]
/// async fn all_pokemon(ctx: &kye::Context, keys: kye::Keys<u32>) -> kye::Result<()> {
///     let paging = kye::http::Paginator::next_url("next").items("results");
///     let mut pages = ctx.pages("https://pokeapi.co/api/v2/pokemon/?limit=100", &paging)?;
///     while let Some(page) = pages.next().await? {
///         for p in &page.items {
///             keys.send(id_from_url(&p["url"])?).await?;
///         }
///     }
///     Ok(())
/// }
/// ```
pub struct Keys<T> {
    sender: KeySender,
    _value: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for Keys<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sender.fmt(f)
    }
}

impl<T: Into<KeyValue>> Keys<T> {
    /// Keys typed `T`, sent through `sender` (generated code builds these).
    pub fn new(sender: KeySender) -> Keys<T> {
        Keys {
            sender,
            _value: PhantomData,
        }
    }

    /// Hands one key to the run; waits while the run has enough to do. An error means the key
    /// is unusable (named in it) or the run has stopped: return it with `?`.
    pub async fn send(&self, key: T) -> Result<()> {
        self.sender.send(Key::single(key)).await
    }

    /// Keys sent so far.
    pub fn sent(&self) -> u64 {
        self.sender.sent()
    }
}
