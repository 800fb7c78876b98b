//! The kye runtime. Use it through the `kye` facade crate.
