//! Procedural macros for kye. Use them through the `kye` facade crate.
