//! `kye check` as a program.

use std::path::PathBuf;
use std::process::{Command, Output};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kye-cli-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn kye(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kye"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the kye binary runs")
}

#[test]
fn a_valid_schema_exits_0() {
    let d = dir("ok");
    let f = d.join("users.kye");
    std::fs::write(&f, "User(id) {\n  id: Number\n  name: String\n}\n").unwrap();
    let out = kye(&["check", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 1 model (User)"
    );

    let out = kye(&["--format", "json", "check", f.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["models"], serde_json::json!(["User"]));

    let out = kye(&["-q", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

#[test]
fn every_error_of_a_broken_schema_is_reported_with_exit_2() {
    let d = dir("broken");
    let f = d.join("bad.kye");
    std::fs::write(&f, "User(id) {\n  id: Nubmer\n  name: Strng\n}\n").unwrap();
    let out = kye(&["check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.kye:2:"), "{err}");
    assert!(
        err.contains("bad.kye:3:"),
        "both errors, not just the first: {err}"
    );
    assert!(err.contains("Number"), "a did-you-mean hint: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn files_check_together_and_missing_files_exit_2() {
    let d = dir("multi");
    let a = d.join("a.kye");
    let b = d.join("b.kye");
    std::fs::write(&a, "Kind(code) { code: String }\n").unwrap();
    std::fs::write(&b, "Thing(id) { id: Number, kind: Kind }\n").unwrap();
    let out = kye(&["check", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // b alone does not know Kind.
    assert_eq!(kye(&["check", b.to_str().unwrap()]).status.code(), Some(2));

    let out = kye(&["check", "/nonexistent/x.kye"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.kye"));
    // No file at all is a usage error.
    assert_eq!(kye(&["check"]).status.code(), Some(2));
    // --help is not an error.
    assert_eq!(kye(&["--help"]).status.code(), Some(0));
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
fn endless_schema_and_config_files_are_refused_with_the_limit() {
    let out = kye_bounded(&["check", "/dev/zero"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot read /dev/zero: the file is larger than 16 MiB"),
        "{err}"
    );
    let out = kye_bounded(&["--config", "/dev/zero", "runs"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot read config file /dev/zero: the file is larger than 16 MiB"),
        "{err}"
    );
}
