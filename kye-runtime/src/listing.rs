//! The registry listing: what `kye list` prints, as data ([`Listing`]) and rendered as a table
//! for people, JSON for programs, or Markdown for a committed `REGISTRY.md`.
//!
//! # JSON format (stable)
//!
//! ```json
//! {
//!   "models": [
//!     {"name": "Pokemon", "indexes": [["id"], ["name"]], "location": "pokemon.kye:1:1",
//!      "doc": "A Pokémon species.", "edges": [{"name": "id", "type": "Number", "cardinality": ""}]}
//!   ],
//!   "fetchers": [
//!     {"model": "Pokemon", "identifier": ["id"], "function": "get_pokemon", "crate": "pokemon",
//!      "module": "pokemon", "location": "src/lib.rs:42", "async": true,
//!      "output": "record", "doc": "Fetches one Pokémon by id."}
//!   ],
//!   "warnings": ["model `PokemonType` (...) has no fetcher, ..."]
//! }
//! ```
//!
//! Models are sorted by name, fetchers by model then identifier. `doc` is the first paragraph
//! of the doc comment, `""` when there is none (fetchers) or `null` (models). `output` is one of
//! `record`, `optional`, `json`, `optional_json`. `cardinality` is the kye marker: `""`, `"?"`,
//! `"*"` or `"+"`. A batch fetcher (`#[kye::get(Cat.id, batch = 50)]`) has `"batch": 50`,
//! the most keys one call takes (left out for a fetcher of one key); the table's and the
//! Markdown's KIND column says `async, batch 50`. New fields may be added; existing ones keep
//! their meaning.

use std::fmt::Write as _;

use serde::Serialize;

pub use crate::output::Format;
use crate::registry::{identifier_text, Registry};

/// The registry as data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    /// Every model, sorted by name.
    pub models: Vec<ModelListing>,
    /// Every fetcher, sorted by model then identifier.
    pub fetchers: Vec<FetcherListing>,
    /// Every list function (`#[kye::list]`), sorted by model; left out of the JSON when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listers: Vec<ListerListing>,
    /// Every transformer (`#[kye::transform]`), sorted by output model; left out of the JSON
    /// when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transformers: Vec<TransformerListing>,
    /// The declared sources (`kye::source!`, see [`crate::SourcesListing`]), without whether
    /// their keys and secrets are set; left out of the JSON when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::source::SourceListing>,
    /// Registry warnings (no fetchers, models without fetchers).
    pub warnings: Vec<String>,
}

/// One model in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelListing {
    /// Model name.
    pub name: String,
    /// Each index as its edge names; the first is the primary index.
    pub indexes: Vec<Vec<String>>,
    /// `file:line:col` of the model in its `.kye` file.
    pub location: String,
    /// The model's doc comment, if any.
    pub doc: Option<String>,
    /// The model's edges.
    pub edges: Vec<EdgeListing>,
}

/// One edge of a model in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeListing {
    /// Edge name.
    pub name: String,
    /// `String`, `Number`, `Boolean`, a model name, or an alias name.
    #[serde(rename = "type")]
    pub ty: String,
    /// `""`, `"?"`, `"*"` or `"+"`.
    pub cardinality: String,
}

/// One fetcher in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FetcherListing {
    /// The model it fetches.
    pub model: String,
    /// The index edges it is keyed by.
    pub identifier: Vec<String>,
    /// The function's name.
    pub function: String,
    /// The crate it is defined in.
    #[serde(rename = "crate")]
    pub krate: String,
    /// Its module path.
    pub module: String,
    /// `file:line`.
    pub location: String,
    /// Whether it is `async`.
    #[serde(rename = "async")]
    pub is_async: bool,
    /// `record`, `optional`, `json` or `optional_json`.
    pub output: String,
    /// The most keys one call takes, for a batch fetcher (`batch = 50`); left out of the JSON
    /// for a fetcher of one key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// First paragraph of its doc comment (`""` when undocumented).
    pub doc: String,
}

/// One list function in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListerListing {
    /// The model whose keys it lists.
    pub model: String,
    /// The index edges of the keys.
    pub identifier: Vec<String>,
    /// The function's name.
    pub function: String,
    /// The crate it is defined in.
    #[serde(rename = "crate")]
    pub krate: String,
    /// `file:line`.
    pub location: String,
    /// First paragraph of its doc comment (`""` when undocumented).
    pub doc: String,
}

/// One transformer in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransformerListing {
    /// The model it produces.
    pub output: String,
    /// The index edges of its output's key.
    pub identifier: Vec<String>,
    /// The models it reads, the primary one first.
    pub inputs: Vec<String>,
    /// The function's name.
    pub function: String,
    /// The crate it is defined in.
    #[serde(rename = "crate")]
    pub krate: String,
    /// `file:line`.
    pub location: String,
    /// First paragraph of its doc comment (`""` when undocumented).
    pub doc: String,
}

fn type_name(ty: &kye_lang::Type) -> String {
    match ty {
        kye_lang::Type::Primitive(p) => p.to_string(),
        kye_lang::Type::Model(m) => m.clone(),
        kye_lang::Type::Constrained { base, alias, .. } => {
            alias.clone().unwrap_or_else(|| base.to_string())
        }
    }
}

pub(crate) fn first_paragraph(doc: &str) -> String {
    doc.trim()
        .split("\n\n")
        .next()
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Listing {
    /// The listing of a registry.
    pub fn new(registry: &Registry) -> Listing {
        let models = registry
            .models()
            .map(|m| {
                let def = m.definition();
                ModelListing {
                    name: def.name.clone(),
                    indexes: def.indexes.iter().map(|ix| ix.edges.clone()).collect(),
                    location: m.location(),
                    doc: def.doc.as_deref().map(first_paragraph),
                    edges: def
                        .edges
                        .iter()
                        .map(|e| EdgeListing {
                            name: e.name.clone(),
                            ty: type_name(&e.ty),
                            cardinality: e.cardinality.marker().to_string(),
                        })
                        .collect(),
                }
            })
            .collect();
        let fetchers = registry
            .fetchers()
            .iter()
            .map(|f| FetcherListing {
                model: f.model.to_string(),
                identifier: f.identifier.iter().map(|s| s.to_string()).collect(),
                function: f.function.to_string(),
                krate: f.crate_name().to_string(),
                module: f.module_path.to_string(),
                location: f.location(),
                is_async: f.is_async,
                output: f.output.as_str().to_string(),
                batch: f.batch_size(),
                doc: first_paragraph(f.doc),
            })
            .collect();
        let listers = registry
            .listers()
            .iter()
            .map(|l| ListerListing {
                model: l.model.to_string(),
                identifier: l.identifier.iter().map(|s| s.to_string()).collect(),
                function: l.function.to_string(),
                krate: l.module_path.split("::").next().unwrap_or("").to_string(),
                location: format!("{}:{}", l.file, l.line),
                doc: first_paragraph(l.doc),
            })
            .collect();
        let transformers = registry
            .transformers()
            .iter()
            .map(|t| TransformerListing {
                output: t.output.to_string(),
                identifier: t.identifier.iter().map(|s| s.to_string()).collect(),
                inputs: t.inputs.iter().map(|s| s.to_string()).collect(),
                function: t.function.to_string(),
                krate: t.module_path.split("::").next().unwrap_or("").to_string(),
                location: format!("{}:{}", t.file, t.line),
                doc: first_paragraph(t.doc),
            })
            .collect();
        Listing {
            models,
            fetchers,
            listers,
            transformers,
            sources: crate::source::SourcesListing::new(registry.sources(), None).sources,
            warnings: registry.warnings().iter().map(|w| w.to_string()).collect(),
        }
    }

    /// Renders in the given format (JSON ends with a newline like the others).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.to_text(),
            Format::Json => self.to_json(),
            Format::Markdown => self.to_markdown(),
        }
    }

    /// Pretty JSON with the stable fields.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
        s.push('\n');
        s
    }

    /// Aligned tables for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let models: Vec<Vec<String>> = self
            .models
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    indexes_text(m),
                    m.location.clone(),
                    m.doc.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str("Models\n");
        table(&mut out, &["MODEL", "INDEXES", "SCHEMA", "DOC"], &models);
        out.push_str("\nFetchers\n");
        let fetchers: Vec<Vec<String>> = self.fetchers.iter().map(fetcher_row).collect();
        table(
            &mut out,
            &[
                "IDENTIFIER",
                "FUNCTION",
                "KIND",
                "OUTPUT",
                "LOCATION",
                "DOC",
            ],
            &fetchers,
        );
        if !self.listers.is_empty() {
            out.push_str("\nListers\n");
            let listers: Vec<Vec<String>> = self.listers.iter().map(lister_row).collect();
            table(
                &mut out,
                &["IDENTIFIER", "FUNCTION", "LOCATION", "DOC"],
                &listers,
            );
        }
        if !self.transformers.is_empty() {
            out.push_str("\nTransformers\n");
            let rows: Vec<Vec<String>> = self.transformers.iter().map(transformer_row).collect();
            table(
                &mut out,
                &["OUTPUT", "FROM", "FUNCTION", "LOCATION", "DOC"],
                &rows,
            );
        }
        if !self.sources.is_empty() {
            out.push_str("\nSources\n");
            let text = crate::source::SourcesListing {
                sources: self.sources.clone(),
            }
            .to_text();
            for line in text.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        for w in &self.warnings {
            let _ = write!(out, "\nwarning: {w}");
        }
        if !self.warnings.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Markdown tables.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# Registry\n\n<!-- Generated by `kye list --format markdown`; do not edit. -->\n\n## Models\n\n");
        out.push_str("| Model | Indexes | Schema | Doc |\n|---|---|---|---|\n");
        for m in &self.models {
            let _ = writeln!(
                out,
                "| `{}` | {} | `{}` | {} |",
                m.name,
                m.indexes
                    .iter()
                    .map(|ix| format!("`({})`", ix.join(", ")))
                    .collect::<Vec<_>>()
                    .join(", "),
                m.location,
                md_escape(m.doc.as_deref().unwrap_or(""))
            );
        }
        out.push_str("\n## Fetchers\n\n| Identifier | Function | Kind | Output | Location | Doc |\n|---|---|---|---|---|---|\n");
        for f in &self.fetchers {
            let row = fetcher_row(f);
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} | `{}` | {} |",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                md_escape(&row[5])
            );
        }
        if !self.listers.is_empty() {
            out.push_str(
                "\n## Listers\n\n| Identifier | Function | Location | Doc |\n|---|---|---|---|\n",
            );
            for l in &self.listers {
                let row = lister_row(l);
                let _ = writeln!(
                    out,
                    "| `{}` | `{}` | `{}` | {} |",
                    row[0],
                    row[1],
                    row[2],
                    md_escape(&row[3])
                );
            }
        }
        if !self.transformers.is_empty() {
            out.push_str(
                "\n## Transformers\n\n| Output | From | Function | Location | Doc |\n|---|---|---|---|---|\n",
            );
            for t in &self.transformers {
                let row = transformer_row(t);
                let _ = writeln!(
                    out,
                    "| `{}` | {} | `{}` | `{}` | {} |",
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    md_escape(&row[4])
                );
            }
        }
        if !self.sources.is_empty() {
            crate::source::SourcesListing {
                sources: self.sources.clone(),
            }
            .markdown_section(&mut out);
        }
        if !self.warnings.is_empty() {
            out.push_str("\n## Warnings\n\n");
            for w in &self.warnings {
                let _ = writeln!(out, "- {}", md_escape(w));
            }
        }
        out
    }
}

fn indexes_text(m: &ModelListing) -> String {
    m.indexes
        .iter()
        .map(|ix| format!("({})", ix.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn transformer_row(t: &TransformerListing) -> Vec<String> {
    vec![
        identifier_text(&t.output, &t.identifier),
        t.inputs.join(", "),
        t.function.clone(),
        t.location.clone(),
        t.doc.clone(),
    ]
}

fn lister_row(l: &ListerListing) -> Vec<String> {
    vec![
        identifier_text(&l.model, &l.identifier),
        l.function.clone(),
        l.location.clone(),
        l.doc.clone(),
    ]
}

fn fetcher_row(f: &FetcherListing) -> Vec<String> {
    vec![
        identifier_text(&f.model, &f.identifier),
        f.function.clone(),
        match f.batch {
            Some(n) => format!("{}, batch {n}", if f.is_async { "async" } else { "sync" }),
            None => if f.is_async { "async" } else { "sync" }.to_string(),
        },
        f.output.clone(),
        f.location.clone(),
        f.doc.clone(),
    ]
}

pub(crate) fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::from(" ");
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            l.push(' ');
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(w - c.chars().count() + 1));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
