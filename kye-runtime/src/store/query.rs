//! Asking for stored records: the `edge = value` filter of `kye show --where` and the query
//! [`StoreRead::records`](super::StoreRead::records) takes.

use serde_json::Value;

use super::{key, StoreError};

/// `edge = value` filter for [`StoreRead::records`](super::StoreRead::records).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Edge name.
    pub edge: String,
    /// Value; strings are converted to the edge's type (`"25"` matches Number 25).
    pub value: Value,
}

impl Filter {
    /// Parses `edge = value`, `edge = "quoted value"` or `edge = 'quoted'`.
    pub fn parse(text: &str) -> Result<Filter, StoreError> {
        let bad = |m: &str| StoreError::InvalidFilter {
            model: String::new(),
            message: format!(
                "{m} in {:?}; write it as `edge = value`",
                key::cut(text, 100)
            ),
        };
        let (edge, value) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let edge = edge.trim();
        if edge.ends_with(['<', '>', '!']) {
            return Err(bad("only `=` is supported"));
        }
        if edge.is_empty() {
            return Err(bad("no edge name"));
        }
        let v = value.trim().trim_start_matches('=').trim();
        let unquoted = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        Ok(Filter {
            edge: edge.to_string(),
            value: Value::String(unquoted.to_string()),
        })
    }
}

/// What [`StoreRead::records`](super::StoreRead::records) returns.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQuery {
    /// Model.
    pub model: String,
    /// Optional `edge = value` filter.
    pub filter: Option<Filter>,
    /// At most this many records (ordered by primary key).
    pub limit: Option<usize>,
    /// How deep to embed referenced records that are stored (0: references stay keys).
    pub depth: usize,
    /// Add a `_kye` object with run, fetcher, fetched_at, hash and source (`name@version` of
    /// the declared source, or null) to each top-level record.
    pub provenance: bool,
}

impl RecordQuery {
    /// All records of `model`, nested one level, without provenance.
    pub fn new(model: impl Into<String>) -> Self {
        RecordQuery {
            model: model.into(),
            filter: None,
            limit: None,
            depth: 1,
            provenance: false,
        }
    }

    /// Adds a filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets a limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() {
        let f = Filter::parse("name = 'pikachu'").unwrap();
        assert_eq!(
            (f.edge.as_str(), f.value.as_str()),
            ("name", Some("pikachu"))
        );
        let f = Filter::parse("id==25").unwrap();
        assert_eq!((f.edge.as_str(), f.value.as_str()), ("id", Some("25")));
        let f = Filter::parse("t = \"a = b\"").unwrap();
        assert_eq!(f.value.as_str(), Some("a = b"));
        assert!(Filter::parse("nothing").is_err());
        assert!(Filter::parse(" = 3").is_err());
        let e = Filter::parse("id >= 3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "filter: only `=` is supported in \"id >= 3\"; write it as `edge = value`"
        );
    }
}
