//! A streaming RFC 4180 CSV record splitter, built for validation speed.
//!
//! Fields are located with `memchr` in a reused buffer, so an unquoted field costs one vector
//! search and no copy; only quoted fields are copied (to undo `""` escapes). Quoted fields may
//! hold commas, quotes and newlines; `\r\n` and `\n` both end a record; blank lines are skipped;
//! a leading UTF-8 byte order mark is dropped. Records may have any number of fields (the
//! caller compares them with the header).
//!
//! Faults: a quoted field that is never closed is a [`CsvError::Unterminated`] (nothing after
//! it can be read); text between a closing quote and the next delimiter marks that one record
//! ([`CsvRecords::fault`]); a record longer than the limit ([`MAX_RECORD`] unless set with
//! [`CsvRecords::with_max_record`]) is a [`CsvError::TooLong`], so an endless input cannot fill
//! memory. Each names the line it starts on.
//!
//! The `csv` crate's general DFA reads about 300 MB/s here; this reads several times faster,
//! which is most of what `kye validate` spends on a large CSV file.

use std::fmt;
use std::io::{self, Read};

use memchr::memchr;

const INITIAL: usize = 1 << 20;

/// The longest CSV record read by default: 64 MiB.
pub const MAX_RECORD: usize = 64 << 20;

/// Why reading stopped.
#[derive(Debug)]
pub enum CsvError {
    /// The input could not be read.
    Io(io::Error),
    /// A quoted field opened on `line` is never closed.
    Unterminated {
        /// 1-based line of the opening quote.
        line: u64,
    },
    /// The record starting on `line` is longer than `limit` bytes.
    TooLong {
        /// 1-based line the record starts on.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Io(e) => write!(f, "{e}"),
            CsvError::Unterminated { line } => write!(
                f,
                "line {line}: a quoted field opened on this line is never closed (a quote \
                 inside a quoted field is written twice: \"\")"
            ),
            CsvError::TooLong { line, limit } => write!(
                f,
                "line {line}: the record is longer than {} MiB, the limit for one CSV record \
                 (an unclosed quote, or not a CSV file?)",
                limit >> 20
            ),
        }
    }
}

impl std::error::Error for CsvError {}

impl From<io::Error> for CsvError {
    fn from(e: io::Error) -> Self {
        CsvError::Io(e)
    }
}

/// Where a field's bytes are: in the read buffer, or in the unescape scratch buffer.
#[derive(Debug, Clone, Copy)]
struct Field {
    start: u32,
    end: u32,
    scratch: bool,
}

/// Reads records one at a time from `R`.
pub struct CsvRecords<R> {
    src: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    scratch: Vec<u8>,
    fields: Vec<Field>,
    consumed: u64,
    first: bool,
    /// The current record's bytes in `buf`.
    rec: (usize, usize),
    /// 1-based line of the next unread byte.
    next_line: u64,
    /// Line the current record starts on.
    record_line: u64,
    /// Newlines inside quoted fields of the record being parsed.
    quoted_newlines: u64,
    /// Index of the current record's field with text after its closing quote.
    fault: Option<usize>,
    max_record: usize,
}

impl<R: Read> CsvRecords<R> {
    /// A reader over `src`.
    pub fn new(src: R) -> Self {
        CsvRecords {
            src,
            buf: vec![0; INITIAL],
            start: 0,
            end: 0,
            eof: false,
            scratch: Vec::new(),
            fields: Vec::new(),
            consumed: 0,
            first: true,
            rec: (0, 0),
            next_line: 1,
            record_line: 0,
            quoted_newlines: 0,
            fault: None,
            max_record: MAX_RECORD,
        }
    }

    /// Sets the longest record accepted, in bytes (default [`MAX_RECORD`]; the tests raise it).
    #[cfg(test)]
    pub fn with_max_record(mut self, bytes: usize) -> Self {
        self.max_record = bytes.max(1);
        self
    }

    /// The 1-based line the current record starts on.
    pub fn line(&self) -> u64 {
        self.record_line
    }

    /// The 0-based index of the current record's field that has text after its closing
    /// quote (`"b"x`), which RFC 4180 does not allow.
    pub fn fault(&self) -> Option<usize> {
        self.fault
    }

    /// Bytes of input consumed by the records read so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Number of fields of the current record.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// The bytes of field `i` of the current record.
    pub fn field(&self, i: usize) -> &[u8] {
        let f = self.fields[i];
        let src = if f.scratch { &self.scratch } else { &self.buf };
        &src[f.start as usize..f.end as usize]
    }

    /// The fields of the current record as text, or `None` when the record is not valid UTF-8.
    /// The record is checked once as a whole: fields end next to ASCII delimiters, so each
    /// field of a valid record is valid too.
    pub fn fields_str(&self) -> Option<impl Iterator<Item = &str> + '_> {
        let raw = std::str::from_utf8(&self.buf[self.rec.0..self.rec.1]).ok()?;
        let quoted = std::str::from_utf8(&self.scratch).ok()?;
        let base = self.rec.0;
        Some(self.fields.iter().map(move |f| {
            let (src, off) = if f.scratch { (quoted, 0) } else { (raw, base) };
            src.get(f.start as usize - off..f.end as usize - off)
                .unwrap_or("")
        }))
    }

    /// Reads the next record; `false` at the end of the input.
    pub fn next_record(&mut self) -> Result<bool, CsvError> {
        loop {
            if self.first {
                // Drop a UTF-8 byte order mark.
                self.fill_at_least(3)?;
                if self.buf[self.start..self.end].starts_with(&[0xEF, 0xBB, 0xBF]) {
                    self.start += 3;
                    self.consumed += 3;
                }
                self.first = false;
            }
            if self.start == self.end {
                if self.eof {
                    return Ok(false);
                }
                self.refill()?;
                continue;
            }
            match self.parse() {
                Some(Parsed::Record(next)) => {
                    if next - self.start > self.max_record {
                        return Err(CsvError::TooLong {
                            line: self.next_line,
                            limit: self.max_record,
                        });
                    }
                    self.rec = (self.start, next);
                    self.record_line = self.next_line;
                    self.next_line += self.quoted_newlines + u64::from(self.buf[next - 1] == b'\n');
                    self.consumed += (next - self.start) as u64;
                    self.start = next;
                    return Ok(true);
                }
                Some(Parsed::Blank(next)) => {
                    self.consumed += (next - self.start) as u64;
                    self.start = next;
                    self.next_line += 1;
                }
                Some(Parsed::Unterminated(newlines_before)) => {
                    return Err(CsvError::Unterminated {
                        line: self.next_line + newlines_before,
                    });
                }
                None => {
                    if self.eof {
                        // Cannot happen: at EOF parse always completes. Stop rather than spin.
                        return Ok(false);
                    }
                    if self.end - self.start > self.max_record {
                        return Err(CsvError::TooLong {
                            line: self.next_line,
                            limit: self.max_record,
                        });
                    }
                    self.refill()?;
                }
            }
        }
    }

    fn fill_at_least(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.start < n && !self.eof {
            self.refill()?;
        }
        Ok(())
    }

    /// Moves the unread tail to the front (growing the buffer when one record fills it) and
    /// reads more input.
    fn refill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Parses one record at `start`. `None` when the buffer ends first (and more input may come).
    fn parse(&mut self) -> Option<Parsed> {
        let end = self.end;
        let eof = self.eof;
        let b = &self.buf[..end];
        let mut p = self.start;
        self.fields.clear();
        self.scratch.clear();
        self.quoted_newlines = 0;
        self.fault = None;
        // Blank line.
        if b[p] == b'\n' {
            return Some(Parsed::Blank(p + 1));
        }
        if b[p] == b'\r' {
            if p + 1 < end && b[p + 1] == b'\n' {
                return Some(Parsed::Blank(p + 2));
            }
            if p + 1 == end && !eof {
                return None;
            }
        }
        loop {
            if p < end && b[p] == b'"' {
                // Quoted field: copy to scratch, undoing "" escapes.
                let s0 = self.scratch.len();
                let mut q = p + 1;
                loop {
                    match memchr(b'"', &b[q..end]) {
                        None => {
                            if !eof {
                                return None;
                            }
                            // At the end of the input with the quote still open.
                            return Some(Parsed::Unterminated(self.quoted_newlines));
                        }
                        Some(i) => {
                            let at = q + i;
                            self.scratch.extend_from_slice(&b[q..at]);
                            self.quoted_newlines +=
                                memchr::memchr_iter(b'\n', &b[q..at]).count() as u64;
                            if at + 1 < end && b[at + 1] == b'"' {
                                self.scratch.push(b'"');
                                q = at + 2;
                                continue;
                            }
                            if at + 1 == end && !eof {
                                return None;
                            }
                            p = at + 1;
                            break;
                        }
                    }
                }
                // Anything between the closing quote and the delimiter belongs to the field.
                let stop = match find_delim(&b[p..end]) {
                    Some(i) => p + i,
                    None if eof => end,
                    None => return None,
                };
                let mut tail = &b[p..stop];
                if stop < end && b[stop] == b'\n' {
                    tail = tail.strip_suffix(b"\r").unwrap_or(tail);
                }
                if !tail.is_empty() && self.fault.is_none() {
                    self.fault = Some(self.fields.len());
                }
                self.scratch.extend_from_slice(tail);
                self.fields.push(Field {
                    start: s0 as u32,
                    end: self.scratch.len() as u32,
                    scratch: true,
                });
                if stop == end {
                    return Some(Parsed::Record(end));
                }
                if b[stop] == b',' {
                    p = stop + 1;
                    continue;
                }
                return Some(Parsed::Record(stop + 1));
            }
            match find_delim(&b[p..end]) {
                None => {
                    if !eof {
                        return None;
                    }
                    let f = b[p..end].strip_suffix(b"\r").map_or(end, |s| p + s.len());
                    self.fields.push(Field {
                        start: p as u32,
                        end: f as u32,
                        scratch: false,
                    });
                    return Some(Parsed::Record(end));
                }
                Some(i) => {
                    let q = p + i;
                    let mut f = q;
                    if b[q] == b'\n' && q > p && b[q - 1] == b'\r' {
                        f -= 1;
                    }
                    self.fields.push(Field {
                        start: p as u32,
                        end: f as u32,
                        scratch: false,
                    });
                    if b[q] == b',' {
                        p = q + 1;
                        if p == end && eof {
                            // A trailing comma at EOF: one more empty field.
                            self.fields.push(Field {
                                start: p as u32,
                                end: p as u32,
                                scratch: false,
                            });
                            return Some(Parsed::Record(end));
                        }
                        continue;
                    }
                    return Some(Parsed::Record(q + 1));
                }
            }
        }
    }
}

/// Position of the next `,` or newline. Fields are short, so a plain loop beats a vector
/// search's setup cost.
#[inline]
fn find_delim(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b',' || c == b'\n')
}

enum Parsed {
    Record(usize),
    Blank(usize),
    /// A quoted field is open at the end of the input; the newlines of the record before its
    /// opening quote.
    Unterminated(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads all records with a tiny source buffer size so records span refills.
    fn all(input: &[u8], chunk: usize) -> Vec<Vec<String>> {
        struct Chunky<'a>(&'a [u8], usize);
        impl Read for Chunky<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = CsvRecords::new(Chunky(input, chunk));
        let mut out = Vec::new();
        while r.next_record().expect("in-memory read") {
            out.push(
                (0..r.len())
                    .map(|i| String::from_utf8_lossy(r.field(i)).into_owned())
                    .collect(),
            );
        }
        out
    }

    fn check(input: &str, want: &[&[&str]]) {
        for chunk in [1, 2, 3, 7, 1 << 20] {
            let got = all(input.as_bytes(), chunk);
            let want: Vec<Vec<String>> = want
                .iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect();
            assert_eq!(got, want, "input {input:?} read {chunk} bytes at a time");
        }
    }

    #[test]
    fn plain_records_with_both_line_endings() {
        check("a,b\n1,2\r\n3,\n", &[&["a", "b"], &["1", "2"], &["3", ""]]);
        check("a,b\n1,2", &[&["a", "b"], &["1", "2"]]);
        check("a,b\n1,", &[&["a", "b"], &["1", ""]]);
    }

    #[test]
    fn quoted_fields_hold_delimiters_quotes_and_newlines() {
        check(
            "name,note\n\"Smith, J\",\"said \"\"hi\"\"\nthen left\"\n\"\",x\n",
            &[
                &["name", "note"],
                &["Smith, J", "said \"hi\"\nthen left"],
                &["", "x"],
            ],
        );
        check("\"a\"\r\n\"b\"", &[&["a"], &["b"]]);
    }

    #[test]
    fn blank_lines_and_bom_are_skipped() {
        check("\u{feff}id\n\n1\r\n\r\n2\n", &[&["id"], &["1"], &["2"]]);
        check("", &[]);
    }

    #[test]
    fn a_record_larger_than_the_buffer_grows_it() {
        let big = "x".repeat(3 * INITIAL + 17);
        let input = format!("a,b\n\"{big}\",1\n2,{big}\n");
        let got = all(input.as_bytes(), 1 << 16);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], vec![big.clone(), "1".to_string()]);
        assert_eq!(got[2], vec!["2".to_string(), big]);
    }

    #[test]
    fn invalid_utf8_is_reported_per_record() {
        let mut r = CsvRecords::new(&b"a,b\n\xff,1\n\"\xfe\",2\nok,3\n"[..]);
        let mut seen = Vec::new();
        while r.next_record().expect("in-memory read") {
            seen.push(r.fields_str().map(|f| f.collect::<Vec<_>>().join("|")));
        }
        assert_eq!(seen, [Some("a|b".into()), None, None, Some("ok|3".into())]);
    }

    /// Reads every record at several chunk sizes; the error, if reading stops with one.
    fn error_of(input: &str) -> Option<String> {
        let mut seen = None;
        for chunk in [1, 3, 1 << 20] {
            struct Chunky<'a>(&'a [u8], usize);
            impl Read for Chunky<'_> {
                fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                    let n = self.0.len().min(self.1).min(out.len());
                    out[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let mut r = CsvRecords::new(Chunky(input.as_bytes(), chunk));
            let got = loop {
                match r.next_record() {
                    Ok(true) => {}
                    Ok(false) => break None,
                    Err(e) => break Some(e.to_string()),
                }
            };
            if chunk > 1 {
                assert_eq!(got, seen, "{input:?} read {chunk} bytes at a time");
            }
            seen = got;
        }
        seen
    }

    #[test]
    fn an_unterminated_quote_is_an_error_naming_its_line() {
        let e = error_of("id,name\n1,\"unterminated\n2,b\n3,c\n").expect("an error");
        assert!(e.starts_with("line 2: a quoted field"), "{e}");
        // The line of the quote, after quoted newlines and blank lines before it.
        let e = error_of("a,b\n\n\"x\ny\",1\n\"z\",\"open\n").expect("an error");
        assert!(e.starts_with("line 5:"), "{e}");
        assert_eq!(error_of("a\n\"closed\"\n"), None);
    }

    #[test]
    fn records_know_their_line_and_text_after_a_closing_quote() {
        let mut r = CsvRecords::new(&b"id,name\n\r\n1,\"a\nb\"\n2,\"b\"x,y\n3,c"[..]);
        let mut seen = Vec::new();
        while r.next_record().expect("in-memory read") {
            seen.push((r.line(), r.fault(), r.len()));
        }
        assert_eq!(
            seen,
            [(1, None, 2), (3, None, 2), (5, Some(1), 3), (6, None, 2)]
        );
    }

    #[test]
    fn a_record_over_the_limit_is_an_error_not_a_bigger_buffer() {
        // An endless input without a delimiter, like /dev/zero.
        let zeros = io::repeat(0).take(64 << 20);
        let mut r = CsvRecords::new(zeros).with_max_record(4 << 20);
        let e = r.next_record().unwrap_err();
        assert!(matches!(e, CsvError::TooLong { line: 1, .. }), "{e:?}");
        assert!(r.buf.len() <= 16 << 20, "buffer grew to {}", r.buf.len());
        let big = "x".repeat(5 << 20);
        let input = format!("a\n1\n{big}\n");
        let mut r = CsvRecords::new(input.as_bytes()).with_max_record(4 << 20);
        assert!(r.next_record().unwrap() && r.next_record().unwrap());
        assert!(matches!(
            r.next_record(),
            Err(CsvError::TooLong { line: 3, .. })
        ));
    }
}
