//! [`Context`]: what a fetcher gets from kye (HTTP client, configuration, secrets).

use std::sync::Arc;

/// Shared, cheaply clonable handle given to fetchers.
#[derive(Clone, Debug, Default)]
pub struct Context {
    inner: Arc<ContextInner>,
}

#[derive(Debug, Default)]
struct ContextInner {}

impl Context {
    /// A context with default settings (no configuration, no secrets).
    pub fn new() -> Self {
        Self::default()
    }
}
