//! Unit tests of the source declarations.

use super::*;

/// A source of `name` with nothing declared but a host (also for other modules' tests).
pub(crate) fn source(name: &'static str) -> SourceRegistration {
    SourceRegistration {
        name,
        description: "a test source",
        crate_name: "tests",
        version: "0.1.0",
        hosts: &["api.example"],
        config: &[],
        secrets: &[],
        probe: None,
        module_path: "tests",
        file: "tests.rs",
        line: 1,
    }
}

fn lister(source: &'static str, function: &'static str) -> SourceMember {
    SourceMember {
        source,
        kind: MemberKind::Lister,
        model: "Cat",
        identifier: &["id"],
        function,
    }
}

#[test]
fn functions_of_one_name_in_two_sources_are_refused_and_in_one_source_accepted() {
    let cats: &'static SourceRegistration = Box::leak(Box::new(source("cats")));
    let dogs: &'static SourceRegistration = Box::leak(Box::new(source("dogs")));
    let one: &'static [SourceMember] =
        Box::leak(Box::new([lister("cats", "all"), lister("cats", "all")]));
    let sources = Sources::from_parts([cats, dogs], one.iter()).expect("one source");
    assert_eq!(sources.source_of("all").map(|s| s.name), Some("cats"));
    let two: &'static [SourceMember] =
        Box::leak(Box::new([lister("cats", "all"), lister("dogs", "all")]));
    let err = Sources::from_parts([cats, dogs], two.iter()).unwrap_err();
    assert!(
        matches!(&err, SourceError::Ambiguous { function, .. } if function == "all"),
        "{err}"
    );
    let undeclared: &'static [SourceMember] = Box::leak(Box::new([lister("birds", "all")]));
    assert!(matches!(
        Sources::from_parts([cats], undeclared.iter()),
        Err(SourceError::Undeclared { .. })
    ));
}

/// kye-macros cannot link the runtime, so it keeps its own copy of the reserved names: the
/// two lists must not drift apart.
#[test]
fn the_macros_refuse_the_same_reserved_names() {
    let macros = include_str!("../../../kye-macros/src/source.rs");
    let start = macros
        .find("const RESERVED: &[&str] = &[")
        .expect("the macros' list");
    let end = start + macros[start..].find("];").expect("its end");
    let listed: Vec<&str> = macros[start..end]
        .lines()
        .skip(1)
        .map(|l| l.trim().trim_end_matches(',').trim_matches('"'))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(listed, RESERVED_SOURCE_NAMES);
}
