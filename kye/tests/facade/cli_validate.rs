//! `kye validate` as a program: exit codes, the JSON document, every data format.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const SCHEMA: &str = r#"# Users of the shop.
User(id)(email) {
  id "User Id": Number
  email: String
  name: String
  age?: Number
  tags*: String
  assert age >= 0
}
"#;

/// A fresh directory for one test, holding `users.kye`.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kye-cli-validate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    std::fs::write(d.join("users.kye"), SCHEMA).expect("schema file");
    d
}

fn kye(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kye"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the kye binary runs")
}

fn validate_json(d: &std::path::Path, data: &str) -> (i32, Value) {
    let out = kye(&[
        "validate",
        "--schema",
        d.join("users.kye").to_str().unwrap(),
        "--model",
        "User",
        "--data",
        d.join(data).to_str().unwrap(),
        "--format",
        "json",
    ]);
    let code = out.status.code().expect("exit code");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, doc)
}

fn kinds(doc: &Value) -> Vec<(String, Vec<String>, Vec<u64>)> {
    doc["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["edges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect(),
                e["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn valid_csv_exits_0_and_reports_valid() {
    let d = dir("valid-csv");
    std::fs::write(
        d.join("users.csv"),
        "User Id,email,name,age\n1,a@x.io,Ann,31\n2,b@x.io,\"Bo, Jr.\",\n",
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "users.csv");
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["errors"], serde_json::json!([]));
    assert_eq!(doc["warnings"], serde_json::json!([]));
}

#[test]
fn csv_data_errors_exit_65_with_kind_edges_and_zero_based_rows() {
    let d = dir("bad-csv");
    std::fs::write(
        d.join("users.csv"),
        "User Id,email,name,age,shoe\n\
         1,a@x.io,Ann,-4,42\n\
         2,b@x.io,Bob,old,41\n\
         3,c@x.io,,22,40\n\
         ,d@x.io,Dee,20,39\n\
         4,a@x.io,Eve,50,38\n",
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "users.csv");
    assert_eq!(code, 65, "{doc}");
    assert_eq!(doc["valid"], false);
    let got = kinds(&doc);
    let has = |k: &str, edge: &str, rows: &[u64]| {
        got.iter()
            .any(|(gk, ge, gr)| gk == k && ge.iter().any(|e| e == edge) && gr == rows)
    };
    assert!(has("AssertionFailed", "age", &[0]), "{got:?}");
    assert!(has("InvalidType", "age", &[1]), "{got:?}");
    assert!(has("MissingValue", "name", &[2]), "{got:?}");
    assert!(has("MissingIndex", "id", &[3]), "{got:?}");
    // a@x.io belongs to the records with id 1 and id 4.
    assert!(has("NonUniqueSubIndex", "email", &[0, 4]), "{got:?}");
    // Every error names its model and has a message and the schema location.
    for e in doc["errors"].as_array().unwrap() {
        assert_eq!(e["model"], "User");
        assert!(!e["message"].as_str().unwrap().is_empty());
        assert!(
            e["location"]
                .as_str()
                .is_some_and(|l| l.contains("users.kye:")),
            "{e}"
        );
    }
    // The unknown column is a warning, not lost.
    let w = &doc["warnings"][0];
    assert_eq!(w["kind"], "UnknownEdge");
    assert_eq!(w["edges"][0], "shoe");
}

#[test]
fn text_output_groups_errors_and_quotes_the_schema_line() {
    let d = dir("text");
    std::fs::write(
        d.join("users.csv"),
        "User Id,email,name,age\n1,a@x.io,Ann,-4\n2,b@x.io,Bob,abc\n",
    )
    .unwrap();
    let out = kye(&[
        "validate",
        "-s",
        d.join("users.kye").to_str().unwrap(),
        "-m",
        "User",
        "-d",
        d.join("users.csv").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(65));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error[InvalidType]"), "{text}");
    assert!(text.contains("error[AssertionFailed]"), "{text}");
    assert!(
        text.contains("  age?: Number"),
        "the edge's schema line is quoted: {text}"
    );
    assert!(text.contains("assert age >= 0"), "{text}");
    assert!(text.contains("users.kye:6:"), "{text}");
    assert!(
        !text.contains("\x1b["),
        "no color when not a terminal: {text}"
    );
    assert!(text.contains("2 errors in 2 rows of User"), "{text}");
}

#[test]
fn json_array_and_model_object_and_nested_lists() {
    let d = dir("json");
    std::fs::write(
        d.join("a.json"),
        r#"[{"User Id": 1, "email": "a@x.io", "name": "Ann", "tags": ["x", "y"]},
            {"id": "2", "email": "b@x.io", "name": "Bob"}]"#,
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "a.json");
    assert_eq!(code, 0, "{doc}");

    std::fs::write(
        d.join("b.json"),
        r#"{"Other": [1, 2], "User": [{"id": 1, "email": "a@x.io", "name": ["Ann", "Anne"]}]}"#,
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "b.json");
    assert_eq!(code, 65, "{doc}");
    assert_eq!(
        kinds(&doc),
        vec![(
            "MultipleValues".to_string(),
            vec!["name".to_string()],
            vec![0]
        )]
    );
}

#[test]
fn rows_with_the_same_index_are_one_record() {
    let d = dir("merge");
    std::fs::write(
        d.join("u.jsonl"),
        "{\"id\": 1, \"email\": \"a@x.io\", \"name\": \"Ann\"}\n\
         \n\
         {\"id\": 1, \"email\": \"a@x.io\", \"age\": 30}\n\
         {\"id\": 1, \"email\": \"a@x.io\", \"name\": \"Anna\"}\n",
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "u.jsonl");
    assert_eq!(code, 65, "{doc}");
    assert_eq!(
        kinds(&doc),
        vec![(
            "MultipleValues".to_string(),
            vec!["name".to_string()],
            vec![0, 1, 2]
        )]
    );
    assert_eq!(doc["errors"][0]["key"], "id=1, email=a@x.io");
}

#[test]
fn jsonl_bad_line_is_an_error_of_that_row_and_reading_goes_on() {
    let d = dir("jsonl");
    std::fs::write(
        d.join("u.jsonl"),
        "{\"id\": 1, \"email\": \"a@x.io\", \"name\": \"Ann\"}\n{not json\n{\"id\": 2, \"email\": \"b@x.io\"}\n",
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "u.jsonl");
    assert_eq!(code, 65);
    let got = kinds(&doc);
    assert!(
        got.contains(&("Unreadable".to_string(), vec![], vec![1])),
        "{got:?}"
    );
    assert!(
        got.contains(&(
            "MissingValue".to_string(),
            vec!["name".to_string()],
            vec![2]
        )),
        "{got:?}"
    );
}

#[test]
fn yaml_and_yml() {
    let d = dir("yaml");
    let yaml = "User:\n  - id: 1\n    email: a@x.io\n    name: Ann\n    age: 3\n  - id: 2\n    email: b@x.io\n    name: Bo\n    age: -1\n";
    std::fs::write(d.join("u.yaml"), yaml).unwrap();
    std::fs::write(d.join("u.yml"), yaml).unwrap();
    for f in ["u.yaml", "u.yml"] {
        let (code, doc) = validate_json(&d, f);
        assert_eq!(code, 65, "{doc}");
        assert_eq!(
            kinds(&doc),
            vec![(
                "AssertionFailed".to_string(),
                vec!["age".to_string()],
                vec![1]
            )]
        );
    }
}

#[test]
fn usage_schema_and_file_problems_exit_2() {
    let d = dir("usage");
    let schema = d.join("users.kye");
    let s = schema.to_str().unwrap();
    std::fs::write(d.join("u.csv"), "id\n1\n").unwrap();
    let data = d.join("u.csv");
    let data = data.to_str().unwrap();

    // clap usage error: missing --model.
    let out = kye(&["validate", "--schema", s, "--data", data]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
    // Unknown subcommand / flag.
    assert_eq!(kye(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(kye(&["validate", "--bogus"]).status.code(), Some(2));
    // Missing data file.
    let out = kye(&[
        "validate",
        "--schema",
        s,
        "--model",
        "User",
        "--data",
        "/nonexistent/x.csv",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.csv"));
    // Unknown model.
    let out = kye(&["validate", "--schema", s, "--model", "Usr", "--data", data]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("User"),
        "lists the models"
    );
    // Unknown extension.
    std::fs::write(d.join("u.txt"), "id\n1\n").unwrap();
    let txt = d.join("u.txt");
    let out = kye(&[
        "validate",
        "--schema",
        s,
        "--model",
        "User",
        "--data",
        txt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Broken schema: diagnostics on stderr with file:line:col.
    std::fs::write(d.join("broken.kye"), "User(id) {\n  id: Nubmer\n}\n").unwrap();
    let b = d.join("broken.kye");
    let out = kye(&[
        "validate",
        "--schema",
        b.to_str().unwrap(),
        "--model",
        "User",
        "--data",
        data,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.kye:2:"), "{err}");
    // Missing schema file.
    let out = kye(&[
        "validate",
        "--schema",
        "/nonexistent/s.kye",
        "--model",
        "User",
        "--data",
        data,
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn malformed_json_is_a_data_error() {
    let d = dir("malformed");
    std::fs::write(d.join("u.json"), "[{\"id\": 1,").unwrap();
    let (code, doc) = validate_json(&d, "u.json");
    assert_eq!(code, 65);
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"][0]["kind"], "Unreadable");
}

#[test]
fn several_schema_files_make_one_schema() {
    let d = dir("multi");
    std::fs::write(
        d.join("types.kye"),
        "Kind(code) { code: String, label: String }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("things.kye"),
        "Thing(id) { id: Number, kind: Kind }\n",
    )
    .unwrap();
    std::fs::write(d.join("t.json"), r#"[{"id": 1, "kind": "A"}, {"id": 2, "kind": {"code": "B", "label": "Bee"}}, {"id": 3, "kind": {"code": 7, "label": true}}]"#).unwrap();
    let out = kye(&[
        "--format",
        "json",
        "validate",
        "--schema",
        d.join("types.kye").to_str().unwrap(),
        "--schema",
        d.join("things.kye").to_str().unwrap(),
        "--model",
        "Thing",
        "--data",
        d.join("t.json").to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(65), "{doc}");
    // Row 2's nested Kind has a Boolean label: the error names the nested model and path.
    let e = &doc["errors"][0];
    assert_eq!(e["kind"], "InvalidType", "{doc}");
    assert_eq!(e["model"], "Kind");
    assert_eq!(e["path"], "kind.label");
    assert_eq!(e["rows"], serde_json::json!([2]));
    assert_eq!(doc["errors"].as_array().unwrap().len(), 1, "{doc}");
}

/// Runs kye under a 2 GiB address-space limit, so an input that would grow memory without
/// bound makes it fail fast instead of filling the machine.
fn kye_bounded(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2097152 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_kye"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("sh runs the kye binary")
}

#[test]
fn csv_an_unterminated_quote_is_an_error_naming_its_line() {
    let d = dir("csv-unterminated");
    std::fs::write(
        d.join("u.csv"),
        "id,email,name\n1,a@x.io,\"unterminated\n2,b@x.io,b\n3,c@x.io,c\n",
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "u.csv");
    assert_eq!(code, 65, "{doc}");
    assert_eq!(doc["valid"], false);
    let message = doc["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2: a quoted field opened on this line is never closed"),
        "{message}"
    );
}

#[test]
fn csv_text_after_a_quote_and_a_wrong_field_count_are_row_errors_naming_the_line() {
    let d = dir("csv-rfc4180");
    std::fs::write(
        d.join("u.csv"),
        "id,email,name\n1,a@x.io,\"b\"x\n2,b@x.io,Bo,extra\n3,c@x.io\n4,d@x.io,\"D, i\"\n",
    )
    .unwrap();
    let (code, doc) = validate_json(&d, "u.csv");
    assert_eq!(code, 65, "{doc}");
    let got = kinds(&doc);
    for row in 0..3 {
        assert!(
            got.contains(&("Unreadable".to_string(), vec![], vec![row])),
            "{got:?}"
        );
    }
    assert_eq!(got.len(), 3, "row 3 is fine: {got:?}");
    let messages: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let text = messages.join("\n");
    assert!(
        text.contains("line 2: field 3 has text after its closing quote"),
        "{text}"
    );
    assert!(
        text.contains("line 3 has 4 fields but the header has 3"),
        "{text}"
    );
    assert!(
        text.contains("line 4 has 2 fields but the header has 3"),
        "{text}"
    );
}

#[test]
fn endless_data_files_stop_with_an_error_in_bounded_memory() {
    let d = dir("endless");
    for (name, says) in [
        ("zero.csv", "line 1: the record is longer than 64 MiB"),
        ("zero.jsonl", "line 1 is longer than 64 MiB"),
        ("zero.yaml", "larger than 256 MiB"),
    ] {
        std::os::unix::fs::symlink("/dev/zero", d.join(name)).unwrap();
        let out = kye_bounded(&[
            "validate",
            "--schema",
            d.join("users.kye").to_str().unwrap(),
            "--model",
            "User",
            "--data",
            d.join(name).to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
    }
}

#[test]
fn an_endless_schema_file_is_refused() {
    let d = dir("endless-schema");
    std::fs::write(d.join("u.csv"), "id,email,name\n1,a@x.io,Ann\n").unwrap();
    let out = kye_bounded(&[
        "validate",
        "--schema",
        "/dev/zero",
        "--model",
        "User",
        "--data",
        d.join("u.csv").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot read /dev/zero: the file is larger than 16 MiB"),
        "{err}"
    );
}
