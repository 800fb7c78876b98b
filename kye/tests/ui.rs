//! Compile errors of `#[kye::get]` and `kye::models!`: every mistake is a spanned compile
//! error with a reviewed message (tests/ui/fail/*.stderr). One trybuild run, compile_fail cases
//! only: the accepted forms compile once as ordinary tests (`tests/facade/accepted/`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}
