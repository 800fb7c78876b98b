//! Compile-time behaviour of `#[kye::get]` and `kye::models!`: every accepted signature compiles
//! and registers (tests/ui/pass, each run as a program), every mistake is a spanned compile
//! error with a reviewed message (tests/ui/fail/*.stderr).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
