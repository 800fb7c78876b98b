//! Workspace root package: owns `examples/` and the workspace-wide `tests/`.
//! Nothing here is published; shared test helpers live in this library.

/// The README, compiled as doctests so its tour stays true (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
