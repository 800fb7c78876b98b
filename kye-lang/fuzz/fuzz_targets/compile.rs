//! Fuzz target: any bytes, read as (lossy) UTF-8, must compile or fail with diagnostics that
//! point inside the text, and rendering them must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let check_span = |span: kye_lang::Span| {
        let (s, e) = (span.start as usize, span.end as usize);
        assert!(s <= e && e <= text.len(), "span {s}..{e} outside the text");
        assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
    };
    match kye_lang::compile_str("fuzz.kye", &text) {
        Ok(schema) => {
            for m in schema.models() {
                // A model without an index is a value object: some edge must nest it.
                assert!(
                    !m.indexes.is_empty()
                        || schema.models().iter().flat_map(|o| o.edges.iter()).any(
                            |e| matches!(&e.ty, kye_lang::Type::Model(t) if *t == m.name)
                        )
                );
                for ix in &m.indexes {
                    for e in &ix.edges {
                        assert!(m.edge(e).is_some());
                    }
                }
                for e in &m.edges {
                    if let kye_lang::Type::Model(t) = &e.ty {
                        assert!(schema.model(t).is_some());
                    }
                }
            }
            for w in schema.warnings() {
                check_span(w.primary.span);
                let _ = w.render(&schema.sources, true);
            }
        }
        Err(err) => {
            assert!(err.errors().next().is_some());
            for d in &err.diagnostics {
                check_span(d.primary.span);
                for l in &d.secondary {
                    check_span(l.span);
                }
            }
            let _ = err.render(false);
            let _ = err.render(true);
        }
    }
});
