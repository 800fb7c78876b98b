//! Robustness: nothing a user types may make the compiler panic or hang, and every diagnostic
//! must point inside the text it is about.
//!
//! Three generators feed `compile_str`: random bytes, random soups of kye tokens, and random
//! mutations of valid schemas. Plus fixed adversarial inputs (deep nesting, long chains,
//! exponential alias expansion) that must produce an error, not a stack overflow.

use proptest::prelude::*;
use proptest::test_runner::Config;

use kye_lang::{compile_str, Schema, Type};

/// Checks the invariants of one compile and returns whether it succeeded.
fn check_invariants(text: &str) -> bool {
    match compile_str("fuzz.kye", text) {
        Ok(schema) => {
            schema_is_closed(&schema);
            for w in schema.warnings() {
                span_ok(text, w.primary.span);
                let _ = w.render(&schema.sources, true);
            }
            true
        }
        Err(err) => {
            assert!(
                err.diagnostics.iter().any(|d| d.is_error()),
                "an Err without errors"
            );
            for d in &err.diagnostics {
                span_ok(text, d.primary.span);
                for l in &d.secondary {
                    span_ok(text, l.span);
                }
                assert!(d.code.starts_with("kye::"), "code {}", d.code);
            }
            let rendered = err.render(false);
            assert!(rendered.contains("error["));
            let _ = err.render(true);
            false
        }
    }
}

fn span_ok(text: &str, span: kye_lang::Span) {
    let (s, e) = (span.start as usize, span.end as usize);
    assert!(
        s <= e && e <= text.len(),
        "span {s}..{e} outside text of {} bytes",
        text.len()
    );
    assert!(
        text.is_char_boundary(s) && text.is_char_boundary(e),
        "span {s}..{e} splits a character"
    );
}

/// A successful schema has no dangling names.
fn schema_is_closed(schema: &Schema) {
    for m in schema.models() {
        // A model without an index is a value object: some edge must nest it.
        let nested = schema.models().iter().flat_map(|o| o.edges.iter());
        let nested = nested
            .filter(|e| e.ty == Type::Model(m.name.clone()))
            .count();
        assert!(
            !m.indexes.is_empty() || nested > 0,
            "model {} without index that no edge nests",
            m.name
        );
        for ix in &m.indexes {
            for e in &ix.edges {
                let edge = m
                    .edge(e)
                    .unwrap_or_else(|| panic!("index edge {e} missing"));
                assert!(!matches!(edge.ty, Type::Model(_)));
            }
        }
        for edge in &m.edges {
            if let Type::Model(target) = &edge.ty {
                assert!(schema.model(target).is_some(), "dangling model {target}");
            }
        }
        for a in &m.assertions {
            for e in &a.edges {
                assert!(m.edge(e).is_some(), "assertion edge {e} missing");
            }
        }
    }
}

const VALID: &[&str] = &[
    r#"Pokemon(id: Number)(name) {
  name: String
  weight: Number
  types: PokemonType+
  abilities: PokemonAbility+
}
PokemonType(name) { name: String  generation?: String  double_damage_to*: String }
PokemonAbility(name) { name: String  is_main_series?: Boolean  effect?: String }
"#,
    r#"# Orders of the shop.
Alias1: "ALIAS_CONST"
Alias2: Alias1
Status: ("NEW" | "PAID") & !"VOID"
Order(id)(year, month, day) {
  id "Order Id": Number
  year: Number, month: Number, day: Number
  status?: Status
  code: /[A-Z]{3}-\d+/
  qty: Number
  price: Number
  assert qty * price + 1 >= 0 & status != "X"
  assert !(qty == 0) | price > 0
}
"#,
    "User(id)(username) { id: Number, username: String, admin: Boolean, assert admin | !admin }",
];

const TOKENS: &[&str] = &[
    "User",
    "Model",
    "String",
    "Number",
    "Boolean",
    "Status",
    "id",
    "name",
    "tags",
    "_x",
    "assert",
    "TRUE",
    "false",
    "\"A\"",
    "\"B C\"",
    "42",
    "-1.5e3",
    "/a+/",
    "/",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    ".",
    "?",
    "!",
    "+",
    "*",
    "-",
    "%",
    "|",
    "&",
    "^",
    "~",
    "==",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "\n",
    "# comment\n",
    "\"",
    "'x'",
    "é",
    "\t",
    "0x",
    "9abc",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (0..TOKENS.len(), prop::bool::ANY).prop_map(|(i, space)| {
            let mut s = TOKENS[i].to_string();
            if space {
                s.push(' ');
            }
            s
        }),
        0..80,
    )
    .prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize),
    Replace(usize, u8),
}

fn mutated() -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        (any::<usize>(), 0usize..12).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, t)| Edit::Insert(a, t)),
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Replace(a, b)),
    ];
    (0..VALID.len(), prop::collection::vec(edit, 1..6)).prop_map(|(i, edits)| {
        let mut bytes = VALID[i].as_bytes().to_vec();
        for e in edits {
            let len = bytes.len().max(1);
            match e {
                Edit::Delete(a, n) => {
                    let a = a % len;
                    let b = (a + n).min(bytes.len());
                    if a < b {
                        bytes.drain(a..b);
                    }
                }
                Edit::Insert(a, t) => {
                    let a = (a % len).min(bytes.len());
                    let tok = TOKENS[t].as_bytes();
                    bytes.splice(a..a, tok.iter().copied());
                }
                Edit::Duplicate(a, n) => {
                    let a = (a % len).min(bytes.len());
                    let b = (a + n).min(bytes.len());
                    let chunk = bytes[a..b].to_vec();
                    bytes.splice(b..b, chunk);
                }
                Edit::Replace(a, byte) => {
                    if !bytes.is_empty() {
                        let a = a % bytes.len();
                        bytes[a] = byte;
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

proptest! {
    #![proptest_config(Config { cases: 300, failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_invariants(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soups_never_panic(text in token_soup()) {
        check_invariants(&text);
    }

    #[test]
    fn mutated_schemas_never_panic(text in mutated()) {
        check_invariants(&text);
    }
}

#[test]
fn the_seed_schemas_are_valid() {
    for text in VALID {
        assert!(check_invariants(text), "seed does not compile:\n{text}");
    }
}

/// Fixed adversarial inputs: each must finish quickly with an error, not overflow the stack.
/// They run on a thread with a 1 MiB stack (half of a test thread's) to show headroom.
#[test]
fn deep_and_long_inputs_are_errors_not_crashes() {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(deep_and_long_inputs)
        .unwrap()
        .join()
        .unwrap();
}

fn deep_and_long_inputs() {
    let n = 100_000;
    let cases = [
        format!(
            "M(id) {{ id: Number assert {}id{} }}",
            "(".repeat(n),
            ")".repeat(n)
        ),
        format!("M(id) {{ id: Boolean assert {}id }}", "!".repeat(n)),
        format!("M(id) {{ id: {}String{} }}", "(".repeat(n), ")".repeat(n)),
        format!("M(id) {{ id: {}\"a\" }}", "!".repeat(n)),
        format!(
            "M(id) {{ id: Number assert {} > 0 }}",
            vec!["id"; n].join(" + ")
        ),
        "{".repeat(n),
        "}".repeat(n),
        "M(id) { ".to_string() + &"{".repeat(n),
        format!("M{}", "(id)".repeat(n)),
        // An alias chain longer than the limit.
        (0..n / 10)
            .map(|i| format!("A{i}: A{}\n", i + 1))
            .collect::<String>()
            + &format!("A{}: String\nM(id) {{ id: A0 }}", n / 10),
        // 64 aliases, each 64 `!` deep over the next: deep recursion across aliases.
        (0..64)
            .map(|i| format!("N{i}: {}N{}\n", "!".repeat(63), i + 1))
            .collect::<String>()
            + "N64: \"x\"\nM(id) { id: Number, n: N0 }",
        // Each alias doubles the one before: 2^60 nodes if expanded naively.
        (1..60)
            .map(|i| format!("B{i}: B{} | B{}\n", i - 1, i - 1))
            .collect::<String>()
            + "B0: \"x\"\nM(id) { id: Number, b: B59 }",
    ];
    for (i, text) in cases.iter().enumerate() {
        let start = std::time::Instant::now();
        let ok = check_invariants(text);
        assert!(!ok, "case {i} compiled");
        // Generous bound: these take milliseconds; a hang or exponential blowup takes forever.
        assert!(
            start.elapsed().as_secs() < 20,
            "case {i} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn the_deepest_accepted_expressions_compile_on_a_small_stack() {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            // A 199-term sum: the highest tree the parser accepts (height 200).
            let sum = format!(
                "M(id) {{ id: Number\n assert {} > 0 }}",
                vec!["id"; 199].join(" + ")
            );
            assert!(check_invariants(&sum));
            // 63 nested parentheses and `!`s, just under the nesting limit.
            let not = format!(
                "M(id) {{ id: Boolean\n assert {}{}id{} }}",
                "!".repeat(31),
                "(".repeat(31),
                ")".repeat(31)
            );
            assert!(check_invariants(&not));
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn wide_enums_and_many_models_compile() {
    let alts: Vec<String> = (0..5000).map(|i| format!("\"v{i}\"")).collect();
    let text = format!("E: {}\nM(id) {{ id: Number, e: E }}", alts.join(" | "));
    assert!(check_invariants(&text));
    let models: String = (0..2000)
        .map(|i| format!("M{i}(id) {{ id: Number, next?: M{} }}\n", (i + 1) % 2000))
        .collect();
    assert!(check_invariants(&models));
}

/// The committed cargo-fuzz corpus, replayed as a normal test (libFuzzer needs a nightly
/// toolchain to build, so this is what runs everywhere). The seeds that are meant to be valid
/// must compile; all must keep the invariants.
#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/compile");
    let mut n = 0;
    let mut valid = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if check_invariants(&String::from_utf8_lossy(&bytes)) {
            valid.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        n += 1;
    }
    valid.sort();
    assert!(n >= 12, "only {n} corpus files");
    assert_eq!(
        valid,
        [
            "aliases.kye",
            "composite.kye",
            "literals.kye",
            "nesting.kye",
            "orders.kye",
            "pokemon.kye",
            "references.kye",
            "users.kye"
        ]
    );
}

/// One generated edge: (cardinality marker, marker on the type side?, type text).
type GenEdge = (usize, bool, usize);

/// Valid schemas generated from the grammar, with random layout (newlines, commas, comments)
/// and cardinality written on either side: they must compile, and to what was written.
fn generated_schema() -> impl Strategy<Value = (String, Vec<Vec<(String, &'static str)>>)> {
    let edge = (0usize..4, any::<bool>(), 0usize..7);
    let model = prop::collection::vec(edge, 0..6);
    (
        prop::collection::vec(model, 1..5),
        prop::collection::vec(0usize..4, 64),
    )
        .prop_map(|(models, seps): (Vec<Vec<GenEdge>>, Vec<usize>)| {
            let n = models.len();
            let mut text = String::new();
            let mut expect = Vec::new();
            let mut k = 0;
            let mut sep = |text: &mut String| {
                k += 1;
                text.push_str(match seps[k % seps.len()] {
                    0 => " ",
                    1 => "\n  ",
                    2 => ", ",
                    _ => " # note\n  ",
                });
            };
            for (mi, edges) in models.iter().enumerate() {
                text.push_str(&format!("# Model {mi}.\nM{mi}(id) {{"));
                sep(&mut text);
                text.push_str("id: Number");
                let mut exp = vec![("id".to_string(), "")];
                for (ei, &(card, on_type, ty)) in edges.iter().enumerate() {
                    sep(&mut text);
                    let marker = ["", "?", "*", "+"][card];
                    let ty = match ty {
                        0 => "String".to_string(),
                        1 => "Number".to_string(),
                        2 => "Boolean".to_string(),
                        3 => format!("M{}", (mi + 1) % n),
                        4 => "\"A\" | \"B\"".to_string(),
                        5 => "/[a-z]+/".to_string(),
                        _ => "(1 | 2) & !3".to_string(),
                    };
                    let name = format!("e{ei}");
                    if on_type && !ty.contains(' ') {
                        text.push_str(&format!("{name}: {ty}{marker}"));
                    } else {
                        text.push_str(&format!("{name}{marker}: {ty}"));
                    }
                    exp.push((name, marker));
                }
                sep(&mut text);
                text.push_str("assert id >= 0 & id * 2 + 1 > id - 1");
                text.push_str("\n}\n");
                expect.push(exp);
            }
            (text, expect)
        })
}

proptest! {
    #![proptest_config(Config { cases: 200, failure_persistence: None, ..Config::default() })]

    #[test]
    fn generated_valid_schemas_compile_to_what_was_written((text, expect) in generated_schema()) {
        let schema = match compile_str("gen.kye", &text) {
            Ok(s) => s,
            Err(e) => panic!("generated schema failed:\n{text}\n{e}"),
        };
        schema_is_closed(&schema);
        prop_assert_eq!(schema.models().len(), expect.len());
        for (mi, edges) in expect.iter().enumerate() {
            let m = schema.model(&format!("M{mi}")).unwrap();
            let doc = format!("Model {mi}.");
            prop_assert_eq!(m.doc.as_deref(), Some(doc.as_str()));
            prop_assert_eq!(m.edges.len(), edges.len());
            for (e, (name, marker)) in m.edges.iter().zip(edges) {
                prop_assert_eq!(&e.name, name);
                prop_assert_eq!(e.cardinality.marker(), *marker);
            }
            prop_assert_eq!(&m.assertions[0].edges, &vec!["id".to_string()]);
        }
    }
}
