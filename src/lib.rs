//! Workspace root package: owns `examples/` and the workspace-wide `tests/`.
//! Nothing here is published; shared test helpers live in this library.

/// The README, compiled as doctests so its tour stays true (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// `docs/writing-fetchers.md`, compiled (and its loopback test run) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/writing-fetchers.md")]
pub struct WritingFetchersDoctests;

/// `docs/cli.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/cli.md")]
pub struct CliDoctests;

/// `docs/README.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/README.md")]
pub struct GuideDoctests;
