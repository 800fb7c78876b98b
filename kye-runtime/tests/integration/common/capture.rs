//! A tracing subscriber that records every span and event field as text, at every level, so a
//! test can assert that a secret appears nowhere in what kye logs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every span and event field as text; clones share the same text.
#[derive(Clone, Default)]
pub struct Capture {
    text: Arc<Mutex<String>>,
    next: Arc<AtomicU64>,
}

impl Capture {
    /// Everything recorded so far, one span or event a line.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut t = self.text.lock().unwrap();
        t.push_str("\nspan ");
        t.push_str(span.metadata().name());
        span.record(&mut Fields(&mut t));
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Fields(&mut self.text.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut t = self.text.lock().unwrap();
        t.push_str("\nevent");
        event.record(&mut Fields(&mut t));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
