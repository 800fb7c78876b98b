//! Agreement with the original Python implementation (kyepy) on its own validation cases and
//! on the five lessons of its tutorial.
//!
//! The data lives outside the repository in `<workspace>/../shared/conformance` (see its
//! README). When that folder is absent the test prints why and passes without checking.
//!
//! Matching rule of the original runner: reported errors are exploded into (kind, edge, row)
//! triples (row empty when an error names no rows); every expected entry must match at least
//! one triple, and every triple must be matched by some expected entry.

use std::path::{Path, PathBuf};

use kye_lang::validate::{BatchValidator, ValidationError};
use serde_json::Value;

fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    dir.join("kyepy/validation_tests.yaml")
        .is_file()
        .then_some(dir)
}

/// One expected error: kind (any when `None`), edges, rows (any when `None`).
#[derive(Debug)]
struct Expected {
    err: Option<String>,
    cols: Vec<String>,
    rows: Option<Vec<usize>>,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn numbers(v: &Value) -> Vec<usize> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|n| n as usize))
            .collect(),
        other => other.as_u64().map(|n| vec![n as usize]).unwrap_or_default(),
    }
}

fn expected_of(v: Option<&Value>) -> Vec<Expected> {
    let Some(Value::Array(list)) = v else {
        return Vec::new();
    };
    list.iter()
        .map(|e| Expected {
            err: e.get("err").and_then(Value::as_str).map(str::to_string),
            cols: e.get("col").map(strings).unwrap_or_default(),
            rows: e.get("row").map(numbers),
        })
        .collect()
}

/// Compares reported errors with expected entries under the original's rule. Returns the
/// reasons it does not agree (empty when it agrees).
fn compare(errors: &[ValidationError], expected: &[Expected]) -> Vec<String> {
    let mut triples: Vec<(String, String, Option<usize>, bool)> = Vec::new();
    for e in errors {
        let rows: Vec<Option<usize>> = if e.rows.is_empty() {
            vec![None]
        } else {
            e.rows.iter().map(|&r| Some(r)).collect()
        };
        let edges: Vec<String> = if e.edges.is_empty() {
            vec![String::new()]
        } else {
            e.edges.clone()
        };
        for edge in &edges {
            for row in &rows {
                triples.push((e.kind.name().to_string(), edge.clone(), *row, false));
            }
        }
    }
    let mut problems = Vec::new();
    for x in expected {
        let mut any = false;
        for t in triples.iter_mut() {
            let kind_ok = x.err.as_deref().is_none_or(|k| k == t.0);
            let col_ok = x.cols.contains(&t.1);
            let row_ok = match (&x.rows, t.2) {
                (None, _) => true,
                (Some(rs), Some(r)) => rs.contains(&r),
                (Some(_), None) => false,
            };
            if kind_ok && col_ok && row_ok {
                t.3 = true;
                any = true;
            }
        }
        if !any {
            problems.push(format!("expected error not reported: {x:?}"));
        }
    }
    for t in &triples {
        if !t.3 {
            problems.push(format!("unexpected error: ({}, {}, {:?})", t.0, t.1, t.2));
        }
    }
    if !problems.is_empty() {
        for e in errors {
            problems.push(format!("  reported: {e}"));
        }
    }
    problems
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, problems: Vec<String>) {
        if problems.is_empty() {
            self.passed += 1;
        } else {
            self.failed
                .push(format!("{name}:\n    {}", problems.join("\n    ")));
        }
    }
}

fn run_validation_tests(dir: &Path, tally: &mut Tally) {
    let text =
        std::fs::read_to_string(dir.join("kyepy/validation_tests.yaml")).expect("readable yaml");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid yaml");
    let features: Value = serde_json::to_value(yaml).expect("yaml as json");
    let features = features.as_array().expect("a list of features");
    for feature in features {
        let fname = feature["feature"].as_str().unwrap_or("?");
        let source = feature["schema"].as_str().unwrap_or("");
        let schema = match kye_lang::compile_str(&format!("{fname}.kye"), source) {
            Ok(s) => s,
            Err(e) => {
                tally.record(fname, vec![format!("schema does not compile:\n{e}")]);
                continue;
            }
        };
        for test in feature["tests"].as_array().into_iter().flatten() {
            let tname = format!("{fname} / {}", test["test"].as_str().unwrap_or("?"));
            let mut errors = Vec::new();
            let mut setup = Vec::new();
            for (model, rows) in test["data"].as_object().into_iter().flatten() {
                match BatchValidator::new(&schema, model) {
                    Ok(mut b) => {
                        for row in rows.as_array().into_iter().flatten() {
                            b.push_record(row);
                        }
                        errors.extend(b.finish().errors);
                    }
                    Err(e) => setup.push(e.to_string()),
                }
            }
            if !setup.is_empty() {
                tally.record(&tname, setup);
                continue;
            }
            tally.record(&tname, compare(&errors, &expected_of(test.get("errors"))));
        }
    }
}

/// Expected outcomes of the tutorial lessons, from the conformance README.
fn lesson_expectations(lesson: &str) -> Option<Vec<Expected>> {
    let one = |err: Option<&str>, col: &str, row: usize| Expected {
        err: err.map(str::to_string),
        cols: vec![col.to_string()],
        rows: Some(vec![row]),
    };
    Some(match lesson {
        "01-introduction_01-welcome" => vec![],
        // The row with id 3 (age -14) is the third data row: row 2.
        "01-introduction_02-how-to-use-tutorial" => vec![one(Some("AssertionFailed"), "age", 2)],
        "02-value-assertions_01-your-first-assertion" => vec![],
        "02-value-assertions_02-constants" => vec![],
        // The row with id 3 (PENDING) is row 2.
        "02-value-assertions_03-enums" => vec![one(None, "status", 2)],
        _ => return None,
    })
}

fn run_tutorial(dir: &Path, tally: &mut Tally) {
    let root = dir.join("kyepy/tutorial");
    let mut lessons: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    lessons.sort();
    assert_eq!(
        lessons.len(),
        5,
        "five tutorial lessons in {}",
        root.display()
    );
    for lesson in lessons {
        let name = lesson
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let Some(expected) = lesson_expectations(&name) else {
            tally.record(
                &name,
                vec!["no expected outcome known for this lesson".into()],
            );
            continue;
        };
        let source = std::fs::read_to_string(lesson.join("models.kye")).expect("models.kye");
        let schema = match kye_lang::compile_str("models.kye", &source) {
            Ok(s) => s,
            Err(e) => {
                tally.record(&name, vec![format!("schema does not compile:\n{e}")]);
                continue;
            }
        };
        let csv_path = std::fs::read_dir(&lesson)
            .expect("lesson dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "csv"))
            .expect("a csv file");
        let model = csv_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let mut b = BatchValidator::new(&schema, &model).expect("model of the csv exists");
        let mut reader = csv::Reader::from_path(&csv_path).expect("csv");
        let header: Vec<String> = reader
            .headers()
            .expect("header")
            .iter()
            .map(str::to_string)
            .collect();
        let cols = b.columns(&header);
        for rec in reader.records() {
            let rec = rec.expect("csv record");
            b.push_text_row(&cols, rec.iter());
        }
        let report = b.finish();
        tally.record(
            &format!("tutorial {name}"),
            compare(&report.errors, &expected),
        );
    }
}

#[test]
fn conformance_with_the_original() {
    let Some(dir) = conformance_dir() else {
        println!(
            "conformance: skipped: {} not found (the shared conformance data sits beside the workspace)",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance").display()
        );
        return;
    };
    let mut tally = Tally::default();
    run_validation_tests(&dir, &mut tally);
    run_tutorial(&dir, &mut tally);
    for f in &tally.failed {
        println!("FAILED {f}");
    }
    println!(
        "conformance: {} passed, {} failed",
        tally.passed,
        tally.failed.len()
    );
    assert!(
        tally.failed.is_empty(),
        "{} conformance case(s) disagree with the original",
        tally.failed.len()
    );
}

#[test]
fn the_matching_rule_rejects_missing_and_unexpected_errors() {
    use kye_lang::validate::ErrorKind;
    let mut e = ValidationError::new(ErrorKind::MultipleValues, "Post", "m");
    e.edges = vec!["title".into()];
    e.rows = vec![3, 4];
    let exp = |rows: Vec<usize>| Expected {
        err: Some("MultipleValues".into()),
        cols: vec!["title".into()],
        rows: Some(rows),
    };
    assert!(compare(std::slice::from_ref(&e), &[exp(vec![3, 4])]).is_empty());
    // Row 4 is reported but not expected.
    assert!(!compare(std::slice::from_ref(&e), &[exp(vec![3])]).is_empty());
    // Expected error on row 5 is not reported.
    assert!(!compare(std::slice::from_ref(&e), &[exp(vec![3, 4]), exp(vec![5])]).is_empty());
    // Nothing expected, something reported.
    assert!(!compare(&[e], &[]).is_empty());
}
