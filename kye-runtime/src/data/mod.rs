//! Reading data files for validation: `.json`, `.jsonl`, `.csv`, `.yaml`/`.yml`.
//!
//! Every reader streams rows into a [`BatchValidator`]: JSON arrays are read one element at a
//! time, JSON Lines one line at a time and CSV one record at a time into a reused buffer, so
//! memory stays proportional to the number of distinct records, not to the file (YAML is the
//! exception: it is parsed whole). CSV is split by [`csv::CsvRecords`], a fast RFC 4180 reader.
//!
//! | extension | shape |
//! | --- | --- |
//! | `.json` | an array of objects, or an object `{"Model": [rows], ...}` |
//! | `.jsonl`, `.ndjson` | one object per line (blank lines skipped) |
//! | `.csv` | a header row; columns match edges by title, else name; cells are cast per the edge's type; an empty cell is no value |
//! | `.yaml`, `.yml` | like `.json` |
//!
//! Row numbers in reports are 0-based positions among the data rows (the CSV header is not a
//! row; in JSON Lines blank lines are not rows).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use kye_lang::validate::{BatchReport, BatchValidator, PreparedRows, ValidationError};
use kye_lang::Schema;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

pub mod csv;

/// A supported data file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// `.json`
    Json,
    /// `.jsonl` / `.ndjson`
    JsonLines,
    /// `.csv`
    Csv,
    /// `.yaml` / `.yml`
    Yaml,
}

impl DataFormat {
    /// The format of a path, from its extension (case-insensitive).
    pub fn from_path(path: &Path) -> Option<DataFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "json" => DataFormat::Json,
            "jsonl" | "ndjson" => DataFormat::JsonLines,
            "csv" => DataFormat::Csv,
            "yaml" | "yml" => DataFormat::Yaml,
            _ => return None,
        })
    }
}

/// Why a data file could not be validated at all (as opposed to data errors, which are in the
/// report).
#[derive(Debug)]
pub enum DataError {
    /// The file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The extension is not one of the supported formats.
    UnknownFormat(PathBuf),
    /// The model is not in the schema.
    UnknownModel(Box<ValidationError>),
    /// The file is not well-formed in its format (e.g. broken JSON): nothing after the fault
    /// could be read.
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column when known.
        message: String,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            DataError::UnknownFormat(p) => write!(
                f,
                "cannot tell the format of {}: use a .json, .jsonl, .csv, .yaml or .yml file",
                p.display()
            ),
            DataError::UnknownModel(e) => write!(f, "{}", e.message),
            DataError::Malformed { path, message } => {
                write!(f, "{} is not well-formed: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for DataError {}

/// Validates the rows of `model` in the file at `path` against `schema`.
pub fn validate_file(schema: &Schema, model: &str, path: &Path) -> Result<BatchReport, DataError> {
    let format =
        DataFormat::from_path(path).ok_or_else(|| DataError::UnknownFormat(path.to_path_buf()))?;
    let mut v =
        BatchValidator::new(schema, model).map_err(|e| DataError::UnknownModel(Box::new(e)))?;
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().ok().map(|m| m.len());
    let reader = BufReader::with_capacity(1 << 16, file);
    match format {
        DataFormat::Csv => read_csv(reader, &mut v, path, size)?,
        DataFormat::JsonLines => read_jsonl(reader, &mut v, path)?,
        DataFormat::Json => read_json(reader, &mut v, path)?,
        DataFormat::Yaml => {
            // YAML is parsed whole, so its size is capped.
            let mut text = Vec::new();
            reader
                .take(MAX_YAML + 1)
                .read_to_end(&mut text)
                .map_err(io)?;
            if text.len() as u64 > MAX_YAML {
                return Err(DataError::Malformed {
                    path: path.to_path_buf(),
                    message: format!(
                        "the file is larger than {} MiB, the limit for a YAML data file (which \
                         is read whole); use .jsonl or .csv, which are streamed",
                        MAX_YAML >> 20
                    ),
                });
            }
            let value: Value = serde_yaml::from_slice(&text).map_err(|e| DataError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            push_document(&value, &mut v, path)?;
        }
    }
    Ok(v.finish())
}

/// CSV: records are split ([`csv::CsvRecords`]) on one thread and checked row by row
/// ([`kye_lang::validate::TextPreparer`]) on another, while this thread folds the checked rows
/// into records; the header is mapped to edges once. `size_hint` (the file size,
/// when known) lets the validator size its tables up front.
pub fn read_csv<R: Read + Send>(
    reader: R,
    v: &mut BatchValidator<'_>,
    path: &Path,
    size_hint: Option<u64>,
) -> Result<(), DataError> {
    let fault = |e: csv::CsvError| match e {
        csv::CsvError::Io(source) => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => DataError::Malformed {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    };
    let mut rdr = csv::CsvRecords::new(reader);
    if !rdr.next_record().map_err(fault)? {
        return Ok(()); // An empty file: no header, no rows.
    }
    let header: Vec<String> = (0..rdr.len())
        .map(|i| String::from_utf8_lossy(rdr.field(i)).trim().to_string())
        .collect();
    if let Some(i) = rdr.fault() {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            message: format!(
                "line {}: header column {} has text after its closing quote",
                rdr.line(),
                i + 1
            ),
        });
    }
    let width = header.len();
    let cols = v.columns(&header);
    let header_bytes = rdr.consumed();
    let mut preparer = v.text_preparer(&cols);

    // Three stages on two cores: split records (this reader), check rows (TextPreparer), fold
    // into records (this thread). Batches travel in channels and come back for reuse.
    type Sent = Result<(PreparedRows, u64), csv::CsvError>;
    let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<Result<RawBatch, csv::CsvError>>(4);
    let (raw_back_tx, raw_back_rx) = std::sync::mpsc::channel::<RawBatch>();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Sent>(4);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<PreparedRows>();
    let result = std::thread::scope(|scope| {
        scope.spawn(move || loop {
            let mut batch = raw_back_rx.try_recv().unwrap_or_default();
            batch.clear();
            let mut more = true;
            while batch.records.len() < BATCH_ROWS {
                match rdr.next_record() {
                    Ok(true) => batch.push(&rdr, width),
                    Ok(false) => {
                        more = false;
                        break;
                    }
                    Err(e) => {
                        let _ = raw_tx.send(Err(e));
                        return;
                    }
                }
            }
            batch.consumed = rdr.consumed();
            if raw_tx.send(Ok(batch)).is_err() || !more {
                return;
            }
        });
        let reader = scope.spawn(move || {
            for raw in raw_rx {
                let raw = match raw {
                    Ok(raw) => raw,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        break;
                    }
                };
                let mut batch = empty_rx.try_recv().unwrap_or_default();
                for r in 0..raw.records.len() {
                    match raw.fields(r) {
                        Ok(fields) => preparer.push(&mut batch, fields),
                        Err(why) => preparer.push_unreadable(&mut batch, why),
                    }
                }
                let consumed = raw.consumed;
                let _ = raw_back_tx.send(raw);
                if full_tx.send(Ok((batch, consumed))).is_err() {
                    break;
                }
            }
            preparer
        });
        let mut reserved = false;
        let mut outcome = Ok(());
        for sent in full_rx {
            let (mut batch, consumed) = match sent {
                Ok(b) => b,
                Err(e) => {
                    outcome = Err(fault(e));
                    break;
                }
            };
            if !reserved && !batch.is_empty() {
                reserved = true;
                if let Some(size) = size_hint {
                    // Size the record tables from the average row length so far.
                    let per_row = ((consumed - header_bytes) / batch.len() as u64).max(1);
                    v.reserve((size / per_row) as usize + 1024);
                }
            }
            v.push_prepared(&mut batch);
            let _ = empty_tx.send(batch);
        }
        // The reader stops at the end of the input or at a read error.
        match reader.join() {
            Ok(preparer) => v.join(preparer),
            Err(_) => {
                outcome = outcome.and(Err(DataError::Malformed {
                    path: path.to_path_buf(),
                    message: "the CSV reader thread failed".to_string(),
                }))
            }
        }
        outcome
    });
    result
}

/// Rows per batch handed from the CSV reader thread to the validator.
const BATCH_ROWS: usize = 4096;

/// Records copied out of the splitter's buffer: their text, and where each field ends.
#[derive(Default)]
struct RawBatch {
    text: String,
    /// End offset in `text` of every field.
    ends: Vec<u32>,
    /// Per record: index of its first field in `ends` and field count, or why the record
    /// cannot be read (not UTF-8, text after a closing quote, a field count unlike the
    /// header's), naming its line.
    records: Vec<Result<(u32, u32), String>>,
    consumed: u64,
}

impl RawBatch {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.records.clear();
    }

    /// Copies the current record of `rdr`, or records why it cannot be read; `width` is the
    /// header's field count.
    fn push<R: Read>(&mut self, rdr: &csv::CsvRecords<R>, width: usize) {
        let line = rdr.line();
        if let Some(i) = rdr.fault() {
            self.records.push(Err(format!(
                "line {line}: field {} has text after its closing quote (a quote inside a \
                 quoted field is written twice: \"\")",
                i + 1
            )));
            return;
        }
        if rdr.len() != width {
            self.records.push(Err(format!(
                "line {line} has {} field{} but the header has {width}",
                rdr.len(),
                if rdr.len() == 1 { "" } else { "s" }
            )));
            return;
        }
        let Some(fields) = rdr.fields_str() else {
            self.records.push(Err(format!(
                "line {line}: the record is not valid UTF-8 text"
            )));
            return;
        };
        let first = self.ends.len() as u32;
        for f in fields {
            self.text.push_str(f);
            self.ends.push(self.text.len() as u32);
        }
        self.records
            .push(Ok((first, self.ends.len() as u32 - first)));
    }

    fn fields(&self, r: usize) -> Result<impl Iterator<Item = &str> + '_, &str> {
        let (first, n) = match &self.records[r] {
            Ok(at) => *at,
            Err(why) => return Err(why.as_str()),
        };
        let (first, n) = (first as usize, n as usize);
        let mut start = if first == 0 {
            0
        } else {
            self.ends[first - 1] as usize
        };
        Ok(self.ends[first..first + n].iter().map(move |&e| {
            let f = self.text.get(start..e as usize).unwrap_or("");
            start = e as usize;
            f
        }))
    }
}

/// The longest line of a JSON Lines file: 64 MiB (the same as one CSV record,
/// [`csv::MAX_RECORD`]).
pub const MAX_LINE: usize = csv::MAX_RECORD;

/// The largest YAML data file: 256 MiB (YAML is parsed whole; JSON, JSON Lines and CSV are
/// streamed and have no size limit).
pub const MAX_YAML: u64 = 256 << 20;

/// JSON Lines: one object per line; a line that is not JSON (or not UTF-8) is an error of
/// that row. A line longer than [`MAX_LINE`] stops the read with an error naming it, so an
/// endless input cannot fill memory.
pub fn read_jsonl<R: BufRead>(
    reader: R,
    v: &mut BatchValidator<'_>,
    path: &Path,
) -> Result<(), DataError> {
    read_jsonl_limited(reader, v, path, MAX_LINE)
}

fn read_jsonl_limited<R: BufRead>(
    mut reader: R,
    v: &mut BatchValidator<'_>,
    path: &Path,
    max_line: usize,
) -> Result<(), DataError> {
    let mut line = Vec::new();
    let mut lineno = 0usize;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        lineno += 1;
        if line.strip_suffix(b"\n").unwrap_or(&line).len() > max_line {
            return Err(DataError::Malformed {
                path: path.to_path_buf(),
                message: format!(
                    "line {lineno} is longer than {} MiB, the limit for one JSON Lines record",
                    max_line >> 20
                ),
            });
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            v.push_unreadable_row(format!("line {lineno} is not valid UTF-8 text"));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) => v.push_record(&value),
            Err(e) => {
                v.push_unreadable_row(format!("line {lineno} is not valid JSON: {e}"));
            }
        }
    }
    Ok(())
}

/// JSON: an array of rows, or an object whose `model` key holds the rows; streamed element
/// by element.
pub fn read_json<R: Read>(
    reader: R,
    v: &mut BatchValidator<'_>,
    path: &Path,
) -> Result<(), DataError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let found = Document { v }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|_| found));
    match found {
        Ok(true) => Ok(()),
        Ok(false) => Err(DataError::Malformed {
            path: path.to_path_buf(),
            message: format!(
                "expected an array of {m} rows or an object with a \"{m}\" key",
                m = v.model().name
            ),
        }),
        Err(e) => Err(DataError::Malformed {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Pushes the rows of an already parsed document (YAML, or JSON given as a value).
pub fn push_document(
    doc: &Value,
    v: &mut BatchValidator<'_>,
    path: &Path,
) -> Result<(), DataError> {
    let rows = match doc {
        Value::Array(rows) => rows,
        Value::Object(map) => match map.get(&v.model().name) {
            Some(Value::Array(rows)) => rows,
            _ => {
                return Err(DataError::Malformed {
                    path: path.to_path_buf(),
                    message: format!(
                        "expected a \"{}\" key holding a list of rows",
                        v.model().name
                    ),
                })
            }
        },
        _ => {
            return Err(DataError::Malformed {
                path: path.to_path_buf(),
                message: format!("expected a list of {} rows", v.model().name),
            })
        }
    };
    for row in rows {
        v.push_record(row);
    }
    Ok(())
}

/// Deserializes the top level; returns whether rows for the model were found.
struct Document<'a, 's> {
    v: &'a mut BatchValidator<'s>,
}

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of rows or an object of model name to rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        Rows { v: self.v }.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.v.model().name {
                found = map.next_value_seed(Rows { v: self.v })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct Rows<'a, 's> {
    v: &'a mut BatchValidator<'s>,
}

impl<'de> DeserializeSeed<'de> for Rows<'_, '_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(row) = seq.next_element::<Value>()? {
            self.v.push_record(&row);
        }
        Ok(true)
    }
}
