//! A call of a fetcher: what it returns turned into JSON ([`FetchResult`]), the type-erased
//! future the runtime awaits, sync fetchers on tokio's blocking pool, and panics turned into errors.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::{BatchOutput, BatchResult, FetchOutput, FetchResult, KeyError, Model};
use crate::error::{panic_message, Error};

/// What a fetcher returns, as recorded in the registry listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// The generated model type.
    Record,
    /// `Option` of the model type: `None` means the source has no such key.
    Optional,
    /// `serde_json::Value`: untyped, validated at run time only.
    Json,
    /// `Option<serde_json::Value>`.
    OptionalJson,
}

impl OutputKind {
    /// The stable name used in listings: `record`, `optional`, `json`, `optional_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Record => "record",
            OutputKind::Optional => "optional",
            OutputKind::Json => "json",
            OutputKind::OptionalJson => "optional_json",
        }
    }
}

fn to_json<M: Model>(record: &M) -> Result<serde_json::Value, Error> {
    serde_json::to_value(record)
        .map_err(|e| Error::permanent(format!("cannot serialize the {} record: {e}", M::NAME)))
}

impl<M: Model> FetchOutput<M> for M {
    const OUTPUT: OutputKind = OutputKind::Record;
    fn into_output(self) -> Result<Option<serde_json::Value>, Error> {
        to_json(&self).map(Some)
    }
}

impl<M: Model> FetchOutput<M> for Option<M> {
    const OUTPUT: OutputKind = OutputKind::Optional;
    fn into_output(self) -> Result<Option<serde_json::Value>, Error> {
        self.as_ref().map(to_json).transpose()
    }
}

impl<M: Model> FetchOutput<M> for serde_json::Value {
    const OUTPUT: OutputKind = OutputKind::Json;
    fn into_output(self) -> Result<Option<serde_json::Value>, Error> {
        Ok(Some(self))
    }
}

impl<M: Model> FetchOutput<M> for Option<serde_json::Value> {
    const OUTPUT: OutputKind = OutputKind::OptionalJson;
    fn into_output(self) -> Result<Option<serde_json::Value>, Error> {
        Ok(self)
    }
}

impl<M, T, E> FetchResult<M> for Result<T, E>
where
    T: FetchOutput<M>,
    E: Into<Error>,
{
    const OUTPUT: OutputKind = T::OUTPUT;
    fn into_fetch_result(self) -> Result<Option<serde_json::Value>, Error> {
        match self {
            Ok(out) => out.into_output(),
            Err(e) => Err(e.into()),
        }
    }
}

/// The future a type-erased fetcher call returns: `Ok(Some(json))` for a record, `Ok(None)` when
/// the source has no such key, `Err` otherwise.
pub type FetchFuture = CallFuture<Option<serde_json::Value>>;

/// The future a type-erased call of a batch fetcher returns: the records the source answered
/// for the keys it was given (in any order; kye matches them back to the keys by their index
/// values), or the error of the whole call.
pub type BatchFuture = CallFuture<Vec<serde_json::Value>>;

/// A boxed, sendable future of a fetcher call resolving to `T` or an [`Error`].
pub type CallFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'static>>;

/// Runs a synchronous fetcher on tokio's blocking pool so it never stalls the executor; outside
/// a tokio runtime it runs on the calling thread. A panic in the fetcher becomes a permanent error.
pub fn run_blocking<F, T>(function: &'static str, f: F) -> CallFuture<T>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let task = handle.spawn_blocking(f);
            Box::pin(async move {
                match task.await {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err(Error::permanent(format!(
                        "fetcher `{function}` panicked: {}",
                        panic_message(&*e.into_panic())
                    ))),
                    Err(_) => Err(Error::retryable(format!(
                        "fetcher `{function}` was cancelled"
                    ))),
                }
            })
        }
        Err(_) => {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                    Err(Error::permanent(format!(
                        "fetcher `{function}` panicked: {}",
                        panic_message(&*p)
                    )))
                });
            Box::pin(std::future::ready(result))
        }
    }
}

/// Boxes an async fetcher's future so that a panic while polling it becomes a permanent error
/// naming the function, like [`run_blocking`] does for sync fetchers.
pub fn catch_panics<F, T>(function: &'static str, future: F) -> CallFuture<T>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    Box::pin(CatchPanics {
        function,
        future: Box::pin(future),
    })
}

struct CatchPanics<T> {
    function: &'static str,
    future: CallFuture<T>,
}

impl<T> Future for CatchPanics<T> {
    type Output = Result<T, Error>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let function = self.function;
        let fut = &mut self.future;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(p) => std::task::Poll::Ready(Err(Error::permanent(format!(
                "fetcher `{function}` panicked: {}",
                panic_message(&*p)
            )))),
        }
    }
}

/// An immediately failed call (the key did not fit the parameters).
pub fn failed_call<T: Send + 'static>(error: KeyError) -> CallFuture<T> {
    Box::pin(std::future::ready(Err(Error::from(error))))
}

impl<M: Model> BatchOutput<M> for Vec<M> {
    const OUTPUT: OutputKind = OutputKind::Record;
    fn into_records(self) -> Result<Vec<serde_json::Value>, Error> {
        self.iter().map(to_json).collect()
    }
}

impl<M: Model> BatchOutput<M> for Vec<serde_json::Value> {
    const OUTPUT: OutputKind = OutputKind::Json;
    fn into_records(self) -> Result<Vec<serde_json::Value>, Error> {
        Ok(self)
    }
}

impl<M, T, E> BatchResult<M> for Result<T, E>
where
    T: BatchOutput<M>,
    E: Into<Error>,
{
    const OUTPUT: OutputKind = T::OUTPUT;
    fn into_batch_result(self) -> Result<Vec<serde_json::Value>, Error> {
        match self {
            Ok(out) => out.into_records(),
            Err(e) => Err(e.into()),
        }
    }
}

/// A batch fetcher called for one key (through [`FetcherRegistration::call`]): the batch of
/// that one key, whose answer is its record (none: missing; more than one: an error naming
/// the function). The runtime never calls a batch fetcher this way; it groups keys.
///
/// [`FetcherRegistration::call`]: crate::registry::FetcherRegistration::call
pub fn batch_of_one(function: &'static str, batch: BatchFuture) -> FetchFuture {
    Box::pin(async move {
        let mut records = batch.await?;
        match records.len() {
            0 => Ok(None),
            1 => Ok(records.pop()),
            n => Err(Error::permanent(format!(
                "batch fetcher `{function}` returned {n} records for one key"
            ))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_fetchers_outside_a_runtime_run_inline_and_panics_become_errors() {
        let fut = run_blocking("boom", || panic!("bad"));
        let out = futures_lite_block_on(fut);
        assert_eq!(out.unwrap_err().message(), "fetcher `boom` panicked: bad");
    }

    #[tokio::test]
    async fn async_fetcher_panics_become_errors() {
        let out: Result<Option<serde_json::Value>, _> =
            catch_panics("boom", async { panic!("bad {}", 1) }).await;
        assert_eq!(out.unwrap_err().message(), "fetcher `boom` panicked: bad 1");
        let out = catch_panics("ok", async { Ok(None::<serde_json::Value>) }).await;
        assert_eq!(out.unwrap(), None);
    }

    #[tokio::test]
    async fn sync_fetchers_run_on_the_blocking_pool() {
        let out = run_blocking("ok", || Ok(Some(serde_json::json!({"id": 1})))).await;
        assert_eq!(out.unwrap(), Some(serde_json::json!({"id": 1})));
        let out: Result<Option<serde_json::Value>, _> =
            run_blocking("boom", || panic!("bad")).await;
        assert_eq!(out.unwrap_err().message(), "fetcher `boom` panicked: bad");
    }

    fn futures_lite_block_on(fut: FetchFuture) -> Result<Option<serde_json::Value>, Error> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }
}
