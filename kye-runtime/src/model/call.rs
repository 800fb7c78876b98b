//! A call of a fetcher: what it returns turned into JSON ([`FetchResult`]), the type-erased
//! future the runtime awaits, sync fetchers on tokio's blocking pool, and panics turned into errors.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::{FetchOutput, FetchResult, KeyError, Model};
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
pub type FetchFuture =
    Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, Error>> + Send + 'static>>;

/// Runs a synchronous fetcher on tokio's blocking pool so it never stalls the executor; outside
/// a tokio runtime it runs on the calling thread. A panic in the fetcher becomes a permanent error.
pub fn run_blocking<F>(function: &'static str, f: F) -> FetchFuture
where
    F: FnOnce() -> Result<Option<serde_json::Value>, Error> + Send + 'static,
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
pub fn catch_panics<F>(function: &'static str, future: F) -> FetchFuture
where
    F: Future<Output = Result<Option<serde_json::Value>, Error>> + Send + 'static,
{
    Box::pin(CatchPanics {
        function,
        future: Box::pin(future),
    })
}

struct CatchPanics {
    function: &'static str,
    future: FetchFuture,
}

impl Future for CatchPanics {
    type Output = Result<Option<serde_json::Value>, Error>;

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
pub fn failed_call(error: KeyError) -> FetchFuture {
    Box::pin(std::future::ready(Err(Error::from(error))))
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
        let out = catch_panics("boom", async { panic!("bad {}", 1) }).await;
        assert_eq!(out.unwrap_err().message(), "fetcher `boom` panicked: bad 1");
        let out = catch_panics("ok", async { Ok(None) }).await;
        assert_eq!(out.unwrap(), None);
    }

    #[tokio::test]
    async fn sync_fetchers_run_on_the_blocking_pool() {
        let out = run_blocking("ok", || Ok(Some(serde_json::json!({"id": 1})))).await;
        assert_eq!(out.unwrap(), Some(serde_json::json!({"id": 1})));
        let out = run_blocking("boom", || panic!("bad")).await;
        assert_eq!(out.unwrap_err().message(), "fetcher `boom` panicked: bad");
    }

    fn futures_lite_block_on(fut: FetchFuture) -> Result<Option<serde_json::Value>, Error> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }
}
