//! Diagnostics: exact rendered text for the common mistakes, error codes for the rest, and
//! recovery (every error of a file in one run, without follow-up noise).

use kye_lang::{compile, compile_str, CompileError, SourceMap};

fn err(text: &str) -> CompileError {
    match compile_str("models.kye", text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

fn codes(text: &str) -> Vec<&'static str> {
    err(text).diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn unknown_type_with_did_you_mean() {
    let e = err("User(id) {\n  id: Number\n  name: String\n  age: Numbr\n}\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::unknown-type]: unknown type `Numbr`
 --> models.kye:4:8
  |
4 |   age: Numbr
  |        ^^^^^ not a model, alias or built-in type
  |
  = help: did you mean `Number`?
"
    );
}

#[test]
fn duplicate_edge_points_at_both_definitions() {
    let e = err("User(id) {\n  id: Number\n  name: String\n  name: Number\n}\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::duplicate-edge]: edge `name` is declared twice in model `User`
 --> models.kye:4:3
  |
3 |   name: String
  |   ---- first declared here
4 |   name: Number
  |   ^^^^ declared again here
"
    );
}

#[test]
fn duplicate_model_across_files() {
    let mut sources = SourceMap::new();
    sources.add("a.kye", "User(id) { id: Number }\n");
    sources.add("b.kye", "\n\nUser(id) { id: String }\n");
    let e = compile(sources).unwrap_err();
    assert_eq!(
        e.to_string(),
        "\
error[kye::duplicate-definition]: `User` is defined more than once
 --> b.kye:3:1
  |
3 | User(id) { id: String }
  | ^^^^ model `User` redefined here
 ::: a.kye:1:1
  |
1 | User(id) { id: Number }
  | ---- first defined here as a model
  |
  = help: model and alias names share one namespace across all files
"
    );
}

#[test]
fn alias_cycle_names_the_whole_cycle() {
    let e = err("A: B\nB: C\nC: A\nM(id) { id: Number, x: A }\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::alias-cycle]: type alias `A` refers to itself
 --> models.kye:1:1
  |
1 | A: B
  | ^ cycle: A -> B -> C -> A
...
3 | C: A
  |    - `A` is used here
  |
  = help: an alias must end in a built-in type, a model, a literal or a regex
"
    );
}

#[test]
fn index_naming_an_undefined_edge() {
    let e = err("User(id)(usrname) {\n  id: Number\n  username: String\n}\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::unknown-index-edge]: index of `User` names `usrname`, which is not an edge of the model
 --> models.kye:1:10
  |
1 | User(id)(usrname) {
  |          ^^^^^^^ no such edge
  |
  = help: did you mean `username`?
"
    );
}

#[test]
fn model_typed_edge_in_an_index() {
    let e = err("Customer(id) { id: Number }\nOrder(customer) {\n  customer: Customer\n}\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::model-in-index]: index edge `customer` has model type `Customer`
 --> models.kye:2:7
  |
2 | Order(customer) {
  |       ^^^^^^^^ used in an index
3 |   customer: Customer
  |   ------------------ declared with a model type here
  |
  = help: index edges must be String, Number or Boolean values; index on the referenced model's key instead (e.g. `customer_id: Number`)
"
    );
}

#[test]
fn incomplete_assertion_does_not_swallow_the_next_edge() {
    let e = err("Order(id) {\n  id: Number\n  assert id >\n  qty: Number\n  assert qty > 0\n}\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::syntax]: incomplete expression
 --> models.kye:3:13
  |
3 |   assert id >
  |             ^ expected an expression after this
4 |   qty: Number
  |   --- the next edge declaration starts here
"
    );
}

#[test]
fn missing_type_does_not_swallow_the_next_edge() {
    let e = err("User(id) {\n  id: Number\n  name:\n  age: Number\n}\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::syntax]: missing type
 --> models.kye:3:7
  |
3 |   name:
  |       ^ expected a type after this
4 |   age: Number
  |   --- the next edge declaration starts here
"
    );
}

#[test]
fn a_missing_colon_suggests_the_type_that_was_written() {
    let e = err("Cat(id) {\n  id: Number\n  weight_kg Number\n  name: Strin\n}\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::syntax]: expected `:` between `weight_kg` and its type, found type name `Number`
 --> models.kye:3:13
  |
3 |   weight_kg Number
  |             ^^^^^^ expected `:` before the type
  |
  = help: add the missing `:`: `weight_kg: Number`

error[kye::unknown-type]: unknown type `Strin`
 --> models.kye:4:9
  |
4 |   name: Strin
  |         ^^^^^ not a model, alias or built-in type
  |
  = help: did you mean `String`?
"
    );
}

#[test]
fn unclosed_body_at_end_of_file() {
    let e = err("User(id) {\n  id: Number\n");
    assert_eq!(
        e.to_string(),
        "\
error[kye::unclosed-block]: model `User` is missing its closing `}`
 --> models.kye:2:13
  |
1 | User(id) {
  |          - the body opens here
2 |   id: Number
  |             ^ expected `}`
"
    );
}

#[test]
fn crlf_line_endings_and_a_byte_order_mark_render_like_plain_text() {
    let lf = err("User(id) {\n  id: Numbr\n}\n").to_string();
    let crlf = err("\u{feff}User(id) {\r\n  id: Numbr\r\n}\r\n").to_string();
    assert_eq!(crlf, lf);
    assert!(compile_str("bom.kye", "\u{feff}User(id) { id: Number }").is_ok());
}

#[test]
fn tabs_keep_the_caret_aligned() {
    let e = err("M(id) {\n\tid: Number\n\tx: Strin\n}\n");
    assert!(
        e.to_string()
            .contains("3 |     x: Strin\n  |        ^^^^^ "),
        "{e}"
    );
}

#[test]
fn colour_rendering_uses_ansi_escapes_and_plain_does_not() {
    let e = err("User(id) { id: Numbr }");
    let plain = e.render(false);
    assert_eq!(plain, e.to_string());
    assert!(!plain.contains('\x1b'));
    let colored = e.render(true);
    assert!(
        colored.starts_with("\x1b[1;31merror[kye::unknown-type]\x1b[0m"),
        "{colored:?}"
    );
    assert!(colored.contains("\x1b[1;36m= help:\x1b[0m did you mean `Number`?"));
    // Stripping the escapes gives the plain text back.
    let mut stripped = String::new();
    let mut chars = colored.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            stripped.push(c);
        }
    }
    assert_eq!(stripped, plain);
}

#[test]
fn every_error_of_a_file_is_reported_once() {
    let text = "\
User(id) {
  id: Number
  Name: String
  tags: string*
}
Item(id, id) { id: Number, n: Number assert n = 1 }
Person(id) { id: Number, age: Number
  assert age + \"1\" > 0
  assert age
  assert Age > 0
}
";
    assert_eq!(
        codes(text),
        vec![
            "kye::edge-name-case",
            "kye::expected-type",
            "kye::duplicate-index-edge",
            "kye::syntax",
            "kye::type-mismatch",
            "kye::assertion-not-boolean",
            "kye::type-in-assertion",
        ]
    );
}

#[test]
fn syntax_errors_and_check_errors_come_together() {
    // A broken statement in one model does not hide a type error in another.
    let c = codes("A(id) { id: Number, x: : String }\nB(id) { id: Nmber }\n");
    assert_eq!(c, vec!["kye::syntax", "kye::unknown-type"]);
    // The original's `Number<,>` format is one error, not one per leftover token.
    let e = err("M(id) {\n  id: Number\n  thousands?: Number<,>\n  max?: Number<3>\n}\n");
    assert_eq!(e.diagnostics.len(), 2, "{e}");
    assert!(e.diagnostics[0]
        .hint
        .as_deref()
        .unwrap_or("")
        .contains("type formats"));
    // A model header without a body does not steal the next model's body.
    let e = err("User(id)\nOther(id) { id: Number, x: Nope }\n");
    let got: Vec<(&str, String)> = e
        .diagnostics
        .iter()
        .map(|d| (d.code, e.sources.location(d.primary.span)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("kye::syntax", "models.kye:2:1".to_string()),
            ("kye::unknown-type", "models.kye:2:28".to_string())
        ]
    );
    // A broken edge is not reported again as missing when an index names it.
    let c = codes("A(id)(x) { id: Number, x = String }\n");
    assert_eq!(c, vec!["kye::syntax"]);
}

#[test]
fn error_codes_for_each_rule() {
    let cases: &[(&str, &str)] = &[
        ("User { id: Number }", "kye::missing-index"),
        ("User() { id: Number }", "kye::empty-index"),
        (
            "User(id) { id: Number }\nUser(id) { id: Number }",
            "kye::duplicate-definition",
        ),
        ("String: Number", "kye::reserved-name"),
        ("User(id) { id: Number, x: Foo }", "kye::unknown-type"),
        ("A: A\nM(id) { id: A }", "kye::alias-cycle"),
        ("M(id) { id: Number, x: \"a\" | 1 }", "kye::mixed-types"),
        ("M(id) { id: Number, x: !String }", "kye::empty-type"),
        (
            "N(id) { id: Number }\nM(id) { id: Number, x: N | \"a\" }",
            "kye::model-in-expression",
        ),
        ("M(id) { id: Number, x: /[a-/ }", "kye::invalid-regex"),
        ("M(id) { id: Number, x: /a/i }", "kye::regex-flags"),
        (
            "M(id) { id: Number, x*: String+ }",
            "kye::conflicting-cardinality",
        ),
        ("M(x) { x*: String }", "kye::index-cardinality"),
        ("M(id) { id: Number, assert nope > 1 }", "kye::unknown-edge"),
        (
            "M(id) { id: Number, assert id < 1 < 2 }",
            "kye::chained-comparison",
        ),
        (
            "M(id) { id: Number, assert id == \"a\" }",
            "kye::type-mismatch",
        ),
        (
            "M(id) { id: Number, assert id }",
            "kye::assertion-not-boolean",
        ),
        ("M(id) { id: Number, assert /a/ }", "kye::regex-position"),
        ("M(id) { id: Number, x: \"abc }", "kye::unterminated-string"),
        (
            "M(id) { id: Number, x: 'abc' }",
            "kye::single-quoted-string",
        ),
        ("M(id) { id: Number, x: \"\\q\" }", "kye::invalid-escape"),
        (
            "M(id) { id: Number, café: String }",
            "kye::non-ascii-identifier",
        ),
        ("M(id) { id: Number, x: 12ab }", "kye::invalid-number"),
        ("M(id) { id: Number, x: 1e999 }", "kye::invalid-number"),
        (
            "M(id) { id: Number, x: String @ }",
            "kye::unexpected-character",
        ),
        ("M(id) { id: Number, x \"\": String }", "kye::empty-title"),
        (
            "M(id) { id: Number, a \"c\": String, b \"c\": String }",
            "kye::duplicate-column",
        ),
        ("M(id) { id: Number, x(y): String }", "kye::unsupported"),
        ("M(id) { id: Number, assert id.x > 1 }", "kye::unsupported"),
        (
            "M(id) { id: Number\nN(id) { id: Number }",
            "kye::unclosed-block",
        ),
        ("A: String+\nM(id) { id: A }", "kye::alias-cardinality"),
        ("M(id) { id: Number, Foo: String }", "kye::edge-name-case"),
        ("M(id) { id: number }", "kye::expected-type"),
        ("M(id) { id: Number, x: Number + 1 }", "kye::syntax"),
        ("id: Number", "kye::syntax"),
        ("M(id) { id: Number, x: Number<3> }", "kye::syntax"),
        (
            "M(id) { id: Number, userId: String, userid: String }",
            "kye::case-collision",
        ),
        (
            "User(id) { id: Number }\nUSER(id) { id: Number }",
            "kye::case-collision",
        ),
        ("M(id) { id: Number, self: String }", "kye::reserved-name"),
        ("Self(id) { id: Number }", "kye::reserved-name"),
        ("M(id) { id: Number, _: String }", "kye::reserved-name"),
        ("}", "kye::syntax"),
    ];
    for (text, code) in cases {
        let c = codes(text);
        assert!(c.contains(code), "{text:?}: expected {code}, got {c:?}");
    }
}

#[test]
fn warnings_do_not_fail_the_compile() {
    let s = compile_str("w.kye", "M(id)(id) { id: Number, tags*: String* }").unwrap();
    let w: Vec<&str> = s.warnings().iter().map(|d| d.code).collect();
    assert_eq!(
        w,
        vec!["kye::duplicate-index", "kye::redundant-cardinality"]
    );
    let text = s.warnings()[0].render(&s.sources, false);
    assert!(
        text.starts_with(
            "warning[kye::duplicate-index]: index (id) of `M` repeats an earlier index\n"
        ),
        "{text}"
    );
}

#[test]
fn errors_sort_before_warnings_and_by_position() {
    let e = err("M(id)(id) { id: Number, x: Foo, y: Bar }");
    let got: Vec<&str> = e.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        got,
        vec![
            "kye::unknown-type",
            "kye::unknown-type",
            "kye::duplicate-index"
        ]
    );
    assert_eq!(e.errors().count(), 2);
}

/// docs/language.md shows kye snippets and the exact output they produce: a `kye` block followed
/// by a `text` block starting with `error[`/`warning[` must render exactly that when compiled as
/// `models.kye`; any other `kye` block must compile without errors or warnings.
#[test]
fn docs_examples_are_accurate() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/language.md");
    let doc = std::fs::read_to_string(&path).expect("docs/language.md");
    let mut blocks: Vec<(String, String, usize)> = Vec::new();
    let mut current: Option<(String, String, usize)> = None;
    for (i, line) in doc.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => current = Some((rest.trim().to_string(), String::new(), i + 1)),
            }
        } else if let Some((_, body, _)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let mut checked = (0, 0);
    for (i, (lang, body, line)) in blocks.iter().enumerate() {
        if lang != "kye" {
            continue;
        }
        let expected = blocks.get(i + 1).filter(|(l, b, _)| {
            l == "text" && (b.starts_with("error[") || b.starts_with("warning["))
        });
        match (compile_str("models.kye", body), expected) {
            (Ok(s), None) => {
                assert!(
                    s.warnings().is_empty(),
                    "docs line {line}: unexpected warnings for\n{body}"
                );
                checked.0 += 1;
            }
            (Ok(s), Some((_, want, _))) => {
                let got: String = s
                    .warnings()
                    .iter()
                    .map(|w| w.render(&s.sources, false))
                    .collect::<Vec<_>>()
                    .join("\n");
                assert_eq!(&got, want, "docs line {line}");
                checked.1 += 1;
            }
            (Err(e), Some((_, want, _))) => {
                assert_eq!(&e.to_string(), want, "docs line {line}");
                checked.1 += 1;
            }
            (Err(e), None) => panic!("docs line {line}: example does not compile:\n{e}"),
        }
    }
    assert!(checked.0 >= 8 && checked.1 >= 20, "checked {checked:?}");
}

/// Issue 11, item 13: the help of `kye::missing-index` proposed the first edge
/// (`Vitals(heart_rate_bpm)`), which made 387 cats share 60 `Vitals` records. It now proposes
/// only an edge whose name says it identifies, and a nested model needs no index at all.
#[test]
fn missing_index_help_never_proposes_an_edge_not_known_to_identify() {
    let e = err("Vitals {\n  heart_rate_bpm: Number\n  temperature_c: Number\n}\n");
    let d = &e.diagnostics[0];
    assert_eq!(d.code, "kye::missing-index");
    let hint = d.hint.as_deref().unwrap_or_default();
    assert!(!hint.contains("heart_rate_bpm"), "{hint}");
    assert!(!hint.contains("temperature_c"), "{hint}");
    assert!(hint.contains("`vitals: Vitals`"), "{hint}");
    assert!(hint.contains("value object"), "{hint}");

    // An edge named like an identifier is proposed.
    let e = err("Event {\n  at: String\n  event_id: Number\n}\n");
    let hint = e.diagnostics[0].hint.as_deref().unwrap_or_default();
    assert!(hint.contains("`Event(event_id) { ... }`"), "{hint}");
}

#[test]
fn a_nested_model_without_an_index_is_a_value_object() {
    let schema = compile_str(
        "cats.kye",
        "Cat(id: Number) {\n  vitals: Vitals\n  history: Vitals*\n}\nVitals {\n  heart_rate_bpm: Number\n  temperature_c: Number?\n}\n",
    )
    .expect("a nested model without an index compiles");
    let vitals = schema.model("Vitals").expect("Vitals is a model");
    assert!(vitals.is_value_object());
    assert_eq!(vitals.primary_index(), None);
    let cat = schema.model("Cat").expect("Cat");
    assert!(!cat.is_value_object());
    // Used nowhere: still an error.
    assert_eq!(
        codes("Cat(id: Number) { name: String }\nVitals { heart_rate_bpm: Number }\n"),
        ["kye::missing-index"]
    );
}
