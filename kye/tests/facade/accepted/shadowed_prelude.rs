// Generated code names everything by absolute path: a crate that shadows prelude names
// (`Result`, `Option`, `Box`, `Debug`, ...) still compiles.
#![allow(dead_code)]

type Result<T> = core::result::Result<T, String>;
struct Option;
struct Box;
struct Vec;
struct String;
trait Debug {}
trait Clone {}

kye::models!("tests/ui/schema.kye");

#[kye::get(Flag.enabled)]
fn get_flag(enabled: bool) -> kye::Result<Flag> {
    Ok(Flag {
        enabled,
        label: std::string::String::from("x"),
    })
}

#[test]
fn compiles_and_registers() {
    let _: Result<()> = Ok(());
    assert!(crate::registry_of(module_path!())
        .unwrap()
        .fetcher("Flag", &["enabled"])
        .is_some());
}
