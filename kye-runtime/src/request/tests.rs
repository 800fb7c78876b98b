//! Tests of the request steps, parsing and resolution, against a small registry.

use super::*;
use crate::context::Context;
use crate::model::{FetchFuture, KeyError, KeyValue, OutputKind};
use crate::registry::{FetcherRegistration, RegisteredModel, Registry};

const SCHEMA: &str = "
Pokemon(id)(name) {
  id: Number
  name: String
  weight: Number
}
Date(year, month, day) {
  year: Number
  month: Number
  day: Number
}
Flag(enabled) {
  enabled: Boolean
}
Orphan(code) {
  code: String
}
";

fn call(_: &Key, _: Context) -> FetchFuture {
    Box::pin(std::future::ready(Ok(None)))
}

fn any_key(_: &Key) -> Result<(), KeyError> {
    Ok(())
}

/// Like a `u8` parameter: values above 255 do not fit.
fn small_key(key: &Key) -> Result<(), KeyError> {
    match key.values() {
        [KeyValue::Int(i)] if u8::try_from(*i).is_err() => Err(KeyError::new(format!(
            "key {i} does not fit the fetcher's parameter type `u8`"
        ))),
        _ => Ok(()),
    }
}

const fn fetcher(
    model: &'static str,
    identifier: &'static [&'static str],
    function: &'static str,
    line: u32,
    check: fn(&Key) -> Result<(), KeyError>,
) -> FetcherRegistration {
    FetcherRegistration {
        model,
        identifier,
        function,
        module_path: "sources::pokeapi",
        file: "src/pokeapi.rs",
        line,
        is_async: true,
        doc: "",
        output: OutputKind::Record,
        call,
        check,
        batch: None,
    }
}

static BY_ID: FetcherRegistration = fetcher("Pokemon", &["id"], "get_pokemon", 10, small_key);
static DATE: FetcherRegistration =
    fetcher("Date", &["year", "month", "day"], "get_date", 20, any_key);
static FLAG: FetcherRegistration = fetcher("Flag", &["enabled"], "get_flag", 30, any_key);

fn schema() -> &'static kye_lang::Schema {
    static S: std::sync::OnceLock<kye_lang::Schema> = std::sync::OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("test.kye", SCHEMA).expect("test schema compiles"))
}

fn registry() -> Registry {
    let s = schema();
    let models = ["Pokemon", "Date", "Flag", "Orphan"]
        .into_iter()
        .map(|n| RegisteredModel::new(s, n).unwrap());
    Registry::from_parts(models, [&BY_ID, &DATE, &FLAG]).unwrap()
}

fn err(text: &str) -> String {
    match registry().resolve_str(text) {
        Ok(r) => panic!("{text:?} resolved to {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn keys(text: &str) -> Vec<String> {
    let r = registry().resolve_str(text).unwrap();
    r.keys().iter().map(|k| k.to_string()).collect()
}

#[test]
fn parses_every_form_and_prints_it_back() {
    for text in [
        "Pokemon.id = 25",
        "Pokemon.name = \"pikachu\"",
        "Pokemon.id in [1, 4, 7]",
        "Pokemon.id in 1..=151",
        "Pokemon.id in 1..151",
        "Date = (2024, 1, 31)",
        "Date(year, month, day) in [(2024, 1, 30), (2024, 1, 31)]",
        "Flag.enabled = true",
        "Pokemon.id = -3",
    ] {
        let r = Request::parse(text).unwrap();
        assert_eq!(r.to_string(), text);
        assert_eq!(Request::parse(&r.to_string()).unwrap(), r);
    }
    let r = Request::parse("  Pokemon . id==25 ").unwrap();
    assert_eq!(r.to_string(), "Pokemon.id = 25");
    let r = Request::parse("Pokemon.name = 'mr. mime'").unwrap();
    assert_eq!(r.keys(), &KeySpec::One(Key::single("mr. mime")));
}

#[test]
fn syntax_errors_point_at_the_column() {
    let e = Request::parse("Pokemon.id 25").unwrap_err();
    assert_eq!(e.kind(), RequestErrorKind::Syntax);
    assert_eq!(e.column(), Some(12));
    assert_eq!(
        e.to_string(),
        "expected `=` or `in` after `Pokemon.id`, found `25`\n  Pokemon.id 25\n             ^^"
    );
    assert_eq!(
        Request::parse("Pokemon.id = pikachu").unwrap_err().to_string(),
        "expected a value, found `pikachu`; quote strings: \"pikachu\"\n  Pokemon.id = pikachu\n               ^^^^^^^"
    );
    assert_eq!(
        Request::parse("Pokemon.name = \"pika")
            .unwrap_err()
            .to_string(),
        "unterminated string\n  Pokemon.name = \"pika\n                 ^^^^^"
    );
    assert_eq!(
        Request::parse("Pokemon.id in [1, 2").unwrap_err().to_string(),
        "expected `,` or `]`, found the end of the request\n  Pokemon.id in [1, 2\n                     ^"
    );
    assert_eq!(
        Request::parse("").unwrap_err().message(),
        "empty request; write e.g. `Pokemon.id = 25` or `Pokemon.id in 1..=151`"
    );
    assert_eq!(
        Request::parse("Pokemon.id = 25 extra")
            .unwrap_err()
            .message(),
        "unexpected `extra` after the request"
    );
    assert_eq!(
        Request::parse("Pokemon.id in 10..1")
            .unwrap_err()
            .to_string(),
        "range 10..1 is empty: nothing to fetch\n  Pokemon.id in 10..1\n                ^^^^^"
    );
    assert_eq!(
        Request::parse("Pokemon.id in []").unwrap_err().kind(),
        RequestErrorKind::EmptyRange
    );
}

#[test]
fn absurd_input_is_an_error_not_a_panic() {
    let e = Request::parse("Pokemon.id = 99999999999999999999999").unwrap_err();
    assert_eq!(
        e.message(),
        "integer 99999999999999999999999 is out of range (keys are between -9223372036854775808 and 9223372036854775807)"
    );
    assert_eq!(
        Request::parse("Pokemon.id = 1e999").unwrap_err().message(),
        "number 1e999 is out of range"
    );
    let long = format!("Pokemon.name = \"{}\"", "x".repeat(MAX_REQUEST_LEN));
    assert_eq!(
        Request::parse(&long).unwrap_err().message(),
        format!(
            "request is too long ({} bytes; the limit is 65536)",
            long.len()
        )
    );
    let deep = format!("Date = {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(
        Request::parse(&deep).unwrap_err().message(),
        "nested tuples are not allowed in a key"
    );
    let name = format!("{} = 1", "P".repeat(1000));
    assert_eq!(
        Request::parse(&name).unwrap_err().message(),
        "name is too long (1000 characters; the limit is 256)"
    );
    for junk in [
        "\u{0}",
        "Pokemon.id = \u{7}",
        "Pokemon.id in 1..",
        "Pokemon.",
        "..=",
        "-",
    ] {
        assert!(Request::parse(junk).is_err(), "{junk:?}");
    }
    // The full i64 range resolves lazily and counts without overflow.
    let r = registry().resolve_str("Pokemon.id in -9223372036854775808..=9223372036854775807");
    assert!(r.is_err(), "u8 parameter rejects the ends");
}

#[test]
fn unknown_model_suggests_the_closest() {
    assert_eq!(
        err("Pokemn.id = 25"),
        "unknown model `Pokemn`\n  Pokemn.id = 25\n  ^^^^^^\nhelp: did you mean `Pokemon`?"
    );
    assert_eq!(
        err("Zebra.id = 1"),
        "unknown model `Zebra`\n  Zebra.id = 1\n  ^^^^^\nhelp: known models: Date, Flag, Orphan, Pokemon"
    );
}

#[test]
fn unknown_or_non_index_identifiers() {
    assert_eq!(
        err("Pokemon.nmae = \"pikachu\""),
        "model `Pokemon` has no edge `nmae`\n  Pokemon.nmae = \"pikachu\"\n          ^^^^\nhelp: did you mean `name`?"
    );
    assert_eq!(
        err("Pokemon.weight = 60"),
        "`Pokemon.weight` is not an index of `Pokemon`\n  Pokemon.weight = 60\n          ^^^^^^\nhelp: its indexes are Pokemon.id, Pokemon.name"
    );
    assert_eq!(
        err("Date.year = 2024"),
        "`Date.year` is not an index of `Date`\n  Date.year = 2024\n       ^^^^\nhelp: its indexes are Date(year, month, day)"
    );
}

#[test]
fn identifier_without_fetcher_lists_the_ones_with() {
    assert_eq!(
        err("Pokemon.name = \"pikachu\""),
        "no fetcher is registered for `Pokemon.name`\n  Pokemon.name = \"pikachu\"\n          ^^^^\nhelp: fetchers exist for: Pokemon.id (`get_pokemon` at src/pokeapi.rs:10)"
    );
    let e = registry().resolve_str("Orphan.code = \"x\"").unwrap_err();
    assert_eq!(e.kind(), RequestErrorKind::NoFetcher);
    assert!(
        e.help_text().unwrap().contains("use my_sources as _;"),
        "{e}"
    );
}

#[test]
fn values_are_checked_before_anything_is_fetched() {
    assert_eq!(
        err("Pokemon.id = \"abc\""),
        "`Pokemon.id` is a Number index and takes integers; \"abc\" is a string\n  Pokemon.id = \"abc\"\n               ^^^^^"
    );
    assert_eq!(
        err("Pokemon.id = 2.5"),
        "`Pokemon.id` is a Number index and takes integers; 2.5 is a number\n  Pokemon.id = 2.5\n               ^^^\nhelp: Number indexes hold integers"
    );
    assert_eq!(
        err("Pokemon.id in [1, \"two\", 3]"),
        "`Pokemon.id` is a Number index and takes integers; \"two\" is a string\n  Pokemon.id in [1, \"two\", 3]\n                    ^^^^^"
    );
    assert_eq!(
        err("Date = (2024, 1)"),
        "`Date(year, month, day)` takes a tuple of 3 values (year, month, day), found (2024, 1)\n  Date = (2024, 1)\n          ^^^^^^^"
    );
    assert_eq!(
        err("Flag.enabled = 1"),
        "`Flag.enabled` is a Boolean index and takes `true` or `false`; 1 is an integer\n  Flag.enabled = 1\n                 ^"
    );
    assert_eq!(
        err("Date in 1..=3"),
        "a range needs a single Number index; `Date(year, month, day)` is not one\n  Date in 1..=3\n          ^^^^^\nhelp: list the keys instead: `in [...]`"
    );
    // The fetcher's parameter type (u8 here) is checked too, range ends included.
    assert_eq!(
        err("Pokemon.id in [1, 300]"),
        "key 300 cannot be given to `get_pokemon`: key 300 does not fit the fetcher's parameter type `u8`\n  Pokemon.id in [1, 300]\n                    ^^^"
    );
    assert_eq!(
        err("Pokemon.id in 1..=1000"),
        "key 1000 cannot be given to `get_pokemon`: key 1000 does not fit the fetcher's parameter type `u8`\n  Pokemon.id in 1..=1000\n                    ^^^^"
    );
}

#[test]
fn resolution_yields_checked_keys() {
    assert_eq!(keys("Pokemon.id = 25"), ["25"]);
    assert_eq!(keys("Pokemon = 25.0"), ["25"]);
    assert_eq!(keys("Pokemon.id in [7, 1, 7, 4]"), ["7", "1", "4"]);
    assert_eq!(keys("Pokemon.id in 1..4"), ["1", "2", "3"]);
    assert_eq!(keys("Pokemon.id in 1..=3"), ["1", "2", "3"]);
    assert_eq!(keys("Date = (2024, 1, 31)"), ["(2024, 1, 31)"]);
    assert_eq!(keys("Flag.enabled = false"), ["false"]);
    let r = registry()
        .resolve_str("Date(year, month, day) = (2024, 2, 29)")
        .unwrap();
    assert_eq!(r.fetcher().function, "get_date");
    assert_eq!(r.identifier(), ["year", "month", "day"]);
    assert_eq!(r.model().name(), "Date");
}

#[test]
fn ranges_stream_without_materialising() {
    let set = KeySet::Range {
        start: 1,
        end: 1_000_000_000_000,
    };
    assert_eq!(set.len(), 1_000_000_000_000);
    let mut it = set.into_keys();
    assert_eq!(it.next(), Some(Key::single(1i64)));
    assert_eq!(it.nth(9), Some(Key::single(11i64)));
    let all = KeySet::Range {
        start: i64::MIN,
        end: i64::MAX,
    };
    assert_eq!(all.len(), u64::MAX);
}

#[test]
fn typed_requests_resolve_like_parsed_ones() {
    let req = Request::one("Pokemon", &["id"], Key::single(25i64));
    assert_eq!(req.to_string(), "Pokemon.id = 25");
    let r = registry().resolve(&req).unwrap();
    assert_eq!(r.fetcher().function, "get_pokemon");
    let bad = Request::one("Pokemon", &["id"], Key::single("x"));
    // No source text: the message without a caret.
    assert_eq!(
        registry().resolve(&bad).unwrap_err().to_string(),
        "`Pokemon.id` is a Number index and takes integers; \"x\" is a string"
    );
}

/// The suggestion in a help text: `did you mean `name`?` → `name`.
fn suggestion(help: Option<&str>) -> Option<String> {
    let rest = help?.split("did you mean ").nth(1)?;
    Some(rest.trim_matches(|c| c == '`' || c == '?').to_string())
}

#[test]
fn a_typo_gets_the_same_suggestion_in_a_request_as_in_a_schema() {
    // One `did_you_mean` (kye-lang's) serves both. Before, requests used an algorithm of their
    // own: `nmea` was `name` in a request but had no suggestion in a schema.
    for (typo, expected) in [
        ("nmae", Some("name")),
        ("naem", Some("name")),
        ("wieght", Some("weight")),
        ("wEIGHT", Some("weight")),
        ("nmea", None),
        ("colour", None),
    ] {
        // In a schema: an index naming an edge the model does not have.
        let text = format!(
            "Pokemon(id)(name)({typo}) {{\n  id: Number\n  name: String\n  weight: Number\n}}\n"
        );
        let error = kye_lang::compile_str("typo.kye", &text).expect_err("the typo is an error");
        let diagnostic = error
            .errors()
            .find(|d| d.code == "kye::unknown-index-edge")
            .unwrap_or_else(|| panic!("{typo}: {}", error.render(false)));
        let in_schema = suggestion(diagnostic.hint.as_deref());
        // In a request: the same edge name.
        let e = registry()
            .resolve_str(&format!("Pokemon.{typo} = 1"))
            .unwrap_err();
        assert_eq!(e.kind(), RequestErrorKind::UnknownEdge, "{e}");
        let in_request = suggestion(e.help_text());
        assert_eq!(in_schema.as_deref(), expected, "schema, {typo}");
        assert_eq!(in_request.as_deref(), expected, "request, {typo}");
    }
    // Model names: a type in a schema, a model in a request.
    let error = kye_lang::compile_str(
        "typo.kye",
        "Pokemon(id) {\n  id: Number\n}\nTrainer(name) {\n  name: String\n  team*: Pokemn\n}\n",
    )
    .expect_err("the typo is an error");
    let hints: Vec<Option<String>> = error
        .errors()
        .map(|d| suggestion(d.hint.as_deref()))
        .collect();
    assert_eq!(hints, [Some("Pokemon".to_string())]);
    let e = registry().resolve_str("Pokemn.id = 1").unwrap_err();
    assert_eq!(suggestion(e.help_text()).as_deref(), Some("Pokemon"));
}
