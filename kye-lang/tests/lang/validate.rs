//! Validator behaviour beyond the original's test cases: records, nesting, references,
//! assertions over several edges, batches split over rows, the error format.

use kye_lang::validate::{validate_record, BatchValidator, ErrorKind, MAX_VALUE_CHARS};
use kye_lang::Schema;
use serde_json::json;

fn schema(src: &str) -> Schema {
    kye_lang::compile_str("test.kye", src).unwrap_or_else(|e| panic!("schema compiles:\n{e}"))
}

const POKEMON: &str = r#"
Pokemon(id)(name) {
  id "Dex No": Number
  name: String
  weight?: Number
  legendary?: Boolean
  types+: PokemonType
  evolves_from?: Pokemon
  assert weight >= 0
}
PokemonType(name) {
  name: "electric" | "fairy" | "grass" | "poison"
  slot: Number
}
"#;

fn kinds(errors: &[kye_lang::ValidationError]) -> Vec<(ErrorKind, Vec<String>)> {
    errors.iter().map(|e| (e.kind, e.edges.clone())).collect()
}

#[test]
fn a_record_is_normalized() {
    let s = schema(POKEMON);
    let r = validate_record(
        &s,
        "Pokemon",
        &json!({
            "Dex No": "25", "name": "pikachu", "weight": "60", "legendary": "false",
            "types": [{"name": "electric", "slot": "1"}], "color": "yellow"
        }),
    );
    assert!(r.is_valid(), "{:?}", r.errors);
    assert_eq!(
        r.value,
        json!({"id": 25, "name": "pikachu", "weight": 60, "legendary": false,
               "types": [{"name": "electric", "slot": 1}]})
    );
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].kind, ErrorKind::UnknownEdge);
    assert_eq!(r.warnings[0].value.as_deref(), Some("yellow"));
}

#[test]
fn nested_errors_carry_a_path_and_the_nested_model() {
    let s = schema(POKEMON);
    let r = validate_record(
        &s,
        "Pokemon",
        &json!({"id": 1, "name": "bulbasaur",
                "types": [{"name": "grass", "slot": 1}, {"name": "poisson", "slot": 2}]}),
    );
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    let e = &r.errors[0];
    assert_eq!(e.kind, ErrorKind::InvalidType);
    assert_eq!(e.model, "PokemonType");
    assert_eq!(e.path.as_deref(), Some("types[1].name"));
    assert_eq!(e.value.as_deref(), Some("poisson"));
    assert!(
        e.expected
            .as_deref()
            .is_some_and(|x| x.contains("\"poison\"")),
        "{e:?}"
    );
    assert!(
        e.location
            .as_deref()
            .is_some_and(|l| l.starts_with("test.kye:12:")),
        "{e:?}"
    );
}

#[test]
fn references_are_scalars_or_index_only_objects() {
    let s = schema(POKEMON);
    let base = |evolves: serde_json::Value| json!({"id": 2, "name": "ivysaur", "types": [{"name": "grass", "slot": 1}], "evolves_from": evolves});
    // By primary index value, and as an object holding only index edges.
    for ok in [
        json!(1),
        json!("1"),
        json!({"id": 1}),
        json!({"name": "bulbasaur"}),
    ] {
        let r = validate_record(&s, "Pokemon", &base(ok.clone()));
        assert!(r.is_valid(), "{ok}: {:?}", r.errors);
    }
    let r = validate_record(&s, "Pokemon", &base(json!("one")));
    assert_eq!(
        kinds(&r.errors),
        [(ErrorKind::InvalidType, vec!["evolves_from".into()])]
    );
    // A nested record with more than index edges is validated in full.
    let r = validate_record(&s, "Pokemon", &base(json!({"id": 1, "weight": 6.9})));
    let k = kinds(&r.errors);
    assert!(
        k.contains(&(ErrorKind::MissingIndex, vec!["name".into()])),
        "{k:?}"
    );
    assert!(
        k.contains(&(ErrorKind::MissingValue, vec!["types".into()])),
        "{k:?}"
    );
}

#[test]
fn cardinality_in_one_record() {
    let s = schema(POKEMON);
    let r = validate_record(
        &s,
        "Pokemon",
        &json!({"id": [7, 7.0], "name": ["a", "b"], "types": []}),
    );
    let k = kinds(&r.errors);
    assert_eq!(
        k,
        [
            (ErrorKind::MultipleValues, vec!["name".into()]),
            (ErrorKind::MissingValue, vec!["types".into()]),
        ],
        "identical repeats of id are fine"
    );
    let r = validate_record(
        &s,
        "Pokemon",
        &json!({"types": [{"name": "grass", "slot": 1}]}),
    );
    assert_eq!(
        kinds(&r.errors),
        [
            (ErrorKind::MissingIndex, vec!["id".into()]),
            (ErrorKind::MissingIndex, vec!["name".into()])
        ]
    );
}

#[test]
fn assertions_over_several_edges_run() {
    let s = schema("Range(id) { id: Number, low: Number, high: Number, assert low <= high }");
    let r = validate_record(&s, "Range", &json!({"id": 1, "low": 5, "high": 3}));
    assert_eq!(
        kinds(&r.errors),
        [(
            ErrorKind::AssertionFailed,
            vec!["high".into(), "low".into()]
        )]
    );
    assert_eq!(r.errors[0].value.as_deref(), Some("high=3, low=5"));
    assert_eq!(r.errors[0].expected.as_deref(), Some("low <= high"));
    assert!(validate_record(&s, "Range", &json!({"id": 1, "low": 3, "high": 5})).is_valid());
}

#[test]
fn an_assertion_over_a_multi_valued_edge_holds_for_every_value() {
    let s = schema("Bag(id) { id: Number, sizes*: Number, assert sizes > 0 }");
    assert!(validate_record(&s, "Bag", &json!({"id": 1, "sizes": [1, 2]})).is_valid());
    assert!(
        validate_record(&s, "Bag", &json!({"id": 1})).is_valid(),
        "no value: not applicable"
    );
    let r = validate_record(&s, "Bag", &json!({"id": 1, "sizes": [1, -2]}));
    assert_eq!(r.errors[0].value.as_deref(), Some("sizes=-2"));
}

#[test]
fn unknown_model() {
    let s = schema(POKEMON);
    let r = validate_record(&s, "Digimon", &json!({}));
    assert_eq!(r.errors[0].kind, ErrorKind::UnknownModel);
    assert!(r.errors[0].message.contains("Pokemon"));
    assert!(BatchValidator::new(&s, "Digimon").is_err());
}

#[test]
fn errors_serialize_with_the_kind_name() {
    let s = schema(POKEMON);
    let r = validate_record(&s, "Pokemon", &json!({"id": "x", "name": "a", "types": []}));
    let v = serde_json::to_value(&r.errors[0]).unwrap();
    assert_eq!(v["kind"], "InvalidType");
    assert_eq!(v["model"], "Pokemon");
    assert_eq!(v["edges"], json!(["id"]));
    assert_eq!(v["rows"], json!([]));
    assert_eq!(v["value"], "x");
    assert!(v["span"]["end"].as_u64().unwrap() > v["span"]["start"].as_u64().unwrap());
}

#[test]
fn long_values_are_cut() {
    let s = schema("T(id) { id: Number }");
    let long = "x".repeat(500);
    let r = validate_record(&s, "T", &json!({ "id": long }));
    let v = r.errors[0].value.as_deref().unwrap();
    assert_eq!(v.chars().count(), MAX_VALUE_CHARS + 1);
    assert!(v.ends_with('…'));
}

/// An assertion over more edges than are usually checked at once still tries every combination
/// (the first failing one is shown).
#[test]
fn an_assertion_over_five_multi_valued_edges_tries_every_combination() {
    let s = schema(
        "R(id) { id: Number, a*: Number, b*: Number, c*: Number, d*: Number, e*: Number,
                 assert a + b + c + d + e != 13 }",
    );
    let ok = json!({"id": 1, "a": [1, 2], "b": 1, "c": [1, 3], "d": 1, "e": [1, 5]});
    assert!(validate_record(&s, "R", &ok).is_valid());
    // 13 three ways; the first in the order tried (`a` changes fastest) is reported.
    let bad = json!({"id": 1, "a": [1, 2], "b": [1, 2], "c": [1, 3], "d": [1, 2], "e": [1, 5]});
    let r = validate_record(&s, "R", &bad);
    assert_eq!(
        kinds(&r.errors),
        [(
            ErrorKind::AssertionFailed,
            vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()]
        )]
    );
    assert_eq!(
        r.errors[0].value.as_deref(),
        Some("a=2, b=2, c=3, d=1, e=5")
    );
}

#[test]
fn batch_assertion_over_a_record_split_across_rows() {
    let s = schema("Range(id) { id: Number, low?: Number, high?: Number, assert low <= high }");
    let mut b = BatchValidator::new(&s, "Range").unwrap();
    b.push_record(&json!({"id": 1, "low": 5}));
    b.push_record(&json!({"id": 2, "low": 1, "high": 2}));
    b.push_record(&json!({"id": 1, "high": 3}));
    let r = b.finish();
    assert_eq!(
        kinds(&r.errors),
        [(
            ErrorKind::AssertionFailed,
            vec!["high".into(), "low".into()]
        )]
    );
    assert_eq!(r.errors[0].rows, [0, 2]);
    assert_eq!(r.records, 2);
}

#[test]
fn batch_text_cells_are_cast_per_type() {
    let s = schema(
        r#"Flag(id) { id: Number, on: Boolean, code?: /[A-Z]{3}/, tier?: "gold" | "silver" }"#,
    );
    let mut b = BatchValidator::new(&s, "Flag").unwrap();
    let cols = b.columns(&["id", "on", "code", "tier"]);
    b.push_text_row(&cols, ["1", "TRUE", "ABC", "gold"]);
    b.push_text_row(&cols, ["2", "0", "", ""]);
    b.push_text_row(&cols, ["3", "yes", "abc", "bronze"]);
    b.push_text_row(&cols, ["4.0", "", "", ""]);
    let r = b.finish();
    let k = kinds(&r.errors);
    assert_eq!(
        k,
        [
            (ErrorKind::InvalidType, vec!["on".into()]),
            (ErrorKind::InvalidType, vec!["code".into()]),
            (ErrorKind::InvalidType, vec!["tier".into()]),
            (ErrorKind::MissingValue, vec!["on".into()]),
        ]
    );
    assert_eq!(r.errors[3].rows, [3]);
    assert_eq!(r.errors[0].rows, [2]);
}

#[test]
fn batch_index_uniqueness_and_conflicts() {
    let s = schema("Emp(id1)(id2)(email) { id1: Number, id2: Number, email: String }");
    let mut b = BatchValidator::new(&s, "Emp").unwrap();
    b.push_record(&json!({"id1": 1, "id2": 100, "email": "a@x"}));
    b.push_record(&json!({"id1": 100, "id2": 101, "email": "b@x"})); // 100 is row 0's id2
    b.push_record(&json!({"id1": 2, "id2": 2, "email": "c@x"})); // same record: fine
    b.push_record(&json!({"id1": 3, "id2": 300, "email": "a@x"})); // a@x is row 0's email
    b.push_record(&json!({"id1": 1, "id2": 100, "email": "a@x"})); // repeat of row 0
    let r = b.finish();
    let nu: Vec<_> = r
        .errors
        .iter()
        .filter(|e| e.kind == ErrorKind::NonUniqueSubIndex)
        .collect();
    assert_eq!(nu.len(), 1, "{:?}", r.errors);
    assert_eq!(nu[0].edges, ["email"]);
    assert_eq!(nu[0].rows, [0, 3, 4]);
    assert_eq!(nu[0].value.as_deref(), Some("email=a@x"));
    // Row 0's record is excluded by the NonUniqueSubIndex (as in the original), so the
    // 100/100 overlap is not reported again as a conflict.
    assert!(
        r.errors.iter().all(|e| e.kind != ErrorKind::IndexConflict),
        "{:?}",
        r.errors
    );

    let mut b = BatchValidator::new(&s, "Emp").unwrap();
    b.push_record(&json!({"id1": 1, "id2": 100, "email": "a@x"}));
    b.push_record(&json!({"id1": 100, "id2": 101, "email": "b@x"}));
    b.push_record(&json!({"id1": "7", "id2": 8, "email": "100"})); // a string never equals 100
    let r = b.finish();
    assert_eq!(
        kinds(&r.errors),
        [(ErrorKind::IndexConflict, vec!["id1".into(), "id2".into()])]
    );
    assert_eq!(r.errors[0].rows, [0, 1]);
}

#[test]
fn batch_rows_merge_into_records_and_report_values() {
    let s = schema("Post(id) { id: Number, title: String, tags*: String }");
    let mut b = BatchValidator::new(&s, "Post").unwrap();
    b.push_record(&json!({"id": 1, "title": "Hello", "tags": "a"}));
    b.push_record(&json!({"id": "1", "title": "Hello", "tags": ["b", "c"]}));
    b.push_record(&json!({"id": 1.0, "title": "Hello again"}));
    b.push_record(&json!({"id": 2}));
    let r = b.finish();
    assert_eq!(r.records, 2);
    assert_eq!(
        kinds(&r.errors),
        [
            (ErrorKind::MultipleValues, vec!["title".into()]),
            (ErrorKind::MissingValue, vec!["title".into()]),
        ]
    );
    assert_eq!(r.errors[0].rows, [0, 1, 2]);
    assert_eq!(r.errors[0].key.as_deref(), Some("id=1"));
    assert_eq!(r.errors[0].value.as_deref(), Some("Hello again"));
    assert_eq!(r.errors[1].rows, [3]);
}

#[test]
fn batch_absent_column_is_a_warning_not_an_error() {
    let s = schema("U(id) { id: Number, name: String }");
    let mut b = BatchValidator::new(&s, "U").unwrap();
    b.push_record(&json!({"id": 1}));
    let r = b.finish();
    assert!(r.valid);
    assert_eq!(r.warnings[0].kind, ErrorKind::MissingColumn);
    assert_eq!(r.warnings[0].edges, ["name"]);
}

#[test]
fn batch_rows_that_are_not_objects_are_errors_of_their_row() {
    let s = schema("U(id) { id: Number }");
    let mut b = BatchValidator::new(&s, "U").unwrap();
    b.push_record(&json!([1, 2]));
    b.push_record(&json!({"id": 1}));
    b.push_unreadable_row("line 3 is not JSON");
    let r = b.finish();
    assert_eq!(
        kinds(&r.errors),
        [
            (ErrorKind::InvalidType, vec![]),
            (ErrorKind::Unreadable, vec![])
        ]
    );
    assert_eq!(r.errors[0].rows, [0]);
    assert_eq!(r.errors[1].rows, [2]);
}

#[test]
fn prepared_rows_give_the_same_report_as_direct_rows() {
    let s = schema(
        "Emp(id)(email) { id: Number, email: String, name: String, low?: Number, high?: Number, \
         assert low <= high }",
    );
    let header = ["id", "email", "name", "low", "high", "extra"];
    let rows: Vec<Vec<&str>> = vec![
        vec!["1", "a@x", "Ann", "1", "2", ""],
        vec!["2", "b@x", "Bob", "5", "", ""],
        vec!["x", "c@x", "Cy", "", "", ""],
        vec!["2", "b@x", "Bobby", "", "3", ""],
        vec!["3", "a@x", "", "", "", ""],
        vec!["", "d@x", "Dee", "", "", ""],
        vec!["4", "e@x", "Eve", "9", "1", "z"],
    ];
    let direct = {
        let mut b = BatchValidator::new(&s, "Emp").unwrap();
        let cols = b.columns(&header);
        for r in &rows {
            b.push_text_row(&cols, r.iter().copied());
        }
        b.push_unreadable_row("bad bytes");
        b.finish()
    };
    let prepared = {
        let mut b = BatchValidator::new(&s, "Emp").unwrap();
        let cols = b.columns(&header);
        let mut p = b.text_preparer(&cols);
        let mut batch = kye_lang::validate::PreparedRows::default();
        for (i, r) in rows.iter().enumerate() {
            p.push(&mut batch, r.iter().copied());
            if i % 3 == 2 {
                b.push_prepared(&mut batch);
            }
        }
        p.push_unreadable(&mut batch, "bad bytes");
        b.push_prepared(&mut batch);
        b.join(p);
        b.finish()
    };
    assert!(!direct.valid);
    let kinds = |r: &kye_lang::validate::BatchReport| {
        let mut k: Vec<_> = r
            .errors
            .iter()
            .map(|e| (e.kind, e.edges.clone(), e.rows.clone()))
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&direct), kinds(&prepared));
    assert!(kinds(&direct).len() >= 6, "{:?}", kinds(&direct));
    assert_eq!(direct.rows, prepared.rows);
    assert_eq!(direct.records, prepared.records);
    assert_eq!(direct.warnings.len(), prepared.warnings.len());
    // Messages quote the values in both paths.
    let mv = |r: &kye_lang::validate::BatchReport| {
        r.errors
            .iter()
            .find(|e| e.kind == ErrorKind::MultipleValues)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(mv(&direct), Some("Bobby".to_string()));
    assert_eq!(mv(&direct), mv(&prepared));
}

/// Fields match edges by title first, then by name (`b` is edge `a`'s title, so edge `b` is
/// only reachable by its title `x`). A field for an edge already given (by title and by name)
/// is ignored with a warning, the first in field order counts; unknown fields are dropped with a
/// warning each; warnings come in field order, at the top level and in nested records.
#[test]
fn fields_match_titles_before_names_and_warn_in_field_order() {
    let s = schema(
        r#"T(id) { id "Key": Number, a "b": String, b "x": String, c?: Number, assert b != "bad" }
           U(id) { id: Number, t*: T }"#,
    );
    let rec = json!({
        "Key": 1, "id": 2, "b": "from b", "a": "from a", "x": "bad", "zz": 0, "c": 3, "A": 9,
        "m": null
    });
    let r = validate_record(&s, "T", &rec);
    assert_eq!(r.value, json!({"id": 1, "a": "from a", "b": "bad", "c": 3}));
    assert!(r.warnings.iter().all(|w| w.kind == ErrorKind::UnknownEdge));
    let messages: Vec<&str> = r.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "A: 'A' is not an edge of T; dropped",
            "record: field 'b' repeats edge T.a (given by title and by name); the second is ignored",
            "record: field 'id' repeats edge T.id (given by title and by name); the second is ignored",
            "m: 'm' is not an edge of T; dropped",
            "zz: 'zz' is not an edge of T; dropped",
        ]
    );
    let paths: Vec<Option<&str>> = r.warnings.iter().map(|w| w.path.as_deref()).collect();
    assert_eq!(
        paths,
        [Some("A"), Some("b"), Some("id"), Some("m"), Some("zz")]
    );
    let values: Vec<Option<&str>> = r.warnings.iter().map(|w| w.value.as_deref()).collect();
    assert_eq!(
        values,
        [
            Some("9"),
            Some("from b"),
            Some("2"),
            Some("null"),
            Some("0")
        ]
    );
    let edges: Vec<&[String]> = r.warnings.iter().map(|w| w.edges.as_slice()).collect();
    assert_eq!(
        edges,
        [
            &["A".to_string()][..],
            &[],
            &[],
            &["m".into()],
            &["zz".into()]
        ]
    );
    // The assertion reads edge `b` (given as `x`), not the field `b`.
    assert_eq!(
        kinds(&r.errors),
        [(ErrorKind::AssertionFailed, vec!["b".into()])]
    );
    assert_eq!(r.errors[0].value.as_deref(), Some("b=bad"));

    let nested = validate_record(&s, "U", &json!({"id": 1, "t": [{"id": 5}, rec]}));
    // The nested record fails its assertion, so only the reference `{"id": 5}` is kept.
    assert_eq!(nested.value["t"], json!([{"id": 5}]));
    let messages: Vec<&str> = nested.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "t[1].A: 'A' is not an edge of T; dropped",
            "t[1]: field 'b' repeats edge T.a (given by title and by name); the second is ignored",
            "t[1]: field 'id' repeats edge T.id (given by title and by name); the second is ignored",
            "t[1].m: 'm' is not an edge of T; dropped",
            "t[1].zz: 'zz' is not an edge of T; dropped",
        ]
    );
    let paths: Vec<Option<&str>> = nested.warnings.iter().map(|w| w.path.as_deref()).collect();
    assert_eq!(
        paths,
        [
            Some("t[1].A"),
            Some("t[1].b"),
            Some("t[1].id"),
            Some("t[1].m"),
            Some("t[1].zz")
        ]
    );
}
