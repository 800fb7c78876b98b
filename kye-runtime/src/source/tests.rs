//! Unit tests of the source declarations.
