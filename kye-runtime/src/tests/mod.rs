//! Unit tests of private steps that need more than one module (the executor with
//! configuration and the loopback server). Tests of one module sit beside it; tests of the
//! public API are in `kye-runtime/tests`.

mod executor;
