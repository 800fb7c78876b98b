//! Workspace root package: owns `examples/` and the workspace-wide `tests/`.
//! Nothing here is published; shared test helpers live in this library.
