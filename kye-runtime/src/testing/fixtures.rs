//! [`Fixtures`]: a directory of JSON documents served as REST routes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::route::{query_param, Route, Routes};
use super::server::TestServer;

/// Why a fixture directory could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// A file or directory could not be read.
    #[error("cannot read fixture {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `.json` file is not valid JSON.
    #[error("fixture {path} is not valid JSON: {source}")]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// The parse error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A file or directory name cannot be part of a URL path (not UTF-8, or contains
    /// characters such as spaces or `?`).
    #[error("fixture {path} has a name that cannot be a URL path segment")]
    BadName {
        /// The file or directory.
        path: PathBuf,
    },
    /// Two files would be served at the same route (e.g. `pokemon/25.json` and
    /// `pokemon/pikachu.json` both holding Pikachu).
    #[error("fixtures {first} and {second} both want route {route}")]
    Conflict {
        /// The contested route.
        route: String,
        /// The file that claimed it first.
        first: PathBuf,
        /// The file that claimed it too.
        second: PathBuf,
    },
}

/// One loaded document.
#[derive(Debug, Clone)]
struct Document {
    file: PathBuf,
    body: Arc<str>,
}

/// JSON documents loaded from a directory, served REST-style.
///
/// `DIR/pokemon/25.json` is served at `/pokemon/25/`. A document whose top level has an
/// integer `id` and a string `name` is also served at `/<folder>/<id>/` and
/// `/<folder>/<name>/`, so one file answers `/pokemon/25/` and `/pokemon/pikachu/`. For each
/// folder of such documents, `/<folder>/` lists them like a PokeAPI resource list
/// (`{"count", "next": null, "previous": null, "results": [{"name", "url"}]}`, by id), unless
/// a file claims that route. Each alias is a route of its own (requests to `/pokemon/25/` and
/// `/pokemon/pikachu/` are counted separately). Files not ending in `.json` (a README) are ignored. Every document
/// is parsed once at load time, so a broken fixture fails loudly with its file name.
///
/// ```no_run
/// use kye_runtime::testing::Fixtures;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Fixtures::from_dir("tests/fixtures/pokeapi")?.serve().await?;
/// println!("PokeAPI stand-in at {}", server.base_url());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Fixtures {
    routes: BTreeMap<String, Document>,
    /// Generated lists: folder route → `(id, name)` of its documents, sorted by id.
    lists: BTreeMap<String, Arc<Vec<(i64, String)>>>,
}

impl Fixtures {
    /// Loads every `*.json` file under `dir`, recursively.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Fixtures, FixtureError> {
        let dir = dir.as_ref();
        let mut files = Vec::new();
        collect_json_files(dir, &mut files)?;
        files.sort();

        let mut fixtures = Fixtures::default();
        // Aliases (by id and by name) are added after all files, so a file always wins over an
        // alias of another file only if they are the same document; otherwise it is a conflict.
        let mut aliases: Vec<(String, Document)> = Vec::new();
        // folder route -> (id, name) of documents in it, for the generated list.
        let mut listed: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();

        for file in files {
            let relative = file.strip_prefix(dir).unwrap_or(&file);
            let mut segments = Vec::new();
            for component in relative.with_extension("").components() {
                let segment = component
                    .as_os_str()
                    .to_str()
                    .filter(|s| is_path_segment(s))
                    .ok_or_else(|| FixtureError::BadName { path: file.clone() })?;
                segments.push(segment.to_owned());
            }
            let text = std::fs::read_to_string(&file).map_err(|source| FixtureError::Io {
                path: file.clone(),
                source,
            })?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| FixtureError::InvalidJson {
                    path: file.clone(),
                    source,
                })?;
            let doc = Document {
                file: file.clone(),
                body: Arc::from(text),
            };
            let folder = match segments.split_last() {
                Some((_, parents)) if !parents.is_empty() => format!("/{}/", parents.join("/")),
                _ => "/".to_owned(),
            };
            fixtures.claim(format!("/{}/", segments.join("/")), doc.clone())?;

            let id = value.get("id").and_then(serde_json::Value::as_i64);
            let name = value.get("name").and_then(serde_json::Value::as_str);
            if let (Some(id), Some(name)) = (id, name) {
                aliases.push((format!("{folder}{id}/"), doc.clone()));
                if is_path_segment(name) {
                    aliases.push((format!("{folder}{name}/"), doc.clone()));
                }
                listed
                    .entry(folder)
                    .or_default()
                    .push((id, name.to_owned()));
            }
        }
        for (route, doc) in aliases {
            fixtures.claim(route, doc)?;
        }
        for (folder, mut entries) in listed {
            if fixtures.routes.contains_key(&folder) {
                continue;
            }
            entries.sort();
            fixtures
                .lists
                .insert(folder.clone(), Arc::new(entries.clone()));
            let results: Vec<serde_json::Value> = entries
                .iter()
                .map(|(id, name)| serde_json::json!({"name": name, "url": format!("{{base}}{folder}{id}/")}))
                .collect();
            let list = serde_json::json!({
                "count": results.len(),
                "next": null,
                "previous": null,
                "results": results,
            });
            fixtures.routes.insert(
                folder.clone(),
                Document {
                    file: dir.join(folder.trim_matches('/')),
                    body: Arc::from(list.to_string()),
                },
            );
        }
        Ok(fixtures)
    }

    /// Adds `doc` at `route`; the same document may claim a route twice, another may not.
    fn claim(&mut self, route: String, doc: Document) -> Result<(), FixtureError> {
        match self.routes.get(&route) {
            Some(existing) if existing.file == doc.file => Ok(()),
            Some(existing) => Err(FixtureError::Conflict {
                route,
                first: existing.file.clone(),
                second: doc.file,
            }),
            None => {
                self.routes.insert(route, doc);
                Ok(())
            }
        }
    }

    /// Every route served, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// The document served at `path`, with `{base}` still in place.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.routes.get(path).map(|d| &*d.body)
    }

    /// The file behind the route at `path` (for generated lists: the folder).
    pub fn file(&self, path: &str) -> Option<&Path> {
        self.routes.get(path).map(|d| d.file.as_path())
    }

    /// Number of routes (files, their aliases and generated lists).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes, each a `200 application/json` [`Route`], to add faults or more routes to
    /// before starting a server.
    ///
    /// A generated list pages as PokeAPI's do when asked with `?limit=N` (and `&offset=M`):
    /// `count` is the whole list's, `next` and `previous` link the neighbouring pages, `null`
    /// at the ends. Without `limit` it is one page of everything.
    pub fn routes(&self) -> Routes {
        let mut routes: Routes = self
            .routes
            .iter()
            .filter(|(path, _)| !self.lists.contains_key(*path))
            .map(|(path, doc)| (path, Route::json(doc.body.as_bytes())))
            .collect();
        for (folder, entries) in &self.lists {
            let (folder, entries) = (folder.clone(), entries.clone());
            routes = routes.generate_with_query(folder.clone(), move |rest, query| {
                rest.is_empty()
                    .then(|| Route::json(list_page(&folder, &entries, query).to_string()))
            });
        }
        routes
    }

    /// Starts a [`TestServer`] serving these documents on the current tokio runtime.
    pub async fn serve(&self) -> io::Result<TestServer> {
        TestServer::start(self.routes()).await
    }
}

impl From<Fixtures> for Routes {
    fn from(fixtures: Fixtures) -> Routes {
        fixtures.routes()
    }
}

/// One page of a generated list, as PokeAPI answers `?offset=M&limit=N`.
fn list_page(folder: &str, entries: &[(i64, String)], query: &str) -> serde_json::Value {
    let param = |name: &str| query_param(query, name).and_then(|v| v.parse::<usize>().ok());
    let offset = param("offset").unwrap_or(0).min(entries.len());
    let limit = param("limit").unwrap_or(entries.len()).max(1);
    let end = offset.saturating_add(limit).min(entries.len());
    let link = |offset: usize| format!("{{base}}{folder}?offset={offset}&limit={limit}");
    let results: Vec<serde_json::Value> = entries[offset..end]
        .iter()
        .map(
            |(id, name)| serde_json::json!({"name": name, "url": format!("{{base}}{folder}{id}/")}),
        )
        .collect();
    serde_json::json!({
        "count": entries.len(),
        "next": (end < entries.len()).then(|| link(end)),
        "previous": (offset > 0).then(|| link(offset.saturating_sub(limit))),
        "results": results,
    })
}

/// Characters allowed in a route segment: URL-safe without escaping.
fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn collect_json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FixtureError> {
    let io_err = |source| FixtureError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|source| FixtureError::Io {
            path: path.clone(),
            source,
        })?;
        if kind.is_dir() {
            collect_json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}
