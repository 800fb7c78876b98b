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
use crate::redact::{credential_param, redact_text};
use crate::store::ListCursorInfo;

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

    /// `module::function`: the name its cursor is saved under.
    pub fn path(&self) -> String {
        format!("{}::{}", self.module_path, self.function)
    }
}

/// Where a [`KeySender`]'s keys go.
#[derive(Clone)]
enum Out {
    /// To a run: keys and cursors, in order.
    Run(mpsc::Sender<ListEvent>),
    /// To whoever looks at what a list function finds: keys only.
    Keys(mpsc::Sender<Listed>),
}

/// What a list function hands the run: a key, or a cursor covering the keys sent before it.
#[derive(Debug)]
pub(crate) enum ListEvent {
    Key(Listed),
    Cursor(serde_json::Value),
    /// How many keys the whole listing holds (a list endpoint's `count`), for progress.
    Total(u64),
}

/// One key a list function found, with the record when the list page carried it whole.
#[derive(Debug)]
pub struct Listed {
    /// The key.
    pub key: Key,
    /// The record as the list page gave it (validated and stored like a fetched one, and the
    /// fetcher is not called), or `None` to have the fetcher fetch it.
    pub record: Option<serde_json::Value>,
}

/// Where a running list function's keys go: to the run, which fetches them as they arrive.
/// The channel behind it is bounded, so [`KeySender::send`] waits while the run is busy: a
/// lister never runs ahead of the fetching by more than a few hundred keys.
#[derive(Clone)]
pub struct KeySender {
    tx: Out,
    lister: &'static ListerRegistration,
    check: fn(&Key) -> std::result::Result<(), KeyError>,
    sent: Arc<AtomicU64>,
    /// The cursor the list function saved last, in an earlier run.
    saved: Option<Arc<ListCursorInfo>>,
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
    /// check) before it is sent, outside any run: to look at what a list function finds
    /// (nothing is fetched). It starts without a saved cursor, and the cursors it saves are
    /// dropped.
    pub fn new(
        tx: mpsc::Sender<Listed>,
        lister: &'static ListerRegistration,
        check: fn(&Key) -> std::result::Result<(), KeyError>,
    ) -> KeySender {
        KeySender {
            tx: Out::Keys(tx),
            lister,
            check,
            sent: Arc::new(AtomicU64::new(0)),
            saved: None,
        }
    }

    /// A sender of `lister`'s keys and cursors into a run's `tx`; `saved` is the cursor the
    /// lister saved in an earlier run.
    pub(crate) fn for_run(
        tx: mpsc::Sender<ListEvent>,
        lister: &'static ListerRegistration,
        check: fn(&Key) -> std::result::Result<(), KeyError>,
        saved: Option<ListCursorInfo>,
    ) -> KeySender {
        KeySender {
            tx: Out::Run(tx),
            lister,
            check,
            sent: Arc::new(AtomicU64::new(0)),
            saved: saved.map(Arc::new),
        }
    }

    /// The cursor the list function saved last (in an earlier run), with whether that run
    /// listed to the end; `None` when it never saved one.
    pub fn saved_cursor(&self) -> Option<&ListCursorInfo> {
        self.saved.as_deref()
    }

    /// Saves `cursor` for the next run: it is committed once every key sent before it is done
    /// (see [`Keys::save_cursor`]).
    pub async fn save_cursor(&self, cursor: serde_json::Value) -> Result<()> {
        let lister = self.lister.path();
        let text = cursor.to_string();
        let refuse = |what: String| {
            Err(Error::permanent(format!(
                "the list function `{lister}` saved a cursor that {what}; kye never stores \
                 credentials (save a position without them)"
            )))
        };
        if redact_text(&text) != text {
            return refuse("contains a secret".into());
        }
        if let Some(param) = strings_of(&cursor).find_map(credential_param) {
            return refuse(format!(
                "holds a URL with the credential parameter `{param}`"
            ));
        }
        if strings_of(&cursor).any(|s| s.contains('\0')) {
            return Err(Error::permanent(format!(
                "the list function `{lister}` saved a cursor with a NUL character, which \
                 stores cannot keep"
            )));
        }
        let sent = match &self.tx {
            Out::Run(tx) => tx.send(ListEvent::Cursor(cursor)).await.is_ok(),
            Out::Keys(tx) => !tx.is_closed(),
        };
        if sent {
            Ok(())
        } else {
            Err(Error::permanent(format!(
                "the run stopped: the cursor of `{lister}` was not saved"
            )))
        }
    }

    /// Sends one key to the run. A key the fetcher cannot take (a value of the wrong kind, an
    /// unusable path segment) is an error naming the model and the key; so is a run that has
    /// stopped (nothing more is fetched, the list function should return).
    pub async fn send(&self, key: Key) -> Result<()> {
        self.send_listed(Listed { key, record: None }).await
    }

    /// Sends one key with its record, as the list page gave it: the run validates and stores
    /// it like a fetched record (an invalid one is quarantined alone), without calling the
    /// fetcher.
    pub async fn send_record(&self, key: Key, record: serde_json::Value) -> Result<()> {
        self.send_listed(Listed {
            key,
            record: Some(record),
        })
        .await
    }

    async fn send_listed(&self, listed: Listed) -> Result<()> {
        let key = &listed.key;
        let model = || self.lister.identifier_text();
        if key.values().len() != self.lister.identifier.len() {
            return Err(Error::permanent(format!(
                "{} listed the key {key} for {}, which takes {} value(s)",
                self.lister.function,
                model(),
                self.lister.identifier.len()
            )));
        }
        (self.check)(key).map_err(|e| {
            Error::permanent(format!(
                "{} listed {} = {key}, which its fetcher cannot take: {e}",
                self.lister.function,
                model()
            ))
        })?;
        let sent = match &self.tx {
            Out::Run(tx) => tx.send(ListEvent::Key(listed)).await.is_ok(),
            Out::Keys(tx) => tx.send(listed).await.is_ok(),
        };
        sent.then_some(()).ok_or_else(|| {
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

    /// Tells the run how many keys the whole listing holds (see [`Keys::set_total`]).
    pub async fn set_total(&self, total: u64) -> Result<()> {
        match &self.tx {
            Out::Run(tx) => tx.send(ListEvent::Total(total)).await.map_err(|_| {
                Error::permanent(format!(
                    "the run stopped: {} takes no more keys from {}",
                    self.lister.identifier_text(),
                    self.lister.function
                ))
            }),
            Out::Keys(_) => Ok(()),
        }
    }
}

/// Every string in `value` (object keys too), depth first.
fn strings_of(value: &serde_json::Value) -> Box<dyn Iterator<Item = &str> + '_> {
    use serde_json::Value;
    match value {
        Value::String(s) => Box::new(std::iter::once(s.as_str())),
        Value::Array(items) => Box::new(items.iter().flat_map(strings_of)),
        Value::Object(map) => Box::new(
            map.iter()
                .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(strings_of(v))),
        ),
        _ => Box::new(std::iter::empty()),
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

/// A value a list function can hand over as a key: every type a fetcher's key parameter can
/// be (integers, `f64`, `String`, `Box<str>`, `Arc<str>`, `&str`, `bool`).
pub trait IntoKeyValue {
    /// The key value, or why it cannot be one (an integer beyond `i64`).
    fn into_key_value(self) -> std::result::Result<KeyValue, KeyError>;
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl IntoKeyValue for $t {
            fn into_key_value(self) -> std::result::Result<KeyValue, KeyError> {
                i64::try_from(self).map(KeyValue::Int).map_err(|_| {
                    KeyError::new(format!("key {self} does not fit a 64-bit integer index"))
                })
            }
        }
    )*};
}
int_keys!(i64, i32, i16, i8, isize, u64, u32, u16, u8, usize, i128, u128);

macro_rules! plain_keys {
    ($($t:ty),*) => {$(
        impl IntoKeyValue for $t {
            fn into_key_value(self) -> std::result::Result<KeyValue, KeyError> {
                Ok(KeyValue::from(self))
            }
        }
    )*};
}
plain_keys!(f64, String, &str, Box<str>, bool);

impl IntoKeyValue for Arc<str> {
    fn into_key_value(self) -> std::result::Result<KeyValue, KeyError> {
        Ok(KeyValue::String(self.to_string()))
    }
}

impl<T: IntoKeyValue> Keys<T> {
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
        self.sender.send(self.key(key)?).await
    }

    fn key(&self, key: T) -> Result<Key> {
        let value = key.into_key_value().map_err(|e| {
            Error::permanent(format!(
                "{} listed a key {} cannot take: {e}",
                self.sender.lister.function,
                self.sender.lister.identifier_text()
            ))
        })?;
        Ok(Key::single(value))
    }

    /// Hands one key to the run with its record, when the list page carries whole records: the
    /// record is validated and stored like a fetched one (one invalid record is quarantined
    /// alone, never its page), and the fetcher is not called for it. The record must carry its
    /// key (as a fetcher's must).
    pub async fn record(&self, key: T, record: serde_json::Value) -> Result<()> {
        self.sender.send_record(self.key(key)?, record).await
    }

    /// Keys sent so far.
    pub fn sent(&self) -> u64 {
        self.sender.sent()
    }

    /// Tells the run how many keys the whole listing holds, when the list endpoint says so
    /// (PokeAPI's `count`, [`Page::total`](crate::http::Page::total)): the progress bar shows the
    /// whole run from the first page instead of growing page by page. A total that turns out
    /// too high is taken back when the list function returns; one too low grows as keys come.
    pub async fn set_total(&self, total: u64) -> Result<()> {
        self.sender.set_total(total).await
    }

    /// The cursor this list function saved last ([`save_cursor`](Keys::save_cursor)), in any
    /// earlier run, read as `C`: where an incremental lister starts (an `updated_since` time,
    /// the last id seen). `None` when it never saved one.
    pub fn cursor<C: serde::de::DeserializeOwned>(&self) -> Result<Option<C>> {
        self.read_cursor(|_| true)
    }

    /// The cursor saved by an earlier run that did not list to the end (interrupted, or its
    /// list function failed), read as `C`: where a resumed listing continues (the next page,
    /// see [`Pages::position`](crate::Pages::position)). `None` when the last run that saved a
    /// cursor listed everything, so a full listing starts from the first page.
    pub fn resume_cursor<C: serde::de::DeserializeOwned>(&self) -> Result<Option<C>> {
        self.read_cursor(|c| !c.finished)
    }

    fn read_cursor<C: serde::de::DeserializeOwned>(
        &self,
        wanted: impl Fn(&ListCursorInfo) -> bool,
    ) -> Result<Option<C>> {
        let Some(saved) = self.sender.saved_cursor().filter(|c| wanted(c)) else {
            return Ok(None);
        };
        serde_json::from_value(saved.value.clone())
            .map(Some)
            .map_err(|e| {
                Error::permanent(format!(
                    "the cursor `{}` saved in run {} cannot be read back: {e} (saved: {})",
                    self.sender.lister.path(),
                    saved.run,
                    redact_text(&saved.value.to_string())
                ))
            })
    }

    /// Saves a cursor for the next run of this list function. It is committed to the store
    /// in the same transaction as the outcomes of the keys sent before it, once every one of
    /// them is done (stored, missing, rejected or skipped): a crash never skips a key, and a
    /// key that failed holds the cursor back, so the next run lists its window again. Keys
    /// sent after the cursor are not covered by it.
    ///
    /// A cursor holding a configured secret's value is refused (kye never stores secrets).
    pub async fn save_cursor<C: serde::Serialize>(&self, cursor: &C) -> Result<()> {
        let value = serde_json::to_value(cursor).map_err(|e| {
            Error::permanent(format!(
                "the cursor of `{}` is not JSON: {e}",
                self.sender.lister.path()
            ))
        })?;
        self.sender.save_cursor(value).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn nothing(_: Context, _: KeySender) -> ListFuture {
        Box::pin(async { Ok(()) })
    }

    /// A list function of `Pokemon.id` that lists nothing, `src::all` (for unit tests here
    /// and in `runtime::list`).
    pub(crate) static LISTER: ListerRegistration = ListerRegistration {
        model: "Pokemon",
        identifier: &["id"],
        function: "all",
        module_path: "src",
        file: "src/lib.rs",
        line: 1,
        doc: "",
        call: nothing,
    };

    #[tokio::test]
    async fn a_cursor_with_credentials_or_nul_is_refused_and_a_position_is_kept() {
        let (tx, mut rx) = mpsc::channel(8);
        let sender = KeySender::for_run(tx, &LISTER, |_| Ok(()), None);
        for (cursor, says) in [
            (
                serde_json::json!({"next": "/list?page=3&access_token=abc123"}),
                "credential parameter `access_token`",
            ),
            (
                serde_json::json!(["https://api.test/v1?cursor=9&X-Amz-Signature=ff"]),
                "credential parameter `X-Amz-Signature`",
            ),
            (serde_json::json!({"after": "a\0b"}), "NUL"),
        ] {
            let err = sender.save_cursor(cursor).await.unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
            assert!(err.contains("src::all"), "{err}");
        }
        assert!(rx.try_recv().is_err(), "nothing refused reached the run");
        let fine = serde_json::json!({"next": "/list?page=3&sort=id", "pages": 2});
        sender.save_cursor(fine.clone()).await.unwrap();
        assert!(matches!(rx.try_recv(), Ok(ListEvent::Cursor(v)) if v == fine));
    }

    #[test]
    fn every_key_parameter_type_can_be_listed() {
        assert_eq!(25u64.into_key_value().unwrap(), KeyValue::Int(25));
        assert_eq!((-3i8).into_key_value().unwrap(), KeyValue::Int(-3));
        assert_eq!(
            Arc::<str>::from("pikachu").into_key_value().unwrap(),
            KeyValue::String("pikachu".into())
        );
        assert_eq!(true.into_key_value().unwrap(), KeyValue::Bool(true));
        let err = u64::MAX.into_key_value().unwrap_err().to_string();
        assert!(err.contains("18446744073709551615"), "{err}");
    }
}
